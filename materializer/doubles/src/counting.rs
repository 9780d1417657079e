//! A wrapper at the AWS seam that counts calls by operation, so that tests and benchmarks can
//! assert how many (mutating) calls a command made.

use gilliam_materializer::aws::{AwsResult, Call, Layer, Layered};
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
    "run_instance",
    "terminate_instances",
];

/// The counting layer: calls by seam method, and the time spent inside them.
#[derive(Debug, Default)]
pub struct Calls {
    calls: Mutex<BTreeMap<&'static str, usize>>,
    /// Time spent inside calls, by seam method (summed; concurrent calls each count).
    busy: Mutex<BTreeMap<&'static str, std::time::Duration>>,
}

impl Layer for Calls {
    async fn around<T: Send>(&self, call: Call, f: impl std::future::Future<Output = AwsResult<T>> + Send) -> AwsResult<T> {
        *self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(call.method).or_default() += 1;
        let t = std::time::Instant::now();
        let r = f.await;
        *self.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(call.method).or_default() += t.elapsed();
        r
    }
}

/// A client whose calls are counted: the seam's forwarding wrapper with the `Calls` layer.
#[derive(Debug, Default)]
pub struct Counting<A> {
    pub counted: Layered<Calls, A>,
}

gilliam_materializer::forward!(impl[A: gilliam_materializer::aws::Aws] Aws for Counting<A> => counted);

impl<A> Counting<A> {
    pub fn new(inner: A) -> Self {
        Counting { counted: Layered { layer: Calls::default(), inner } }
    }
    /// The client counted, for calls that should not count.
    pub fn inner(&self) -> &A {
        &self.counted.inner
    }
    /// Calls so far, by operation.
    pub fn calls(&self) -> BTreeMap<&'static str, usize> {
        self.counted.layer.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
    /// Mutating calls so far, by operation.
    pub fn mutations(&self) -> BTreeMap<&'static str, usize> {
        self.calls().into_iter().filter(|(op, _)| MUTATING.contains(op)).collect()
    }
    pub fn reset(&self) {
        self.counted.layer.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        self.counted.layer.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }
    /// Time spent waiting on AWS, by operation: where a slow command's time goes. Calls run
    /// concurrently: the sum is no measure of the time a command waited.
    pub fn busy_by_operation(&self) -> BTreeMap<&'static str, std::time::Duration> {
        self.counted.layer.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}
