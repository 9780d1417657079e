//! Converge: make AWS hold the compiled formation. Bootstrap the bucket, verify the artifact,
//! upload what differs, converge the formation stack, create the release's stacks (at once,
//! they are independent), then render the routing stacks with the traffic weights observed in
//! ELBv2, so that a converge never undoes a traffic change; with automatic traffic, shift to
//! the new release once its target groups are healthy.

use crate::aws::{Aws, AwsError, PutCondition, StackRequest};
use crate::bundle::{Bundle, BundleError};
use crate::error::Error;
use crate::formation::Formation;
use crate::plan::{Action, Observed, Plan, PLAN_VERSION};
use crate::retry::retry;
use crate::routing::{from_plan, routed_shares, routing_only, routing_shape, standby_shares, to_plan, Router};
use crate::shift::{shift_on, ShiftOptions};
use crate::stacks::{canonical_sha, Stacks};
use crate::strategy::Strategy;
use crate::traffic::Traffic;
use gilliam_compiler::manifest::{Manifest, StackEntry, StackRole};
use gilliam_compiler::TrafficShare;
use gilliam_contract::keys;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Options {
    /// Shift traffic to the new release once healthy (otherwise weights are the operator's).
    pub traffic_auto: bool,
    /// How often stack status and target health are polled.
    pub poll: Duration,
    /// Longest wait for one stack operation.
    pub stack_timeout: Duration,
    /// Longest wait for the new release's targets to be healthy.
    pub health_timeout: Duration,
    /// How traffic moves to a new release (with `traffic_auto`).
    pub strategy: Strategy,
    /// Judge the new release by the manifest's metric analysis (`--no-analysis` turns it off).
    pub judge: bool,
    /// Run the manifest's hooks around the shift (`--no-hooks` turns them off).
    pub hooks: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            traffic_auto: true,
            poll: Duration::from_secs(5),
            stack_timeout: Duration::from_secs(3600),
            health_timeout: Duration::from_secs(900),
            strategy: Strategy::AllAtOnce,
            judge: true,
            hooks: true,
        }
    }
}

/// What a converge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// One line per change made; empty when nothing had to change.
    pub changes: Vec<String>,
    /// Weights per release after the converge.
    pub traffic: Vec<(u32, u32)>,
}

impl Report {
    /// The weights the plan leaves, for the history: `1=0 2=100`.
    fn traffic_line(&self, plan: &Plan) -> String {
        let parts: Vec<String> = self.final_weights(plan).iter().map(|(n, w)| format!("{n}={w}")).collect();
        format!("traffic {}", parts.join(" "))
    }

    /// The weights a plan leaves: its last routing change, or what it observed.
    fn final_weights(&self, plan: &Plan) -> Vec<(u32, u32)> {
        let last = plan.actions.iter().rev().find_map(|a| match a {
            Action::Routing { shares, .. } | Action::ShiftWhenHealthy { shares, .. } => Some(shares.iter().map(|s| (s.release, s.weight)).collect::<Vec<_>>()),
            _ => None,
        });
        last.unwrap_or_else(|| plan.observed.weights.iter().map(|(n, w)| (*n, w.unwrap_or(0))).collect())
    }
}

pub struct Converger<'a, A: Aws> {
    aws: &'a A,
    bundle: &'a Bundle,
    opts: Options,
    say: &'a (dyn Fn(&str) + Sync),
    /// Renders and applies the routing, and performs the stack operations.
    router: Router<'a, A>,
}

impl<A: Aws> std::fmt::Debug for Converger<'_, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Converger")
            .field("formation", &self.bundle.manifest.formation.name)
            .field("release", &self.bundle.manifest.release.number)
            .field("opts", &self.opts)
            .finish()
    }
}

impl<'a, A: Aws> Converger<'a, A> {
    pub fn new(aws: &'a A, bundle: &'a Bundle, opts: Options, say: &'a (dyn Fn(&str) + Sync)) -> Self {
        let stacks = Stacks::new(aws, say, opts.poll, opts.stack_timeout);
        Converger { aws, bundle, opts, say, router: Router::new(aws, bundle, stacks, say) }
    }

    fn m(&self) -> &Manifest {
        &self.bundle.manifest
    }

    fn manifest_bytes(&self) -> Result<Vec<u8>, Error> {
        Ok(self.bundle.file("manifest.json")?.to_vec())
    }

    /// Plans, then applies at once. (Both futures are large; they live on the heap so that
    /// callers' stacks stay small.)
    pub async fn run(&self) -> Result<Report, Error> {
        let plan = Box::pin(self.plan()).await?;
        Box::pin(self.apply_unchecked(&plan)).await
    }

    /// Applies a saved plan after checking that AWS still looks as it did when it was made.
    pub async fn apply(&self, plan: &Plan) -> Result<Report, Error> {
        let ours = crate::sha256_hex(&self.manifest_bytes()?);
        if plan.manifest_sha256 != ours || plan.formation != self.m().formation.name || plan.release != self.m().release.number {
            return Err(Error::Stale(format!("it was made from another compile (formation {}, release {})", plan.formation, plan.release)));
        }
        let fresh = Box::pin(self.plan()).await?;
        if fresh.observed_sha256 != plan.observed_sha256 {
            return Err(Error::Stale(plan.observed.first_difference(&fresh.observed).unwrap_or_else(|| "the observed state changed".into())));
        }
        Box::pin(self.apply_unchecked(plan)).await
    }

    /// Observes AWS and decides what to do. Reads only: no mutating call.
    pub async fn plan(&self) -> Result<Plan, Error> {
        let m = self.m();
        let bucket = m.formation.outputs_bucket.clone();
        let mut observed = Observed { bucket_exists: retry("look for the bucket", || self.aws.bucket_exists(&bucket)).await?, ..Observed::default() };
        // Before anything else: what a real account must have for the formation to come up.
        let [_, _, stage] = self.bundle.inputs()?;
        let stage = gilliam_compiler::parse_stage(gilliam_compiler::Source { name: "stage.yml", text: &stage })
            .map_err(|d| Error::Bundle(BundleError(format!("the bundle's stage file: {d}"))))?;
        let needs = crate::preflight::Needs::of(m, &stage);
        if let Some(problems) = crate::preflight::check(self.aws, &needs).await? {
            if !problems.is_empty() {
                return Err(Error::Preflight { formation: m.formation.name.clone(), problems });
            }
        }
        let mut actions = Vec::new();
        if !observed.bucket_exists {
            actions.push(Action::CreateBucket { bucket: bucket.clone() });
        }
        self.check_artifact().await?;

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

        // Traffic first: the formation and routing stacks are rendered for what is live.
        // What ELBv2 holds now, plus this release (at weight 0 until it is healthy).
        let traffic = crate::observe::traffic(self.aws, m).await?;
        observed.weights = traffic.releases.iter().map(|(n, l)| (*n, l.weight)).collect();
        let number = m.release.number;
        let (state, _) = crate::state::read(self.aws, &bucket, &m.formation.s3_prefix, &m.formation.name).await?;
        if state.releases.get(&number).is_some_and(|r| r.status == "cold") {
            // Its groups are at zero: converging it would wait for targets that never come.
            return Err(Error::Artifact(format!(
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
        // The routing stacks as deployed: their rules keep their priorities, and new rules are
        // numbered around them (real ELBv2 refuses a number a deployed rule still holds).
        let (mut deployed_routing, rules) = self.router.deployed_routing().await?;
        observed.rules = rules;
        let rendered = self.router.render(&shares, &observed)?;

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

        for s in m.stacks.iter().filter(|s| s.role != StackRole::Routing) {
            // The formation stack is rendered for every live release (their ports stay open);
            // release stacks are the bundle's, as compiled.
            let formation = s.role == StackRole::Formation;
            let want = match rendered.get(&s.name) {
                Some(body) if formation => canonical_sha(body),
                _ => canonical_sha(self.bundle.file(&s.template)?),
            };
            let with = formation.then(|| to_plan(&shares));
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
            match (&seen, &deployed) {
                (Some((status, _)), _) if status.ends_with("_IN_PROGRESS") => return Err(Error::Busy { stack: stack.clone(), status: status.clone() }),
                (Some((_, have)), _) if *have == want => {}
                // The deployed template differs only in weights: ELBv2 already holds the observed
                // weights this render was made from (a flip wrote them), so there is nothing to
                // change; a later structural update carries them into the template.
                (_, Some((_, Some(b)))) if routing_shape(b) == routing_shape(body) => {}
                _ => actions.push(Action::Routing { stack: stack.clone(), create: seen.is_none(), shares: to_plan(&shares), template_sha256: want }),
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
        // Retention: this release and the newest `keep_releases` others stay; an older one goes
        // once no traffic reaches it. Its target groups leave the rules before its stacks go.
        let state_key = crate::state::key(&m.formation.s3_prefix);
        observed.objects.insert(state_key.clone(), self.object_sha(&bucket, &state_key, observed.bucket_exists).await?);
        let new_weight = shares.iter().find(|s| s.release == number).map_or(0, |s| s.weight);
        // Only a release this converge brings up gets traffic automatically. Once recorded, its
        // weight is the operator's: converging it again never undoes a flip or a rollback.
        let creating = actions.iter().any(|a| match a {
            Action::CreateStack { stack, .. } | Action::ReplaceFailedStack { stack, .. } => {
                m.stacks.iter().any(|s| &s.name == stack && s.role == StackRole::Release)
            }
            _ => false,
        });
        let recorded = state.releases.get(&number).is_some_and(|r| r.status == "live");
        let shifting = self.opts.traffic_auto && serving && new_weight == 0 && (creating || !recorded);
        let mut live: BTreeSet<u32> = shares.iter().map(|s| s.release).collect();
        live.extend(state.releases.iter().filter(|(_, r)| r.status == "live" || r.status == "cold").map(|(n, _)| *n));
        let mut older: Vec<u32> = live.iter().copied().filter(|n| *n != number).collect();
        older.sort_unstable_by(|a, b| b.cmp(a));
        let after_weight = |n: u32| if shifting { 0 } else { shares.iter().find(|s| s.release == n).map_or(0, |s| s.weight) };
        // Past the newest `keep_releases`, releases without traffic go to the cold tier (the
        // next `cold_releases` of them, newest first), and past that they are retired.
        let beyond: Vec<u32> = older.iter().skip(m.formation.keep_releases as usize).copied().filter(|n| after_weight(*n) == 0).collect();
        let (cold, retire) = beyond.split_at(beyond.len().min(m.formation.cold_releases as usize));
        let retire = retire.to_vec();
        let is_cold = |n: &u32| state.releases.get(n).is_some_and(|r| r.status == "cold");
        let cool: Vec<u32> = cold.iter().copied().filter(|n| !is_cold(n)).collect();
        let without =
            |v: &[TrafficShare]| -> Vec<TrafficShare> { v.iter().filter(|s| !retire.contains(&s.release) && !cool.contains(&s.release)).cloned().collect() };
        if shifting {
            let mut shifted = without(&shares);
            for s in &mut shifted {
                s.weight = if s.release == number { 100 } else { 0 };
            }
            let strategy = (self.opts.strategy != Strategy::AllAtOnce).then(|| self.opts.strategy.to_string());
            actions.push(Action::ShiftWhenHealthy { release: number, shares: to_plan(&shifted), strategy });
        } else if !retire.is_empty() || !cool.is_empty() {
            let kept = without(&shares);
            for (stack, body) in routing_only(m, self.router.render(&kept, &observed)?) {
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

    async fn object_sha(&self, bucket: &str, key: &str, bucket_exists: bool) -> Result<Option<String>, Error> {
        if !bucket_exists {
            return Ok(None);
        }
        Ok(retry("look for an object", || self.aws.head_object(bucket, key)).await?.and_then(|h| h.sha256))
    }

    /// Performs the plan's actions, in order; release stacks are created concurrently.
    pub async fn apply_unchecked(&self, plan: &Plan) -> Result<Report, Error> {
        let mut report = Report::default();
        let m = self.m();
        let bucket = &m.formation.outputs_bucket;
        // A gradual shift that aborted: why, and the weights it put back.
        let mut aborted: Option<(String, Vec<(u32, u32)>)> = None;
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
                    let entry = self.secret_entry(name)?;
                    let password = retry("generate a password", || self.aws.random_password()).await?;
                    let value = serde_json::json!({ "username": entry.username, "password": password }).to_string();
                    match retry("create a secret", || self.aws.put_secret(name, &value, &m.formation.name)).await {
                        Ok(_) => {}
                        // An earlier attempt went through and its answer was lost.
                        Err(Error::Aws { err: AwsError::Invalid(e) | AwsError::Other(e) | AwsError::AlreadyExists(e), .. })
                            if e.contains("ResourceExists") || e.contains("already exists") => {}
                        Err(e) => return Err(e),
                    }
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
                    let strategy: Strategy = match strategy {
                        Some(s) => s.parse().map_err(|e: String| Error::Stale(format!("the plan's strategy: {e}")))?,
                        None => Strategy::AllAtOnce,
                    };
                    self.wait_healthy().await?;
                    let traffic = Traffic::new(self.aws, Formation::from_manifest(m), self.say);
                    let shift = ShiftOptions {
                        strategy,
                        poll: self.opts.poll,
                        health_timeout: self.opts.health_timeout,
                        judge: self.opts.judge,
                        hooks: self.opts.hooks,
                    };
                    match shift_on(&traffic, m, &BTreeMap::from([(*release, 100)]), &shift).await {
                        Ok(_) => {
                            // The routing stacks catch up with the weights now set, and drop
                            // the releases this converge retires, as an all-at-once shift does.
                            let rendered = routing_only(m, self.router.render(&from_plan(shares, m), &plan.observed)?);
                            for (stack, body) in &rendered {
                                self.router.rendered(stack, shares, &canonical_sha(body), &plan.observed, &mut report.changes).await?;
                            }
                            report.changes.push(format!("~ traffic: all to release {release} ({strategy})"));
                        }
                        Err(Error::Aborted(why)) => {
                            // The release stays (recorded, without traffic) for a later `gilliam traffic`;
                            // it is not published as the formation's latest, and nothing is retired.
                            let before: Vec<(u32, u32)> = plan.observed.weights.iter().map(|(n, w)| (*n, w.unwrap_or(0))).chain([(*release, 0)]).collect();
                            aborted = Some((why, before));
                        }
                        Err(e) => return Err(e),
                    }
                }
                Action::ShiftWhenHealthy { release, shares, strategy: _ } => {
                    self.wait_healthy().await?;
                    let rendered = routing_only(m, self.router.render(&from_plan(shares, m), &plan.observed)?);
                    for (stack, body) in &rendered {
                        self.router.rendered(stack, shares, &canonical_sha(body), &plan.observed, &mut report.changes).await?;
                    }
                    report.changes.push(format!("~ traffic: all to release {release}"));
                }
                // An aborted deploy is not the formation's latest: its own manifest is published
                // (the ports and secrets of a live release are read from it), the latest is not.
                Action::Publish { key, .. } if aborted.is_some() && *key == keys::latest_manifest(&m.formation.s3_prefix) => {}
                Action::Retire { .. } | Action::Cool { .. } if aborted.is_some() => {}
                Action::Publish { key, .. } => {
                    let body = self.manifest_bytes()?;
                    retry("publish", || self.aws.put_object(bucket, key, body.clone(), PutCondition::Always)).await?;
                    report.changes.push(format!("~ published s3://{bucket}/{key}"));
                }
                Action::Retire { release, stacks } => {
                    self.router.stacks.retire(stacks).await?;
                    crate::retention::retire_secrets(self.aws, m, *release, self.say).await?;
                    report.changes.push(format!("- release {release} (scaled to zero, stacks deleted)"));
                }
                Action::Cool { release, stacks } => {
                    self.router.stacks.scale_to_zero(stacks).await?;
                    report.changes.push(format!("~ release {release} cold (scaled to zero; stacks and target groups kept)"));
                }
                Action::Record { release, retired, cooled, deploy } => {
                    let record = self.record();
                    let (traffic, weights, retired, cooled) = match &aborted {
                        None => (report.traffic_line(plan), report.final_weights(plan), retired.clone(), cooled.clone()),
                        Some((why, before)) => {
                            let w: Vec<String> = before.iter().map(|(n, w)| format!("{n}={w}")).collect();
                            (format!("{why}; traffic {}", w.join(" ")), before.clone(), Vec::new(), Vec::new())
                        }
                    };
                    let (retired, cooled) = (&retired, &cooled);
                    crate::state::update(self.aws, bucket, &m.formation.s3_prefix, &m.formation.name, |st| {
                        st.releases.insert(*release, record.clone());
                        st.reserved.remove(release);
                        st.traffic = weights.iter().copied().filter(|(n, _)| !retired.contains(n) && !cooled.contains(n)).collect();
                        let verb = if *deploy { "deploy" } else { "converge" };
                        let mut what = format!("{verb} release {release} ({traffic})");
                        for n in retired {
                            if let Some(r) = st.releases.get_mut(n) {
                                r.status = "retired".into();
                            }
                            what.push_str(&format!("; retire release {n}"));
                        }
                        for n in cooled {
                            if let Some(r) = st.releases.get_mut(n) {
                                r.status = "cold".into();
                            }
                            what.push_str(&format!("; cool release {n}"));
                        }
                        st.history.push(crate::state::event(what));
                    })
                    .await?;
                    report.changes.push(format!("~ recorded release {release} in s3://{bucket}/{}", crate::state::key(&m.formation.s3_prefix)));
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

    /// A cache's endpoint as the formation stack's outputs give it: (host, port).
    async fn endpoint_outputs(&self, sec: &gilliam_compiler::manifest::SecretEntry, stack: &str) -> Result<Option<(String, String)>, Error> {
        let Some((address, port)) = &sec.endpoint_outputs else { return Ok(None) };
        let Some(st) = retry("describe stack", || self.aws.describe_stack(stack)).await? else { return Ok(None) };
        let get = |k: &str| st.outputs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        Ok(get(address).zip(get(port)))
    }

    /// Whether the secret holds the endpoint the formation stack gives (true when there is
    /// none to give yet). Reads the secret's value, which never leaves this process.
    async fn endpoint_current(&self, sec: &gilliam_compiler::manifest::SecretEntry, stack: &str) -> Result<bool, Error> {
        let Some((host, port)) = self.endpoint_outputs(sec, stack).await? else { return Ok(true) };
        let Some(value) = retry("read a secret", || self.aws.secret_value(&sec.name)).await? else { return Ok(false) };
        let v: serde_json::Value = serde_json::from_str(&value).unwrap_or_default();
        Ok(v["host"].as_str() == Some(host.as_str()) && v["port"].as_str() == Some(port.as_str()))
    }

    /// Writes the cache's endpoint into its secret, keeping every other field.
    async fn write_endpoint(&self, sec: &gilliam_compiler::manifest::SecretEntry, stack: &str) -> Result<(), Error> {
        let Some((host, port)) = self.endpoint_outputs(sec, stack).await? else {
            return Err(Error::Artifact(format!("stack {stack} gives no endpoint for {} (outputs {:?})", sec.auxiliary, sec.endpoint_outputs)));
        };
        let name = &sec.name;
        let value = retry("read a secret", || self.aws.secret_value(name)).await?.ok_or_else(|| Error::Artifact(format!("secret {name} is gone")))?;
        let mut v: serde_json::Value =
            serde_json::from_str(&value).map_err(|_| Error::Artifact(format!("secret {name} does not hold a JSON object; it is not gilliam's")))?;
        let Some(fields) = v.as_object_mut() else { return Err(Error::Artifact(format!("secret {name} does not hold a JSON object; it is not gilliam's"))) };
        fields.insert("host".into(), serde_json::Value::String(host));
        fields.insert("port".into(), serde_json::Value::String(port));
        let value = v.to_string();
        retry("write a secret", || self.aws.put_secret_value(name, &value)).await
    }

    /// This release as the published state records it.
    fn record(&self) -> crate::state::ReleaseRecord {
        let m = self.m();
        crate::state::ReleaseRecord {
            revision: m.release.revision.clone(),
            created: m.release.created.clone(),
            artifact_sha256: m.release.artifact_sha256.clone(),
            stacks: m.stacks.iter().filter(|s| s.role == StackRole::Release).map(|s| s.name.clone()).collect(),
            groups: m.services.iter().filter_map(|s| s.auto_scaling_group.clone().map(|g| (s.name.clone(), (g, s.stack.clone())))).collect(),
            scale: m.services.iter().filter_map(|s| s.scale.as_ref().map(|x| (s.name.clone(), x.desired))).collect(),
            status: "live".into(),
        }
    }

    fn secret_entry(&self, name: &str) -> Result<&gilliam_compiler::manifest::SecretEntry, Error> {
        self.m().secrets.iter().find(|x| x.name == name).ok_or_else(|| Error::Stale(format!("the plan names secret {name}, which this compile does not have")))
    }

    fn request(&self, s: &StackEntry) -> Result<StackRequest, Error> {
        let body =
            String::from_utf8(self.bundle.file(&s.template)?.to_vec()).map_err(|_| Error::Bundle(BundleError(format!("{} is not UTF-8", s.template))))?;
        Ok(crate::stacks::request(self.m(), s, body))
    }

    async fn check_artifact(&self) -> Result<(), Error> {
        let m = self.m();
        let url = &m.release.artifact_url;
        let (bucket, key) =
            url.strip_prefix("s3://").and_then(|r| r.split_once('/')).ok_or_else(|| Error::Artifact(format!("artifact URL {url} is not s3://BUCKET/KEY")))?;
        let head = retry("look for the artifact", || self.aws.head_object(bucket, key)).await?;
        let Some(head) = head else {
            return Err(Error::Artifact(format!("artifact {url} does not exist: upload it before deploying release {}", m.release.number)));
        };
        if head.sha256.as_deref() == Some(m.release.artifact_sha256.as_str()) {
            return Ok(());
        }
        let obj = retry("read the artifact", || self.aws.get_object(bucket, key))
            .await?
            .ok_or_else(|| Error::Artifact(format!("artifact {url} vanished while being read")))?;
        let found = crate::sha256_hex(&obj.body);
        if found != m.release.artifact_sha256 {
            return Err(Error::Artifact(format!(
                "artifact {url} has sha256 {found}, the release states {}: refusing to create release {}",
                m.release.artifact_sha256, m.release.number
            )));
        }
        Ok(())
    }

    /// Whether the release's shift has hooks to run or people to tell: then even an
    /// all-at-once shift goes through the operator's path.
    fn delivery_active(&self) -> bool {
        let d = &self.m().delivery;
        (self.opts.hooks && d.hooks.any()) || !d.notifications.is_empty()
    }

    /// Waits until every HTTP service of the new release has its desired count of healthy
    /// targets in each of its target groups.
    async fn wait_healthy(&self) -> Result<(), Error> {
        let m = self.m();
        let exports: BTreeMap<String, String> = retry("list exports", || self.aws.list_exports()).await?.into_iter().collect();
        let deadline = Instant::now() + self.opts.health_timeout;
        loop {
            let mut waiting = Vec::new();
            for s in &m.services {
                let desired = s.scale.as_ref().map_or(0, |x| x.desired) as usize;
                for export in [&s.internal_target_group_export, &s.public_target_group_export].into_iter().flatten() {
                    let Some(arn) = exports.get(export) else { continue };
                    let states = retry("target health", || self.aws.target_health(arn)).await?;
                    let healthy = states.iter().filter(|h| *h == "healthy").count();
                    if healthy < desired {
                        waiting.push(format!("{} {healthy}/{desired}", s.name));
                    }
                }
            }
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "release {} not healthy after {:?}: {}; traffic stays where it was",
                    m.release.number,
                    self.opts.health_timeout,
                    waiting.join(", ")
                )));
            }
            (self.say)(&format!("waiting for healthy targets: {}", waiting.join(", ")));
            tokio::time::sleep(self.opts.poll).await;
        }
    }
}
