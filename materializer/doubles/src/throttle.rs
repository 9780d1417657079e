//! AWS's API rate limits, for tests and benchmarks: a `Layer` that gives each service's
//! action class a token bucket, as AWS does per account and region, and answers a call that
//! finds its bucket empty with `Throttled` ("Rate exceeded") without passing it on. Time is
//! tokio's, so that a benchmark on paused time measures the buckets' bound, not the machine.
//!
//! The figures (`aws_buckets`), and where they come from:
//! - ELBv2 `Describe*`: 40 tokens, refilled at 10 a second ("Request throttling for the
//!   Elastic Load Balancing API", its example of the non-mutating bucket).
//! - ELBv2 `ModifyRule` and the other mutating actions: 20 tokens at 5 a second. The page has
//!   buckets of their own for them, but their figures were not at hand here: assumed, and
//!   smaller than the read bucket, as every AWS service sets them.
//! - Auto Scaling, CloudFormation, EC2 reads and writes: 20 tokens at 5 a second for reads, 10
//!   at 2 for writes (assumed: EC2 documents token buckets per action class, e.g. describe
//!   actions 100 / 20, and the others publish no figure).
//!
//! `share`: the fraction of each bucket left to gilliam when another tool on the account uses
//! the rest ("another tool is using half the bucket": 0.5).

use gilliam_materializer::aws::{AwsError, AwsResult, Call, Layer};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::time::Instant;

/// A bucket's name, and which bucket a call takes from: the materializer's own table (its
/// pacing layer keeps one pacer per bucket).
pub use gilliam_materializer::pacing::{class, Class};

/// One bucket: its capacity and how many tokens come back each second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub capacity: f64,
    pub refill_per_second: f64,
}

/// The buckets as AWS documents (or, where it does not, as assumed: the module's doc).
pub fn aws_buckets() -> BTreeMap<Class, Bucket> {
    let b = |capacity, refill_per_second| Bucket { capacity, refill_per_second };
    BTreeMap::from([
        (("elbv2", "read"), b(40.0, 10.0)),
        (("elbv2", "write"), b(20.0, 5.0)),
        (("autoscaling", "read"), b(20.0, 5.0)),
        (("autoscaling", "write"), b(10.0, 2.0)),
        (("cloudformation", "read"), b(20.0, 5.0)),
        (("cloudformation", "write"), b(10.0, 2.0)),
        (("ec2", "read"), b(100.0, 20.0)),
        (("ec2", "write"), b(10.0, 2.0)),
    ])
}

/// The throttling layer: `Layered { layer: Buckets::aws(1.0), inner }`.
#[derive(Debug)]
pub struct Buckets {
    table: BTreeMap<Class, Bucket>,
    /// Tokens left and when they were last counted, per bucket (full at the start).
    state: Mutex<BTreeMap<Class, (f64, Instant)>>,
    pub calls: AtomicU64,
    pub throttled: AtomicU64,
    /// Calls per method that went through (not throttled).
    pub passed: Mutex<BTreeMap<&'static str, u64>>,
}

impl Buckets {
    /// AWS's buckets, of which this caller gets `share` (1.0: all of each).
    pub fn aws(share: f64) -> Buckets {
        let table = aws_buckets()
            .into_iter()
            .map(|(k, b)| (k, Bucket { capacity: (b.capacity * share).max(1.0), refill_per_second: b.refill_per_second * share }))
            .collect();
        Buckets { table, state: Mutex::default(), calls: AtomicU64::new(0), throttled: AtomicU64::new(0), passed: Mutex::default() }
    }

    /// Takes a token for `call`; false when its bucket is empty.
    fn take(&self, call: Call) -> bool {
        let Some(key) = class(call) else { return true };
        let Some(b) = self.table.get(&key).copied() else { return true };
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, at) = state.entry(key).or_insert((b.capacity, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * b.refill_per_second).min(b.capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Layer for Buckets {
    async fn around<T: Send>(&self, call: Call, f: impl Future<Output = AwsResult<T>> + Send) -> AwsResult<T> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if !self.take(call) {
            self.throttled.fetch_add(1, Ordering::SeqCst);
            return Err(AwsError::Throttled(format!("{}: Rate exceeded", call.op)));
        }
        *self.passed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(call.method).or_default() += 1;
        f.await
    }
}
