//! `gilliam releases` and `gilliam status`: each live or cold release with its stack, its
//! groups' health, its weight and its recent metrics; the routes and their weights.

use super::base::Ops;
use crate::aws::{Aws, Group};
use crate::delivery::{self, Sample};
use crate::error::Error;
use crate::retry::retry;
use crate::traffic::{series, weights, RuleView};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ServiceHealth {
    pub service: String,
    pub in_service: u32,
    pub desired: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReleaseRow {
    pub release: u32,
    pub revision: String,
    pub created: String,
    /// In the cold tier: scaled to zero and out of routing (`gilliam warm`).
    pub cold: bool,
    pub stack_status: String,
    pub weight: u32,
    pub services: Vec<ServiceHealth>,
    /// What the release served over the last `METRICS_WINDOW` (its target groups' load
    /// balancer metrics); `None` when CloudWatch could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Sample>,
}

/// The window `releases` and `status` show metrics over.
pub const METRICS_WINDOW: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RouteRow {
    pub route: String,
    pub service: String,
    /// The path (or host/path) the service sees, when the route rewrites it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<String>,
    /// Release to weight, for this route's rule.
    pub weights: BTreeMap<u32, u32>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Status {
    pub formation: String,
    pub latest_release: u32,
    pub public_url: Option<String>,
    pub traffic: BTreeMap<u32, u32>,
    pub routes: Vec<RouteRow>,
    pub internal_urls: BTreeMap<String, String>,
    pub releases: Vec<ReleaseRow>,
}

impl<A: Aws> Ops<'_, A> {
    pub async fn releases(&self) -> Result<Vec<ReleaseRow>, Error> {
        let rules = match self.outputs().await {
            Ok((m, _)) => self.t.rules(&m).await?,
            Err(_) => Vec::new(),
        };
        self.release_rows(&rules).await
    }

    /// Each release's requests, 5xx and latency over the last `METRICS_WINDOW`, in
    /// GetMetricData calls of up to 500 queries; `None` (said) when CloudWatch cannot be read.
    async fn recent_metrics(&self, rules: &[RuleView], releases: &[u32]) -> Option<BTreeMap<u32, delivery::Sample>> {
        let wanted: Vec<Option<u32>> = releases.iter().map(|n| Some(*n)).collect();
        let series = series(rules, &wanted);
        let now = crate::clock::epoch();
        match delivery::samples(self.t.aws, &series, now - METRICS_WINDOW.as_secs() as i64, now).await {
            Ok(s) => Some(s),
            Err(e) => {
                (self.t.say)(&format!("metrics unavailable: {e}"));
                None
            }
        }
    }

    async fn release_rows(&self, rules: &[RuleView]) -> Result<Vec<ReleaseRow>, Error> {
        let weights = &weights(rules);
        let st = self.state().await?;
        let live: Vec<u32> = st.releases.iter().filter(|(_, r)| r.status == "live").map(|(n, _)| *n).collect();
        let metrics = if rules.is_empty() { None } else { self.recent_metrics(rules, &live).await };
        let mut rows = Vec::new();
        for (n, r) in st.releases.iter().filter(|(_, r)| r.status == "live" || r.status == "cold") {
            let stack_status = match r.stacks.first() {
                Some(s) => retry("describe stack", || self.t.aws.describe_stack(s)).await?.map_or("MISSING".into(), |s| s.status),
                None => "NONE".into(),
            };
            let groups = self.groups(r).await?;
            let names: Vec<String> = groups.values().cloned().collect();
            let found: BTreeMap<String, Group> = if names.is_empty() {
                BTreeMap::new()
            } else {
                retry("describe groups", || self.t.aws.describe_groups(&names)).await?.into_iter().map(|g| (g.name.clone(), g)).collect()
            };
            let services = groups
                .iter()
                .map(|(svc, g)| {
                    let g = found.get(g);
                    ServiceHealth { service: svc.clone(), in_service: g.map_or(0, |g| g.in_service), desired: g.map_or(0, |g| g.desired) }
                })
                .collect();
            rows.push(ReleaseRow {
                release: *n,
                revision: r.revision.clone(),
                created: r.created.clone(),
                cold: r.status == "cold",
                stack_status,
                weight: weights.get(n).copied().unwrap_or(0),
                services,
                metrics: metrics.as_ref().and_then(|m| m.get(n).copied()),
            });
        }
        Ok(rows)
    }

    pub async fn status(&self) -> Result<Status, Error> {
        let (m, _) = self.outputs().await?;
        let rules = self.t.rules(&m).await?;
        let weights = weights(&rules);
        // Rules by logical ID, for the route table.
        let by_logical: BTreeMap<&str, BTreeMap<u32, u32>> =
            rules.iter().map(|r| (r.logical.as_str(), r.forward.iter().filter_map(|(_, w, n)| n.map(|n| (n, *w))).collect())).collect();
        let mut routes = Vec::new();
        for svc in &m.services {
            let mut rs: Vec<&gilliam_compiler::manifest::RouteEntry> = m.routes.iter().filter(|r| r.service == svc.name).collect();
            rs.sort_by_key(|r| r.priority);
            for r in rs {
                let id = gilliam_compiler::names::route_rule_id(r.host.as_deref(), r.path.as_deref());
                let w = by_logical.get(id.as_str()).cloned().unwrap_or_default();
                routes.push(RouteRow { route: r.route.clone(), service: svc.name.clone(), rewrite: r.rewrite.clone(), weights: w });
            }
        }
        Ok(Status {
            formation: m.formation.name.clone(),
            latest_release: m.release.number,
            public_url: m.formation.public_url.clone(),
            releases: self.release_rows(&rules).await?,
            traffic: weights,
            routes,
            internal_urls: m.internal_urls.clone(),
        })
    }
}
