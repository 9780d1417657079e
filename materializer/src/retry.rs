//! The retry policy every AWS call goes through: throttling and transient failures retried
//! with exponential backoff and jitter, anything else returned as `Error::Aws` naming the call.

use crate::aws::AwsResult;
use crate::error::Error;
use std::future::Future;
use std::time::Duration;

static RETRY_BASE_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(200);

/// The first retry delay (200 ms unless set; tests that inject faults at a high rate shorten it).
pub fn set_retry_base(base: Duration) {
    RETRY_BASE_MS.store(base.as_millis().max(1) as u64, std::sync::atomic::Ordering::Relaxed);
}

/// A number in `0..n` from the clock and a counter: jitter needs spread, not secrecy.
fn jitter(n: u64) -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let c = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos() as u64);
    let mut z = t ^ c.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (z ^ (z >> 27)) % n.max(1)
}

/// Exponential backoff with jitter (half the delay fixed, half random, so that concurrent
/// callers spread out): up to 8 waits, doubling from the base up to 20 s.
struct Backoff {
    delay: Duration,
    attempt: u32,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { delay: Duration::from_millis(RETRY_BASE_MS.load(std::sync::atomic::Ordering::Relaxed)), attempt: 0 }
    }

    /// Waits before the next attempt; false (without waiting) once the attempts are spent.
    async fn wait(&mut self) -> bool {
        if self.attempt >= 8 {
            return false;
        }
        self.attempt += 1;
        let half = self.delay.as_millis() as u64 / 2;
        tokio::time::sleep(Duration::from_millis(half + jitter(half + 1))).await;
        self.delay = (self.delay * 2).min(Duration::from_secs(20));
        true
    }
}

/// Retries transient failures up to 8 times with exponential backoff and jitter, and
/// throttling for up to `THROTTLE_PATIENCE`: a throttled call is tried again after a short
/// jittered pause, and `pacing::Pacing` (around every gilliam client) holds it until its
/// class's next slot. Throttling is the bucket's pace, not a fault: backing off
/// exponentially from it would wait seconds for a bucket that refills every 100 ms, and
/// giving up after 8 tries would fail a large formation's run.
pub async fn retry<T, F, Fut>(what: &str, mut call: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = AwsResult<T>>,
{
    let mut backoff = Backoff::new();
    let mut throttled_since: Option<tokio::time::Instant> = None;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(crate::aws::AwsError::Throttled(_)) if throttled_since.get_or_insert_with(tokio::time::Instant::now).elapsed() < THROTTLE_PATIENCE => {
                tokio::time::sleep(Duration::from_millis(20 + jitter(30))).await;
            }
            Err(e) if e.retryable() && backoff.wait().await => {}
            Err(err) => return Err(Error::Aws { what: what.to_string(), err }),
        }
    }
}

/// The pace of the calls that share one AWS token bucket (`pacing::Pacing` keeps one per
/// class): each call takes the next slot at the current rate; throttling slows the rate down
/// (×0.7, once per episode) and success probes it up (+1% a call), with jitter, so that a
/// run stays close to what the bucket refills, whatever share of it other tools on the
/// account take.
#[derive(Debug)]
pub struct Pacer {
    state: std::sync::Mutex<PacerState>,
}

#[derive(Debug)]
struct PacerState {
    /// Calls a second.
    rate: f64,
    next: tokio::time::Instant,
    /// When the rate was last lowered: throttling of calls given their slot before then is
    /// the same congestion, not news (one decrease per episode, as TCP's per round trip).
    lowered: tokio::time::Instant,
}

/// How long one call may keep being throttled before it fails.
pub const THROTTLE_PATIENCE: Duration = Duration::from_secs(900);

impl Pacer {
    const MIN_RATE: f64 = 0.5;
    pub const MAX_RATE: f64 = 200.0;

    /// Starting at `rate` calls a second (a bucket's burst goes at once).
    pub fn new(rate: f64) -> Pacer {
        let now = tokio::time::Instant::now();
        Pacer { state: std::sync::Mutex::new(PacerState { rate: rate.clamp(Self::MIN_RATE, Self::MAX_RATE), next: now, lowered: now }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PacerState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for this call's slot; returns when it was given (for `throttled`).
    pub async fn slot(&self) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        let at = {
            let mut s = self.lock();
            let at = s.next.max(now);
            let gap = 1.0 / s.rate;
            // Up to a tenth of a gap of jitter, so that concurrent callers do not line up.
            let jittered = gap * (0.95 + jitter(1000) as f64 / 10_000.0);
            s.next = at + Duration::from_secs_f64(jittered);
            at
        };
        tokio::time::sleep_until(at).await;
        now
    }

    pub fn succeeded(&self) {
        let mut s = self.lock();
        s.rate = (s.rate * 1.01).min(Self::MAX_RATE);
    }

    /// The call whose slot was given at `given` was throttled.
    pub fn throttled(&self, given: tokio::time::Instant) {
        let mut s = self.lock();
        if given < s.lowered {
            return;
        }
        s.lowered = tokio::time::Instant::now();
        s.rate = (s.rate * 0.7).max(Self::MIN_RATE);
        // The bucket is empty: the next call waits one gap at the new rate.
        let gap = Duration::from_secs_f64(1.0 / s.rate);
        s.next = s.next.max(tokio::time::Instant::now() + gap);
    }
}
