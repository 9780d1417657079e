//! `gilliam releases`: the live and cold releases, their stacks, weights, instances and recent metrics.

use super::common::*;
use crate::failure::Failure;

pub async fn exec(s: &Session<'_>) -> Result<(), Failure> {
    let rows = s.ops.releases().await.map_err(Failure::from)?;
    if s.json {
        print_json(&rows);
    } else {
        println!(
            "{:>7}  {:<12} {:<20} {:<16} {:>6}  {:>8} {:>6} {:>7}  services (in service/desired)",
            "release", "revision", "created", "stack", "weight", "requests", "5xx", "p99"
        );
        for r in rows {
            let svcs: Vec<String> = r.services.iter().map(|s| format!("{} {}/{}", s.service, s.in_service, s.desired)).collect();
            let (req, err, p99) = metric_columns(r.metrics.as_ref());
            println!(
                "{:>7}  {:<12} {:<20} {:<16} {:>6}  {req:>8} {err:>6} {p99:>7}  {}",
                r.release,
                r.revision.chars().take(12).collect::<String>(),
                r.created,
                if r.cold { format!("{} cold", r.stack_status) } else { r.stack_status.clone() },
                r.weight,
                svcs.join(", ")
            );
        }
        println!("(requests, 5xx rate and p99 target response time over the last {} minutes)", gilliam_materializer::ops::METRICS_WINDOW.as_secs() / 60);
    }
    Ok(())
}
