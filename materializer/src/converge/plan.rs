//! Planning: observe AWS and decide, one step per part of the formation (the bucket and
//! network, uploads, traffic, secrets, stacks, routing, retention, publication). Reads only.

use super::converger::Converger;
use crate::aws::Aws;
use crate::bundle::BundleError;
use crate::error::Error;
use crate::plan::{Action, Observed, Plan, PLAN_VERSION};
use crate::retry::retry;
use crate::routing::{routed_shares, routing_only, routing_shape, standby_shares, to_plan};
use crate::stacks::canonical_sha;
use crate::strategy::Strategy;
use gilliam_compiler::manifest::{StackEntry, StackRole};
use gilliam_compiler::TrafficShare;
use gilliam_contract::keys;
use std::collections::{BTreeMap, BTreeSet};

/// What planning has seen and decided so far.
pub(super) struct Planning {
    pub(super) observed: Observed,
    pub(super) actions: Vec<Action>,
}

/// The traffic a plan renders for, and what it rendered.
pub(super) struct Rendering {
    pub(super) state: crate::state::State,
    pub(super) shares: Vec<TrafficShare>,
    /// Whether a release other than this one has traffic.
    pub(super) serving: bool,
    /// The routing stacks as deployed (status and template), by name.
    pub(super) deployed_routing: BTreeMap<String, crate::stacks::Deployed>,
    /// Every non-release template, by stack name.
    pub(super) rendered: BTreeMap<String, Vec<u8>>,
    /// Releases without traffic taken out of the routing to make room for this one: this plan
    /// cools or retires them whatever `keep_releases` says.
    pub(super) must_go: BTreeSet<u32>,
}

/// Takes out of `shares` the releases without traffic that retention would let go first, until
/// `release`'s routing fits `limit` target groups per forward; returns them. Refused, saying
/// which releases serve, when those with traffic alone are too many.
fn make_room(shares: &mut Vec<TrafficShare>, release: u32, limit: u32, state: &crate::state::State) -> Result<BTreeSet<u32>, Error> {
    let limit = limit as usize;
    if shares.len() <= limit {
        return Ok(BTreeSet::new());
    }
    let serving: BTreeSet<u32> = shares.iter().filter(|s| s.weight > 0 && s.release != release).map(|s| s.release).collect();
    let idle: Vec<u32> = shares.iter().filter(|s| s.weight == 0 && s.release != release).map(|s| s.release).collect();
    let excess = shares.len() - limit;
    if idle.len() < excess {
        let list: Vec<String> = serving.iter().map(u32::to_string).collect();
        return Err(Error::Refused(format!(
            "releases {} carry traffic and release {release} makes {} routed releases, over the {limit} a weighted forward holds (keep_releases + 2): move the traffic off one (`gilliam traffic`) and retire it (`gilliam retire N`), then deploy again",
            list.join(", "),
            shares.len()
        )));
    }
    let order = crate::retention::keep_order(&idle, &serving, state);
    let gone: BTreeSet<u32> = order.iter().rev().take(excess).copied().collect();
    shares.retain(|s| !gone.contains(&s.release));
    Ok(gone)
}

impl<'a, A: Aws> Converger<'a, A> {
    /// Observes AWS and decides what to do. Reads only: no mutating call.
    pub async fn plan(&self) -> Result<Plan, Error> {
        let mut p = self.begin().await?;
        self.plan_uploads(&mut p).await?;
        let mut r = self.plan_traffic(&mut p).await?;
        self.plan_secrets(&mut p).await?;
        self.plan_stacks(&mut p, &r).await?;
        self.check_quotas(&p).await?;
        self.plan_routing(&mut p, &mut r).await?;
        self.plan_retention(&mut p, &r).await?;
        self.finish(p).await
    }
    /// The bucket, the network the stage names (refused before anything else when it lacks
    /// what the formation needs), and the release's artifact.
    async fn begin(&self) -> Result<Planning, Error> {
        let m = self.m();
        // A gradual shift whose steps cannot be judged is refused before anything is read.
        if let (Some(a), true, true) = (&m.delivery.analysis, self.opts.judge, self.opts.traffic_auto && self.opts.strategy != Strategy::AllAtOnce) {
            if let Some(why) = crate::delivery::step_wait_problem(a, &self.opts.strategy.to_string(), self.opts.strategy.wait()) {
                return Err(Error::Refused(why));
            }
        }
        let bucket = m.formation.outputs_bucket.clone();
        let observed = Observed { bucket_exists: retry("look for the bucket", || self.aws.bucket_exists(&bucket)).await?, ..Observed::default() };
        // Before anything else: what a real account must have for the formation to come up.
        let [_, _, stage] = self.bundle.inputs()?;
        let stage = gilliam_compiler::parse_stage(gilliam_compiler::Source { name: "stage.yml", text: &stage })
            .map_err(|d| Error::Bundle(BundleError(format!("the bundle's stage file: {d}"))))?;
        let needs = crate::preflight::Needs::of(m, &stage);
        if !self.opts.preflight {
            (self.say)("preflight skipped (--skip-preflight): the network is not checked");
        } else if let Some(found) = crate::preflight::check(self.aws, &needs).await? {
            for w in &found.warnings {
                (self.say)(&format!("warning: {w}"));
            }
            if !found.problems.is_empty() {
                return Err(Error::Preflight { formation: m.formation.name.clone(), problems: found.problems });
            }
        }
        let mut actions = Vec::new();
        if !observed.bucket_exists {
            actions.push(Action::CreateBucket { bucket: bucket.clone() });
        }
        // An image in the formation's repository is held by its release's tag from the start.
        if let Some(i) = self.check_artifact().await? {
            actions.push(Action::HoldImage { release: m.release.number, region: i.region, repository: i.repository, digest: i.digest });
        }
        Ok(Planning { observed, actions })
    }
    /// Every file of the compile (templates, uploads, inputs) whose digest in the bucket differs.
    async fn plan_uploads(&self, p: &mut Planning) -> Result<(), Error> {
        let m = self.m();
        let bucket = m.formation.outputs_bucket.clone();
        let (observed, actions) = (&mut p.observed, &mut p.actions);
        let mut files: Vec<(&str, &str, &str)> = m.stacks.iter().map(|s| (s.template.as_str(), s.s3_key.as_str(), s.sha256.as_str())).collect();
        files.extend(m.uploads.iter().map(|u| (u.path.as_str(), u.s3_key.as_str(), u.sha256.as_str())));
        // The inputs too: operators' commands re-render routing from the latest release's.
        let input_keys: Vec<(String, &gilliam_compiler::manifest::FileEntry)> = [&m.inputs.app, &m.inputs.release, &m.inputs.stage]
            .into_iter()
            .map(|f| (keys::release_file(&m.formation.s3_prefix, m.release.number, &f.path), f))
            .collect();
        files.extend(input_keys.iter().map(|(k, f)| (f.path.as_str(), k.as_str(), f.sha256.as_str())));
        for (path, key, sha) in files {
            let seen = self.object_sha(&bucket, key, observed.bucket_exists).await?;
            if seen.as_deref() != Some(sha) {
                actions.push(Action::Upload { path: path.into(), key: key.into(), sha256: sha.into() });
            }
            observed.objects.insert(key.to_string(), seen);
        }
        Ok(())
    }
    /// Traffic first: what ELBv2 holds now, plus this release (at weight 0 until it is
    /// healthy, or all of it when nothing serves yet), and every non-release template rendered
    /// for it around the deployed rules' priorities.
    async fn plan_traffic(&self, p: &mut Planning) -> Result<Rendering, Error> {
        let m = self.m();
        let bucket = m.formation.outputs_bucket.clone();
        let observed = &mut p.observed;
        let traffic = crate::observe::traffic(self.aws, m).await?;
        observed.weights = traffic.releases.iter().map(|(n, l)| (*n, l.weight)).collect();
        let number = m.release.number;
        let (state, _) = crate::state::read(self.aws, &bucket, &m.formation.s3_prefix, &m.formation.name).await?;
        if state.releases.get(&number).is_some_and(|r| r.status == "cold") {
            // Its groups are at zero: converging it would wait for targets that never come.
            return Err(Error::Refused(format!(
                "release {number} is cold (scaled to zero, out of routing): bring it back with `gilliam warm {number}` or `gilliam rollback`, not by converging it again"
            )));
        }
        let mut shares = routed_shares(&traffic, m, &state, None);
        observed.standby = to_plan(&standby_shares(&traffic, m, &shares));
        if !shares.iter().any(|s| s.release == number) {
            shares.push(traffic.share_for_new(m, 0));
        }
        let serving = shares.iter().any(|s| s.weight > 0 && s.release != number);
        if !serving {
            // Nothing serves yet: the new release takes the traffic from the start.
            for s in &mut shares {
                s.weight = if s.release == number { 100 } else { 0 };
            }
        }
        // Room first: a weighted forward holds at most keep_releases + 2 target groups. When the
        // live releases and this one are more, those without traffic that retention would let go
        // first leave the routing now (this plan cools or retires them); only releases that
        // carry traffic and cannot fit are refused.
        let must_go = make_room(&mut shares, number, m.formation.keep_releases + 2, &state)?;
        if !must_go.is_empty() {
            // Their ports stay open in the formation stack while they are still running.
            let gone: Vec<TrafficShare> =
                traffic.shares(m).into_iter().filter(|s| must_go.contains(&s.release)).map(|s| TrafficShare { weight: 0, ..s }).collect();
            observed.standby.extend(to_plan(&gone));
        }
        // The routing stacks as deployed: their rules keep their priorities, and new rules are
        // numbered around them (real ELBv2 refuses a number a deployed rule still holds).
        let (deployed_routing, rules) = self.router.deployed_routing(&traffic.routing_stacks).await?;
        observed.rules = rules;
        let rendered = self.router.render(&shares, observed).await?;
        Ok(Rendering { state, shares, serving, deployed_routing, rendered, must_go })
    }
    /// The quotas the whole account shares (this formation's peak on top of what is there),
    /// read only when this plan creates a release's stacks: a converge that adds nothing needs
    /// no account-wide listing.
    async fn check_quotas(&self, p: &Planning) -> Result<(), Error> {
        let m = self.m();
        let creates = p.actions.iter().any(|a| match a {
            Action::CreateStack { stack, .. } | Action::ReplaceFailedStack { stack, .. } => {
                m.stacks.iter().any(|s| &s.name == stack && s.role == StackRole::Release)
            }
            _ => false,
        });
        if !self.opts.preflight || !creates {
            return Ok(());
        }
        let found = crate::quotas::check(self.aws, m).await?;
        for w in &found.warnings {
            (self.say)(&format!("warning: {w}"));
        }
        if !found.problems.is_empty() {
            return Err(Error::Preflight { formation: m.formation.name.clone(), problems: found.problems });
        }
        Ok(())
    }
    /// The auxiliaries' secrets, before the formation stack that reads them.
    async fn plan_secrets(&self, p: &mut Planning) -> Result<(), Error> {
        let m = self.m();
        let (observed, actions) = (&mut p.observed, &mut p.actions);
        // The auxiliaries' secrets come before the formation stack that reads them. One that an
        // earlier formation left (they outlive their stacks) is adopted as it is: it still holds
        // the password of the database's snapshot.
        for sec in &m.secrets {
            let state = retry("describe a secret", || self.aws.describe_secret(&sec.name)).await?;
            match state {
                None => actions.push(Action::CreateSecret { name: sec.name.clone() }),
                Some(true) => actions.push(Action::RestoreSecret { name: sec.name.clone() }),
                Some(false) => {}
            }
            observed.secrets.insert(sec.name.clone(), state);
        }
        Ok(())
    }
    /// The formation stack (rendered for every live release) and the release's stacks (as
    /// compiled; an existing one that differs is refused: releases are immutable), and a
    /// cache's endpoint copied into its secret before the release's instances read it.
    async fn plan_stacks(&self, p: &mut Planning, r: &Rendering) -> Result<(), Error> {
        let m = self.m();
        let (observed, actions) = (&mut p.observed, &mut p.actions);
        let (rendered, shares) = (&r.rendered, &r.shares);
        for s in m.stacks.iter().filter(|s| s.role != StackRole::Routing) {
            // The formation stack is rendered for every live release (their ports stay open);
            // release stacks are the bundle's, as compiled.
            let formation = s.role == StackRole::Formation;
            let want = match rendered.get(&s.name) {
                Some(body) if formation => canonical_sha(body),
                _ => canonical_sha(self.bundle.file(&s.template)?),
            };
            let with = formation.then(|| to_plan(shares));
            let seen = self.router.stacks.stack_snapshot(&s.name).await?;
            match &seen {
                None => actions.push(Action::CreateStack { stack: s.name.clone(), template_sha256: want, shares: with }),
                Some((status, _)) if status.ends_with("_IN_PROGRESS") => return Err(Error::Busy { stack: s.name.clone(), status: status.clone() }),
                Some((status, _)) if status == "ROLLBACK_COMPLETE" || status == "ROLLBACK_FAILED" => {
                    actions.push(Action::ReplaceFailedStack { stack: s.name.clone(), status: status.clone() });
                }
                Some((status, have)) => {
                    let differs = *have != want;
                    if differs && s.role == StackRole::Release {
                        return Err(Error::Immutable(s.name.clone()));
                    }
                    if status == "UPDATE_ROLLBACK_FAILED" {
                        actions.push(Action::ContinueRollback { stack: s.name.clone() });
                    }
                    if differs {
                        actions.push(Action::UpdateStack { stack: s.name.clone(), template_sha256: want, shares: with });
                    }
                }
            }
            if formation {
                let changing = actions.iter().any(
                    |a| matches!(a, Action::CreateStack { stack, .. } | Action::UpdateStack { stack, .. } | Action::ReplaceFailedStack { stack, .. } if *stack == s.name),
                );
                for sec in m.secrets.iter().filter(|x| x.endpoint_outputs.is_some()) {
                    // Before the release's instances boot and read it.
                    if changing || !self.endpoint_current(sec, &s.name).await? {
                        actions.push(Action::SecretEndpoint { name: sec.name.clone() });
                    }
                }
            }
            observed.stacks.insert(s.name.clone(), seen);
        }
        // The release phase, before any routing change: once per release, and again on a
        // converge of a release whose phase failed.
        if let (Some(rp), true) = (&m.delivery.release_phase, self.opts.release_phase) {
            let deployed = r.state.releases.get(&m.release.number).is_some_and(crate::state::ReleaseRecord::deployed);
            if creates_release(m, actions) || !deployed {
                actions.push(Action::ReleasePhase {
                    release: m.release.number,
                    service: rp.service.clone(),
                    command: rp.command.clone(),
                    timeout_seconds: rp.timeout_seconds,
                });
            }
        }
        Ok(())
    }
    /// The routing stacks whose structure changes (a change of weights alone is left to ELBv2,
    /// which holds it), and those of groups left without HTTP services, deleted.
    async fn plan_routing(&self, p: &mut Planning, r: &mut Rendering) -> Result<(), Error> {
        let m = self.m();
        let (observed, actions) = (&mut p.observed, &mut p.actions);
        let (rendered, shares) = (&r.rendered, &r.shares);
        let mut deployed_routing = std::mem::take(&mut r.deployed_routing);
        let routing: Vec<&StackEntry> = m.stacks.iter().filter(|s| s.role == StackRole::Routing).collect();
        for entry in &routing {
            let stack = &entry.name;
            let body = rendered.get(stack).ok_or_else(|| Error::Compile(format!("routing stack {stack} was not rendered")))?;
            // One read of the deployed template serves the digest and the weights-only check.
            let deployed = deployed_routing.remove(stack).unwrap_or(None);
            let want = canonical_sha(body);
            let seen = deployed.as_ref().map(|(status, b)| (status.clone(), b.as_deref().map_or_else(String::new, canonical_sha)));
            if seen.as_ref().is_some_and(|(status, _)| status == "UPDATE_ROLLBACK_FAILED") {
                actions.push(Action::ContinueRollback { stack: stack.clone() });
            }
            // ELBv2 counts the rules an update creates before it deletes the ones they replace.
            let quota = m.formation.footprint.map_or(100, |f| f.rules_per_load_balancer) as usize;
            let deployed_body = deployed.as_ref().and_then(|(_, b)| b.as_deref());
            if let Some(p) = crate::routing::rule_peaks(deployed_body, body).into_iter().find(|p| p.peak() > quota) {
                return Err(Error::Refused(format!(
                    "routing stack {stack}: {} would hold {} rules while CloudFormation updates it ({} deployed, {} created before the ones they replace are deleted), over the quota of {quota} rules per load balancer: deploy the route changes in smaller steps (a release that drops the old routes, then one that adds the new), or raise the quota with AWS and set `quotas.rules_per_load_balancer`",
                    p.load_balancer,
                    p.peak(),
                    p.deployed,
                    p.created
                )));
            }
            match (&seen, &deployed) {
                (Some((status, _)), _) if status.ends_with("_IN_PROGRESS") => return Err(Error::Busy { stack: stack.clone(), status: status.clone() }),
                (Some((_, have)), _) if *have == want => {}
                // The deployed template differs only in weights: ELBv2 already holds the observed
                // weights this render was made from (a flip wrote them), so there is nothing to
                // change; a later structural update carries them into the template.
                (_, Some((_, Some(b)))) if routing_shape(b) == routing_shape(body) => {}
                _ => actions.push(Action::Routing { stack: stack.clone(), create: seen.is_none(), shares: to_plan(shares), template_sha256: want }),
            }
            observed.stacks.insert(stack.clone(), seen);
        }
        // A routing group left without HTTP services has no template (CloudFormation wants at
        // least one resource): its stack goes. It exports nothing, so nothing depends on it.
        for (stack, deployed) in deployed_routing {
            let seen = deployed.map(|(status, b)| (status, b.as_deref().map_or_else(String::new, canonical_sha)));
            if let Some((status, _)) = &seen {
                if status.ends_with("_IN_PROGRESS") {
                    return Err(Error::Busy { stack, status: status.clone() });
                }
                actions.push(Action::DeleteStack { stack: stack.clone() });
            }
            observed.stacks.insert(stack, seen);
        }
        Ok(())
    }
    /// Retention, the shift to this release, and the record of what was done.
    async fn plan_retention(&self, p: &mut Planning, r: &Rendering) -> Result<(), Error> {
        let m = self.m();
        let bucket = m.formation.outputs_bucket.clone();
        let number = m.release.number;
        let (observed, actions) = (&mut p.observed, &mut p.actions);
        let (state, shares, serving) = (&r.state, &r.shares, r.serving);
        // Retention: this release and the newest `keep_releases` others stay; an older one goes
        // once no traffic reaches it. Its target groups leave the rules before its stacks go.
        let state_key = crate::state::key(&m.formation.s3_prefix);
        observed.objects.insert(state_key.clone(), self.object_sha(&bucket, &state_key, observed.bucket_exists).await?);
        let new_weight = shares.iter().find(|s| s.release == number).map_or(0, |s| s.weight);
        // Only a release this converge brings up gets traffic automatically. Once recorded, its
        // weight is the operator's: converging it again never undoes a flip or a rollback.
        let creating = creates_release(m, actions);
        let recorded = state.releases.get(&number).is_some_and(crate::state::ReleaseRecord::deployed);
        let shifting = self.opts.traffic_auto && serving && new_weight == 0 && (creating || !recorded);
        let mut live: BTreeSet<u32> = shares.iter().map(|s| s.release).collect();
        live.extend(state.releases.iter().filter(|(_, r)| r.status == "live" || r.status == "cold").map(|(n, _)| *n));
        let older: Vec<u32> = live.iter().copied().filter(|n| *n != number).collect();
        // The release(s) serving before this deploy: the known good, kept first.
        let serving_before: BTreeSet<u32> = shares.iter().filter(|s| s.weight > 0 && s.release != number).map(|s| s.release).collect();
        let older = crate::retention::keep_order(&older, &serving_before, state);
        let after_weight = |n: u32| if shifting { 0 } else { shares.iter().find(|s| s.release == n).map_or(0, |s| s.weight) };
        // Past the newest `keep_releases`, releases without traffic go to the cold tier (the
        // next `cold_releases` of them, newest first), and past that they are retired.
        let beyond: Vec<u32> = older
            .iter()
            .enumerate()
            .filter(|(i, n)| (*i >= m.formation.keep_releases as usize && after_weight(**n) == 0) || r.must_go.contains(n))
            .map(|(_, n)| *n)
            .collect();
        let (cold, retire) = beyond.split_at(beyond.len().min(m.formation.cold_releases as usize));
        // Never the release that served before this deploy: past every tier, it stays live
        // until a later release has served on its own.
        let retire: Vec<u32> = retire.iter().copied().filter(|n| !serving_before.contains(n)).collect();
        let is_cold = |n: &u32| state.releases.get(n).is_some_and(|r| r.status == "cold");
        let cool: Vec<u32> = cold.iter().copied().filter(|n| !is_cold(n)).collect();
        let without =
            |v: &[TrafficShare]| -> Vec<TrafficShare> { v.iter().filter(|s| !retire.contains(&s.release) && !cool.contains(&s.release)).cloned().collect() };
        if shifting {
            let mut shifted = without(shares);
            for s in &mut shifted {
                s.weight = if s.release == number { 100 } else { 0 };
            }
            let strategy = (self.opts.strategy != Strategy::AllAtOnce).then(|| self.opts.strategy.to_string());
            actions.push(Action::ShiftWhenHealthy { release: number, shares: to_plan(&shifted), strategy });
        } else if !retire.is_empty() || !cool.is_empty() {
            let kept = without(shares);
            for (stack, body) in routing_only(m, self.router.render(&kept, observed).await?) {
                actions.push(Action::Routing { stack, create: false, shares: to_plan(&kept), template_sha256: canonical_sha(&body) });
            }
        }
        let stacks_of = |n: &u32| match state.releases.get(n) {
            Some(r) => r.stacks.clone(),
            None => vec![gilliam_compiler::names::release_stack(&m.formation.name, *n, 1, 1)],
        };
        for n in &cool {
            actions.push(Action::Cool { release: *n, stacks: stacks_of(n) });
        }
        for n in &retire {
            actions.push(Action::Retire { release: *n, stacks: stacks_of(n) });
        }
        if !actions.is_empty() || !recorded {
            actions.push(Action::Record { release: number, retired: retire.clone(), cooled: cool.clone(), deploy: creating || !recorded });
        }
        Ok(())
    }
    /// The manifests to publish, and the plan with the digest of what it observed.
    async fn finish(&self, p: Planning) -> Result<Plan, Error> {
        let Planning { mut observed, mut actions } = p;
        let m = self.m();
        let bucket = m.formation.outputs_bucket.clone();
        let number = m.release.number;
        let manifest = self.manifest_bytes()?;
        let sha = crate::sha256_hex(&manifest);
        for key in [keys::release_manifest(&m.formation.s3_prefix, number), keys::latest_manifest(&m.formation.s3_prefix)] {
            let seen = self.object_sha(&bucket, &key, observed.bucket_exists).await?;
            if seen.as_deref() != Some(sha.as_str()) {
                actions.push(Action::Publish { key: key.clone(), sha256: sha.clone() });
            }
            observed.objects.insert(key, seen);
        }
        Ok(Plan {
            plan_version: PLAN_VERSION,
            formation: m.formation.name.clone(),
            release: number,
            manifest_sha256: sha,
            observed_sha256: observed.sha256(),
            observed,
            actions,
        })
    }
}

/// Whether `actions` create (or replace) one of the release's own stacks: a converge that
/// brings the release up.
fn creates_release(m: &gilliam_compiler::manifest::Manifest, actions: &[Action]) -> bool {
    actions.iter().any(|a| match a {
        Action::CreateStack { stack, .. } | Action::ReplaceFailedStack { stack, .. } => {
            m.stacks.iter().any(|s| &s.name == stack && s.role == StackRole::Release)
        }
        _ => false,
    })
}
