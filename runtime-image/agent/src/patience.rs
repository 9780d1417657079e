//! Boot-time patience at the AWS seam: what a new instance meets and that passes on its own,
//! retried for a bounded time instead of failing the release.
//!
//! - A release's instance role is created with its stack, moments before its instances boot;
//!   IAM is eventually consistent, so the first calls may be refused (`AccessDenied`) or find
//!   no credentials yet. Those are retried for [`Patience::access`] from the start of the boot,
//!   then reported as they are (a role that really lacks a permission still fails the boot).
//! - A replaced etcd member's volume and interface stay attached to the old instance until it
//!   is gone (`VolumeInUse`, `IncorrectState`, `InvalidNetworkInterface.InUse`): attaching is
//!   retried for [`Patience::attach`].
//!
//! Retries back off from [`Patience::first_delay`], doubling up to [`Patience::max_delay`].

use crate::cloud::{Attached, Cloud, CloudError, Fetched, SignalCall};
use std::path::Path;
use std::time::{Duration, Instant};

/// Error codes of a refusal that IAM propagation explains (or no credentials yet).
const ACCESS: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
    "ExpiredToken",
    "ExpiredTokenException",
    crate::cloud::NO_CREDENTIALS,
];

/// Error codes of an attachment another instance still holds.
const IN_USE: &[&str] = &["VolumeInUse", "IncorrectState", "InvalidNetworkInterface.InUse"];

#[derive(Debug, Clone)]
pub struct Patience {
    /// How long after the boot starts access refusals are retried.
    pub access: Duration,
    /// How long one attachment is retried while another instance holds it.
    pub attach: Duration,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Patience {
    fn default() -> Self {
        Patience { access: Duration::from_secs(120), attach: Duration::from_secs(600), first_delay: Duration::from_secs(1), max_delay: Duration::from_secs(15) }
    }
}

/// A `Cloud` that retries what passes on its own (see the module's text).
pub struct Patient<C> {
    inner: C,
    patience: Patience,
    started: Instant,
    say: Box<dyn Fn(&str) + Send + Sync>,
}

impl<C> std::fmt::Debug for Patient<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Patient").field("patience", &self.patience).finish_non_exhaustive()
    }
}

impl<C: Cloud> Patient<C> {
    pub fn new(inner: C, patience: Patience, say: Box<dyn Fn(&str) + Send + Sync>) -> Self {
        Patient { inner, patience, started: Instant::now(), say }
    }

    /// Runs `call` until it succeeds, fails with an error `retry` does not cover, or the
    /// window for that error runs out.
    fn patiently<T>(&self, what: &str, mut call: impl FnMut() -> Result<T, CloudError>, attach: bool) -> Result<T, CloudError> {
        let mut delay = self.patience.first_delay;
        let attach_until = Instant::now() + self.patience.attach;
        loop {
            let e = match call() {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let code = e.code.as_deref().unwrap_or_default();
            let until = if ACCESS.contains(&code) {
                self.started + self.patience.access
            } else if attach && IN_USE.contains(&code) {
                attach_until
            } else {
                return Err(e);
            };
            let now = Instant::now();
            if now >= until {
                return Err(e);
            }
            let wait = delay.min(until - now);
            (self.say)(&format!("{what}: {e}; retrying in {} ms", wait.as_millis()));
            std::thread::sleep(wait);
            delay = (delay * 2).min(self.patience.max_delay);
        }
    }
}

impl<C: Cloud> Cloud for Patient<C> {
    fn fetch(&self, url: &str, dest: &Path, max_bytes: u64) -> Result<Fetched, CloudError> {
        self.patiently(&format!("fetching {url}"), || self.inner.fetch(url, dest, max_bytes), false)
    }
    fn secret(&self, id: &str) -> Result<String, CloudError> {
        self.patiently(&format!("reading secret {id}"), || self.inner.secret(id), false)
    }
    fn signal(&self, call: &SignalCall) -> Result<(), CloudError> {
        self.patiently(&format!("signalling {}", call.resource), || self.inner.signal(call), false)
    }
    fn attach(&self, tag_key: &str, tag_value: &str, instance_id: &str) -> Result<Attached, CloudError> {
        self.patiently(&format!("attaching {tag_value}"), || self.inner.attach(tag_key, tag_value, instance_id), true)
    }
    fn registry_credentials(&self, registry: &str) -> Result<Option<(String, String)>, CloudError> {
        self.patiently(&format!("asking {registry} for credentials"), || self.inner.registry_credentials(registry), false)
    }
    // Log shipping keeps its own backoff and spool: no waiting here.
    fn create_log_stream(&self, group: &str, stream: &str) -> Result<(), CloudError> {
        self.inner.create_log_stream(group, stream)
    }
    fn put_log_events(&self, group: &str, stream: &str, events: &[(i64, String)]) -> Result<(), CloudError> {
        self.inner.put_log_events(group, stream, events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Fails each call with the next scripted error, then succeeds.
    #[derive(Default)]
    struct Flaky {
        errors: Mutex<Vec<&'static str>>,
        calls: Mutex<usize>,
    }

    impl Flaky {
        fn next(&self, call: &'static str) -> Result<(), CloudError> {
            *self.calls.lock().expect("calls") += 1;
            match self.errors.lock().expect("errors").pop() {
                Some(code) => Err(CloudError { call, message: format!("{code}: scripted"), code: Some(code.into()) }),
                None => Ok(()),
            }
        }
    }

    impl Cloud for &Flaky {
        fn fetch(&self, _: &str, _: &Path, _: u64) -> Result<Fetched, CloudError> {
            self.next("GetObject").map(|()| Fetched { sha256: String::new(), bytes: 0 })
        }
        fn secret(&self, _: &str) -> Result<String, CloudError> {
            self.next("GetSecretValue").map(|()| "{}".into())
        }
        fn signal(&self, _: &SignalCall) -> Result<(), CloudError> {
            self.next("SignalResource")
        }
        fn attach(&self, _: &str, _: &str, _: &str) -> Result<Attached, CloudError> {
            self.next("AttachVolume").map(|()| Attached::default())
        }
    }

    fn patience(access_ms: u64, attach_ms: u64) -> Patience {
        Patience {
            access: Duration::from_millis(access_ms),
            attach: Duration::from_millis(attach_ms),
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        }
    }

    fn quiet() -> Box<dyn Fn(&str) + Send + Sync> {
        Box::new(|_| {})
    }

    #[test]
    fn access_refusals_at_boot_are_retried_until_the_role_is_visible() {
        let f = Flaky { errors: Mutex::new(vec!["AccessDenied", crate::cloud::NO_CREDENTIALS, "AccessDeniedException"]), ..Flaky::default() };
        let p = Patient::new(&f, patience(10_000, 0), quiet());
        assert_eq!(p.secret("gilliam/shop/db"), Ok("{}".into()));
        assert_eq!(*f.calls.lock().expect("calls"), 4);
    }

    #[test]
    fn a_refusal_that_outlasts_the_window_is_reported() {
        let f = Flaky { errors: Mutex::new(vec!["AccessDenied"; 10_000]), ..Flaky::default() };
        let p = Patient::new(&f, patience(30, 0), quiet());
        let t = Instant::now();
        let e = p.fetch("s3://b/k", Path::new("/dev/null"), 1).expect_err("still refused");
        assert_eq!(e.code.as_deref(), Some("AccessDenied"));
        assert!(t.elapsed() < Duration::from_secs(2), "bounded: {:?}", t.elapsed());
        assert!(*f.calls.lock().expect("calls") > 1);
    }

    #[test]
    fn other_errors_are_not_retried_and_attachments_wait_for_the_old_member() {
        let f = Flaky { errors: Mutex::new(vec!["NoSuchKey"]), ..Flaky::default() };
        let p = Patient::new(&f, patience(10_000, 10_000), quiet());
        assert!(p.fetch("s3://b/k", Path::new("/dev/null"), 1).is_err());
        assert_eq!(*f.calls.lock().expect("calls"), 1);

        let f = Flaky { errors: Mutex::new(vec!["IncorrectState", "VolumeInUse", "InvalidNetworkInterface.InUse"]), ..Flaky::default() };
        let p = Patient::new(&f, patience(0, 10_000), quiet());
        assert!(p.attach("gilliam:member", "shop/coord-0", "i-1").is_ok());
        assert_eq!(*f.calls.lock().expect("calls"), 4);
        // In use is retried for attachments only: a signal refused that way is reported.
        let f = Flaky { errors: Mutex::new(vec!["VolumeInUse"]), ..Flaky::default() };
        let p = Patient::new(&f, patience(0, 10_000), quiet());
        assert!(p.signal(&SignalCall { stack: "s".into(), resource: "r".into(), unique_id: "i".into(), success: true }).is_err());
    }
}
