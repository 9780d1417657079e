//! Reading a formation's log group (`/gilliam/FORMATION`): every page of FilterLogEvents from a
//! time on, narrowed to a stream prefix where CloudWatch Logs narrows (an emulator may not:
//! callers filter again). What `gilliam logs`, `gilliam ps` and a task's follower read.

use crate::aws::{Aws, AwsError, LogEvent};
use crate::error::Error;
use crate::retry::retry;

/// Every event of `group` from `start_ms` on in streams starting with `prefix`, in the order
/// the pages give them; `None` when the group (or, for one stream, the stream) does not exist.
pub async fn events<A: Aws>(aws: &A, group: &str, prefix: Option<&str>, start_ms: i64) -> Result<Option<Vec<LogEvent>>, Error> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    // Bounded: a service that always names a next page must not loop forever.
    for _ in 0..10_000 {
        let page = match retry("read the formation's logs", || aws.log_events(group, prefix, start_ms, next.as_deref())).await {
            Ok(p) => p,
            Err(Error::Aws { err: AwsError::Invalid(m) | AwsError::Other(m), .. }) if m.contains("ResourceNotFound") => return Ok(None),
            Err(e) => return Err(e),
        };
        out.extend(page.events);
        match page.next {
            Some(t) if !t.is_empty() => next = Some(t),
            _ => break,
        }
    }
    Ok(Some(out))
}
