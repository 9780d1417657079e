//! Applying: a plan's actions in order (release stacks created concurrently), a judged shift
//! through the operator's path, the record in the published state.

use super::converger::{Converger, Report};
use crate::aws::{Aws, AwsError, PutCondition};
use crate::error::Error;
use crate::formation::Formation;
use crate::plan::{Action, Plan};
use crate::retry::retry;
use crate::routing::{from_plan, routing_only};
use crate::shift::{shift_on, ShiftOptions};
use crate::stacks::canonical_sha;
use crate::strategy::Strategy;
use crate::traffic::Traffic;
use gilliam_compiler::manifest::{StackEntry, StackRole};
use gilliam_contract::keys;
use std::collections::BTreeMap;

impl<'a, A: Aws> Converger<'a, A> {
    /// Performs the plan's actions, in order; release stacks are created concurrently.
    pub async fn apply_unchecked(&self, plan: &Plan) -> Result<Report, Error> {
        let mut report = Report::default();
        let m = self.m();
        let bucket = &m.formation.outputs_bucket;
        // A gradual shift that aborted: why, and the weights it put back.
        let mut aborted: Option<(String, Vec<(u32, u32)>)> = None;
        // The releases this plan scales down, once they have drained: all it cools or retires,
        // or after an abort only those it had already taken out of the routing (to make room),
        // which are then cooled, not retired.
        let mut going: Option<std::collections::BTreeSet<u32>> = None;
        let mut cooled_on_abort: Vec<u32> = Vec::new();
        // The release phase failed: the release never takes traffic in this converge.
        let mut phase_failed = false;
        let mut i = 0;
        while i < plan.actions.len() {
            // A run of creations of release stacks: independent, so all at once.
            let run: Vec<&StackEntry> = plan.actions[i..]
                .iter()
                .map_while(|a| match a {
                    Action::CreateStack { stack, .. } => m.stacks.iter().find(|s| &s.name == stack && s.role == StackRole::Release),
                    _ => None,
                })
                .collect();
            if run.len() > 1 {
                let futs = run.iter().map(|s| async move {
                    let mut r = Report::default();
                    self.router.stacks.create(&self.request(s)?, &mut r.changes).await.map(|()| r)
                });
                for r in futures_util::future::join_all(futs).await {
                    report.changes.extend(r?.changes);
                }
                i += run.len();
                continue;
            }
            match &plan.actions[i] {
                // After an abort, nothing moves: no routing change, no shift.
                Action::Routing { .. } | Action::ShiftWhenHealthy { .. } | Action::DeleteStack { .. } if aborted.is_some() => {}
                Action::ReleasePhase { release, service, command, timeout_seconds } => {
                    let spec = crate::task::TaskSpec {
                        release: *release,
                        service: service.clone(),
                        command: command.clone(),
                        timeout: std::time::Duration::from_secs(u64::from(*timeout_seconds)),
                        purpose: "release phase".into(),
                    };
                    let out = |source: &str, line: &str| (self.say)(&format!("[release phase {source}] {line}"));
                    let outcome = crate::task::run(self.aws, self.bundle, &spec, self.opts.poll, self.say, &out).await?;
                    if outcome.exit == Some(0) {
                        report.changes.push(format!("~ release phase of release {release}: `{}` passed on {}", command.join(" "), outcome.instance));
                    } else {
                        let why = format!("release phase `{}` {} on {}", command.join(" "), outcome.describe(), outcome.instance);
                        (self.say)(&format!("{why}: the deploy stops here, traffic unchanged"));
                        aborted = Some((format!("{why}; the deploy stopped before any traffic moved"), weights_before(plan, *release)));
                        phase_failed = true;
                    }
                }
                Action::CreateBucket { bucket } => {
                    retry("create the bucket", || self.aws.create_secure_bucket(bucket, &m.formation.region)).await?;
                    report.changes.push(format!("+ bucket {bucket}"));
                }
                Action::Upload { path, key, .. } => {
                    let body = self.bundle.file(path)?.to_vec();
                    retry("upload", || self.aws.put_object(bucket, key, body.clone(), PutCondition::Always)).await?;
                    report.changes.push(format!("+ s3://{bucket}/{key}"));
                }
                Action::ReplaceFailedStack { stack, status } => {
                    (self.say)(&format!("stack {stack}: {status} from an earlier failed create; deleting it"));
                    retry("delete stack", || self.aws.delete_stack(stack)).await?;
                    self.router.stacks.wait(stack, false).await?;
                    self.router.stacks.create(&self.request(self.router.entry(stack)?)?, &mut report.changes).await?;
                }
                Action::ContinueRollback { stack } => self.router.stacks.continue_rollback(stack).await?,
                Action::CreateStack { stack, shares: None, .. } => {
                    self.router.stacks.create(&self.request(self.router.entry(stack)?)?, &mut report.changes).await?
                }
                Action::UpdateStack { stack, shares: None, .. } => {
                    self.router.stacks.update(&self.request(self.router.entry(stack)?)?, &mut report.changes).await?
                }
                Action::CreateStack { stack, shares: Some(shares), template_sha256 } | Action::UpdateStack { stack, shares: Some(shares), template_sha256 } => {
                    self.router.rendered(stack, shares, template_sha256, &plan.observed, &mut report.changes).await?;
                }
                Action::CreateSecret { name } => {
                    self.create_secret(name).await?;
                    report.changes.push(format!("+ secret {name}"));
                }
                Action::RestoreSecret { name } => {
                    (self.say)(&format!("secret {name}: scheduled for deletion by an earlier formation; restoring it"));
                    retry("restore a secret", || self.aws.restore_secret(name)).await?;
                    report.changes.push(format!("~ secret {name} (restored)"));
                }
                Action::SecretEndpoint { name } => {
                    let entry = self.secret_entry(name)?;
                    let stack = gilliam_compiler::names::formation_stack(&m.formation.name);
                    self.write_endpoint(entry, &stack).await?;
                    report.changes.push(format!("~ secret {name} (endpoint)"));
                }
                Action::DeleteStack { stack } => {
                    (self.say)(&format!("stack {stack}: deleting (no HTTP service left in its routing group)"));
                    retry("delete stack", || self.aws.delete_stack(stack)).await?;
                    self.router.stacks.wait(stack, false).await?;
                    report.changes.push(format!("- stack {stack}"));
                }
                Action::Routing { stack, shares, template_sha256, .. } => {
                    self.router.rendered(stack, shares, template_sha256, &plan.observed, &mut report.changes).await?
                }
                // A gradual shift, or one with hooks or notifications, goes through the
                // operator's path (ELBv2 writes, judged step by step); then the routing stacks
                // catch up.
                Action::ShiftWhenHealthy { release, shares, strategy } if strategy.is_some() || self.delivery_active() => {
                    aborted = self.judged_shift(plan, *release, shares, strategy.as_deref(), &mut report).await?;
                }
                Action::ShiftWhenHealthy { release, shares, strategy: _ } => {
                    self.wait_healthy().await?;
                    let rendered = routing_only(m, self.router.render(&from_plan(shares, m), &plan.observed).await?);
                    for (stack, body) in &rendered {
                        self.router.rendered(stack, shares, &canonical_sha(body), &plan.observed, &mut report.changes).await?;
                    }
                    report.changes.push(format!("~ traffic: all to release {release}"));
                }
                // An aborted deploy is not the formation's latest: its own manifest is published
                // (the ports and secrets of a live release are read from it), the latest is not.
                Action::Publish { key, .. } if aborted.is_some() && *key == keys::latest_manifest(&m.formation.s3_prefix) => {}
                Action::Retire { .. } | Action::Cool { .. } if going.is_none() => {
                    let mut all: std::collections::BTreeSet<u32> = plan
                        .actions
                        .iter()
                        .filter_map(|a| match a {
                            Action::Retire { release, .. } | Action::Cool { release, .. } => Some(*release),
                            _ => None,
                        })
                        .collect();
                    if aborted.is_some() {
                        // A release the deployed rules still forward to stays live.
                        let t = Traffic::new(self.aws, Formation::from_manifest(m), self.say);
                        let routed = crate::traffic::weights(&t.rules(m).await?);
                        all.retain(|n| !routed.contains_key(n));
                    }
                    let list: Vec<u32> = all.iter().copied().collect();
                    crate::drain::wait_drained(self.aws, m, &list, self.opts.poll, self.say).await?;
                    going = Some(all);
                    continue;
                }
                // The deploy did not succeed: nothing is retired, and a release still routed stays
                // live. One the plan already took out of the routing would run unrouted: it is
                // cooled, so that `gilliam warm` or a rollback brings it back.
                Action::Retire { release, stacks } | Action::Cool { release, stacks } if aborted.is_some() => {
                    if going.as_ref().is_some_and(|g| g.contains(release)) {
                        self.router.stacks.scale_to_zero(stacks).await?;
                        cooled_on_abort.push(*release);
                        report.changes.push(format!("~ release {release} cold (out of routing for the aborted deploy; scaled to zero, stacks kept)"));
                    }
                }
                Action::Publish { key, .. } => {
                    let body = self.manifest_bytes()?;
                    retry("publish", || self.aws.put_object(bucket, key, body.clone(), PutCondition::Always)).await?;
                    report.changes.push(format!("~ published s3://{bucket}/{key}"));
                }
                Action::HoldImage { release, region, repository, digest } => {
                    let i = crate::images::InEcr { region: region.clone(), repository: repository.clone(), digest: digest.clone() };
                    crate::images::hold(self.aws, &i, *release).await?;
                    report.changes.push(format!("+ image tag {repository}:gilliam-r{release}"));
                }
                Action::Retire { release, stacks } => {
                    self.router.stacks.retire(stacks).await?;
                    crate::retention::retire_secrets(self.aws, m, *release, self.say).await?;
                    crate::images::let_go(self.aws, m, *release).await?;
                    report.changes.push(format!("- release {release} (scaled to zero, stacks deleted)"));
                }
                Action::Cool { release, stacks } => {
                    self.router.stacks.scale_to_zero(stacks).await?;
                    report.changes.push(format!("~ release {release} cold (scaled to zero; stacks and target groups kept)"));
                }
                Action::Record { release, retired, cooled, deploy } => {
                    let cooled = if aborted.is_some() { &cooled_on_abort } else { cooled };
                    self.record_in_state(plan, &report, *release, retired, cooled, *deploy, aborted.as_ref(), phase_failed).await?;
                    report.changes.push(format!("~ recorded release {release} in s3://{bucket}/{}", keys::state(&m.formation.s3_prefix)));
                }
            }
            i += 1;
        }
        let last_shares = plan.actions.iter().rev().find_map(|a| match a {
            Action::Routing { shares, .. } | Action::ShiftWhenHealthy { shares, .. } => Some(shares.clone()),
            _ => None,
        });
        report.traffic = match last_shares {
            Some(s) => s.iter().map(|s| (s.release, s.weight)).collect(),
            None => plan.observed.weights.iter().map(|(n, w)| (*n, w.unwrap_or(0))).collect(),
        };
        report.traffic.sort();
        match aborted {
            Some((why, _)) => Err(Error::Aborted(why)),
            None => Ok(report),
        }
    }
    /// A new auxiliary's secret, with a password from Secrets Manager.
    async fn create_secret(&self, name: &str) -> Result<(), Error> {
        let m = self.m();
        let entry = self.secret_entry(name)?;
        let password = retry("generate a password", || self.aws.random_password()).await?;
        let value = serde_json::json!({ "username": entry.username, "password": password }).to_string();
        match retry("create a secret", || self.aws.put_secret(name, &value, &m.formation.name)).await {
            Ok(_) => Ok(()),
            // An earlier attempt went through and its answer was lost.
            Err(Error::Aws { err: AwsError::Invalid(e) | AwsError::Other(e) | AwsError::AlreadyExists(e), .. })
                if e.contains("ResourceExists") || e.contains("already exists") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
    /// A gradual shift, or one with hooks or notifications, goes through the operator's path
    /// (ELBv2 writes, judged step by step); then the routing stacks catch up. An abort is not
    /// an error here: it returns why and the weights put back, for the rest of the plan.
    async fn judged_shift(
        &self,
        plan: &Plan,
        release: u32,
        shares: &[crate::plan::Share],
        strategy: Option<&str>,
        report: &mut Report,
    ) -> Result<Option<(String, Vec<(u32, u32)>)>, Error> {
        let m = self.m();
        let strategy: Strategy = match strategy {
            Some(s) => s.parse().map_err(|e: String| Error::Stale(format!("the plan's strategy: {e}")))?,
            None => Strategy::AllAtOnce,
        };
        self.wait_healthy().await?;
        let traffic = Traffic::new(self.aws, Formation::from_manifest(m), self.say);
        let shift = ShiftOptions { strategy, poll: self.opts.poll, health_timeout: self.opts.health_timeout, judge: self.opts.judge, hooks: self.opts.hooks };
        match shift_on(&traffic, m, &BTreeMap::from([(release, 100)]), &shift).await {
            Ok(_) => {
                // The routing stacks catch up with the weights now set, and drop the releases
                // this converge retires, as an all-at-once shift does.
                let rendered = routing_only(m, self.router.render(&from_plan(shares, m), &plan.observed).await?);
                for (stack, body) in &rendered {
                    self.router.rendered(stack, shares, &canonical_sha(body), &plan.observed, &mut report.changes).await?;
                }
                report.changes.push(format!("~ traffic: all to release {release} ({strategy})"));
                Ok(None)
            }
            Err(Error::Aborted(why)) => {
                // The release stays (recorded, without traffic) for a later `gilliam traffic`;
                // it is not published as the formation's latest, and nothing is retired.
                Ok(Some((why, weights_before(plan, release))))
            }
            Err(e) => Err(e),
        }
    }
    /// Records the release in the published state: its traffic (or the abort and the weights
    /// put back), and the releases retired and cooled.
    #[allow(clippy::too_many_arguments)]
    async fn record_in_state(
        &self,
        plan: &Plan,
        report: &Report,
        release: u32,
        retired: &[u32],
        cooled: &[u32],
        deploy: bool,
        aborted: Option<&(String, Vec<(u32, u32)>)>,
        phase_failed: bool,
    ) -> Result<(), Error> {
        let m = self.m();
        let record = self.record();
        let (traffic, weights, retired, cooled) = match aborted {
            None => (report.traffic_line(plan), report.final_weights(plan), retired.to_vec(), cooled.to_vec()),
            Some((why, before)) => {
                let w: Vec<String> = before.iter().filter(|(n, _)| !cooled.contains(n)).map(|(n, w)| format!("{n}={w}")).collect();
                (format!("{why}; traffic {}", w.join(" ")), before.clone(), Vec::new(), cooled.to_vec())
            }
        };
        crate::state::update(self.aws, &m.formation.outputs_bucket, &m.formation.s3_prefix, &m.formation.name, |st| {
            // A converge of a recorded release keeps what its record says of its past.
            let past = st.releases.get(&release).map(|r| (r.served, r.rolled_back, r.unrouted_since)).unwrap_or_default();
            st.releases.insert(
                release,
                crate::state::ReleaseRecord {
                    served: past.0,
                    rolled_back: past.1,
                    unrouted_since: past.2,
                    release_phase_failed: phase_failed,
                    ..record.clone()
                },
            );
            match aborted {
                None => st.mark_served(&weights.iter().copied().collect()),
                // Its shift aborted: judged bad, the first to go.
                Some(_) => st.mark_rolled_back(release),
            }
            st.reserved.remove(&release);
            st.traffic = weights.iter().copied().filter(|(n, _)| !retired.contains(n) && !cooled.contains(n)).collect();
            let verb = if deploy { "deploy" } else { "converge" };
            let mut what = format!("{verb} release {release} ({traffic})");
            for n in &retired {
                if let Some(r) = st.releases.get_mut(n) {
                    r.status = "retired".into();
                }
                what.push_str(&format!("; retire release {n}"));
            }
            for n in &cooled {
                if let Some(r) = st.releases.get_mut(n) {
                    r.status = "cold".into();
                }
                what.push_str(&format!("; cool release {n}"));
            }
            st.history.push(crate::state::event(what));
        })
        .await?;
        Ok(())
    }
}

/// The weights as the plan observed them, `release` (the new one) at 0: what an aborted deploy
/// leaves, and records.
fn weights_before(plan: &Plan, release: u32) -> Vec<(u32, u32)> {
    plan.observed.weights.iter().map(|(n, w)| (*n, w.unwrap_or(0))).filter(|(n, _)| *n != release).chain([(release, 0)]).collect()
}
