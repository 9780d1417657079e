//! What every gilliam binary's `main` does (`main`, shared with gilliam-compile), and the
//! async runtime the binaries that talk to AWS run on.

use std::future::Future;

pub use gilliam_compile::entry::main;

/// Runs a future on a multi-threaded tokio runtime; `Err` is the message when none can start.
pub fn block_on<T>(fut: impl Future<Output = T>) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| format!("cannot start the async runtime: {e}"))?;
    Ok(runtime.block_on(fut))
}
