//! The binaries' one error type and its exit mapping: every failure of `gilliam` and
//! `gilliam-materialize` is a `Failure` with a documented exit code, and a materializer error
//! maps to one in one place (`From<Error>`).

use gilliam_materializer::Error;

/// Bad input: a file, a stage file, release metadata, a compiled directory.
pub const INPUT: u8 = 1;
/// Arguments that make no sense (alone or together).
pub const USAGE: u8 = 2;
/// A bug in gilliam: it refuses rather than do something broken.
pub const INTERNAL: u8 = 3;
/// AWS refused or failed (a stack failed, a lock is held, a preflight found problems...).
pub const REFUSED: u8 = 4;
/// A traffic shift or bake judged the release bad and put the traffic back.
pub const ABORTED: u8 = 5;

/// The exit codes as the binaries' help and man pages state them.
pub const EXIT_CODES: &str = "Exit codes: 0 success, 1 invalid input, 2 usage error, 3 internal error, 4 refused or failed in AWS, 5 a deploy, traffic shift or bake was aborted (a failed release phase, a breach, an unhealthy target, too little traffic to judge, a failed hook) with the traffic where it was before; `gilliam run` exits with its command's status.";

/// What went wrong, and the exit code that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure { code, message: message.into() }
    }
    pub fn input(message: impl Into<String>) -> Self {
        Failure::new(INPUT, message)
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(USAGE, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Failure::new(INTERNAL, message)
    }
    pub fn refused(message: impl Into<String>) -> Self {
        Failure::new(REFUSED, message)
    }

    /// The failure as the named binary prints it (`gilliam: ...`).
    pub fn named(self, binary: &'static str) -> Named {
        Named { binary, failure: self }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if self.code == INTERNAL {
            f.write_str("\nthis is a bug in gilliam: please report it")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        use gilliam_materializer::aws::AwsError;
        match e {
            // First contact: one line each, the cause and the fix, without the SDK's chain.
            Error::Aws { what, err: AwsError::Credentials(cause) } => Failure::usage(format!(
                "no usable AWS credentials to {what} ({cause}): set AWS_PROFILE to a profile of ~/.aws/config (after `aws sso login --profile NAME` for SSO), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; on EC2, ECS or a CI runner with a role they are found without either"
            )),
            Error::Aws { what, err: AwsError::Denied(m) } => Failure::refused(format!(
                "access denied to {what}: {m}: allow that action to the role or user gilliam runs as (README, \"Permissions\")"
            )),
            Error::Aws { what, err: AwsError::Unreachable(cause) } => Failure::refused(unreachable(&what, &cause)),
            // Retried until the retries ran out: a connection that never got an answer.
            Error::Aws { what, err: AwsError::Transient(m) } if m.contains("dispatch failure") => {
                let lower = m.to_ascii_lowercase();
                let cause = if lower.contains("connection refused") {
                    "connection refused"
                } else if lower.contains("timed out") || lower.contains("timeout") {
                    "no answer in time"
                } else {
                    "the connection failed"
                };
                Failure::refused(unreachable(&what, cause))
            }
            Error::Bundle(b) => Failure::input(b.0),
            Error::Compile(m) => Failure::internal(m),
            Error::Aborted(m) => Failure::new(ABORTED, m),
            other => Failure::refused(other.to_string()),
        }
    }
}

fn unreachable(what: &str, cause: &str) -> String {
    format!(
        "cannot reach AWS to {what} ({cause}): check the region (the stage file's `region`), AWS_ENDPOINT_URL if set, and the network or proxy (HTTPS_PROXY)"
    )
}

/// A failure with the name of the binary that prints it.
#[derive(Debug)]
pub struct Named {
    pub binary: &'static str,
    pub failure: Failure,
}

impl Named {
    pub fn exit_code(&self) -> u8 {
        self.failure.code
    }
}

impl std::fmt::Display for Named {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.binary, self.failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn materializer_errors_map_to_their_documented_codes() {
        let code = |e: Error| Failure::from(e).code;
        assert_eq!(code(Error::Aborted("breach".into())), ABORTED);
        assert_eq!(code(Error::Compile("bad render".into())), INTERNAL);
        assert_eq!(code(Error::Locked("bob".into())), REFUSED);
        assert_eq!(code(Error::Bundle(gilliam_materializer::bundle::BundleError("gone".into()))), INPUT);
        let shown = Failure::internal("x").named("gilliam").to_string();
        assert_eq!(shown, "gilliam: x\nthis is a bug in gilliam: please report it");
        for c in [INPUT, USAGE, INTERNAL, REFUSED, ABORTED] {
            assert!(EXIT_CODES.contains(&format!("{c} ")), "exit code {c} undocumented");
        }
    }
}
