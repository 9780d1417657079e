//! `gilliam`: the operator's CLI (deploy, releases, status, traffic, rollback, scale, retire,
//! plan, history, outputs).
//!
//! Exit codes: 0 success, 1 invalid input, 2 usage error, 3 internal error, 4 refused or
//! failed in AWS.

use clap::Parser;
use gilliam_cli::gilliam_cmd::{run, Args};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gilliam: cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.code)
        }
    }
}
