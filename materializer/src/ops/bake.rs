//! The bake window after a shift: opened in the published state (`--bake`), watched by
//! `gilliam watch` without the lock, its rollback taken under the lock only while the weights
//! are still those it began with.

use super::base::Ops;
use crate::aws::Aws;
use crate::delivery::{self, Breach, Notifier, Verdict};
use crate::error::Error;
use crate::lock::{self, LockOptions};
use crate::shift::{after_abort, hook_env};
use crate::state;
use crate::traffic::{newest_serving, previous, series, target_groups, weights};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// How a bake window ended without a breach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum WatchOutcome {
    /// No bake window is recorded.
    Nothing,
    Passed(String),
    /// Too little traffic to judge: said, never called a pass.
    Unjudged(String),
    /// The window was ended by a later change; nothing was done.
    Superseded(String),
}

impl<A: Aws> Ops<'_, A> {
    /// Opens a bake window over the weights now set: recorded in the published state, so that
    /// `gilliam watch` on another machine can watch it (`watch`). `restore` is what a breach
    /// puts back.
    pub async fn begin_bake(&self, release: u32, restore: &BTreeMap<u32, u32>, duration: Duration) -> Result<state::Bake, Error> {
        let (m, _) = self.outputs().await?;
        let weights = weights(&self.t.rules(&m).await?);
        let baseline = restore.iter().filter(|(n, w)| **n != release && **w > 0).max_by_key(|(n, w)| (**w, **n)).map(|(n, _)| *n);
        let now = crate::clock::epoch();
        let bake = state::Bake {
            release,
            baseline,
            restore: restore.clone(),
            weights,
            started: now,
            until: now + duration.as_secs().max(1) as i64,
            actor: crate::clock::actor(),
        };
        let r: Vec<String> = restore.iter().map(|(n, w)| format!("{n}={w}")).collect();
        state::update(self.t.aws, &self.t.f.bucket, &self.t.f.prefix, &self.t.f.name, |st| {
            st.bake = Some(bake.clone());
            st.history.push(state::event(format!("bake release {release} for {}s (a breach restores {})", duration.as_secs(), r.join(" "))));
        })
        .await?;
        Ok(bake)
    }

    /// Opens a bake window of `duration` over the release serving now (the newest with
    /// traffic); a breach sends all traffic to the routed release before it (`gilliam watch
    /// --for`). Refused while another window is recorded.
    pub async fn begin_bake_over_serving(&self, duration: Duration) -> Result<state::Bake, Error> {
        if self.state().await?.bake.is_some() {
            return Err(Error::Refused("a bake window is already recorded: run `gilliam watch` without --for to watch it".into()));
        }
        let weights = self.weights_now().await?;
        let Some(serving) = newest_serving(&weights) else {
            return Err(Error::Refused("no release carries traffic: nothing to watch".into()));
        };
        let Some(previous) = previous(serving, weights.keys().copied()) else {
            return Err(Error::Refused(format!("release {serving} serves and no earlier release runs: a breach would have nowhere to go")));
        };
        self.begin_bake(serving, &BTreeMap::from([(previous, 100)]), duration).await
    }

    /// Watches the bake window recorded in the state until it ends: the release's health every
    /// `poll`, its metrics every analysis interval. A breach puts the window's `restore`
    /// weights back under the deploy lock, provided the weights are still those the window
    /// began with (a change by someone else ends the window instead), runs `on_abort`, tells
    /// the notification sinks, and ends in `Error::Aborted`. No lock is held while watching:
    /// an operator can always roll back meanwhile.
    pub async fn watch(&self, poll: Duration, lock: LockOptions) -> Result<WatchOutcome, Error> {
        let Some(bake) = self.state().await?.bake else {
            return Ok(WatchOutcome::Nothing);
        };
        let (m, _) = self.outputs().await?;
        let analysis = m.delivery.analysis.clone();
        let rules = self.t.rules(&m).await?;
        let watched = target_groups(&rules, |n| n == bake.release);
        let series = series(&rules, &[Some(bake.release), bake.baseline]);
        let notifier = Notifier::new(self.t.aws, m.delivery.notifications.clone(), &self.t.f.name, self.t.say);
        let window = serde_json::json!({ "release": bake.release, "baseline": bake.baseline, "bake": { "started": bake.started, "until": bake.until } });
        let about = |extra| delivery::with_fields(window.clone(), extra);
        let interval = analysis.as_ref().map(|a| Duration::from_secs(u64::from(a.interval_seconds)));
        let mut next_check = interval.map(|i| tokio::time::Instant::now() + i);
        (self.t.say)(&format!(
            "watching release {} until {}s after the epoch ({}s left)",
            bake.release,
            bake.until,
            (bake.until - crate::clock::epoch()).max(0)
        ));
        loop {
            // The window is still this one (not ended elsewhere, not replaced by a new shift).
            if self.state().await?.bake.as_ref() != Some(&bake) {
                return Ok(WatchOutcome::Superseded(format!("the bake window of release {} was ended by a later change or another watcher", bake.release)));
            }
            let now = crate::clock::epoch();
            let end = now >= bake.until;
            let mut breach: Option<(String, Option<Breach>)> = None;
            let sick = self.t.unhealthy(&watched, false).await?;
            if !sick.is_empty() {
                breach = Some((sick.join("; "), None));
            }
            let mut last_verdict = None;
            if breach.is_none() {
                if let Some(a) = &analysis {
                    if end || next_check.is_some_and(|t| tokio::time::Instant::now() >= t) {
                        // The baseline is compared with only while it still has traffic.
                        let baseline = bake.baseline.filter(|b| bake.weights.get(b).copied().unwrap_or(0) > 0);
                        let (v, _) =
                            delivery::check(self.t.aws, a, bake.release, baseline, &series, bake.started, now.min(bake.until).max(bake.started + 1)).await?;
                        if let Verdict::Breach(b) = &v {
                            breach = Some((b.to_string(), Some(b.clone())));
                        }
                        last_verdict = Some(v);
                        next_check = interval.map(|i| tokio::time::Instant::now() + i);
                    }
                }
            }
            if let Some((why, b)) = breach {
                let why = format!("{why} during the bake of release {}", bake.release);
                (self.t.say)(&format!("{why}: restoring traffic"));
                let restored = lock::with_lock(self.t.aws, &self.t.f, "bake rollback", lock, self.t.say, async {
                    let rules = self.t.rules(&m).await?;
                    if weights(&rules) != bake.weights {
                        return Ok(None);
                    }
                    Ok(Some(self.t.traffic_away(&rules, &bake.restore, &format!("bake rollback ({why}): "), Some(bake.release)).await?))
                })
                .await?;
                if restored.is_none() {
                    return Ok(WatchOutcome::Superseded(format!("{why}, but the traffic was changed since the bake began: left as it is")));
                }
                let env = hook_env(&self.t.f, &m, "on_abort", Some(bake.release), bake.baseline, &bake.restore, Some(&why));
                after_abort(
                    &self.t,
                    &m.delivery.hooks,
                    &env,
                    &notifier,
                    "rolled_back",
                    about(serde_json::json!({ "reason": why, "breach": b, "traffic": bake.restore })),
                )
                .await;
                let r: Vec<String> = bake.restore.iter().map(|(n, w)| format!("{n}={w}")).collect();
                return Err(Error::Aborted(format!("{why}; traffic is back at {}", r.join(" "))));
            }
            if end {
                let (line, outcome, verdict) = match last_verdict {
                    Some(Verdict::Pass(what)) => (format!("bake of release {} passed: {what}", bake.release), WatchOutcome::Passed(what), "pass"),
                    Some(Verdict::Inconclusive(why)) => {
                        (format!("bake of release {} ended unjudged: {why}", bake.release), WatchOutcome::Unjudged(why), "inconclusive")
                    }
                    _ => {
                        let what = "its targets stayed healthy (no metric analysis configured)".to_string();
                        (format!("bake of release {} ended: {what}", bake.release), WatchOutcome::Passed(what), "healthy")
                    }
                };
                state::update(self.t.aws, &self.t.f.bucket, &self.t.f.prefix, &self.t.f.name, |st| {
                    if st.bake.as_ref() == Some(&bake) {
                        st.bake = None;
                        st.history.push(state::event(line.clone()));
                    }
                })
                .await?;
                notifier.send("baked", about(serde_json::json!({ "verdict": verdict, "summary": line, "traffic": bake.weights }))).await;
                return Ok(outcome);
            }
            let mut sleep = poll.min(Duration::from_secs((bake.until - now).max(0) as u64));
            if let Some(t) = next_check {
                sleep = sleep.min(t.saturating_duration_since(tokio::time::Instant::now()));
            }
            tokio::time::sleep(sleep.max(Duration::from_millis(10))).await;
        }
    }
}
