//! `gilliam-compile` as a library: its arguments, reading the inputs, compiling, writing the
//! output directory (`cmd`), and the `main` every gilliam binary shares (`entry`). Depends on
//! the compiler library and clap only, never on an AWS SDK (ARCHITECTURE.md).

pub mod cmd;
pub mod entry;
