//! A wrapper at the AWS seam that counts calls by operation, so that tests and benchmarks can
//! assert how many (mutating) calls a command made.

use crate::aws::{Aws, AwsResult, Group, MetricQuery, Object, ObjectHead, PutCondition, Rule, Stack, StackEvent, StackRequest};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Operations that change something in AWS.
pub const MUTATING: &[&str] = &[
    "create_secure_bucket",
    "put_object",
    "create_stack",
    "update_stack",
    "delete_stack",
    "continue_update_rollback",
    "set_rule_weights",
    "set_capacity",
    "put_secret",
    "restore_secret",
    "put_secret_value",
];

#[derive(Debug, Default)]
pub struct Counting<A> {
    pub inner: A,
    calls: Mutex<BTreeMap<&'static str, usize>>,
    /// Time spent inside calls (summed; concurrent calls each count).
    busy: Mutex<std::time::Duration>,
}

impl<A> Counting<A> {
    pub fn new(inner: A) -> Self {
        Counting { inner, calls: Mutex::new(BTreeMap::new()), busy: Mutex::new(std::time::Duration::ZERO) }
    }
    fn count(&self, op: &'static str) {
        *self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(op).or_default() += 1;
    }
    /// Calls so far, by operation.
    pub fn calls(&self) -> BTreeMap<&'static str, usize> {
        self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
    /// Mutating calls so far, by operation.
    pub fn mutations(&self) -> BTreeMap<&'static str, usize> {
        self.calls().into_iter().filter(|(op, _)| MUTATING.contains(op)).collect()
    }
    pub fn reset(&self) {
        self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        *self.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = std::time::Duration::ZERO;
    }
    /// Time spent waiting on AWS (the emulator's own time, in benchmarks).
    pub fn busy(&self) -> std::time::Duration {
        *self.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    async fn timed<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        let t = std::time::Instant::now();
        let r = f.await;
        *self.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += t.elapsed();
        r
    }
}

impl<A: Aws> Aws for Counting<A> {
    async fn bucket_exists(&self, bucket: &str) -> AwsResult<bool> {
        self.count("bucket_exists");
        self.timed(self.inner.bucket_exists(bucket)).await
    }
    async fn create_secure_bucket(&self, bucket: &str, region: &str) -> AwsResult<()> {
        self.count("create_secure_bucket");
        self.timed(self.inner.create_secure_bucket(bucket, region)).await
    }
    async fn get_object(&self, bucket: &str, key: &str) -> AwsResult<Option<Object>> {
        self.count("get_object");
        self.timed(self.inner.get_object(bucket, key)).await
    }
    async fn head_object(&self, bucket: &str, key: &str) -> AwsResult<Option<ObjectHead>> {
        self.count("head_object");
        self.timed(self.inner.head_object(bucket, key)).await
    }
    async fn put_object(&self, bucket: &str, key: &str, body: Vec<u8>, cond: PutCondition) -> AwsResult<String> {
        self.count("put_object");
        self.timed(self.inner.put_object(bucket, key, body, cond)).await
    }
    async fn describe_stack(&self, name: &str) -> AwsResult<Option<Stack>> {
        self.count("describe_stack");
        self.timed(self.inner.describe_stack(name)).await
    }
    async fn create_stack(&self, req: &StackRequest) -> AwsResult<String> {
        self.count("create_stack");
        self.timed(self.inner.create_stack(req)).await
    }
    async fn update_stack(&self, req: &StackRequest) -> AwsResult<()> {
        self.count("update_stack");
        self.timed(self.inner.update_stack(req)).await
    }
    async fn delete_stack(&self, name: &str) -> AwsResult<()> {
        self.count("delete_stack");
        self.timed(self.inner.delete_stack(name)).await
    }
    async fn continue_update_rollback(&self, name: &str) -> AwsResult<()> {
        self.count("continue_update_rollback");
        self.timed(self.inner.continue_update_rollback(name)).await
    }
    async fn stack_events(&self, name: &str) -> AwsResult<Vec<StackEvent>> {
        self.count("stack_events");
        self.timed(self.inner.stack_events(name)).await
    }
    async fn get_template(&self, name: &str) -> AwsResult<String> {
        self.count("get_template");
        self.timed(self.inner.get_template(name)).await
    }
    async fn stack_resources(&self, name: &str) -> AwsResult<Vec<(String, String, String)>> {
        self.count("stack_resources");
        self.timed(self.inner.stack_resources(name)).await
    }
    async fn list_exports(&self) -> AwsResult<Vec<(String, String)>> {
        self.count("list_exports");
        self.timed(self.inner.list_exports()).await
    }
    async fn describe_rules(&self, arns: &[String]) -> AwsResult<Vec<Rule>> {
        self.count("describe_rules");
        self.timed(self.inner.describe_rules(arns)).await
    }
    async fn set_rule_weights(&self, arn: &str, forward: &[(String, u32)], stickiness: Option<u32>) -> AwsResult<()> {
        self.count("set_rule_weights");
        self.timed(self.inner.set_rule_weights(arn, forward, stickiness)).await
    }
    async fn target_health(&self, target_group_arn: &str) -> AwsResult<Vec<String>> {
        self.count("target_health");
        self.timed(self.inner.target_health(target_group_arn)).await
    }
    async fn describe_groups(&self, names: &[String]) -> AwsResult<Vec<Group>> {
        self.count("describe_groups");
        self.timed(self.inner.describe_groups(names)).await
    }
    async fn set_capacity(&self, name: &str, min: u32, desired: u32, max: u32) -> AwsResult<()> {
        self.count("set_capacity");
        self.timed(self.inner.set_capacity(name, min, desired, max)).await
    }
    async fn metric_data(&self, queries: &[MetricQuery], start: i64, end: i64) -> AwsResult<std::collections::BTreeMap<String, Vec<f64>>> {
        self.count("metric_data");
        self.timed(self.inner.metric_data(queries, start, end)).await
    }
    async fn alarm_states(&self, names: &[String]) -> AwsResult<Vec<(String, String)>> {
        self.count("alarm_states");
        self.timed(self.inner.alarm_states(names)).await
    }
    async fn publish(&self, topic: &str, subject: &str, message: &str) -> AwsResult<()> {
        self.count("publish");
        self.timed(self.inner.publish(topic, subject, message)).await
    }
    async fn put_event(&self, bus: &str, detail_type: &str, detail: &str) -> AwsResult<()> {
        self.count("put_event");
        self.timed(self.inner.put_event(bus, detail_type, detail)).await
    }
    async fn delete_secret(&self, name: &str) -> AwsResult<()> {
        self.count("delete_secret");
        self.timed(self.inner.delete_secret(name)).await
    }
    async fn put_secret(&self, name: &str, value: &str, formation: &str) -> AwsResult<String> {
        self.count("put_secret");
        self.timed(self.inner.put_secret(name, value, formation)).await
    }
    async fn describe_secret(&self, name: &str) -> AwsResult<Option<bool>> {
        self.count("describe_secret");
        self.timed(self.inner.describe_secret(name)).await
    }
    async fn restore_secret(&self, name: &str) -> AwsResult<()> {
        self.count("restore_secret");
        self.timed(self.inner.restore_secret(name)).await
    }
    async fn random_password(&self) -> AwsResult<String> {
        self.count("random_password");
        self.timed(self.inner.random_password()).await
    }
    async fn secret_value(&self, name: &str) -> AwsResult<Option<String>> {
        self.count("secret_value");
        self.timed(self.inner.secret_value(name)).await
    }
    async fn put_secret_value(&self, name: &str, value: &str) -> AwsResult<()> {
        self.count("put_secret_value");
        self.timed(self.inner.put_secret_value(name, value)).await
    }
    async fn describe_network(&self, vpc: &str, subnets: &[String]) -> AwsResult<Option<crate::aws::Network>> {
        self.count("describe_network");
        self.timed(self.inner.describe_network(vpc, subnets)).await
    }
}
