//! `gilliam-compile`: reads gilliam.yml, release metadata and a stage file, compiles them, and
//! writes templates, userdata and the manifest into the output directory.
//!
//! Exit codes: 0 success, 1 invalid input (every problem printed as file:line:column),
//! 2 usage error (bad flags, unreadable or unwritable files), 3 internal error.

use gilliam_compile::cmd::{run, Args, CliError};
use std::process::ExitCode;

// Compiling a large formation builds and drops millions of small JSON nodes; mimalloc does
// that markedly faster than the system allocator (see `cargo bench -p gilliam-compiler`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    gilliam_compile::entry::main::<Args, CliError>(run, CliError::exit_code)
}
