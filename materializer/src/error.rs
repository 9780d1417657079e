//! The materializer's one error type: what went wrong, worded for the operator, with what to
//! do. Every layer above returns it; the binaries map it to an exit code.

use crate::aws::AwsError;

#[derive(Debug)]
pub enum Error {
    Bundle(BundleError),
    /// An AWS call failed (after retries, when it was retryable).
    Aws {
        what: String,
        err: AwsError,
    },
    /// The release's artifact is missing, unreadable or not the one the release states.
    Artifact(String),
    /// gilliam's own rules refuse the operation (a cold release, one with traffic, a weight out
    /// of range...): the message says why and what to do instead.
    Refused(String),
    /// What the operation names is not there (no published release, a release or service not
    /// recorded, a secret gone).
    NotFound(String),
    /// A document or secret in the account is not what gilliam wrote (foreign, corrupt, another
    /// formation's): the message names it and how to recover.
    Corrupt(String),
    /// A stack ended in a failed state; `cause` names the failing resource and its reason.
    StackFailed {
        stack: String,
        status: String,
        cause: String,
    },
    Timeout(String),
    /// A release stack exists with other content: releases are immutable.
    Immutable(String),
    Compile(String),
    /// A stack is in the middle of an operation started elsewhere.
    Busy {
        stack: String,
        status: String,
    },
    /// A saved plan no longer matches AWS, or was made from another bundle.
    Stale(String),
    /// A gradual shift found the new release unhealthy and put the weights back.
    Aborted(String),
    /// Another deploy or traffic change holds the formation's lock (named).
    Locked(String),
    /// The account's network lacks what the formation needs: every problem, with what to do.
    Preflight {
        formation: String,
        problems: Vec<String>,
    },
    /// The lock was broken or taken over while this process worked.
    LockLost(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Bundle(e) => write!(f, "{e}"),
            Error::Aws { what, err } => write!(f, "{what}: {err}"),
            Error::Artifact(m) | Error::Refused(m) | Error::NotFound(m) | Error::Corrupt(m) | Error::Timeout(m) | Error::Compile(m) => f.write_str(m),
            Error::StackFailed { stack, status, cause } => write!(f, "stack {stack} ended {status}: {cause}"),
            Error::Immutable(stack) => {
                write!(f, "stack {stack} exists with a different template: a release is immutable, compile a new release number instead")
            }
            Error::Busy { stack, status } => write!(f, "stack {stack} is {status}: another operation is running on it; wait for it to finish, then plan again"),
            Error::Stale(why) => write!(f, "the plan is stale: {why}; plan again"),
            Error::Aborted(m) => f.write_str(m),
            Error::Locked(holder) => write!(
                f,
                "the formation is locked by {holder}; wait for it (--lock-wait SECONDS), or if nothing is running there, break it with `gilliam unlock`"
            ),
            Error::LockLost(why) => write!(f, "stopped: {why}; nothing is left half-done that a new run will not finish"),
            Error::Preflight { formation, problems } => {
                write!(f, "the network is not ready for formation {formation}; nothing was changed:")?;
                problems.iter().try_for_each(|p| write!(f, "\n  - {p}"))?;
                write!(f, "\nif you know the network works (a routing gilliam cannot read), deploy with --skip-preflight")
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<BundleError> for Error {
    fn from(e: BundleError) -> Self {
        Error::Bundle(e)
    }
}

/// The compiled directory (or its copy in the bucket) is missing, altered or not gilliam's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleError(pub String);

impl std::fmt::Display for BundleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BundleError {}
