//! Draining before scaling down: a release is cooled or retired only once ELBv2's rules read
//! back give it no weight (ELBv2 is eventually consistent: a written weight takes a moment to
//! show and to reach every load balancer node) and it has carried none for at least its target
//! groups' deregistration delay, so that no request still on its way to it is lost.

use crate::aws::Aws;
use crate::error::Error;
use crate::retry::retry;
use gilliam_compiler::manifest::Manifest;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long the rules may take to read back without the releases' weight.
const SETTLE: Duration = Duration::from_secs(120);

/// Waits until no rule gives `releases` any weight and each has carried none for its target
/// groups' deregistration delay (counted from when the state last saw it carry none, else from
/// now). Refuses when a rule still forwards to one of them past `SETTLE`. Returns how long it
/// waited for the delay.
pub async fn wait_drained<A: Aws>(aws: &A, m: &Manifest, releases: &[u32], poll: Duration, say: &(dyn Fn(&str) + Sync)) -> Result<Duration, Error> {
    if releases.is_empty() {
        return Ok(Duration::ZERO);
    }
    let wanted: BTreeSet<u32> = releases.iter().copied().collect();
    let f = &m.formation;
    let mut groups = crate::observe::release_target_groups(aws, &f.name).await?;
    groups.retain(|_, n| wanted.contains(n));
    // 1. The rules, read back, forward nothing to them.
    let started = tokio::time::Instant::now();
    loop {
        let rules = crate::observe::routing_rules(aws, m).await?;
        let carrying =
            rules.iter().find_map(|(logical, r)| r.forward.iter().find_map(|(tg, w)| groups.get(tg).filter(|_| *w > 0).map(|n| (*n, *w, logical.clone()))));
        let Some((n, w, logical)) = carrying else { break };
        if started.elapsed() >= SETTLE {
            return Err(Error::Refused(format!(
                "release {n} still has weight {w} in rule {logical} after {}s: it is not scaled down while it may get requests; move its traffic away (`gilliam traffic`) and run again",
                SETTLE.as_secs()
            )));
        }
        tokio::time::sleep(poll.max(Duration::from_millis(10))).await;
    }
    // 2. Their target groups' deregistration delay, as ELBv2 holds it.
    let mut delay: BTreeMap<u32, u32> = BTreeMap::new();
    for (tg, n) in &groups {
        let d = retry("read a target group's deregistration delay", || aws.deregistration_delay(tg)).await?;
        let e = delay.entry(*n).or_insert(0);
        *e = (*e).max(d);
    }
    // 3. Counted from when the state last saw each carry no traffic.
    let (state, _) = crate::state::read(aws, &f.outputs_bucket, &f.s3_prefix, &f.name).await?;
    let now = crate::clock::epoch();
    let left = delay
        .iter()
        .map(|(n, d)| {
            let since = state.releases.get(n).and_then(|r| r.unrouted_since).unwrap_or(now).min(now);
            (i64::from(*d) - (now - since)).max(0) as u64
        })
        .max()
        .unwrap_or(0);
    if left > 0 {
        let names: Vec<String> = delay.keys().map(u32::to_string).collect();
        say(&format!("release {}: no traffic; waiting {left}s (the target groups' deregistration delay) for requests in flight", names.join(", ")));
        tokio::time::sleep(Duration::from_secs(left)).await;
    }
    Ok(Duration::from_secs(left))
}
