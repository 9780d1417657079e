//! The agent's log lines and the service's output, each with formation, service and release
//! fields: to the journal through its native protocol (structured fields) when the journal is
//! there, and to stdout as `key=value` lines unless stdout already is the journal; and to
//! the queue `ship` sends to CloudWatch Logs.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// syslog priorities used here.
pub const ERR: u8 = 3;
pub const WARNING: u8 = 4;
pub const INFO: u8 = 6;

#[derive(Debug)]
pub struct Logger {
    /// (journal field name, value): FORMATION, SERVICE, RELEASE, ...
    fields: Vec<(String, String)>,
    identifier: String,
    journal: Option<(UnixDatagram, PathBuf)>,
    stdout: bool,
    lock: Mutex<()>,
    /// Where lines wait to be shipped to CloudWatch Logs (`ship`), from the agent's start: the
    /// config, read later, says whether they go (else the queue is closed).
    ship: Option<Arc<crate::ship::Queue>>,
}

/// What the queue of lines to ship may hold, in bytes, before lines are dropped.
pub const SHIP_QUEUE_BYTES: usize = 4 * 1024 * 1024;

/// True when stdout is the journal stream systemd gave us (`$JOURNAL_STREAM` names its
/// device and inode): then lines go to the journal natively only, not twice.
fn stdout_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(v) = std::env::var("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = v.split_once(':') else { return false };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/1") else { return false };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// One journal entry in the native protocol: `KEY=value\n`, or for values with newlines
/// `KEY\n`, the length as 64-bit little endian, the value, `\n`.
pub fn journal_entry(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in fields {
        if v.contains('\n') {
            out.extend_from_slice(k.as_bytes());
            out.push(b'\n');
            out.extend_from_slice(&(v.len() as u64).to_le_bytes());
            out.extend_from_slice(v.as_bytes());
            out.push(b'\n');
        } else {
            out.extend_from_slice(format!("{k}={v}\n").as_bytes());
        }
    }
    out
}

impl Logger {
    /// `fields` are journal field names (upper case) with their values; `journal` is the
    /// journal's socket (used when it exists).
    pub fn new(identifier: &str, fields: &[(&str, &str)], journal: &Path) -> Logger {
        let journal = if journal.exists() { UnixDatagram::unbound().ok().map(|s| (s, journal.to_path_buf())) } else { None };
        let stdout = !(journal.is_some() && stdout_is_journal());
        Logger {
            fields: fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            identifier: identifier.into(),
            journal,
            stdout,
            lock: Mutex::new(()),
            ship: Some(crate::ship::Queue::new(SHIP_QUEUE_BYTES)),
        }
    }

    /// The same logger with more fields (the service's, after the config is read).
    pub fn with(&self, fields: &[(&str, &str)]) -> Logger {
        let mut all = self.fields.clone();
        for (k, v) in fields {
            all.retain(|(x, _)| x != k);
            all.push((k.to_string(), v.to_string()));
        }
        Logger {
            fields: all,
            identifier: self.identifier.clone(),
            journal: self.journal.as_ref().and_then(|(_, p)| UnixDatagram::unbound().ok().map(|s| (s, p.clone()))),
            stdout: self.stdout,
            lock: Mutex::new(()),
            ship: self.ship.clone(),
        }
    }

    /// The queue of lines to ship, shared by this logger and those made `with` it.
    pub fn ship_queue(&self) -> Option<Arc<crate::ship::Queue>> {
        self.ship.clone()
    }

    /// One line as a CloudWatch Logs event: JSON with the logger's fields (`formation`,
    /// `service`, `release`, `instance`...), `source`, `level` and `message`.
    pub fn event_json(&self, source: &str, priority: u8, message: &str) -> String {
        self.event_json_with(source, priority, message, &[])
    }

    /// `event_json` with more fields (a task's exit status).
    pub fn event_json_with(&self, source: &str, priority: u8, message: &str, extra: &[(&str, serde_json::Value)]) -> String {
        let mut o = serde_json::Map::new();
        for (k, v) in &self.fields {
            let k = k.strip_prefix("GILLIAM_").unwrap_or(k).to_ascii_lowercase();
            o.insert(k, serde_json::Value::String(v.clone()));
        }
        o.insert("source".into(), source.into());
        o.insert(
            "level".into(),
            (if priority <= ERR {
                "error"
            } else if priority == WARNING {
                "warning"
            } else {
                "info"
            })
            .into(),
        );
        o.insert("message".into(), message.into());
        for (k, v) in extra {
            o.insert((*k).to_string(), v.clone());
        }
        serde_json::Value::Object(o).to_string()
    }

    /// One line from `source` (`agent`, `stdout`, `stderr`).
    pub fn line(&self, source: &str, priority: u8, message: &str) {
        self.line_with(source, priority, message, &[]);
    }

    /// One line, its shipped event with more fields.
    pub fn line_with(&self, source: &str, priority: u8, message: &str, extra: &[(&str, serde_json::Value)]) {
        if let Some(q) = self.ship.as_ref().filter(|q| q.is_open()) {
            q.push(crate::ship::Event::now(self.event_json_with(source, priority, message, extra)));
        }
        let _guard = self.lock.lock();
        if let Some((sock, path)) = &self.journal {
            let p = priority.to_string();
            let mut f: Vec<(&str, &str)> = vec![("MESSAGE", message), ("PRIORITY", &p), ("SYSLOG_IDENTIFIER", &self.identifier), ("GILLIAM_SOURCE", source)];
            f.extend(self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let _ = sock.send_to(&journal_entry(&f), path);
        }
        if self.stdout {
            let mut text = String::new();
            for (k, v) in &self.fields {
                let k = k.strip_prefix("GILLIAM_").unwrap_or(k).to_ascii_lowercase();
                text.push_str(&format!("{k}={v} "));
            }
            text.push_str(&format!("source={source} {message}\n"));
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
        }
    }

    pub fn info(&self, message: &str) {
        self.line("agent", INFO, message);
    }

    pub fn warn(&self, message: &str) {
        self.line("agent", WARNING, message);
    }

    pub fn error(&self, message: &str) {
        self.line("agent", ERR, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_journal_entries_frame_multiline_values() {
        let e = journal_entry(&[("MESSAGE", "a\nb"), ("GILLIAM_RELEASE", "3")]);
        let mut want = b"MESSAGE\n".to_vec();
        want.extend_from_slice(&3u64.to_le_bytes());
        want.extend_from_slice(b"a\nb\nGILLIAM_RELEASE=3\n");
        assert_eq!(e, want);
    }
}
