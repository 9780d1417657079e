//! `gilliam status`: the formation at a glance: routes and their weights, internal URLs, releases and their health.

use super::common::*;
use crate::failure::Failure;

pub async fn exec(s: &Session<'_>) -> Result<(), Failure> {
    let st = s.ops.status().await.map_err(Failure::from)?;
    if s.json {
        print_json(&st);
    } else {
        println!("formation {} (latest release {}){}", st.formation, st.latest_release, st.public_url.as_ref().map(|u| format!(" at {u}")).unwrap_or_default());
        let t: Vec<String> = st.traffic.iter().map(|(n, w)| format!("{n}={w}")).collect();
        println!("traffic: {}", t.join(" "));
        for r in &st.routes {
            let w: Vec<String> = r.weights.iter().map(|(n, w)| format!("{n}={w}")).collect();
            let to = r.rewrite.as_ref().map(|x| format!(" as {x}")).unwrap_or_default();
            println!("  route {:<40} -> {:<16} {}{to}", r.route, r.service, w.join(" "));
        }
        for (k, v) in &st.internal_urls {
            println!("  {k}={v}");
        }
        for r in &st.releases {
            let svcs: Vec<String> = r.services.iter().map(|x| format!("{} {}/{}", x.service, x.in_service, x.desired)).collect();
            let (req, err, p99) = metric_columns(r.metrics.as_ref());
            println!(
                "  release {} ({}, weight {}): {}; last 5 min: {req} requests, {err} 5xx, p99 {p99}",
                r.release,
                if r.cold { format!("{}, cold", r.stack_status) } else { r.stack_status.clone() },
                r.weight,
                svcs.join(", ")
            );
        }
    }
    Ok(())
}
