//! `gilliam ps`: the instances of each live or cold release, per service: id, zone, Auto
//! Scaling's lifecycle and health, each target group's view of it, when it was launched, and
//! the last line its agent shipped to the formation's logs.

use super::base::Ops;
use super::logs::LogFilter;
use crate::aws::Aws;
use crate::error::Error;
use crate::retry::retry;
use serde::Serialize;
use std::collections::BTreeMap;

/// One instance of a release's service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceRow {
    pub release: u32,
    pub service: String,
    pub instance: String,
    pub zone: String,
    /// Auto Scaling's lifecycle state (`InService`, `Pending`, ...) and health.
    pub lifecycle: String,
    pub health: String,
    /// Each of its target groups' state of it (`healthy`, `initial`, `draining`...); empty for
    /// a service without a port.
    pub targets: Vec<String>,
    /// When EC2 launched it (RFC 3339), and for how many seconds it has run.
    pub launched: Option<String>,
    pub uptime_seconds: Option<i64>,
    /// The last line its agent shipped in the last hour.
    pub agent: Option<String>,
}

impl<A: Aws> Ops<'_, A> {
    /// The instances of every live or cold release (or of `release` alone).
    pub async fn ps(&self, release: Option<u32>) -> Result<Vec<InstanceRow>, Error> {
        let st = self.state().await?;
        let releases: Vec<(u32, &crate::state::ReleaseRecord)> =
            st.releases.iter().filter(|(n, r)| release.is_none_or(|x| x == **n) && (r.status == "live" || r.status == "cold")).map(|(n, r)| (*n, r)).collect();
        if let Some(n) = release {
            if releases.is_empty() {
                return Err(Error::NotFound(format!("release {n} is not live or cold in {}", self.t.f.name)));
            }
        }
        // Target groups by (release, service logical ID), from the formation's exports.
        let exports = retry("list exports", || self.t.aws.list_exports()).await?;
        let mut groups_of: BTreeMap<(u32, String), Vec<String>> = BTreeMap::new();
        for (name, arn) in exports {
            if let Some((n, logical, _)) = crate::observe::parse_export(&self.t.f.name, &name) {
                groups_of.entry((n, logical.to_string())).or_default().push(arn);
            }
        }
        let mut rows = Vec::new();
        for (n, r) in releases {
            let asgs = self.groups(r).await?;
            let names: Vec<String> = asgs.values().cloned().collect();
            if names.is_empty() {
                continue;
            }
            let found: BTreeMap<String, crate::aws::Group> =
                retry("describe groups", || self.t.aws.describe_groups(&names)).await?.into_iter().map(|g| (g.name.clone(), g)).collect();
            for (svc, asg) in &asgs {
                let Some(g) = found.get(asg) else { continue };
                let logical = r.groups.get(svc).map(|(l, _)| l.trim_end_matches("AutoScalingGroup").to_string()).unwrap_or_default();
                let mut states: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for arn in groups_of.get(&(n, logical)).into_iter().flatten() {
                    for (id, state) in retry("describe target health", || self.t.aws.targets(arn)).await? {
                        states.entry(id).or_default().push(state);
                    }
                }
                for i in &g.instances {
                    rows.push(InstanceRow {
                        release: n,
                        service: svc.clone(),
                        instance: i.id.clone(),
                        zone: i.zone.clone(),
                        lifecycle: i.lifecycle.clone(),
                        health: i.health.clone(),
                        targets: states.remove(&i.id).unwrap_or_default(),
                        launched: None,
                        uptime_seconds: None,
                        agent: None,
                    });
                }
            }
        }
        let now = crate::clock::epoch();
        let uptime = |launched: Option<&str>| launched.and_then(crate::clock::epoch_of).map(|t| (now - t).max(0));
        let ids: Vec<String> = rows.iter().map(|r| r.instance.clone()).collect();
        if !ids.is_empty() {
            let launched = retry("describe instances", || self.t.aws.launch_times(&ids)).await?;
            for row in &mut rows {
                row.launched = launched.get(&row.instance).cloned();
                row.uptime_seconds = uptime(row.launched.as_deref());
            }
            // Each instance's agent's last line of the last hour (no logs yet: none).
            let since = crate::clock::epoch_ms() - 3_600_000;
            if let Ok(lines) = self.logs(&LogFilter { release, services: Vec::new() }, since).await {
                for row in &mut rows {
                    row.agent = lines.iter().rev().find(|l| l.instance == row.instance && l.source == "agent").map(|l| format!("{} {}", l.time, l.message));
                }
            }
        }
        // One-off instances (the release phase, `gilliam run`): in no Auto Scaling group.
        for t in retry("describe task instances", || self.t.aws.task_instances(&self.t.f.name)).await? {
            let Some(n) = t.release.filter(|n| release.is_none_or(|r| r == *n)) else { continue };
            let launched = (!t.launched.is_empty()).then(|| t.launched.clone());
            rows.push(InstanceRow {
                release: n,
                service: format!("{} (task)", t.service),
                instance: t.id,
                zone: t.zone,
                lifecycle: t.state,
                health: "-".into(),
                targets: Vec::new(),
                uptime_seconds: uptime(launched.as_deref()),
                launched,
                agent: Some(t.purpose),
            });
        }
        rows.sort_by(|a, b| (a.release, &a.service, &a.instance).cmp(&(b.release, &b.service, &b.instance)));
        Ok(rows)
    }
}
