//! `gilliam ps`: the instances of each release and service, with their health and their
//! agent's last line; `--output json` for tools.

use super::common::*;
use crate::failure::Failure;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this release.
    #[arg(short = 'r', long, value_name = "N")]
    pub release: Option<u32>,
}

fn uptime(s: Option<i64>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7200 => format!("{}m", s / 60),
        Some(s) if s < 172_800 => format!("{}h", s / 3600),
        Some(s) => format!("{}d", s / 86_400),
    }
}

pub async fn exec(s: &Session<'_>, a: &Args) -> Result<(), Failure> {
    let rows = s.ops.ps(a.release).await.map_err(Failure::from)?;
    if s.json {
        print_json(&rows);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no instances");
        return Ok(());
    }
    println!("{:<8} {:<16} {:<20} {:<12} {:<12} {:<9} {:<10} {:>6}  AGENT", "RELEASE", "SERVICE", "INSTANCE", "ZONE", "LIFECYCLE", "HEALTH", "TARGETS", "UP");
    for r in rows {
        let targets = if r.targets.is_empty() { "-".to_string() } else { r.targets.join(",") };
        println!(
            "{:<8} {:<16} {:<20} {:<12} {:<12} {:<9} {:<10} {:>6}  {}",
            r.release,
            r.service,
            r.instance,
            r.zone,
            r.lifecycle,
            r.health,
            targets,
            uptime(r.uptime_seconds),
            r.agent.unwrap_or_else(|| "-".into())
        );
    }
    Ok(())
}
