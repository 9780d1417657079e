//! The operator's handle on a live formation (`Ops`): where it lives, its traffic, and what
//! every command shares (the published manifest and state, the Auto Scaling groups of a
//! release, its published scales, waiting until nothing is lacking).

use crate::aws::Aws;
use crate::error::Error;
use crate::formation::Formation;
use crate::retry::retry;
use crate::shift::{self, ShiftOptions};
use crate::state::{self, Event, State};
use crate::strategy::Strategy;
use crate::traffic::{weights, Traffic, TrafficChange};
use gilliam_compiler::manifest::Manifest;
use std::collections::BTreeMap;
use std::time::Duration;

/// The operator's commands on one formation (one module per command beside this one).
pub struct Ops<'a, A: Aws> {
    /// The formation's client, where it lives, its progress output, and its traffic, which
    /// most commands read or change.
    pub(super) t: Traffic<'a, A>,
}

impl<A: Aws> std::fmt::Debug for Ops<'_, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops").field("formation", &self.t.f).finish()
    }
}

impl<'a, A: Aws> Ops<'a, A> {
    pub fn new(aws: &'a A, f: Formation, say: &'a (dyn Fn(&str) + Sync)) -> Self {
        Ops { t: Traffic::new(aws, f, say) }
    }

    /// The compiled bundle the routing is rendered from: the newest live release's (its own
    /// published copy), which after an aborted deploy is newer than the latest published
    /// manifest. Rendering from the latest would move the test header back to an older release
    /// while the newer one is still live.
    /// `leaving`: a release about to leave the routing, never the one rendered from.
    pub(super) async fn routing_bundle(&self, st: &State, latest: u32, leaving: Option<u32>) -> Result<crate::bundle::Bundle, Error> {
        let newest = st.releases.iter().filter(|(n, r)| r.status == "live" && Some(**n) != leaving).map(|(n, _)| *n).max().unwrap_or(latest).max(latest);
        crate::bundle::from_s3(self.t.aws, &self.t.f.bucket, &self.t.f.prefix, newest).await.map_err(Error::Bundle)
    }

    /// The latest published manifest (the formation's outputs).
    pub async fn outputs(&self) -> Result<(Manifest, Vec<u8>), Error> {
        self.t.outputs().await
    }

    pub async fn state(&self) -> Result<State, Error> {
        self.t.state().await
    }

    pub async fn history(&self) -> Result<Vec<Event>, Error> {
        Ok(self.state().await?.history)
    }

    /// Each routed release's weight now (empty before the first deploy).
    pub async fn weights_now(&self) -> Result<BTreeMap<u32, u32>, Error> {
        match self.outputs().await {
            Ok((m, _)) => Ok(weights(&self.t.rules(&m).await?)),
            // Nothing published yet (or nothing gilliam can read): no weights.
            Err(Error::NotFound(_) | Error::Corrupt(_)) => Ok(BTreeMap::new()),
            Err(e) => Err(e),
        }
    }

    /// Sets the weights of releases: `{12: 100}` flips, `{11: 90, 12: 10}` splits. Only ELBv2
    /// writes, one per rule whose weights change; everything is checked before the first write.
    pub async fn traffic(&self, target: &BTreeMap<u32, u32>) -> Result<TrafficChange, Error> {
        let (m, _) = self.outputs().await?;
        let rules = self.t.rules(&m).await?;
        self.t.traffic_on(&rules, target, "").await
    }

    /// Moves traffic to `target` by `strategy`, judged as the published manifest says
    /// (`shift_on`).
    pub async fn shift(&self, target: &BTreeMap<u32, u32>, strategy: Strategy, poll: Duration, health_timeout: Duration) -> Result<TrafficChange, Error> {
        let (m, _) = self.outputs().await?;
        shift::shift_on(&self.t, &m, target, &ShiftOptions { strategy, poll, health_timeout, judge: true, hooks: true }).await
    }

    /// A judged shift on the routing of manifest `m` (`shift::shift_on`).
    pub async fn shift_on(&self, m: &Manifest, target: &BTreeMap<u32, u32>, opts: &ShiftOptions) -> Result<TrafficChange, Error> {
        shift::shift_on(&self.t, m, target, opts).await
    }

    /// Polls `lacking` (what is not there yet, described) every `poll`, saying what it waits
    /// for, until it answers nothing; past `deadline`, a time-out worded by `late`.
    pub(super) async fn until_none<F, Fut>(
        &self,
        deadline: tokio::time::Instant,
        poll: Duration,
        waiting: &str,
        lacking: F,
        late: impl Fn(String) -> String,
    ) -> Result<(), Error>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<String>, Error>>,
    {
        loop {
            let what = lacking().await?;
            if what.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(late(what.join("; "))));
            }
            (self.t.say)(&format!("{waiting}: {}", what.join("; ")));
            tokio::time::sleep(poll).await;
        }
    }

    /// Each service's scale as compiled for `release` (its published manifest); empty when it
    /// cannot be read.
    pub(super) async fn published_scales(&self, release: u32) -> Result<BTreeMap<String, gilliam_compiler::manifest::Scale>, Error> {
        let published = match crate::published::release(self.t.aws, &self.t.f.bucket, &self.t.f.prefix, release).await {
            Ok(p) => p,
            Err(Error::Corrupt(_)) => None,
            Err(e) => return Err(e),
        };
        Ok(published.map(|m| m.services.into_iter().filter_map(|s| s.scale.map(|x| (s.name, x))).collect()).unwrap_or_default())
    }

    /// Physical Auto Scaling group names of a release's services.
    pub(super) async fn groups(&self, record: &state::ReleaseRecord) -> Result<BTreeMap<String, String>, Error> {
        let mut by_stack: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
        for (_, stack) in record.groups.values() {
            if by_stack.contains_key(stack.as_str()) {
                continue;
            }
            let res = match retry("list stack resources", || self.t.aws.stack_resources(stack)).await {
                Ok(r) => r,
                Err(_) => continue,
            };
            by_stack.insert(stack, res.into_iter().map(|(l, p, _)| (l, p)).collect());
        }
        Ok(record
            .groups
            .iter()
            .filter_map(|(svc, (logical, stack))| by_stack.get(stack.as_str()).and_then(|m| m.get(logical)).map(|p| (svc.clone(), p.clone())))
            .collect())
    }
}
