//! A fault-injecting wrapper at the AWS seam: on every call, at a configurable rate, throttling,
//! a 5xx, a timeout before the request reaches AWS, a connection reset after it went through
//! (the ambiguous failure: AWS did it, the caller does not know), or a slow answer. Seeded, so
//! that a failing run can be replayed. It can also kill the process (SIGKILL) right before a
//! given call, to test that a converge resumes from any point.
//!
//! The binaries wrap their AWS client in it when `GILLIAM_FAULTS` is set (a testing facility:
//! `rate=0.2,seed=7,slow_ms=300` or `kill_before_call=42`).

use crate::aws::{AwsError, AwsResult, Call, Layer, Layered};
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

/// The fault-injecting layer.
#[derive(Debug)]
pub struct Faults {
    spec: FaultSpec,
    state: Mutex<u64>,
    calls: AtomicUsize,
    injected: Mutex<BTreeMap<Fault, usize>>,
}

/// A client that meets faults.
pub type Faulty<A> = Layered<Faults, A>;

impl<A> Layered<Faults, A> {
    /// Wraps `inner`; with a `retry_base` in the spec, sets the process's first retry delay.
    pub fn new(inner: A, spec: FaultSpec) -> Self {
        if let Some(b) = spec.retry_base {
            crate::retry::set_retry_base(b);
        }
        Layered { layer: Faults { state: Mutex::new(spec.seed), spec, calls: AtomicUsize::new(0), injected: Mutex::new(BTreeMap::new()) }, inner }
    }

    /// Calls made so far.
    pub fn calls(&self) -> usize {
        self.layer.calls.load(Ordering::SeqCst)
    }

    /// Faults injected so far, by kind.
    pub fn injected(&self) -> BTreeMap<Fault, usize> {
        self.layer.injected.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

impl Faults {
    /// splitmix64: small, seedable, good enough to pick faults.
    fn next(&self) -> u64 {
        let mut s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl Layer for Faults {
    async fn around<T: Send>(&self, call: Call, f: impl Future<Output = AwsResult<T>> + Send) -> AwsResult<T> {
        let op = call.op;
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
