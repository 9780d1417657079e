//! `gilliam`: the operator's CLI (deploy, releases, status, traffic, rollback, scale, retire,
//! plan, history, outputs).
//!
//! Exit codes: 0 success, 1 invalid input, 2 usage error, 3 internal error, 4 refused or
//! failed in AWS.

use gilliam_cli::gilliam_cmd::{run, Args, Failure};
use std::process::ExitCode;

fn main() -> ExitCode {
    gilliam_cli::entry::main::<Args, Failure>(|args| gilliam_cli::entry::block_on(run(args)).map_err(|message| Failure { code: 3, message })?, |f| f.code)
}
