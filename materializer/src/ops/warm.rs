//! `gilliam warm`: a cold release routed again at weight 0, its groups back to size, every
//! instance in service and every target healthy; traffic untouched.

use super::base::Ops;
use crate::aws::{Aws, Group};
use crate::bundle::Bundle;
use crate::error::Error;
use crate::retry::retry;
use crate::routing::Router;
use crate::stacks::Stacks;
use crate::state;
use crate::traffic::target_groups;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a cold release may take to warm, and how often it is looked at meanwhile.
#[derive(Debug, Clone, Copy)]
pub struct WarmOptions {
    pub timeout: Duration,
    pub poll: Duration,
}

impl Default for WarmOptions {
    fn default() -> Self {
        WarmOptions { timeout: Duration::from_secs(900), poll: Duration::from_secs(10) }
    }
}

/// A cold release brought back.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Warmed {
    pub release: u32,
    /// From the first capacity change to every target healthy.
    pub seconds: u64,
    pub instances: u32,
}

impl Warmed {
    /// `2m05s`, `40s`.
    pub fn took(&self) -> String {
        match (self.seconds / 60, self.seconds % 60) {
            (0, s) => format!("{s}s"),
            (m, s) => format!("{m}m{s:02}s"),
        }
    }
}

impl<A: Aws> Ops<'_, A> {
    /// Brings a cold release back to where a flip can reach it: the release back in the
    /// routing (at weight 0, and recorded live), its Auto Scaling groups to their recorded
    /// size, every instance in service and every target healthy. Traffic is not touched.
    /// Says, and returns, how long it took.
    pub async fn warm(&self, release: u32, opts: &WarmOptions) -> Result<Warmed, Error> {
        let started = tokio::time::Instant::now();
        let deadline = started + opts.timeout;
        let st = self.state().await?;
        let Some(record) = st.releases.get(&release) else {
            return Err(Error::NotFound(format!("release {release} is not recorded in formation {}", self.t.f.name)));
        };
        if record.status != "cold" {
            return Err(Error::Refused(format!("release {release} is {}, not cold: nothing to warm", record.status)));
        }
        let groups = self.groups(record).await?;
        let published = self.published_scales(release).await?;
        let mut sizes: Vec<(String, String, u32, u32, u32)> = Vec::new();
        for (svc, name) in &groups {
            let s = published.get(svc);
            // As gilliam last set it (`gilliam scale`), else as compiled.
            let desired = record.scale.get(svc).copied().or(s.map(|s| s.desired)).unwrap_or(1);
            let (min, max) = s.map_or((desired, desired), |s| (s.min.min(desired), s.max.max(desired)));
            sizes.push((svc.clone(), name.clone(), min, desired, max));
        }
        // Routed first, at weight 0: its instances then register into target groups that ELBv2
        // health-checks from the start (the targets of a target group in no rule are `unused`,
        // never healthy), and a routing that cannot hold one more release is refused before
        // any instance starts. Live from here on: the next converge keeps it routed.
        let (m, _) = self.outputs().await?;
        let bundle: Bundle = self.routing_bundle(&st, m.release.number, None).await?;
        let stacks = Stacks::with_defaults(self.t.aws, self.t.say);
        Box::pin(Router::new(self.t.aws, &bundle, stacks, self.t.say).route_with(release)).await?;
        state::update(self.t.aws, &self.t.f.bucket, &self.t.f.prefix, &self.t.f.name, |st| {
            if let Some(r) = st.releases.get_mut(&release) {
                r.status = "live".into();
            }
        })
        .await?;
        for (svc, name, min, desired, max) in &sizes {
            (self.t.say)(&format!("warming release {release}: {svc} to {desired} instance(s)"));
            retry("set capacity", || self.t.aws.set_capacity(name, *min, *desired, *max)).await?;
        }
        let names: Vec<String> = sizes.iter().map(|(_, n, ..)| n.clone()).collect();
        let short = || async {
            let found: BTreeMap<String, Group> = if names.is_empty() {
                BTreeMap::new()
            } else {
                retry("describe groups", || self.t.aws.describe_groups(&names)).await?.into_iter().map(|g| (g.name.clone(), g)).collect()
            };
            Ok(sizes
                .iter()
                .filter_map(|(svc, name, _, desired, _)| {
                    let up = found.get(name).map_or(0, |g| g.in_service);
                    (up < *desired).then(|| format!("{svc} {up} of {desired} in service"))
                })
                .collect())
        };
        let late = |what: String| {
            format!(
                "release {release} not warm after {:?}: {what}; traffic unchanged; it stays routed at weight 0 with its groups at their size: follow it with `gilliam releases`, or `gilliam retire {release}`",
                opts.timeout
            )
        };
        self.until_none(deadline, opts.poll, "waiting for instances", short, late).await?;
        let instances: u32 = sizes.iter().map(|(_, _, _, d, _)| *d).sum();
        let rules = self.t.rules(&m).await?;
        let watched = target_groups(&rules, |n| n == release);
        let late = |what: String| format!("release {release} is routed (weight 0) but not healthy after {:?}: {what}; traffic unchanged", opts.timeout);
        self.until_none(deadline, opts.poll, "waiting for healthy targets", || self.t.unhealthy(&watched, true), late).await?;
        let seconds = started.elapsed().as_secs();
        let warmed = Warmed { release, seconds, instances };
        self.t.record(&format!("warm release {release}: {instances} instance(s) in service and healthy in {}", warmed.took())).await?;
        Ok(warmed)
    }
}
