//! `gilliam-materialize`: converges AWS to a directory written by gilliam-compile.
//!
//! Exit codes: 0 success, 1 invalid input, 2 usage error, 3 internal error, 4 refused or
//! failed in AWS.

use gilliam_cli::materialize_cmd::{run, Args, CliError};
use std::process::ExitCode;

fn main() -> ExitCode {
    gilliam_cli::entry::main::<Args, CliError>(|args| gilliam_cli::entry::block_on(run(args)).map_err(CliError::Internal)?, CliError::exit_code)
}
