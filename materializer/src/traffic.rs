//! Traffic as ELBv2 holds it: the routing rules read with each target group's release, the
//! weights they give each release, and a change of weights written rule by rule (checked
//! before the first write, recorded in the history after). The layer under every shift,
//! rollback, bake and converge that moves traffic.

use crate::aws::Aws;
use crate::error::Error;
use crate::formation::Formation;
use crate::retry::retry;
use crate::state::{self, State};
use gilliam_compiler::manifest::Manifest;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What a traffic change did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TrafficChange {
    pub before: BTreeMap<u32, u32>,
    pub after: BTreeMap<u32, u32>,
    /// ELBv2 writes made: one per rule whose weights changed.
    pub writes: usize,
}

/// One routing rule as observed: its ARN and, per target group, weight and owning release.
#[derive(Debug, Clone)]
pub struct RuleView {
    /// Logical ID in its routing stack (`ApiRoute1`, `ApiInternalRule`).
    pub logical: String,
    pub arn: String,
    pub forward: Vec<(String, u32, Option<u32>)>,
    /// The forward's target group stickiness as ELBv2 holds it now (seconds).
    pub stickiness: Option<u32>,
    /// The stickiness the formation is compiled with (`stickiness:`): a write that moves
    /// traffic forward puts it back where an abort or rollback dropped it.
    pub configured: Option<u32>,
}

/// One ELBv2 write: a rule's ARN, its whole weighted forward (target group, weight), and the
/// forward's stickiness (kept as it is).
/// One rule's write: its ARN, its forward (target group, weight), its stickiness.
pub type RuleWrite = (String, Vec<(String, u32)>, Option<u32>);

/// Reads and writes the weights of one formation's rules.
pub struct Traffic<'a, A: Aws> {
    pub aws: &'a A,
    pub f: Formation,
    pub say: &'a (dyn Fn(&str) + Sync),
}

impl<A: Aws> std::fmt::Debug for Traffic<'_, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traffic").field("formation", &self.f).finish()
    }
}

impl<'a, A: Aws> Traffic<'a, A> {
    pub fn new(aws: &'a A, f: Formation, say: &'a (dyn Fn(&str) + Sync)) -> Self {
        Traffic { aws, f, say }
    }

    /// The latest published manifest (the formation's outputs).
    pub async fn outputs(&self) -> Result<(Manifest, Vec<u8>), Error> {
        crate::published::latest(self.aws, &self.f).await
    }

    pub async fn state(&self) -> Result<State, Error> {
        Ok(state::read(self.aws, &self.f.bucket, &self.f.prefix, &self.f.name).await?.0)
    }

    /// Rules of the routing stacks, with each target group's release.
    pub async fn rules(&self, m: &Manifest) -> Result<Vec<RuleView>, Error> {
        let by_arn = crate::observe::release_target_groups(self.aws, &self.f.name).await?;
        let rules = crate::observe::routing_rules(self.aws, m).await?;
        Ok(rules
            .into_iter()
            .map(|(logical, r)| RuleView {
                logical,
                arn: r.arn,
                stickiness: r.stickiness,
                configured: m.delivery.stickiness_seconds,
                forward: r
                    .forward
                    .into_iter()
                    .map(|(tg, w)| {
                        let n = by_arn.get(&tg).copied();
                        (tg, w, n)
                    })
                    .collect(),
            })
            .collect())
    }

    /// The writes, 16 at a time, paced to ELBv2's `ModifyRule` bucket by the client's pacing
    /// layer (`pacing::Pacing`): a large formation flips as fast as the bucket allows, and
    /// throttling (other tools share the bucket) slows it down rather than failing it. One
    /// write per rule.
    pub async fn write(&self, changes: &[RuleWrite]) -> Result<(), Error> {
        use futures_util::stream::{self, StreamExt};
        let results: Vec<Result<(), Error>> = stream::iter(changes.iter())
            .map(|(arn, forward, sticky)| crate::retry::retry("set rule weights", move || self.aws.set_rule_weights(arn, forward, *sticky)))
            .buffer_unordered(16)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>, Error>>().map(|_| ())
    }

    /// Puts the weights `target` back on every rule of the routing stacks `m` names, after a
    /// CloudFormation rollback of a routing stack restored the weights of an older template.
    /// Returns how many rules it wrote.
    pub async fn reassert(&self, m: &Manifest, target: &BTreeMap<u32, u32>) -> Result<usize, Error> {
        let rules = self.rules(m).await?;
        let changes = writes(&rules, target, false)?;
        self.write(&changes).await?;
        if !changes.is_empty() {
            let line: Vec<String> = target.iter().map(|(n, w)| format!("{n}={w}")).collect();
            state::update(self.aws, &self.f.bucket, &self.f.prefix, &self.f.name, |st| {
                st.history.push(state::event(format!("traffic re-asserted after a failed routing update: {}", line.join(" "))));
            })
            .await?;
        }
        Ok(changes.len())
    }

    /// `traffic_on`, with `label` before the history's `traffic ...` line.
    pub async fn traffic_on(&self, rules: &[RuleView], target: &BTreeMap<u32, u32>, label: &str) -> Result<TrafficChange, Error> {
        self.traffic_away(rules, target, label, None).await
    }

    /// `traffic_on`, marking `judged_bad` as rolled back from in the same state write (a
    /// rollback, an aborted shift, a bake's breach): retention lets it go first, and no
    /// rollback returns to it while another release is left.
    ///
    /// Taking traffic away from a release judged bad also drops the rules' target group
    /// stickiness: ELBv2 keeps a client whose cookie names a target group on it for the whole
    /// duration, whatever its weight (stickiness takes precedence over weights), so without
    /// this an abort would leave the canary's sticky clients on the bad release for up to
    /// `stickiness`. The next change that moves traffic forward puts the stickiness back.
    pub async fn traffic_away(&self, rules: &[RuleView], target: &BTreeMap<u32, u32>, label: &str, judged_bad: Option<u32>) -> Result<TrafficChange, Error> {
        let refuse = |m: String| Err(Error::Refused(m));
        if target.is_empty() || target.values().all(|w| *w == 0) {
            return refuse("traffic needs at least one release with a weight above 0".into());
        }
        if let Some((n, w)) = target.iter().find(|(_, w)| **w > gilliam_compiler::MAX_WEIGHT) {
            return refuse(format!("weight {w} for release {n} is over the load balancer's maximum of {}", gilliam_compiler::MAX_WEIGHT));
        }
        let attached: BTreeSet<u32> = rules.iter().flat_map(|r| r.forward.iter().filter_map(|(_, _, n)| *n)).collect();
        if let Some(n) = target.keys().find(|n| !attached.contains(n)) {
            if self.state().await?.releases.get(n).is_some_and(|r| r.status == "cold") {
                return refuse(format!(
                    "release {n} is cold (scaled to zero, out of routing): warm it first with `gilliam warm {n}`, or `gilliam rollback` to it"
                ));
            }
            let live: Vec<String> = attached.iter().map(u32::to_string).collect();
            return refuse(format!(
                "release {n} is not routed (routed releases: {}); deploy it first",
                if live.is_empty() { "none".into() } else { live.join(", ") }
            ));
        }
        // A rule none of whose releases gets weight (a service only newer releases have) stays
        // with the newest of them: it is the only one that can answer.
        let changes = writes(rules, target, judged_bad.is_some())?;
        let before = weights(rules);
        // The change is recorded after the writes: a state file that cannot be recorded to
        // (corrupt, foreign) refuses the change before anything moves.
        self.state().await?;
        self.write(&changes).await?;
        let after: BTreeMap<u32, u32> = before.keys().map(|n| (*n, target.get(n).copied().unwrap_or(0))).collect();
        let line: Vec<String> = after.iter().map(|(n, w)| format!("{n}={w}")).collect();
        state::update(self.aws, &self.f.bucket, &self.f.prefix, &self.f.name, |st| {
            st.traffic = after.clone();
            st.mark_served(&after);
            if let Some(n) = judged_bad {
                st.mark_rolled_back(n);
            }
            // A bake window watches the weights it began with: any change ends it.
            st.bake = None;
            st.history.push(state::event(format!("{label}traffic {}", line.join(" "))));
        })
        .await?;
        Ok(TrafficChange { before, after, writes: changes.len() })
    }

    /// One line in the history.
    pub async fn record(&self, what: &str) -> Result<(), Error> {
        state::update(self.aws, &self.f.bucket, &self.f.prefix, &self.f.name, |st| st.history.push(state::event(what))).await?;
        Ok(())
    }

    /// Target groups (of the given releases) with unhealthy targets, described; with
    /// `strict`, also those not yet healthy (no targets, or targets still starting).
    pub async fn unhealthy(&self, watched: &[(u32, String)], strict: bool) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        for (n, tg) in watched {
            let states = retry("target health", || self.aws.target_health(tg)).await?;
            let bad = states.iter().filter(|s| s.as_str() == "unhealthy").count();
            let healthy = states.iter().filter(|s| s.as_str() == "healthy").count();
            let name = tg.rsplit(':').next().unwrap_or(tg).trim_start_matches("targetgroup/");
            if bad > 0 {
                out.push(format!("release {n}: {bad} of {} targets unhealthy in {name}", states.len()));
            } else if strict && (healthy == 0 || healthy < states.len()) {
                out.push(format!("release {n}: {healthy} of {} targets healthy in {name}", states.len()));
            }
        }
        Ok(out)
    }
}

/// The (release, target group) pairs the rules forward to, for the releases `pick` takes,
/// each once, in order.
pub fn target_groups(rules: &[RuleView], pick: impl Fn(u32) -> bool) -> Vec<(u32, String)> {
    let pairs = rules.iter().flat_map(|r| r.forward.iter().filter_map(|(tg, _, n)| n.filter(|n| pick(*n)).map(|n| (n, tg.clone()))));
    pairs.collect::<BTreeSet<_>>().into_iter().collect()
}

/// Each release's weight: the smallest any rule gives it.
pub fn weights(rules: &[RuleView]) -> BTreeMap<u32, u32> {
    crate::observe::release_weights(rules.iter().flat_map(|r| r.forward.iter().filter_map(|(_, w, n)| n.map(|n| (n, *w)))))
}

/// The writes that give every rule the weights `target`: (rule ARN, forward, stickiness) for
/// each rule whose weights or stickiness change. With `drop_stickiness` (traffic taken from a
/// release judged bad) every rule loses its stickiness, so that no client stays on the bad
/// release; otherwise each rule has the stickiness the formation is compiled with.
pub fn writes(rules: &[RuleView], target: &BTreeMap<u32, u32>, drop_stickiness: bool) -> Result<Vec<RuleWrite>, Error> {
    let mut changes = Vec::new();
    for r in rules {
        let releases: Vec<Option<u32>> = r.forward.iter().map(|(_, _, n)| *n).collect();
        let Some(weights) = crate::observe::rule_weights(&releases, target) else {
            return Err(Error::Refused(format!("rule {} forwards to no target group of a live release; deploy again", r.arn)));
        };
        let new: Vec<(String, u32)> = r.forward.iter().zip(weights).map(|((tg, _, _), w)| (tg.clone(), w)).collect();
        let sticky = if drop_stickiness { None } else { r.configured };
        if new.iter().zip(&r.forward).any(|((_, a), (_, b, _))| a != b) || sticky != r.stickiness {
            changes.push((r.arn.clone(), new, sticky));
        }
    }
    Ok(changes)
}

/// The CloudWatch series of the given releases' target groups.
pub fn series(rules: &[RuleView], releases: &[Option<u32>]) -> Vec<crate::delivery::Series> {
    rules
        .iter()
        .flat_map(|r| {
            r.forward.iter().filter_map(|(tg, _, n)| n.filter(|n| releases.contains(&Some(*n))).and_then(|n| crate::delivery::Series::new(n, &r.arn, tg)))
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The newest release with any traffic: what a rollback or a bake is about (during a 90/10
/// canary, the canary).
pub fn newest_serving(weights: &BTreeMap<u32, u32>) -> Option<u32> {
    weights.iter().filter(|(_, w)| **w > 0).map(|(n, _)| *n).max()
}

/// Where traffic goes back to from `serving`: the newest older release among `candidates`.
pub fn previous(serving: u32, candidates: impl IntoIterator<Item = u32>) -> Option<u32> {
    candidates.into_iter().filter(|n| *n < serving).max()
}
