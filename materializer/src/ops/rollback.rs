//! `gilliam rollback`: all traffic back to the release before the newest one serving, warmed
//! first when it is cold.

use super::base::Ops;
use super::warm::{WarmOptions, Warmed};
use crate::aws::Aws;
use crate::error::Error;
use crate::retention::rollback_target;
use crate::traffic::{newest_serving, weights, TrafficChange};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What a rollback did: the release now serving, the traffic change, and the warm-up when the
/// release was cold.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Rollback {
    pub release: u32,
    pub change: TrafficChange,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmed: Option<Warmed>,
}

impl<A: Aws> Ops<'_, A> {
    /// All traffic back to the newest release older than the newest one with traffic: a
    /// routed one, or a cold one, which is warmed first (`warm`, with `warming`'s limits).
    pub async fn rollback(&self, warming: &WarmOptions) -> Result<Rollback, Error> {
        let (m, _) = self.outputs().await?;
        let mut rules = self.t.rules(&m).await?;
        let weights = weights(&rules);
        // The newest release with any traffic: during a 90/10 canary, rollback aborts the canary.
        let Some(serving) = newest_serving(&weights) else {
            return Err(Error::Refused("no release carries traffic: nothing to roll back from".into()));
        };
        let st = self.state().await?;
        let cold: BTreeSet<u32> = st.releases.iter().filter(|(_, r)| r.status == "cold").map(|(n, _)| *n).collect();
        let carrying: BTreeSet<u32> = weights.iter().filter(|(_, w)| **w > 0).map(|(n, _)| *n).collect();
        let Some(previous) = rollback_target(serving, weights.keys().chain(cold.iter()).copied(), &carrying, &st) else {
            return Err(Error::Refused(format!("release {serving} serves and no earlier release is still running or cold: nothing to roll back to")));
        };
        let warmed = if cold.contains(&previous) && !weights.contains_key(&previous) {
            let w = self.warm(previous, warming).await?;
            rules = self.t.rules(&m).await?;
            Some(w)
        } else {
            None
        };
        let change = self.t.traffic_away(&rules, &BTreeMap::from([(previous, 100)]), &format!("rollback from release {serving}: "), Some(serving)).await?;
        Ok(Rollback { release: previous, change, warmed })
    }
}
