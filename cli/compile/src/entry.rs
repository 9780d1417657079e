//! What every gilliam binary's `main` does: parse arguments (clap's own errors exit 2, help
//! and version exit 0), run, and turn an error into its message and documented exit code.

use clap::Parser;
use std::fmt::Display;
use std::process::ExitCode;

/// Parses the arguments, runs `run`, prints an error to stderr and exits with `code(&error)`.
pub fn main<A: Parser, E: Display>(run: impl FnOnce(&A) -> Result<(), E>, code: impl Fn(&E) -> u8) -> ExitCode {
    let args = match A::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let exit = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(exit);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(code(&e))
        }
    }
}
