//! What CloudFormation is doing while a command waits, on stderr: on a terminal a live line
//! that is rewritten in place, elsewhere (CI logs) plain lines. Resource events (lines the
//! materializer indents) need `-v`; hooks' output always scrolls; `-q` silences everything.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

#[derive(Debug)]
pub struct Progress {
    verbose: bool,
    quiet: bool,
    tty: bool,
    /// A live line is on screen and the next output must clear it first.
    live: Mutex<bool>,
}

impl Progress {
    pub fn new(verbose: bool, quiet: bool) -> Self {
        Progress { verbose, quiet, tty: std::io::stderr().is_terminal(), live: Mutex::new(false) }
    }

    pub fn say(&self, line: &str) {
        let event = line.starts_with("  ");
        if self.quiet || (event && !self.verbose) {
            return;
        }
        // A hook's output scrolls like events, and is always shown.
        let event = event || line.starts_with("hook ");
        let mut live = self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut err = std::io::stderr().lock();
        if !self.tty {
            let _ = writeln!(err, "{line}");
            return;
        }
        // Events scroll; status lines replace each other on one live line.
        if event {
            let _ = writeln!(err, "\r\x1b[2K{line}");
            *live = false;
        } else {
            let _ = write!(err, "\r\x1b[2K{line}");
            *live = true;
        }
        let _ = err.flush();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if *self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}
