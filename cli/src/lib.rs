//! The binaries' shared code: argument types, file reading and writing, and the mapping of
//! errors to documented exit codes. The compiler library itself does no I/O.

pub mod build_cmd;
pub mod commands;
pub mod engine;
/// gilliam-compile's own code, which `gilliam deploy` and `gilliam plan` call.
pub use gilliam_compile::cmd as compile_cmd;
pub mod entry;
pub mod failure;
pub mod gilliam_cmd;
pub mod judging;
pub mod materialize_cmd;
pub mod progress;
