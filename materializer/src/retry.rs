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

/// Retries throttling and transient failures, up to 8 times, with exponential backoff and
/// jitter (half the delay fixed, half random), so that concurrent callers spread out.
pub async fn retry<T, F, Fut>(what: &str, mut call: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = AwsResult<T>>,
{
    let mut delay = Duration::from_millis(RETRY_BASE_MS.load(std::sync::atomic::Ordering::Relaxed));
    let mut attempt = 0;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.retryable() && attempt < 8 => {
                attempt += 1;
                let half = delay.as_millis() as u64 / 2;
                tokio::time::sleep(Duration::from_millis(half + jitter(half + 1))).await;
                delay = (delay * 2).min(Duration::from_secs(20));
            }
            Err(err) => return Err(Error::Aws { what: what.to_string(), err }),
        }
    }
}
