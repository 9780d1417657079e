//! `gilliam-compile`: reads gilliam.yml, release metadata and a stage file, compiles them, and
//! writes templates, userdata and the manifest into the output directory.
//!
//! Exit codes: 0 success, 1 invalid input (every problem printed as file:line:column),
//! 2 usage error (bad flags, unreadable or unwritable files), 3 internal error.

use gilliam_compile::cmd::{run, Args, CliError};
use std::process::ExitCode;

// mimalloc, not the system allocator: at 1,000 services glibc's malloc took 2,600 page
// faults (13 MiB touched 4 KiB at a time), which cost more on a virtual machine, where CI
// runs, than any other part of the compile; mimalloc's segments take transparent huge pages
// where the kernel offers them, 160 faults. Its peak, 28 MiB, fits the 40 MiB budget since
// templates are written as they are rendered and not held (it was 73 MiB when they were), and
// since the calling thread is one of the workers. The cost: a C library to build, seconds on
// `cargo install`. Measured by scripts/bench_compile.sh (ARCHITECTURE.md, "Why these crates").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    gilliam_compile::entry::main::<Args, CliError>(run, CliError::exit_code)
}
