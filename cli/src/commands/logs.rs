//! `gilliam logs`: the formation's central logs, merged in time order, filtered by service and
//! release, followed with `-f`; `--output json` gives one JSON object per line.

use super::common::*;
use crate::failure::Failure;
use gilliam_materializer::ops::{LogFilter, LogLine};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these services (default: every one).
    pub services: Vec<String>,
    /// Only this release.
    #[arg(short = 'r', long, value_name = "N")]
    pub release: Option<u32>,
    /// From this long ago: `30s`, `10m`, `2h`, `1d`.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub since: Duration,
    /// Keep printing lines as they arrive, until interrupted.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// With --follow: stop after this long (for scripts).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "follow")]
    pub follow_for: Option<Duration>,
    /// With --follow: how often to ask for new lines.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub poll: Duration,
}

fn print(s: &Session<'_>, l: &LogLine) {
    if s.json {
        println!("{}", serde_json::to_string(l).unwrap_or_default());
    } else {
        let r = l.release.map_or_else(|| "-".to_string(), |r| format!("r{r}"));
        println!("{} {r} {} {} {}: {}", l.time, l.service, l.instance, l.source, l.message);
    }
}

pub async fn exec(s: &Session<'_>, a: &Args) -> Result<(), Failure> {
    let filter = LogFilter { release: a.release, services: a.services.clone() };
    let mut from = gilliam_materializer::clock::epoch_ms() - a.since.as_millis() as i64;
    // Lines printed at the newest time seen: the next read starts there again, and these are
    // not printed twice.
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let until = a.follow_for.map(|d| Instant::now() + d);
    loop {
        let lines = s.ops.logs(&filter, from).await.map_err(Failure::from)?;
        for l in &lines {
            if !seen.contains(&l.id) {
                print(s, l);
            }
        }
        if let Some(newest) = lines.last().map(|l| l.ts_ms) {
            if newest > from {
                seen.clear();
                from = newest;
            }
            seen.extend(lines.iter().filter(|l| l.ts_ms == from).map(|l| l.id.clone()));
        }
        if !a.follow || until.is_some_and(|u| Instant::now() >= u) {
            return Ok(());
        }
        tokio::time::sleep(a.poll).await;
    }
}
