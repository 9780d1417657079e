//! A fault-injecting wrapper at the AWS seam: on every call, at a configurable rate, throttling,
//! a 5xx, a timeout before the request reaches AWS, a connection reset after it went through
//! (the ambiguous failure: AWS did it, the caller does not know), or a slow answer. Seeded, so
//! that a failing run can be replayed. It can also kill the process (SIGKILL) right before a
//! given call, to test that a converge resumes from any point.
//!
//! The binaries wrap their AWS client in it when `GILLIAM_FAULTS` is set (a testing facility:
//! `rate=0.2,seed=7,slow_ms=300` or `kill_before_call=42`).

use crate::aws::{Aws, AwsError, AwsResult, Group, MetricQuery, Object, ObjectHead, PutCondition, Rule, Stack, StackEvent, StackRequest};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    /// Probability that a call meets a fault, 0.0 to 1.0.
    pub rate: f64,
    pub seed: u64,
    /// How long a slow answer or a timeout takes.
    pub slow: Duration,
    /// Kill the process with SIGKILL right before this call (1-based).
    pub kill_before_call: Option<usize>,
    /// The first retry delay to use with these faults (tests shorten it to run many stories).
    pub retry_base: Option<Duration>,
}

impl Default for FaultSpec {
    fn default() -> Self {
        FaultSpec { rate: 0.0, seed: 1, slow: Duration::from_millis(50), kill_before_call: None, retry_base: None }
    }
}

impl FaultSpec {
    /// Parses `rate=0.2,seed=7,slow_ms=50,kill_before_call=42,retry_base_ms=5` (every part optional).
    pub fn parse(spec: &str) -> Result<FaultSpec, String> {
        let mut f = FaultSpec::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| format!("GILLIAM_FAULTS: {part:?} is not key=value"))?;
            let bad = || format!("GILLIAM_FAULTS: {k}={v:?} is not a valid value");
            match k {
                "rate" => f.rate = v.parse::<f64>().ok().filter(|r| (0.0..=1.0).contains(r)).ok_or_else(bad)?,
                "seed" => f.seed = v.parse().map_err(|_| bad())?,
                "slow_ms" => f.slow = Duration::from_millis(v.parse().map_err(|_| bad())?),
                "kill_before_call" => f.kill_before_call = Some(v.parse().map_err(|_| bad())?),
                "retry_base_ms" => f.retry_base = Some(Duration::from_millis(v.parse().map_err(|_| bad())?)),
                _ => return Err(format!("GILLIAM_FAULTS: unknown key {k:?} (rate, seed, slow_ms, kill_before_call, retry_base_ms)")),
            }
        }
        Ok(f)
    }
}

/// The faults, in the order they are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    Throttled,
    ServerError,
    /// The call times out before it reaches AWS: nothing happened.
    Timeout,
    /// The call went through, the answer was lost: it happened, the caller sees an error.
    ResetAfter,
    /// The answer comes, late.
    Slow,
}

const FAULTS: [Fault; 5] = [Fault::Throttled, Fault::ServerError, Fault::Timeout, Fault::ResetAfter, Fault::Slow];

#[derive(Debug)]
pub struct Faulty<A> {
    pub inner: A,
    spec: FaultSpec,
    state: Mutex<u64>,
    calls: AtomicUsize,
    injected: Mutex<BTreeMap<Fault, usize>>,
}

impl<A> Faulty<A> {
    /// Wraps `inner`; with a `retry_base` in the spec, sets the process's first retry delay.
    pub fn new(inner: A, spec: FaultSpec) -> Self {
        if let Some(b) = spec.retry_base {
            crate::retry::set_retry_base(b);
        }
        Faulty { inner, state: Mutex::new(spec.seed), spec, calls: AtomicUsize::new(0), injected: Mutex::new(BTreeMap::new()) }
    }

    /// splitmix64: small, seedable, good enough to pick faults.
    fn next(&self) -> u64 {
        let mut s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Calls made so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Faults injected so far, by kind.
    pub fn injected(&self) -> BTreeMap<Fault, usize> {
        self.injected.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    async fn call<T>(&self, op: &str, f: impl Future<Output = AwsResult<T>>) -> AwsResult<T> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.spec.kill_before_call == Some(n) {
            eprintln!("gilliam: GILLIAM_FAULTS: killing this process before call {n} ({op})");
            let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        }
        let roll = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        if roll >= self.spec.rate {
            return f.await;
        }
        let fault = FAULTS[(self.next() % FAULTS.len() as u64) as usize];
        *self.injected.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(fault).or_default() += 1;
        match fault {
            Fault::Throttled => Err(AwsError::Throttled(format!("{op}: Rate exceeded (injected)"))),
            Fault::ServerError => Err(AwsError::Transient(format!("{op}: 503 Service Unavailable (injected)"))),
            Fault::Timeout => {
                tokio::time::sleep(self.spec.slow).await;
                Err(AwsError::Transient(format!("{op}: timed out (injected)")))
            }
            Fault::ResetAfter => match f.await {
                Ok(_) => Err(AwsError::Transient(format!("{op}: connection reset after the request went through (injected)"))),
                Err(e) => Err(e),
            },
            Fault::Slow => {
                tokio::time::sleep(self.spec.slow).await;
                f.await
            }
        }
    }
}

impl<A: Aws> Aws for Faulty<A> {
    async fn bucket_exists(&self, bucket: &str) -> AwsResult<bool> {
        self.call("HeadBucket", self.inner.bucket_exists(bucket)).await
    }
    async fn create_secure_bucket(&self, bucket: &str, region: &str) -> AwsResult<()> {
        self.call("CreateBucket", self.inner.create_secure_bucket(bucket, region)).await
    }
    async fn get_object(&self, bucket: &str, key: &str) -> AwsResult<Option<Object>> {
        self.call("GetObject", self.inner.get_object(bucket, key)).await
    }
    async fn head_object(&self, bucket: &str, key: &str) -> AwsResult<Option<ObjectHead>> {
        self.call("HeadObject", self.inner.head_object(bucket, key)).await
    }
    async fn put_object(&self, bucket: &str, key: &str, body: Vec<u8>, cond: PutCondition) -> AwsResult<String> {
        self.call("PutObject", self.inner.put_object(bucket, key, body, cond)).await
    }
    async fn describe_stack(&self, name: &str) -> AwsResult<Option<Stack>> {
        self.call("DescribeStacks", self.inner.describe_stack(name)).await
    }
    async fn create_stack(&self, req: &StackRequest) -> AwsResult<String> {
        self.call("CreateStack", self.inner.create_stack(req)).await
    }
    async fn update_stack(&self, req: &StackRequest) -> AwsResult<()> {
        self.call("UpdateStack", self.inner.update_stack(req)).await
    }
    async fn delete_stack(&self, name: &str) -> AwsResult<()> {
        self.call("DeleteStack", self.inner.delete_stack(name)).await
    }
    async fn continue_update_rollback(&self, name: &str) -> AwsResult<()> {
        self.call("ContinueUpdateRollback", self.inner.continue_update_rollback(name)).await
    }
    async fn stack_events(&self, name: &str) -> AwsResult<Vec<StackEvent>> {
        self.call("DescribeStackEvents", self.inner.stack_events(name)).await
    }
    async fn get_template(&self, name: &str) -> AwsResult<String> {
        self.call("GetTemplate", self.inner.get_template(name)).await
    }
    async fn stack_resources(&self, name: &str) -> AwsResult<Vec<(String, String, String)>> {
        self.call("ListStackResources", self.inner.stack_resources(name)).await
    }
    async fn list_exports(&self) -> AwsResult<Vec<(String, String)>> {
        self.call("ListExports", self.inner.list_exports()).await
    }
    async fn describe_rules(&self, arns: &[String]) -> AwsResult<Vec<Rule>> {
        self.call("DescribeRules", self.inner.describe_rules(arns)).await
    }
    async fn set_rule_weights(&self, arn: &str, forward: &[(String, u32)], stickiness: Option<u32>) -> AwsResult<()> {
        self.call("ModifyRule", self.inner.set_rule_weights(arn, forward, stickiness)).await
    }
    async fn target_health(&self, target_group_arn: &str) -> AwsResult<Vec<String>> {
        self.call("DescribeTargetHealth", self.inner.target_health(target_group_arn)).await
    }
    async fn describe_groups(&self, names: &[String]) -> AwsResult<Vec<Group>> {
        self.call("DescribeAutoScalingGroups", self.inner.describe_groups(names)).await
    }
    async fn set_capacity(&self, name: &str, min: u32, desired: u32, max: u32) -> AwsResult<()> {
        self.call("UpdateAutoScalingGroup", self.inner.set_capacity(name, min, desired, max)).await
    }
    async fn metric_data(&self, queries: &[MetricQuery], start: i64, end: i64) -> AwsResult<std::collections::BTreeMap<String, Vec<f64>>> {
        self.call("GetMetricData", self.inner.metric_data(queries, start, end)).await
    }
    async fn alarm_states(&self, names: &[String]) -> AwsResult<Vec<(String, String)>> {
        self.call("DescribeAlarms", self.inner.alarm_states(names)).await
    }
    async fn publish(&self, topic: &str, subject: &str, message: &str) -> AwsResult<()> {
        self.call("Publish", self.inner.publish(topic, subject, message)).await
    }
    async fn put_event(&self, bus: &str, detail_type: &str, detail: &str) -> AwsResult<()> {
        self.call("PutEvents", self.inner.put_event(bus, detail_type, detail)).await
    }
    async fn delete_secret(&self, name: &str) -> AwsResult<()> {
        self.call("DeleteSecret", self.inner.delete_secret(name)).await
    }
    async fn put_secret(&self, name: &str, value: &str, formation: &str) -> AwsResult<String> {
        self.call("CreateSecret", self.inner.put_secret(name, value, formation)).await
    }
    async fn describe_secret(&self, name: &str) -> AwsResult<Option<bool>> {
        self.call("DescribeSecret", self.inner.describe_secret(name)).await
    }
    async fn restore_secret(&self, name: &str) -> AwsResult<()> {
        self.call("RestoreSecret", self.inner.restore_secret(name)).await
    }
    async fn random_password(&self) -> AwsResult<String> {
        self.call("GetRandomPassword", self.inner.random_password()).await
    }
    async fn secret_value(&self, name: &str) -> AwsResult<Option<String>> {
        self.call("GetSecretValue", self.inner.secret_value(name)).await
    }
    async fn put_secret_value(&self, name: &str, value: &str) -> AwsResult<()> {
        self.call("PutSecretValue", self.inner.put_secret_value(name, value)).await
    }
    async fn describe_network(&self, vpc: &str, subnets: &[String]) -> AwsResult<Option<crate::aws::Network>> {
        self.call("DescribeNetwork", self.inner.describe_network(vpc, subnets)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_refuse_nonsense() {
        let f = FaultSpec::parse("rate=0.2, seed=7,slow_ms=5,kill_before_call=3").expect("spec");
        assert_eq!(f, FaultSpec { rate: 0.2, seed: 7, slow: Duration::from_millis(5), kill_before_call: Some(3), retry_base: None });
        assert!(FaultSpec::parse("rate=2").is_err());
        assert!(FaultSpec::parse("rate").is_err());
        assert!(FaultSpec::parse("colour=red").expect_err("unknown").contains("unknown key"));
    }
}
