//! `gilliam`'s commands, one module each, with its arguments and its `exec` (cargo's
//! `commands/`); `gilliam_cmd` only parses the global flags and dispatches. `common` holds the
//! session and what several commands share.

pub mod build;
pub mod common;
pub mod deploy;
pub mod docs;
pub mod env;
pub mod history;
pub mod logs;
pub mod outputs;
pub mod plan;
pub mod promote;
pub mod ps;
pub mod releases;
pub mod retire;
pub mod rollback;
pub mod run;
pub mod scale;
pub mod status;
pub mod traffic;
pub mod unlock;
pub mod warm;
pub mod watch;
