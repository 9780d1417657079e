//! Converge: make AWS hold the compiled formation. Bootstrap the bucket, verify the artifact,
//! upload what differs, converge the formation stack, create the release's stacks (at once,
//! they are independent), then render the routing stacks with the traffic weights observed in
//! ELBv2, so that a converge never undoes a traffic change; with automatic traffic, shift to
//! the new release once its target groups are healthy.

use crate::aws::{Aws, AwsError, AwsResult, PutCondition, StackRequest, TemplateSource};
use crate::bundle::{Bundle, BundleError};
use crate::plan::{Action, Observed, Plan, Share, PLAN_VERSION};
use crate::strategy::Strategy;
use gilliam_compiler::manifest::{Manifest, StackEntry, StackRole};
use gilliam_compiler::priority::DeployedRules;
use gilliam_compiler::TrafficShare;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
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

#[derive(Debug)]
pub enum Error {
    Bundle(BundleError),
    /// An AWS call failed (after retries, when it was retryable).
    Aws {
        what: String,
        err: AwsError,
    },
    Artifact(String),
    /// A stack ended in a failed state; `cause` names the failing resource and its reason.
    StackFailed {
        stack: String,
        status: String,
        cause: String,
    },
    Timeout(String),
    /// A release stack exists with other content: releases are immutable.
    Immutable(String),
    Compile(String),
    /// A stack is in the middle of an operation started elsewhere.
    Busy {
        stack: String,
        status: String,
    },
    /// A saved plan no longer matches AWS, or was made from another bundle.
    Stale(String),
    /// A gradual shift found the new release unhealthy and put the weights back.
    Aborted(String),
    /// Another deploy or traffic change holds the formation's lock (named).
    Locked(String),
    /// The account's network lacks what the formation needs: every problem, with what to do.
    Preflight {
        formation: String,
        problems: Vec<String>,
    },
    /// The lock was broken or taken over while this process worked.
    LockLost(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Bundle(e) => write!(f, "{e}"),
            Error::Aws { what, err } => write!(f, "{what}: {err}"),
            Error::Artifact(m) | Error::Timeout(m) | Error::Compile(m) => f.write_str(m),
            Error::StackFailed { stack, status, cause } => write!(f, "stack {stack} ended {status}: {cause}"),
            Error::Immutable(stack) => {
                write!(f, "stack {stack} exists with a different template: a release is immutable, compile a new release number instead")
            }
            Error::Busy { stack, status } => write!(f, "stack {stack} is {status}: another operation is running on it; wait for it to finish, then plan again"),
            Error::Stale(why) => write!(f, "the plan is stale: {why}; plan again"),
            Error::Aborted(m) => f.write_str(m),
            Error::Locked(holder) => write!(
                f,
                "the formation is locked by {holder}; wait for it (--lock-wait SECONDS), or if nothing is running there, break it with `gilliam unlock`"
            ),
            Error::LockLost(why) => write!(f, "stopped: {why}; nothing is left half-done that a new run will not finish"),
            Error::Preflight { formation, problems } => {
                write!(f, "the network is not ready for formation {formation}; nothing was changed:")?;
                problems.iter().try_for_each(|p| write!(f, "\n  - {p}"))
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<BundleError> for Error {
    fn from(e: BundleError) -> Self {
        Error::Bundle(e)
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

/// A stack as deployed: its status and template (not read while busy), or `None`: no stack.
type Deployed = Option<(String, Option<Vec<u8>>)>;

static RETRY_BASE_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(200);

/// The first retry delay (200 ms unless set; tests that inject faults at a high rate shorten it).
pub fn set_retry_base(base: Duration) {
    RETRY_BASE_MS.store(base.as_millis().max(1) as u64, std::sync::atomic::Ordering::Relaxed);
}

/// A number in `0..n` from the clock and a counter: jitter needs spread, not secrecy.
fn jitter(n: u64) -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let c = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos() as u64);
    let mut z = t ^ c.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (z ^ (z >> 27)) % n.max(1)
}

/// Retries throttling and transient failures, up to 8 times, with exponential backoff and
/// jitter (half the delay fixed, half random), so that concurrent callers spread out.
pub(crate) async fn retry<T, F, Fut>(what: &str, mut call: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = AwsResult<T>>,
{
    let mut delay = Duration::from_millis(RETRY_BASE_MS.load(std::sync::atomic::Ordering::Relaxed));
    let mut attempt = 0;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.retryable() && attempt < 8 => {
                attempt += 1;
                let half = delay.as_millis() as u64 / 2;
                tokio::time::sleep(Duration::from_millis(half + jitter(half + 1))).await;
                delay = (delay * 2).min(Duration::from_secs(20));
            }
            Err(err) => return Err(Error::Aws { what: what.to_string(), err }),
        }
    }
}

pub struct Converger<'a, A: Aws> {
    aws: &'a A,
    bundle: &'a Bundle,
    opts: Options,
    say: &'a (dyn Fn(&str) + Sync),
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

fn template_url(m: &Manifest, key: &str) -> String {
    format!("https://{}.s3.{}.amazonaws.com/{key}", m.formation.outputs_bucket, m.formation.region)
}

const FAILED: &[&str] = &[
    "CREATE_FAILED",
    "ROLLBACK_COMPLETE",
    "ROLLBACK_FAILED",
    "DELETE_FAILED",
    "UPDATE_ROLLBACK_COMPLETE",
    "UPDATE_ROLLBACK_FAILED",
    "UPDATE_FAILED",
    "IMPORT_ROLLBACK_COMPLETE",
];

impl<'a, A: Aws> Converger<'a, A> {
    pub fn new(aws: &'a A, bundle: &'a Bundle, opts: Options, say: &'a (dyn Fn(&str) + Sync)) -> Self {
        Converger { aws, bundle, opts, say }
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
            .map(|f| (format!("{}releases/{}/{}", m.formation.s3_prefix, m.release.number, f.path), f))
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
        let (mut deployed_routing, rules) = self.deployed_routing().await?;
        observed.rules = rules;
        let rendered = self.render(&shares, &observed)?;

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
            let seen = self.stack_snapshot(&s.name).await?;
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
            for (stack, body) in routing_only(m, self.render(&kept, &observed)?) {
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
        for key in [format!("{}releases/{number}/manifest.json", m.formation.s3_prefix), format!("{}manifest.json", m.formation.s3_prefix)] {
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

    /// A stack's status and the digest of its deployed template, for the plan's snapshot.
    async fn stack_snapshot(&self, name: &str) -> Result<Option<(String, String)>, Error> {
        Ok(self.stack_with_template(name).await?.map(|(status, body)| (status, body.map_or_else(String::new, |b| canonical_sha(&b)))))
    }

    /// A stack's status and its deployed template (not read while the stack is busy or empty).
    async fn stack_with_template(&self, name: &str) -> Result<Deployed, Error> {
        let Some(st) = retry("describe stack", || self.aws.describe_stack(name)).await? else { return Ok(None) };
        let body = if st.status.ends_with("_IN_PROGRESS") || st.status == "ROLLBACK_COMPLETE" {
            None
        } else {
            Some(retry("read the deployed template", || self.aws.get_template(name)).await?.into_bytes())
        };
        Ok(Some((st.status, body)))
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
                    self.create(&self.request(s)?, &mut r).await.map(|()| r)
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
                    self.wait(stack, false).await?;
                    self.create(&self.request(self.entry(stack)?)?, &mut report).await?;
                }
                Action::ContinueRollback { stack } => self.continue_rollback(stack).await?,
                Action::CreateStack { stack, shares: None, .. } => self.create(&self.request(self.entry(stack)?)?, &mut report).await?,
                Action::UpdateStack { stack, shares: None, .. } => self.update(&self.request(self.entry(stack)?)?, &mut report).await?,
                Action::CreateStack { stack, shares: Some(shares), template_sha256 } | Action::UpdateStack { stack, shares: Some(shares), template_sha256 } => {
                    self.rendered(stack, shares, template_sha256, &plan.observed, &mut report).await?;
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
                    self.wait(stack, false).await?;
                    report.changes.push(format!("- stack {stack}"));
                }
                Action::Routing { stack, shares, template_sha256, .. } => self.rendered(stack, shares, template_sha256, &plan.observed, &mut report).await?,
                // A gradual shift, or one with hooks or notifications, goes through the
                // operator's path (ELBv2 writes, judged step by step); then the routing stacks
                // catch up.
                Action::ShiftWhenHealthy { release, shares, strategy } if strategy.is_some() || self.delivery_active() => {
                    let strategy: Strategy = match strategy {
                        Some(s) => s.parse().map_err(|e: String| Error::Stale(format!("the plan's strategy: {e}")))?,
                        None => Strategy::AllAtOnce,
                    };
                    self.wait_healthy().await?;
                    let ops = crate::ops::Ops::new(self.aws, crate::ops::Formation::from_manifest(m), self.say);
                    let shift = crate::ops::ShiftOptions {
                        strategy,
                        poll: self.opts.poll,
                        health_timeout: self.opts.health_timeout,
                        judge: self.opts.judge,
                        hooks: self.opts.hooks,
                    };
                    match ops.shift_on(m, &BTreeMap::from([(*release, 100)]), &shift).await {
                        Ok(_) => {
                            // The routing stacks catch up with the weights now set, and drop
                            // the releases this converge retires, as an all-at-once shift does.
                            let rendered = routing_only(m, self.render(&from_plan(shares, m), &plan.observed)?);
                            for (stack, body) in &rendered {
                                self.rendered(stack, shares, &canonical_sha(body), &plan.observed, &mut report).await?;
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
                    let rendered = routing_only(m, self.render(&from_plan(shares, m), &plan.observed)?);
                    for (stack, body) in &rendered {
                        self.rendered(stack, shares, &canonical_sha(body), &plan.observed, &mut report).await?;
                    }
                    report.changes.push(format!("~ traffic: all to release {release}"));
                }
                // An aborted deploy is not the formation's latest: its own manifest is published
                // (the ports and secrets of a live release are read from it), the latest is not.
                Action::Publish { key, .. } if aborted.is_some() && *key == format!("{}manifest.json", m.formation.s3_prefix) => {}
                Action::Retire { .. } | Action::Cool { .. } if aborted.is_some() => {}
                Action::Publish { key, .. } => {
                    let body = self.manifest_bytes()?;
                    retry("publish", || self.aws.put_object(bucket, key, body.clone(), PutCondition::Always)).await?;
                    report.changes.push(format!("~ published s3://{bucket}/{key}"));
                }
                Action::Retire { release, stacks } => {
                    self.retire(stacks).await?;
                    self.retire_secrets(*release).await?;
                    report.changes.push(format!("- release {release} (scaled to zero, stacks deleted)"));
                }
                Action::Cool { release, stacks } => {
                    self.scale_to_zero(stacks).await?;
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

    /// Retention of one release: every Auto Scaling group to zero (instances drain from their
    /// target groups), then its stacks deleted.
    pub(crate) async fn retire(&self, stacks: &[String]) -> Result<(), Error> {
        for stack in self.scale_to_zero(stacks).await? {
            (self.say)(&format!("stack {stack}: deleting"));
            retry("delete stack", || self.aws.delete_stack(stack)).await?;
            self.wait(stack, false).await?;
        }
        Ok(())
    }

    /// Scales every Auto Scaling group of `stacks` to zero (min, desired and max, so that no
    /// scaling policy brings one back); returns the stacks that exist.
    pub(crate) async fn scale_to_zero<'s>(&self, stacks: &'s [String]) -> Result<Vec<&'s String>, Error> {
        let mut present = Vec::new();
        for stack in stacks {
            if retry("describe stack", || self.aws.describe_stack(stack)).await?.is_none() {
                continue;
            }
            let groups: Vec<String> = retry("list stack resources", || self.aws.stack_resources(stack))
                .await?
                .into_iter()
                .filter(|(_, _, ty)| ty == "AWS::AutoScaling::AutoScalingGroup")
                .map(|(_, id, _)| id)
                .collect();
            for g in &groups {
                (self.say)(&format!("stack {stack}: scaling {g} to zero"));
                retry("scale to zero", || self.aws.set_capacity(g, 0, 0, 0)).await?;
            }
            present.push(stack);
        }
        Ok(present)
    }

    /// Renders and applies the routing stacks for the releases routed now (cold ones left out)
    /// plus `include`, at the weights ELBv2 holds: how a warmed release rejoins the forwards.
    pub async fn route_with(&self, include: u32) -> Result<Report, Error> {
        self.reroute(Some(include), None).await
    }

    /// Renders and applies the routing stacks at the weights ELBv2 holds, for the releases
    /// routed now (cold ones left out) plus `include`, less `exclude`.
    async fn reroute(&self, include: Option<u32>, exclude: Option<u32>) -> Result<Report, Error> {
        let m = self.m();
        let traffic = crate::observe::traffic(self.aws, m).await?;
        let (state, _) = crate::state::read(self.aws, &m.formation.outputs_bucket, &m.formation.s3_prefix, &m.formation.name).await?;
        let shares: Vec<TrafficShare> = routed_shares(&traffic, m, &state, include).into_iter().filter(|s| Some(s.release) != exclude).collect();
        if let Some(n) = include.filter(|n| !shares.iter().any(|s| s.release == *n)) {
            return Err(Error::Artifact(format!("release {n} has no stack exports: its stacks are gone; deploy it again")));
        }
        let mut report = Report::default();
        // What a plan would observe: the weights, and the deployed rules' priorities.
        let observed = Observed {
            weights: traffic.releases.iter().map(|(n, l)| (*n, l.weight)).collect(),
            rules: self.deployed_routing().await?.1,
            standby: to_plan(&standby_shares(&traffic, m, &shares)),
            ..Observed::default()
        };
        for (stack, body) in routing_only(m, self.render(&shares, &observed)?) {
            self.rendered(&stack, &to_plan(&shares), &canonical_sha(&body), &observed, &mut report).await?;
        }
        Ok(report)
    }

    /// Removes one release: routing re-rendered with the observed weights but without it, then
    /// its Auto Scaling groups to zero and its stacks deleted.
    pub async fn retire_release(&self, release: u32, stacks: &[String]) -> Result<Report, Error> {
        let mut report = self.reroute(None, Some(release)).await?;
        self.retire(stacks).await?;
        self.retire_secrets(release).await?;
        report.changes.push(format!("- release {release}"));
        Ok(report)
    }

    /// The config secrets a release's manifest names (none when it was not published).
    async fn config_secrets(&self, release: u32) -> Result<BTreeSet<String>, Error> {
        let m = self.m();
        let key = format!("{}releases/{release}/manifest.json", m.formation.s3_prefix);
        let Some(o) = retry("read a release's manifest", || self.aws.get_object(&m.formation.outputs_bucket, &key)).await? else {
            return Ok(BTreeSet::new());
        };
        let published: Manifest = serde_json::from_slice(&o.body)
            .map_err(|e| Error::Artifact(format!("s3://{}/{key} is not a gilliam manifest: {e}", m.formation.outputs_bucket)))?;
        Ok(published.release.secret_config.into_values().collect())
    }

    /// After a release is retired: deletes (with Secrets Manager's 7-day recovery window) the
    /// config secrets it used that no live release uses any more. A secret stays as long as any
    /// live release names it, whichever release made it.
    async fn retire_secrets(&self, retired: u32) -> Result<(), Error> {
        let mut unused = self.config_secrets(retired).await?;
        if unused.is_empty() {
            return Ok(());
        }
        let m = self.m();
        let (state, _) = crate::state::read(self.aws, &m.formation.outputs_bucket, &m.formation.s3_prefix, &m.formation.name).await?;
        unused.retain(|s| !m.release.secret_config.values().any(|x| x == s));
        for n in state.releases.iter().filter(|(n, r)| **n != retired && **n != m.release.number && r.status == "live").map(|(n, _)| *n) {
            let used = self.config_secrets(n).await?;
            unused.retain(|s| !used.contains(s));
        }
        for name in unused {
            (self.say)(&format!("secret {name}: no live release uses it; scheduled for deletion"));
            retry("delete a config secret", || self.aws.delete_secret(&name)).await?;
        }
        Ok(())
    }

    /// Finishes a rollback that failed (UPDATE_ROLLBACK_FAILED), then waits for it to settle.
    async fn continue_rollback(&self, stack: &str) -> Result<(), Error> {
        (self.say)(&format!("stack {stack}: continuing its failed rollback"));
        match retry("continue update rollback", || self.aws.continue_update_rollback(stack)).await {
            Ok(()) | Err(Error::Aws { err: AwsError::InProgress(_), .. }) => {}
            Err(e) => return Err(e),
        }
        self.wait(stack, false).await.map(|_| ())
    }

    /// The formation's routing stacks as deployed (status and template, by name, `None` where
    /// there is none), and the priorities their listener rules hold.
    async fn deployed_routing(&self) -> Result<(BTreeMap<String, Deployed>, BTreeMap<String, DeployedRules>), Error> {
        let m = self.m();
        let (mut stacks, mut rules) = (BTreeMap::new(), BTreeMap::new());
        for g in 1..=m.formation.routing_groups {
            let name = gilliam_compiler::names::routing_stack(&m.formation.name, g);
            let deployed = self.stack_with_template(&name).await?;
            if let Some((_, Some(body))) = &deployed {
                rules.insert(name.clone(), DeployedRules::from_template(body));
            }
            stacks.insert(name, deployed);
        }
        Ok((stacks, rules))
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

    fn entry(&self, stack: &str) -> Result<&StackEntry, Error> {
        self.m()
            .stacks
            .iter()
            .find(|s| s.name == stack)
            .ok_or_else(|| Error::Bundle(BundleError(format!("the plan names stack {stack}, which this compile does not have"))))
    }

    /// Creates or updates a stack rendered for these shares (a routing stack, or the formation
    /// stack), after checking it renders as planned. A routing update that fails is rolled back
    /// by CloudFormation to the deployed template, whose weights may be older than ELBv2's (a
    /// flip writes ELBv2 only): the weights the plan observed are put back before the error
    /// is returned, so that a failed update never moves traffic.
    /// `observed` is what the plan saw: the deployed rules' priorities, and the weights.
    async fn rendered(&self, stack: &str, shares: &[Share], template_sha256: &str, observed: &Observed, report: &mut Report) -> Result<(), Error> {
        let rendered = self.render(&from_plan(shares, self.m()), observed)?;
        let body = rendered.get(stack).ok_or_else(|| Error::Compile(format!("stack {stack} is not in this compile")))?;
        if canonical_sha(body) != template_sha256 {
            return Err(Error::Compile(format!("stack {stack} rendered differently than when planned: plan again")));
        }
        let entry = self.entry(stack)?.clone();
        if body.len() > gilliam_compiler::cfn::MAX_INLINE_BYTES {
            let key = format!("{}.traffic-{}", entry.s3_key, crate::sha256_hex(body));
            retry("upload", || self.aws.put_object(&self.m().formation.outputs_bucket, &key, body.clone(), PutCondition::Always)).await?;
        }
        let text = String::from_utf8(body.clone()).map_err(|_| Error::Compile("routing template is not UTF-8".into()))?;
        let mut req = self.request_for(&entry, text);
        if let TemplateSource::Url(_) = req.template {
            req.template = TemplateSource::Url(template_url(self.m(), &format!("{}.traffic-{}", entry.s3_key, crate::sha256_hex(body))));
        }
        if retry("describe stack", || self.aws.describe_stack(stack)).await?.is_none() {
            return self.create(&req, report).await;
        }
        if entry.role != StackRole::Routing {
            return self.update(&req, report).await;
        }
        (self.say)(&format!("stack {stack}: updating routes and weights"));
        let result = self.update(&req, report).await;
        let Err(Error::StackFailed { status, .. }) = &result else { return result };
        if status == "UPDATE_ROLLBACK_FAILED" {
            self.continue_rollback(stack).await?;
        }
        let before: BTreeMap<u32, u32> = observed.weights.iter().filter_map(|(n, w)| w.map(|w| (*n, w))).collect();
        if before.values().any(|w| *w > 0) {
            let ops = crate::ops::Ops::new(self.aws, crate::ops::Formation::from_manifest(self.m()), self.say);
            let writes = ops.reassert(self.m(), &before).await?;
            (self.say)(&format!("stack {stack}: rolled back; {writes} rule(s) given back the weights ELBv2 held before the update"));
        }
        result
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

    fn request(&self, s: &StackEntry) -> Result<StackRequest, Error> {
        let body =
            String::from_utf8(self.bundle.file(&s.template)?.to_vec()).map_err(|_| Error::Bundle(BundleError(format!("{} is not UTF-8", s.template))))?;
        Ok(self.request_for(s, body))
    }

    fn request_for(&self, s: &StackEntry, body: String) -> StackRequest {
        let m = self.m();
        let template =
            if body.len() > gilliam_compiler::cfn::MAX_INLINE_BYTES { TemplateSource::Url(template_url(m, &s.s3_key)) } else { TemplateSource::Body(body) };
        let mut tags = vec![("gilliam:formation".to_string(), m.formation.name.clone())];
        if s.role == StackRole::Release {
            tags.push(("gilliam:release".into(), m.release.number.to_string()));
        }
        StackRequest { name: s.name.clone(), template, capabilities: s.capabilities.clone(), tags }
    }

    async fn create(&self, req: &StackRequest, report: &mut Report) -> Result<(), Error> {
        (self.say)(&format!("stack {}: creating", req.name));
        match retry("create stack", || self.aws.create_stack(req)).await {
            Ok(_) => {}
            // An earlier attempt went through and its answer was lost (the plan saw no stack).
            Err(Error::Aws { err: AwsError::AlreadyExists(_), .. }) => (self.say)(&format!("stack {}: already created by an earlier attempt", req.name)),
            Err(e) => return Err(e),
        }
        let status = self.wait(&req.name, true).await?;
        report.changes.push(format!("+ stack {} ({status})", req.name));
        Ok(())
    }

    async fn update(&self, req: &StackRequest, report: &mut Report) -> Result<(), Error> {
        (self.say)(&format!("stack {}: updating", req.name));
        match retry("update stack", || self.aws.update_stack(req)).await {
            Ok(()) => {}
            Err(Error::Aws { err: AwsError::NoUpdates, .. }) => return Ok(()),
            // An earlier attempt went through and its answer was lost: wait for that update.
            Err(Error::Aws { err: AwsError::InProgress(_), .. }) => {}
            Err(e) => return Err(e),
        }
        let status = self.wait(&req.name, true).await?;
        report.changes.push(format!("~ stack {} ({status})", req.name));
        Ok(())
    }

    /// Polls a stack until it settles, printing new events. Returns the final status; a failed
    /// one is an error naming the first failed resource and its reason.
    async fn wait(&self, name: &str, fail_on_rollback: bool) -> Result<String, Error> {
        let deadline = Instant::now() + self.opts.stack_timeout;
        let mut seen: BTreeSet<String> =
            retry("stack events", || self.aws.stack_events(name)).await.map(|e| e.into_iter().map(|e| e.id).collect()).unwrap_or_default();
        loop {
            let st = match retry("describe stack", || self.aws.describe_stack(name)).await? {
                Some(st) => st,
                None => return Ok("DELETE_COMPLETE".into()),
            };
            let events = retry("stack events", || self.aws.stack_events(name)).await.unwrap_or_default();
            for e in events.iter().rev().filter(|e| !seen.contains(&e.id)) {
                (self.say)(&format!(
                    "  {name} {} {} {}{}",
                    e.logical_id,
                    e.resource_type,
                    e.status,
                    e.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
                ));
            }
            seen.extend(events.iter().map(|e| e.id.clone()));
            if !st.status.ends_with("_IN_PROGRESS") {
                // Waiting on our own create or update, a rollback is a failure; waiting for a
                // rollback or a delete to settle, only a *_FAILED state is.
                let failed = if fail_on_rollback { FAILED.contains(&st.status.as_str()) } else { st.status.ends_with("_FAILED") };
                if failed {
                    let cause = events
                        .iter()
                        .rev()
                        .find(|e| e.status.ends_with("_FAILED"))
                        .map(|e| format!("{} ({}): {}", e.logical_id, e.resource_type, e.reason.clone().unwrap_or_default()))
                        .or(st.reason.clone())
                        .unwrap_or_else(|| "no reason given".into());
                    return Err(Error::StackFailed { stack: name.to_string(), status: st.status, cause });
                }
                return Ok(st.status);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!("stack {name} still {} after {:?}", st.status, self.opts.stack_timeout)));
            }
            tokio::time::sleep(self.opts.poll).await;
        }
    }

    /// Renders the formation and routing stacks for these shares (and the deployed rules'
    /// priorities) with the compiler: stack name to template.
    /// Every template for `shares`, around the deployed rules' priorities and with the cold
    /// releases' ports kept open, as `observed` holds them.
    fn render(&self, shares: &[TrafficShare], observed: &Observed) -> Result<BTreeMap<String, Vec<u8>>, Error> {
        let [app, rel, stage] = self.bundle.inputs()?;
        let inputs = gilliam_compiler::Inputs {
            app: gilliam_compiler::Source { name: "gilliam.yml", text: &app },
            release: gilliam_compiler::Source { name: "release.json", text: &rel },
            stage: gilliam_compiler::Source { name: "stage.yml", text: &stage },
        };
        let options = gilliam_compiler::Options {
            traffic: Some(shares.to_vec()),
            workers: 2,
            deployed_rules: observed.rules.clone(),
            standby: from_plan(&observed.standby, self.m()),
        };
        let compiled =
            gilliam_compiler::compile_with(&inputs, &options).map_err(|e| Error::Compile(format!("re-rendering routing for the observed traffic: {e}")))?;
        Ok(compiled
            .manifest
            .stacks
            .iter()
            .filter(|s| s.role != StackRole::Release)
            .map(|s| (s.name.clone(), compiled.files.get(&s.template).cloned().unwrap_or_default()))
            .collect())
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

/// sha256 of a template's canonical form (parsed and re-serialized with sorted keys), so that
/// CloudFormation's whitespace never reads as a change.
fn canonical_sha(bytes: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(v) => crate::sha256_hex(&serde_json::to_vec(&v).unwrap_or_default()),
        Err(_) => crate::sha256_hex(bytes),
    }
}

/// A routing template with every forward weight removed: what it routes where, not how much.
fn routing_shape(bytes: &[u8]) -> Option<serde_json::Value> {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                if m.contains_key("TargetGroupArn") {
                    m.remove("Weight");
                }
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    strip(&mut v);
    Some(v)
}

/// The routing stacks among rendered ones.
/// The releases the routing renders for: every release whose stacks export target groups, but
/// the cold ones (out of routing by design) unless `include` names one or ELBv2 still gives one
/// traffic (someone routed it by hand: leaving it out would cut that traffic).
fn routed_shares(traffic: &crate::observe::ObservedTraffic, m: &Manifest, state: &crate::state::State, include: Option<u32>) -> Vec<TrafficShare> {
    traffic
        .shares(m)
        .into_iter()
        .filter(|s| Some(s.release) == include || s.weight > 0 || state.releases.get(&s.release).is_none_or(|r| r.status != "cold"))
        .collect()
}

/// The releases that hold stacks but no place in the routing: the cold ones.
fn standby_shares(traffic: &crate::observe::ObservedTraffic, m: &Manifest, routed: &[TrafficShare]) -> Vec<TrafficShare> {
    traffic.shares(m).into_iter().filter(|s| !routed.iter().any(|r| r.release == s.release)).collect()
}

fn routing_only(m: &Manifest, rendered: BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    rendered.into_iter().filter(|(name, _)| m.stacks.iter().any(|s| &s.name == name && s.role == StackRole::Routing)).collect()
}

fn to_plan(shares: &[TrafficShare]) -> Vec<Share> {
    shares
        .iter()
        .map(|s| Share { release: s.release, weight: s.weight, internal: s.internal.clone(), public: s.public.clone(), ports: s.ports.clone() })
        .collect()
}

fn from_plan(shares: &[Share], m: &Manifest) -> Vec<TrafficShare> {
    shares
        .iter()
        .map(|s| TrafficShare {
            release: s.release,
            weight: s.weight,
            routing_groups: m.formation.routing_groups,
            internal: s.internal.clone(),
            public: s.public.clone(),
            ports: s.ports.clone(),
        })
        .collect()
}
