//! `gilliam-materialize`: converges AWS to a directory written by gilliam-compile.
//!
//! Exit codes (`gilliam_cli::failure`): 0 success, 1 invalid input, 2 usage error, 3 internal
//! error, 4 refused or failed in AWS, 5 a deploy (its release phase), traffic shift or bake aborted
//! with the traffic where it was.

use gilliam_cli::failure::{Failure, Named};
use gilliam_cli::materialize_cmd::{run, Args};
use std::process::ExitCode;

fn main() -> ExitCode {
    gilliam_cli::entry::main::<Args, Named>(
        |args| gilliam_cli::entry::block_on(run(args)).map_err(Failure::internal).and_then(|r| r).map_err(|f| f.named("gilliam-materialize")),
        Named::exit_code,
    )
}
