//! `gilliam-compile`: reads gilliam.yml, release metadata and a stage file, compiles them, and
//! writes templates, userdata and the manifest into the output directory.
//!
//! Exit codes: 0 success, 1 invalid input (every problem printed as file:line:column),
//! 2 usage error (bad flags, unreadable or unwritable files), 3 internal error.

use gilliam_compile::cmd::{run, Args, CliError};
use std::process::ExitCode;

// The system allocator: mimalloc compiled 1,000 services about 10 ms faster but committed its
// arenas eagerly, 73 MiB at the peak against 25 MiB (scripts/bench_compile.sh), and it is a C
// library to build on every `cargo install`.

fn main() -> ExitCode {
    gilliam_compile::entry::main::<Args, CliError>(run, CliError::exit_code)
}
