//! The agent's narrow seam to AWS: fetch an S3 object (streamed, hashed, bounded), read a
//! secret, signal a resource of a stack, attach an etcd member's interface and volume, put
//! log events.
//! `sdk::SdkCloud` is the real one; tests put a recorder or a fake in its place.

use std::path::Path;

/// A signal for a resource with a CreationPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalCall {
    pub stack: String,
    pub resource: String,
    /// Identifies the signalling instance (its instance id on EC2).
    pub unique_id: String,
    pub success: bool,
}

/// What an etcd member attached to its instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attached {
    /// The network interface's id and private address.
    pub interface: Option<(String, String)>,
    pub volume: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudError {
    /// The call that failed, as AWS names it (`GetObject`, `SignalResource`, ...).
    pub call: &'static str,
    pub message: String,
    /// AWS's error code (`AccessDenied`, `VolumeInUse`, ...), or [`NO_CREDENTIALS`]; `None`
    /// for failures of the agent's own (a bound, a file).
    pub code: Option<String>,
}

/// The code given to a call that found no credentials to sign with (the instance profile not
/// visible yet).
pub const NO_CREDENTIALS: &str = "CredentialsUnavailable";

impl std::fmt::Display for CloudError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.call, self.message)
    }
}

impl std::error::Error for CloudError {}

/// An object fetched to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub sha256: String,
    pub bytes: u64,
}

pub trait Cloud: Send + Sync {
    /// Writes the object at `url` (`s3://bucket/key` or an S3 https URL) to `dest`, refusing
    /// objects over `max_bytes`; returns the sha256 of what was written.
    fn fetch(&self, url: &str, dest: &Path, max_bytes: u64) -> Result<Fetched, CloudError>;
    /// The string value of a Secrets Manager secret.
    fn secret(&self, id: &str) -> Result<String, CloudError>;
    fn signal(&self, call: &SignalCall) -> Result<(), CloudError>;
    /// Attaches the network interface and volume tagged `tag_key=tag_value` to the instance
    /// (leaving alone what is already attached to it).
    fn attach(&self, tag_key: &str, tag_value: &str, instance_id: &str) -> Result<Attached, CloudError>;
    /// The user and password to pull from `registry` with (ECR's, from an authorization
    /// token); `None`: pull without credentials.
    fn registry_credentials(&self, _registry: &str) -> Result<Option<(String, String)>, CloudError> {
        Ok(None)
    }
    /// Makes the log stream `stream` in `group` (one that exists is no error).
    fn create_log_stream(&self, _group: &str, _stream: &str) -> Result<(), CloudError> {
        Err(CloudError { call: "CreateLogStream", message: "this cloud ships no logs".into(), code: None })
    }
    /// PutLogEvents: `events` (milliseconds, message; in time order, within its limits).
    fn put_log_events(&self, _group: &str, _stream: &str, _events: &[(i64, String)]) -> Result<(), CloudError> {
        Err(CloudError { call: "PutLogEvents", message: "this cloud ships no logs".into(), code: None })
    }
}

/// Bucket and key of an S3 URL: `s3://bucket/key`, `https://bucket.s3.REGION.amazonaws.com/key`
/// or the path style `https://s3.REGION.amazonaws.com/bucket/key`.
pub fn parse_s3_url(url: &str) -> Result<(String, String), String> {
    let bad = || format!("{url:?} is not an S3 object URL (s3://bucket/key or https://bucket.s3.REGION.amazonaws.com/key)");
    let (bucket, key) = if let Some(rest) = url.strip_prefix("s3://") {
        rest.split_once('/').ok_or_else(bad)?
    } else if let Some(rest) = url.strip_prefix("https://") {
        let (host, path) = rest.split_once('/').ok_or_else(bad)?;
        if let Some(b) = host.split_once(".s3.").map(|(b, _)| b).or_else(|| host.strip_suffix(".s3.amazonaws.com")) {
            (b, path)
        } else if host.starts_with("s3.") || host == "s3.amazonaws.com" {
            path.split_once('/').ok_or_else(bad)?
        } else {
            return Err(bad());
        }
    } else {
        return Err(bad());
    };
    if bucket.is_empty() || key.is_empty() {
        return Err(bad());
    }
    Ok((bucket.to_string(), key.to_string()))
}

#[cfg(test)]
mod tests {
    use super::parse_s3_url;

    #[test]
    fn s3_urls_of_every_shape() {
        let want = Ok(("b".to_string(), "a/k.tgz".to_string()));
        assert_eq!(parse_s3_url("s3://b/a/k.tgz"), want);
        assert_eq!(parse_s3_url("https://b.s3.eu-west-1.amazonaws.com/a/k.tgz"), want);
        assert_eq!(parse_s3_url("https://b.s3.amazonaws.com/a/k.tgz"), want);
        assert_eq!(parse_s3_url("https://s3.eu-west-1.amazonaws.com/b/a/k.tgz"), want);
        for bad in ["s3://b", "s3:///k", "http://b.s3.amazonaws.com/k", "https://example.com/k", "b/k"] {
            assert!(parse_s3_url(bad).is_err(), "{bad}");
        }
    }
}
