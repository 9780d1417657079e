//! `gilliam logs`: the formation's central logs (CloudWatch Logs, `/gilliam/FORMATION`, one
//! stream per release, service and instance), read from a time on, filtered by release and
//! service, merged in time order; each line with the fields the agent put on it.

use super::base::Ops;
use crate::aws::{Aws, LogEvent};
use crate::error::Error;
use serde::Serialize;

/// Which lines: a release, services (none: all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    pub release: Option<u32>,
    pub services: Vec<String>,
}

/// One line of a service's output or of its agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// RFC 3339 with milliseconds.
    pub time: String,
    #[serde(skip)]
    pub ts_ms: i64,
    #[serde(skip)]
    pub id: String,
    pub release: Option<u32>,
    pub service: String,
    pub instance: String,
    /// `stdout`, `stderr` or `agent`.
    pub source: String,
    pub level: String,
    pub message: String,
}

/// A line from an event: the agent's JSON fields, or (a line some other writer put there) the
/// stream's name `rN/SERVICE/INSTANCE` and the message as it is.
pub fn line(e: &LogEvent) -> LogLine {
    let mut parts = e.stream.splitn(3, '/');
    let (r, svc, inst) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let from_stream = r.strip_prefix('r').and_then(|n| n.parse().ok());
    let json: Option<serde_json::Value> = serde_json::from_str(&e.message).ok().filter(|v: &serde_json::Value| v.is_object());
    let field = |k: &str| json.as_ref().and_then(|j| j[k].as_str()).map(str::to_string);
    LogLine {
        time: crate::clock::rfc3339_ms(e.ts_ms),
        ts_ms: e.ts_ms,
        id: e.id.clone(),
        release: field("release").and_then(|r| r.parse().ok()).or(from_stream),
        service: field("service").unwrap_or_else(|| svc.to_string()),
        instance: field("instance").unwrap_or_else(|| inst.to_string()),
        source: field("source").unwrap_or_default(),
        level: field("level").unwrap_or_default(),
        message: field("message").unwrap_or_else(|| e.message.clone()),
    }
}

impl LogFilter {
    /// The stream name prefix CloudWatch Logs can narrow to (it takes one).
    pub fn stream_prefix(&self) -> Option<String> {
        match (self.release, self.services.as_slice()) {
            (Some(r), [one]) => Some(format!("r{r}/{one}/")),
            (Some(r), _) => Some(format!("r{r}/")),
            (None, _) => None,
        }
    }

    pub fn keeps(&self, l: &LogLine) -> bool {
        self.release.is_none_or(|r| l.release == Some(r)) && (self.services.is_empty() || self.services.contains(&l.service))
    }
}

impl<A: Aws> Ops<'_, A> {
    /// The formation's lines from `start_ms` on that `filter` keeps, in time order (every page
    /// read).
    pub async fn logs(&self, filter: &LogFilter, start_ms: i64) -> Result<Vec<LogLine>, Error> {
        let group = gilliam_compiler::names::log_group(&self.t.f.name);
        let Some(events) = crate::logs::events(self.t.aws, &group, filter.stream_prefix().as_deref(), start_ms).await? else {
            return Err(Error::NotFound(format!("log group {group} does not exist: it comes with the formation stack (deploy a release first)")));
        };
        let mut out: Vec<LogLine> = events.iter().map(line).filter(|l| filter.keeps(l)).collect();
        out.sort_by(|a, b| (a.ts_ms, &a.id).cmp(&(b.ts_ms, &b.id)));
        Ok(out)
    }
}
