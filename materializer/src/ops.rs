//! Operator commands on a live formation: traffic, rollback, scale, retire, and the read
//! commands (releases, status, history, outputs). Everything is read from AWS and the
//! published state on each call; traffic changes are ELBv2 writes only, one per affected rule.

use crate::aws::Aws;
use crate::bundle::Bundle;
use crate::converge::{retry, Converger, Error, Options};
use crate::state::{self, Event, State};
use crate::strategy::Strategy;
use gilliam_compiler::manifest::Manifest;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Where a formation lives, from its stage file.
#[derive(Debug, Clone)]
pub struct Formation {
    pub name: String,
    pub region: String,
    pub bucket: String,
    pub prefix: String,
}

impl Formation {
    pub fn from_manifest(m: &Manifest) -> Self {
        Formation {
            name: m.formation.name.clone(),
            region: m.formation.region.clone(),
            bucket: m.formation.outputs_bucket.clone(),
            prefix: m.formation.s3_prefix.clone(),
        }
    }

    pub fn from_stage(stage: &gilliam_compiler::stage::Stage) -> Self {
        Formation {
            name: stage.formation.clone(),
            region: stage.region.clone(),
            bucket: stage.outputs_bucket.clone(),
            prefix: format!("gilliam/{}/", stage.formation),
        }
    }
}

/// One routing rule as observed: its ARN and, per target group, weight and owning release.
#[derive(Debug, Clone)]
struct RuleView {
    /// Logical ID in its routing stack (`ApiRoute1`, `ApiInternalRule`).
    logical: String,
    arn: String,
    forward: Vec<(String, u32, Option<u32>)>,
    stickiness: Option<u32>,
}

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
    pub metrics: Option<crate::delivery::Sample>,
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

/// What a traffic change did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TrafficChange {
    pub before: BTreeMap<u32, u32>,
    pub after: BTreeMap<u32, u32>,
    /// ELBv2 writes made: one per rule whose weights changed.
    pub writes: usize,
}

/// How long a cold release may take to warm, and how often it is looked at meanwhile.
#[derive(Debug, Clone, Copy)]
pub struct WarmOptions {
    pub timeout: Duration,
    pub poll: Duration,
}

impl Default for WarmOptions {
    fn default() -> Self {
        WarmOptions { timeout: Duration::from_secs(900), poll: Duration::from_secs(10) }
    }
}

/// A cold release brought back.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Warmed {
    pub release: u32,
    /// From the first capacity change to every target healthy.
    pub seconds: u64,
    pub instances: u32,
}

impl Warmed {
    /// `2m05s`, `40s`.
    pub fn took(&self) -> String {
        match (self.seconds / 60, self.seconds % 60) {
            (0, s) => format!("{s}s"),
            (m, s) => format!("{m}m{s:02}s"),
        }
    }
}

/// What a rollback did: the release now serving, the traffic change, and the warm-up when the
/// release was cold.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Rollback {
    pub release: u32,
    pub change: TrafficChange,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmed: Option<Warmed>,
}

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

/// How a traffic shift runs, beyond where it goes.
#[derive(Debug, Clone, Copy)]
pub struct ShiftOptions {
    pub strategy: Strategy,
    /// Between health polls.
    pub poll: Duration,
    /// How long the releases gaining traffic may take to be healthy before the first step.
    pub health_timeout: Duration,
    /// Judge by the manifest's metric analysis (off: health only, `--no-analysis`).
    pub judge: bool,
    /// Run the manifest's hooks (off: `--no-hooks`).
    pub hooks: bool,
}

pub struct Ops<'a, A: Aws> {
    aws: &'a A,
    f: Formation,
    say: &'a (dyn Fn(&str) + Sync),
}

impl<A: Aws> std::fmt::Debug for Ops<'_, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops").field("formation", &self.f).finish()
    }
}

/// One ELBv2 write: a rule's ARN, its whole weighted forward (target group, weight), and the
/// forward's stickiness (kept as it is).
type RuleWrite = (String, Vec<(String, u32)>, Option<u32>);

fn nothing_deployed(f: &Formation) -> Error {
    Error::Artifact(format!("formation {} has no published release in s3://{}/{}: deploy one first", f.name, f.bucket, f.prefix))
}

impl<'a, A: Aws> Ops<'a, A> {
    pub fn new(aws: &'a A, f: Formation, say: &'a (dyn Fn(&str) + Sync)) -> Self {
        Ops { aws, f, say }
    }

    /// The latest published manifest (the formation's outputs).
    pub async fn outputs(&self) -> Result<(Manifest, Vec<u8>), Error> {
        let key = format!("{}manifest.json", self.f.prefix);
        let o = retry("read the published manifest", || self.aws.get_object(&self.f.bucket, &key)).await?.ok_or_else(|| nothing_deployed(&self.f))?;
        let m: Manifest =
            serde_json::from_slice(&o.body).map_err(|e| Error::Artifact(format!("s3://{}/{key} is not a gilliam manifest: {e}", self.f.bucket)))?;
        if m.formation.name != self.f.name {
            return Err(Error::Artifact(format!("s3://{}/{key} belongs to formation {:?}, not {:?}", self.f.bucket, m.formation.name, self.f.name)));
        }
        Ok((m, o.body))
    }

    pub async fn state(&self) -> Result<State, Error> {
        Ok(state::read(self.aws, &self.f.bucket, &self.f.prefix, &self.f.name).await?.0)
    }

    pub async fn history(&self) -> Result<Vec<Event>, Error> {
        Ok(self.state().await?.history)
    }

    /// Rules of the routing stacks, with each target group's release.
    async fn rules(&self, m: &Manifest) -> Result<Vec<RuleView>, Error> {
        let mut by_arn: BTreeMap<String, u32> = BTreeMap::new();
        for (name, value) in retry("list exports", || self.aws.list_exports()).await? {
            if let Some((n, _, _)) = crate::observe::parse_export(&self.f.name, &name) {
                by_arn.insert(value, n);
            }
        }
        let rules = crate::observe::routing_rules(self.aws, m).await?;
        Ok(rules
            .into_iter()
            .map(|(logical, r)| RuleView {
                logical,
                arn: r.arn,
                stickiness: r.stickiness,
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

    /// The (release, target group) pairs the rules forward to, for the releases `pick` takes,
    /// each once, in order.
    fn target_groups(rules: &[RuleView], pick: impl Fn(u32) -> bool) -> Vec<(u32, String)> {
        let pairs = rules.iter().flat_map(|r| r.forward.iter().filter_map(|(tg, _, n)| n.filter(|n| pick(*n)).map(|n| (n, tg.clone()))));
        pairs.collect::<BTreeSet<_>>().into_iter().collect()
    }

    fn weights(rules: &[RuleView]) -> BTreeMap<u32, u32> {
        crate::observe::release_weights(rules.iter().flat_map(|r| r.forward.iter().filter_map(|(_, w, n)| n.map(|n| (n, *w)))))
    }

    /// The writes that give every rule the weights `target`: (rule ARN, forward) for each rule
    /// whose weights change.
    fn writes(rules: &[RuleView], target: &BTreeMap<u32, u32>) -> Result<Vec<RuleWrite>, Error> {
        let mut changes = Vec::new();
        for r in rules {
            let releases: Vec<Option<u32>> = r.forward.iter().map(|(_, _, n)| *n).collect();
            let Some(weights) = crate::observe::rule_weights(&releases, target) else {
                return Err(Error::Artifact(format!("rule {} forwards to no target group of a live release; deploy again", r.arn)));
            };
            let new: Vec<(String, u32)> = r.forward.iter().zip(weights).map(|((tg, _, _), w)| (tg.clone(), w)).collect();
            if new.iter().zip(&r.forward).any(|((_, a), (_, b, _))| a != b) {
                changes.push((r.arn.clone(), new, r.stickiness));
            }
        }
        Ok(changes)
    }

    /// The writes, a few at a time, so that a large formation flips fast.
    async fn write(&self, changes: &[RuleWrite]) -> Result<(), Error> {
        use futures_util::stream::{self, StreamExt};
        let results: Vec<Result<(), Error>> = stream::iter(changes.iter())
            .map(|(arn, forward, sticky)| retry("set rule weights", move || self.aws.set_rule_weights(arn, forward, *sticky)))
            .buffer_unordered(8)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>, Error>>().map(|_| ())
    }

    /// Each routed release's weight now (empty before the first deploy).
    pub async fn weights_now(&self) -> Result<BTreeMap<u32, u32>, Error> {
        match self.outputs().await {
            Ok((m, _)) => Ok(Self::weights(&self.rules(&m).await?)),
            Err(Error::Artifact(_)) => Ok(BTreeMap::new()),
            Err(e) => Err(e),
        }
    }

    /// Puts the weights `target` back on every rule of the routing stacks `m` names, after a
    /// CloudFormation rollback of a routing stack restored the weights of an older template.
    /// Returns how many rules it wrote.
    pub async fn reassert(&self, m: &Manifest, target: &BTreeMap<u32, u32>) -> Result<usize, Error> {
        let rules = self.rules(m).await?;
        let changes = Self::writes(&rules, target)?;
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

    /// Sets the weights of releases: `{12: 100}` flips, `{11: 90, 12: 10}` splits. Only ELBv2
    /// writes, one per rule whose weights change; everything is checked before the first write.
    pub async fn traffic(&self, target: &BTreeMap<u32, u32>) -> Result<TrafficChange, Error> {
        let (m, _) = self.outputs().await?;
        let rules = self.rules(&m).await?;
        self.traffic_on(&rules, target, "").await
    }

    /// `traffic_on`, with `label` before the history's `traffic ...` line.
    async fn traffic_on(&self, rules: &[RuleView], target: &BTreeMap<u32, u32>, label: &str) -> Result<TrafficChange, Error> {
        let refuse = |m: String| Err(Error::Artifact(m));
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
        let changes = Self::writes(rules, target)?;
        let before = Self::weights(rules);
        // The change is recorded after the writes: a state file that cannot be recorded to
        // (corrupt, foreign) refuses the change before anything moves.
        self.state().await?;
        self.write(&changes).await?;
        let after: BTreeMap<u32, u32> = before.keys().map(|n| (*n, target.get(n).copied().unwrap_or(0))).collect();
        let line: Vec<String> = after.iter().map(|(n, w)| format!("{n}={w}")).collect();
        state::update(self.aws, &self.f.bucket, &self.f.prefix, &self.f.name, |st| {
            st.traffic = after.clone();
            // A bake window watches the weights it began with: any change ends it.
            st.bake = None;
            st.history.push(state::event(format!("{label}traffic {}", line.join(" "))));
        })
        .await?;
        Ok(TrafficChange { before, after, writes: changes.len() })
    }

    /// Moves traffic to `target` by `strategy`, judged as the published manifest says
    /// (`shift_on`).
    pub async fn shift(&self, target: &BTreeMap<u32, u32>, strategy: Strategy, poll: Duration, health_timeout: Duration) -> Result<TrafficChange, Error> {
        let (m, _) = self.outputs().await?;
        self.shift_on(&m, target, &ShiftOptions { strategy, poll, health_timeout, judge: true, hooks: true }).await
    }

    /// Moves traffic to `target` by `opts.strategy`, on the routing of manifest `m`, whose
    /// delivery settings say how the release is judged and who is told:
    /// - before the first step of a gradual shift, the releases gaining traffic must have all
    ///   their targets healthy (up to `health_timeout`); then the `pre_traffic` hook runs, and
    ///   its failure stops the shift before any weight moves;
    /// - between steps they are watched for the strategy's wait: one unhealthy target, or a
    ///   metric breach (checked every `analysis.interval_seconds`), aborts; at the end of the
    ///   wait the analysis must pass: too little traffic to judge aborts too;
    /// - after the last step the `post_traffic` hook runs; its failure rolls the traffic back;
    /// - an abort puts every weight back at once, records why in the history (which metric,
    ///   which value, which threshold), runs `on_abort` and ends in `Error::Aborted`.
    ///
    /// Every step is recorded in the history and sent to the notification sinks.
    pub async fn shift_on(&self, m: &Manifest, target: &BTreeMap<u32, u32>, opts: &ShiftOptions) -> Result<TrafficChange, Error> {
        let strategy = opts.strategy;
        let delivery = &m.delivery;
        let hooks = if opts.hooks { delivery.hooks.clone() } else { gilliam_compiler::manifest::Hooks::default() };
        let analysis = delivery.analysis.clone().filter(|_| opts.judge);
        let active = hooks.any() || !delivery.notifications.is_empty();
        if strategy == Strategy::AllAtOnce && !active {
            let rules = self.rules(m).await?;
            return self.traffic_on(&rules, target, "").await;
        }
        let mut rules = self.rules(m).await?;
        let before = Self::weights(&rules);
        let steps = strategy.steps(&before, target);
        let share = |w: &BTreeMap<u32, u32>, n: u32| f64::from(w.get(&n).copied().unwrap_or(0)) / f64::from(w.values().sum::<u32>().max(1));
        let last = steps.last().cloned().unwrap_or_default();
        let gaining: BTreeSet<u32> = last.keys().copied().filter(|n| share(&last, *n) > share(&before, *n)).collect();
        // The release being judged: the newest gaining traffic; its baseline: the one losing
        // the most.
        let candidate = gaining.iter().max().copied();
        let baseline = before
            .keys()
            .copied()
            .filter(|n| !gaining.contains(n) && share(&before, *n) > share(&last, *n))
            .max_by(|a, b| (share(&before, *a) - share(&last, *a)).total_cmp(&(share(&before, *b) - share(&last, *b))).then(a.cmp(b)));
        let watched = Self::target_groups(&rules, |n| gaining.contains(&n));
        let series = Self::series(&rules, &[candidate, baseline]);
        let notifier = crate::delivery::Notifier::new(self.aws, delivery.notifications.clone(), &self.f.name, self.say);
        let about =
            |extra| crate::delivery::with_fields(serde_json::json!({ "release": candidate, "baseline": baseline, "strategy": strategy.to_string() }), extra);
        let env = |hook: &str, traffic: &BTreeMap<u32, u32>, reason: Option<&str>| self.hook_env(m, hook, candidate, baseline, traffic, reason);
        let timeout = Duration::from_secs(u64::from(hooks.timeout_seconds));

        // Healthy before any weight moves: nothing is changed when they never get there.
        if strategy != Strategy::AllAtOnce {
            let deadline = tokio::time::Instant::now() + opts.health_timeout;
            loop {
                let sick = self.unhealthy(&watched, true).await?;
                if sick.is_empty() {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    let why = format!("{strategy} not started, traffic unchanged: {} not healthy after {:?}", sick.join("; "), opts.health_timeout);
                    notifier.send("aborted", about(serde_json::json!({ "reason": why, "traffic": before }))).await;
                    return Err(Error::Timeout(why));
                }
                (self.say)(&format!("waiting for healthy targets: {}", sick.join("; ")));
                tokio::time::sleep(opts.poll).await;
            }
        }
        if let Some(a) = &analysis {
            // A misspelt alarm must not pass for a quiet one: checked before anything moves.
            crate::delivery::alarms_firing(self.aws, &a.alarms).await?;
        }
        notifier.send("started", about(serde_json::json!({ "traffic": before, "target": target }))).await;
        if let (Some(cmd), Some(_)) = (&hooks.pre_traffic, candidate) {
            if let Err(why) = crate::delivery::run_hook("pre_traffic", cmd, &env("pre_traffic", &before, None), timeout, self.say).await {
                let why = format!("{why}; traffic unchanged");
                self.record(&format!("abort {strategy} ({why})")).await?;
                self.after_abort(
                    &hooks,
                    &env("on_abort", &before, Some(&why)),
                    &notifier,
                    "aborted",
                    about(serde_json::json!({ "reason": why, "traffic": before })),
                )
                .await;
                return Err(Error::Aborted(format!("{strategy} aborted before any weight moved: {why}")));
            }
        }
        let n = steps.len();
        let mut change = TrafficChange { before: before.clone(), after: before.clone(), writes: 0 };
        for (i, step) in steps.iter().enumerate() {
            let label = format!("{strategy} step {}/{n}: ", i + 1);
            let c = self.traffic_on(&rules, step, &label).await?;
            let step_started = crate::state::epoch();
            change.writes += c.writes;
            change.after = c.after;
            let shown: Vec<String> = step.iter().map(|(r, w)| format!("{r}={w}")).collect();
            (self.say)(&format!("{label}traffic {}", shown.join(" ")));
            notifier.send("step", about(serde_json::json!({ "step": { "index": i + 1, "of": n }, "traffic": step }))).await;
            if i + 1 == n {
                break;
            }
            rules = self.rules(m).await?;
            match self.watch_step(&watched, analysis.as_ref(), candidate, baseline, &series, step_started, strategy.wait(), opts.poll).await? {
                None => {}
                Some((why, breach)) => {
                    let why = format!("{why} during step {}/{n}", i + 1);
                    (self.say)(&format!("aborting {strategy}: {why}; traffic back"));
                    let back = self.traffic_on(&rules, &before, &format!("abort {strategy} ({why}): ")).await?;
                    change.writes += back.writes;
                    let fields = serde_json::json!({ "reason": why, "breach": breach, "traffic": before, "step": { "index": i + 1, "of": n } });
                    self.after_abort(&hooks, &env("on_abort", &before, Some(&why)), &notifier, "aborted", about(fields)).await;
                    return Err(Error::Aborted(format!("{strategy} aborted: {why}; traffic is back where it was")));
                }
            }
        }
        if let (Some(cmd), Some(_)) = (&hooks.post_traffic, candidate) {
            if let Err(why) = crate::delivery::run_hook("post_traffic", cmd, &env("post_traffic", &change.after, None), timeout, self.say).await {
                (self.say)(&format!("{why}: traffic back"));
                let rules = self.rules(m).await?;
                let back = self.traffic_on(&rules, &before, &format!("rollback ({why}): ")).await?;
                change.writes += back.writes;
                self.after_abort(
                    &hooks,
                    &env("on_abort", &before, Some(&why)),
                    &notifier,
                    "rolled_back",
                    about(serde_json::json!({ "reason": why, "traffic": before })),
                )
                .await;
                return Err(Error::Aborted(format!("{strategy}: {why}; traffic is back where it was")));
            }
        }
        notifier.send("completed", about(serde_json::json!({ "traffic": change.after }))).await;
        Ok(change)
    }

    /// Opens a bake window over the weights now set: recorded in the published state, so that
    /// `gilliam watch` on another machine can watch it (`watch`). `restore` is what a breach
    /// puts back.
    pub async fn begin_bake(&self, release: u32, restore: &BTreeMap<u32, u32>, duration: Duration) -> Result<state::Bake, Error> {
        let (m, _) = self.outputs().await?;
        let weights = Self::weights(&self.rules(&m).await?);
        let baseline = restore.iter().filter(|(n, w)| **n != release && **w > 0).max_by_key(|(n, w)| (**w, **n)).map(|(n, _)| *n);
        let now = state::epoch();
        let bake = state::Bake {
            release,
            baseline,
            restore: restore.clone(),
            weights,
            started: now,
            until: now + duration.as_secs().max(1) as i64,
            actor: state::actor(),
        };
        let r: Vec<String> = restore.iter().map(|(n, w)| format!("{n}={w}")).collect();
        state::update(self.aws, &self.f.bucket, &self.f.prefix, &self.f.name, |st| {
            st.bake = Some(bake.clone());
            st.history.push(state::event(format!("bake release {release} for {}s (a breach restores {})", duration.as_secs(), r.join(" "))));
        })
        .await?;
        Ok(bake)
    }

    /// Watches the bake window recorded in the state until it ends: the release's health every
    /// `poll`, its metrics every analysis interval. A breach puts the window's `restore`
    /// weights back under the deploy lock, provided the weights are still those the window
    /// began with (a change by someone else ends the window instead), runs `on_abort`, tells
    /// the notification sinks, and ends in `Error::Aborted`. No lock is held while watching:
    /// an operator can always roll back meanwhile.
    pub async fn watch(&self, poll: Duration, lock: crate::lock::LockOptions) -> Result<WatchOutcome, Error> {
        use crate::delivery::Verdict;
        let Some(bake) = self.state().await?.bake else {
            return Ok(WatchOutcome::Nothing);
        };
        let (m, _) = self.outputs().await?;
        let analysis = m.delivery.analysis.clone();
        let rules = self.rules(&m).await?;
        let watched = Self::target_groups(&rules, |n| n == bake.release);
        let series = Self::series(&rules, &[Some(bake.release), bake.baseline]);
        let notifier = crate::delivery::Notifier::new(self.aws, m.delivery.notifications.clone(), &self.f.name, self.say);
        let window = serde_json::json!({ "release": bake.release, "baseline": bake.baseline, "bake": { "started": bake.started, "until": bake.until } });
        let about = |extra| crate::delivery::with_fields(window.clone(), extra);
        let interval = analysis.as_ref().map(|a| Duration::from_secs(u64::from(a.interval_seconds)));
        let mut next_check = interval.map(|i| tokio::time::Instant::now() + i);
        (self.say)(&format!("watching release {} until {}s after the epoch ({}s left)", bake.release, bake.until, (bake.until - state::epoch()).max(0)));
        loop {
            // The window is still this one (not ended elsewhere, not replaced by a new shift).
            if self.state().await?.bake.as_ref() != Some(&bake) {
                return Ok(WatchOutcome::Superseded(format!("the bake window of release {} was ended by a later change or another watcher", bake.release)));
            }
            let now = state::epoch();
            let end = now >= bake.until;
            let mut breach: Option<(String, Option<crate::delivery::Breach>)> = None;
            let sick = self.unhealthy(&watched, false).await?;
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
                            crate::delivery::check(self.aws, a, bake.release, baseline, &series, bake.started, now.min(bake.until).max(bake.started + 1))
                                .await?;
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
                (self.say)(&format!("{why}: restoring traffic"));
                let restored = crate::lock::with_lock(self.aws, &self.f, "bake rollback", lock, self.say, async {
                    let rules = self.rules(&m).await?;
                    if Self::weights(&rules) != bake.weights {
                        return Ok(None);
                    }
                    Ok(Some(self.traffic_on(&rules, &bake.restore, &format!("bake rollback ({why}): ")).await?))
                })
                .await?;
                if restored.is_none() {
                    return Ok(WatchOutcome::Superseded(format!("{why}, but the traffic was changed since the bake began: left as it is")));
                }
                let env = self.hook_env(&m, "on_abort", Some(bake.release), bake.baseline, &bake.restore, Some(&why));
                self.after_abort(
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
                state::update(self.aws, &self.f.bucket, &self.f.prefix, &self.f.name, |st| {
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

    /// Watches one step for `wait`: health every `poll`, the metrics every analysis interval
    /// and once more at the end, where only a pass lets the shift go on. `Some((why, breach))`
    /// aborts.
    #[allow(clippy::too_many_arguments)]
    async fn watch_step(
        &self,
        watched: &[(u32, String)],
        analysis: Option<&gilliam_compiler::manifest::Analysis>,
        candidate: Option<u32>,
        baseline: Option<u32>,
        series: &[crate::delivery::Series],
        started: i64,
        wait: Duration,
        poll: Duration,
    ) -> Result<Option<(String, Option<crate::delivery::Breach>)>, Error> {
        use crate::delivery::Verdict;
        let until = tokio::time::Instant::now() + wait;
        let interval = analysis.map(|a| Duration::from_secs(u64::from(a.interval_seconds)));
        let mut next_check = interval.map(|i| tokio::time::Instant::now() + i);
        loop {
            let sick = self.unhealthy(watched, false).await?;
            if !sick.is_empty() {
                return Ok(Some((sick.join("; "), None)));
            }
            let now = tokio::time::Instant::now();
            let end = now >= until;
            if let (Some(a), Some(c)) = (analysis, candidate) {
                if end || next_check.is_some_and(|t| now >= t) {
                    let (verdict, _) = crate::delivery::check(self.aws, a, c, baseline, series, started, crate::state::epoch()).await?;
                    match verdict {
                        Verdict::Breach(b) => return Ok(Some((b.to_string(), Some(b)))),
                        Verdict::Inconclusive(why) if end => return Ok(Some((format!("{why}: not judged healthy"), None))),
                        Verdict::Pass(what) if end => (self.say)(&format!("analysis passed: {what}")),
                        Verdict::Inconclusive(why) => (self.say)(&format!("analysis: {why}; still watching")),
                        Verdict::Pass(_) => {}
                    }
                    next_check = interval.map(|i| now + i);
                }
            }
            if end {
                return Ok(None);
            }
            let mut sleep = poll.min(until - now);
            if let Some(t) = next_check {
                sleep = sleep.min(t.saturating_duration_since(now));
            }
            tokio::time::sleep(sleep.max(Duration::from_millis(1))).await;
        }
    }

    /// The CloudWatch series of the given releases' target groups.
    fn series(rules: &[RuleView], releases: &[Option<u32>]) -> Vec<crate::delivery::Series> {
        rules
            .iter()
            .flat_map(|r| {
                r.forward.iter().filter_map(|(tg, _, n)| n.filter(|n| releases.contains(&Some(*n))).and_then(|n| crate::delivery::Series::new(n, &r.arn, tg)))
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// The environment of a hook: the release, its baseline, the test header that reaches it,
    /// the formation's URLs and the current traffic.
    fn hook_env(
        &self,
        m: &Manifest,
        hook: &str,
        release: Option<u32>,
        baseline: Option<u32>,
        traffic: &BTreeMap<u32, u32>,
        reason: Option<&str>,
    ) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = m.internal_urls.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let t: Vec<String> = traffic.iter().map(|(n, w)| format!("{n}={w}")).collect();
        env.push(("GILLIAM_HOOK".into(), hook.into()));
        env.push(("GILLIAM_FORMATION".into(), self.f.name.clone()));
        env.push(("GILLIAM_TRAFFIC".into(), t.join(" ")));
        if let Some(n) = release {
            env.push(("GILLIAM_RELEASE".into(), n.to_string()));
            if let Some(tr) = &m.test_route {
                // The header names the release being judged: the rules send it to the newest.
                env.push(("GILLIAM_TEST_HEADER".into(), format!("{}: {n}", tr.header)));
                env.push(("GILLIAM_TEST_HEADER_NAME".into(), tr.header.clone()));
                env.push(("GILLIAM_TEST_HEADER_VALUE".into(), n.to_string()));
            }
        }
        if let Some(b) = baseline {
            env.push(("GILLIAM_BASELINE".into(), b.to_string()));
        }
        if let Some(u) = &m.formation.public_url {
            env.push(("GILLIAM_PUBLIC_URL".into(), u.clone()));
        }
        if let Some(r) = reason {
            env.push(("GILLIAM_REASON".into(), r.into()));
        }
        env
    }

    /// After an abort: the `on_abort` hook (its failure only said), then the notification.
    async fn after_abort(
        &self,
        hooks: &gilliam_compiler::manifest::Hooks,
        env: &[(String, String)],
        notifier: &crate::delivery::Notifier<'_, A>,
        event: &str,
        fields: serde_json::Value,
    ) {
        if let Some(cmd) = &hooks.on_abort {
            if let Err(e) = crate::delivery::run_hook("on_abort", cmd, env, Duration::from_secs(u64::from(hooks.timeout_seconds)), self.say).await {
                (self.say)(&e);
            }
        }
        notifier.send(event, fields).await;
    }

    /// One line in the history.
    async fn record(&self, what: &str) -> Result<(), Error> {
        state::update(self.aws, &self.f.bucket, &self.f.prefix, &self.f.name, |st| st.history.push(state::event(what))).await?;
        Ok(())
    }

    /// Target groups (of the given releases) with unhealthy targets, described; with
    /// `strict`, also those not yet healthy (no targets, or targets still starting).
    async fn unhealthy(&self, watched: &[(u32, String)], strict: bool) -> Result<Vec<String>, Error> {
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

    /// All traffic back to the newest release older than the newest one with traffic: a
    /// routed one, or a cold one, which is warmed first (`warm`, with `warming`'s limits).
    pub async fn rollback(&self, warming: &WarmOptions) -> Result<Rollback, Error> {
        let (m, _) = self.outputs().await?;
        let mut rules = self.rules(&m).await?;
        let weights = Self::weights(&rules);
        // The newest release with any traffic: during a 90/10 canary, rollback aborts the canary.
        let Some((&serving, _)) = weights.iter().filter(|(_, w)| **w > 0).max_by_key(|(n, _)| **n) else {
            return Err(Error::Artifact("no release carries traffic: nothing to roll back from".into()));
        };
        let st = self.state().await?;
        let cold: BTreeSet<u32> = st.releases.iter().filter(|(_, r)| r.status == "cold").map(|(n, _)| *n).collect();
        let Some(previous) = weights.keys().chain(cold.iter()).copied().filter(|n| *n < serving).max() else {
            return Err(Error::Artifact(format!("release {serving} serves and no earlier release is still running or cold: nothing to roll back to")));
        };
        let warmed = if cold.contains(&previous) && !weights.contains_key(&previous) {
            let w = self.warm(previous, warming).await?;
            rules = self.rules(&m).await?;
            Some(w)
        } else {
            None
        };
        let change = self.traffic_on(&rules, &BTreeMap::from([(previous, 100)]), "").await?;
        Ok(Rollback { release: previous, change, warmed })
    }

    /// Brings a cold release back to where a flip can reach it: the release back in the
    /// routing (at weight 0, and recorded live), its Auto Scaling groups to their recorded
    /// size, every instance in service and every target healthy. Traffic is not touched.
    /// Says, and returns, how long it took.
    pub async fn warm(&self, release: u32, opts: &WarmOptions) -> Result<Warmed, Error> {
        let started = tokio::time::Instant::now();
        let deadline = started + opts.timeout;
        let st = self.state().await?;
        let Some(record) = st.releases.get(&release) else {
            return Err(Error::Artifact(format!("release {release} is not recorded in formation {}", self.f.name)));
        };
        if record.status != "cold" {
            return Err(Error::Artifact(format!("release {release} is {}, not cold: nothing to warm", record.status)));
        }
        let groups = self.groups(record).await?;
        let published = self.published_scales(release).await?;
        let mut sizes: Vec<(String, String, u32, u32, u32)> = Vec::new();
        for (svc, name) in &groups {
            let s = published.get(svc);
            // As gilliam last set it (`gilliam scale`), else as compiled.
            let desired = record.scale.get(svc).copied().or(s.map(|s| s.desired)).unwrap_or(1);
            let (min, max) = s.map_or((desired, desired), |s| (s.min.min(desired), s.max.max(desired)));
            sizes.push((svc.clone(), name.clone(), min, desired, max));
        }
        // Routed first, at weight 0: its instances then register into target groups that ELBv2
        // health-checks from the start (the targets of a target group in no rule are `unused`,
        // never healthy), and a routing that cannot hold one more release is refused before
        // any instance starts. Live from here on: the next converge keeps it routed.
        let (m, _) = self.outputs().await?;
        let bundle: Bundle = crate::bundle::from_s3(self.aws, &self.f.bucket, &self.f.prefix, m.release.number).await.map_err(Error::Bundle)?;
        Box::pin(Converger::new(self.aws, &bundle, Options::default(), self.say).route_with(release)).await?;
        state::update(self.aws, &self.f.bucket, &self.f.prefix, &self.f.name, |st| {
            if let Some(r) = st.releases.get_mut(&release) {
                r.status = "live".into();
            }
        })
        .await?;
        for (svc, name, min, desired, max) in &sizes {
            (self.say)(&format!("warming release {release}: {svc} to {desired} instance(s)"));
            retry("set capacity", || self.aws.set_capacity(name, *min, *desired, *max)).await?;
        }
        let names: Vec<String> = sizes.iter().map(|(_, n, ..)| n.clone()).collect();
        let short = || async {
            let found: BTreeMap<String, crate::aws::Group> = if names.is_empty() {
                BTreeMap::new()
            } else {
                retry("describe groups", || self.aws.describe_groups(&names)).await?.into_iter().map(|g| (g.name.clone(), g)).collect()
            };
            Ok(sizes
                .iter()
                .filter_map(|(svc, name, _, desired, _)| {
                    let up = found.get(name).map_or(0, |g| g.in_service);
                    (up < *desired).then(|| format!("{svc} {up} of {desired} in service"))
                })
                .collect())
        };
        let late = |what: String| {
            format!(
                "release {release} not warm after {:?}: {what}; traffic unchanged; it stays routed at weight 0 with its groups at their size: follow it with `gilliam releases`, or `gilliam retire {release}`",
                opts.timeout
            )
        };
        self.until_none(deadline, opts.poll, "waiting for instances", short, late).await?;
        let instances: u32 = sizes.iter().map(|(_, _, _, d, _)| *d).sum();
        let rules = self.rules(&m).await?;
        let watched = Self::target_groups(&rules, |n| n == release);
        let late = |what: String| format!("release {release} is routed (weight 0) but not healthy after {:?}: {what}; traffic unchanged", opts.timeout);
        self.until_none(deadline, opts.poll, "waiting for healthy targets", || self.unhealthy(&watched, true), late).await?;
        let seconds = started.elapsed().as_secs();
        let warmed = Warmed { release, seconds, instances };
        self.record(&format!("warm release {release}: {instances} instance(s) in service and healthy in {}", warmed.took())).await?;
        Ok(warmed)
    }

    /// Polls `lacking` (what is not there yet, described) every `poll`, saying what it waits
    /// for, until it answers nothing; past `deadline`, a time-out worded by `late`.
    async fn until_none<F, Fut>(
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
            (self.say)(&format!("{waiting}: {}", what.join("; ")));
            tokio::time::sleep(poll).await;
        }
    }

    /// Each service's scale as compiled for `release` (its published manifest); empty when it
    /// cannot be read.
    async fn published_scales(&self, release: u32) -> Result<BTreeMap<String, gilliam_compiler::manifest::Scale>, Error> {
        let key = format!("{}releases/{release}/manifest.json", self.f.prefix);
        Ok(match retry("read the release's manifest", || self.aws.get_object(&self.f.bucket, &key)).await? {
            Some(o) => serde_json::from_slice::<Manifest>(&o.body)
                .map(|m| m.services.into_iter().filter_map(|s| s.scale.map(|x| (s.name, x))).collect())
                .unwrap_or_default(),
            None => BTreeMap::new(),
        })
    }

    /// Physical Auto Scaling group names of a release's services.
    async fn groups(&self, record: &state::ReleaseRecord) -> Result<BTreeMap<String, String>, Error> {
        let mut by_stack: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
        for (_, stack) in record.groups.values() {
            if by_stack.contains_key(stack.as_str()) {
                continue;
            }
            let res = match retry("list stack resources", || self.aws.stack_resources(stack)).await {
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

    pub async fn releases(&self) -> Result<Vec<ReleaseRow>, Error> {
        let rules = match self.outputs().await {
            Ok((m, _)) => self.rules(&m).await?,
            Err(_) => Vec::new(),
        };
        self.release_rows(&rules).await
    }

    /// Each release's requests, 5xx and latency over the last `METRICS_WINDOW`, in one
    /// GetMetricData round; `None` (said) when CloudWatch cannot be read.
    async fn recent_metrics(&self, rules: &[RuleView], releases: &[u32]) -> Option<BTreeMap<u32, crate::delivery::Sample>> {
        let wanted: Vec<Option<u32>> = releases.iter().map(|n| Some(*n)).collect();
        let series = Self::series(rules, &wanted);
        let now = state::epoch();
        match crate::delivery::samples(self.aws, &series, now - METRICS_WINDOW.as_secs() as i64, now).await {
            Ok(s) => Some(s),
            Err(e) => {
                (self.say)(&format!("metrics unavailable: {e}"));
                None
            }
        }
    }

    async fn release_rows(&self, rules: &[RuleView]) -> Result<Vec<ReleaseRow>, Error> {
        let weights = &Self::weights(rules);
        let st = self.state().await?;
        let live: Vec<u32> = st.releases.iter().filter(|(_, r)| r.status == "live").map(|(n, _)| *n).collect();
        let metrics = if rules.is_empty() { None } else { self.recent_metrics(rules, &live).await };
        let mut rows = Vec::new();
        for (n, r) in st.releases.iter().filter(|(_, r)| r.status == "live" || r.status == "cold") {
            let stack_status = match r.stacks.first() {
                Some(s) => retry("describe stack", || self.aws.describe_stack(s)).await?.map_or("MISSING".into(), |s| s.status),
                None => "NONE".into(),
            };
            let groups = self.groups(r).await?;
            let names: Vec<String> = groups.values().cloned().collect();
            let found: BTreeMap<String, crate::aws::Group> = if names.is_empty() {
                BTreeMap::new()
            } else {
                retry("describe groups", || self.aws.describe_groups(&names)).await?.into_iter().map(|g| (g.name.clone(), g)).collect()
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
        let rules = self.rules(&m).await?;
        let weights = Self::weights(&rules);
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

    /// Sets the desired count of services of one release, within each group's min and max.
    pub async fn scale(&self, release: u32, changes: &BTreeMap<String, u32>) -> Result<(), Error> {
        let st = self.state().await?;
        let r = st.releases.get(&release).ok_or_else(|| Error::Artifact(format!("release {release} is not recorded")))?;
        match r.status.as_str() {
            "live" => {}
            "cold" => return Err(Error::Artifact(format!("release {release} is cold: warm it first with `gilliam warm {release}`"))),
            other => return Err(Error::Artifact(format!("release {release} is {other}, not live"))),
        }
        let groups = self.groups(r).await?;
        // The service's range as compiled for this release (one read), else the group's own.
        let published = self.published_scales(release).await?;
        let names: Vec<String> = changes.keys().filter_map(|svc| groups.get(svc).cloned()).collect();
        let found: BTreeMap<String, crate::aws::Group> = if names.is_empty() {
            BTreeMap::new()
        } else {
            retry("describe groups", || self.aws.describe_groups(&names)).await?.into_iter().map(|g| (g.name.clone(), g)).collect()
        };
        let mut plan = Vec::new();
        for (svc, n) in changes {
            let g = groups.get(svc).ok_or_else(|| {
                Error::Artifact(format!("release {release} has no service {svc:?} (services: {})", groups.keys().cloned().collect::<Vec<_>>().join(", ")))
            })?;
            let g = found.get(g).ok_or_else(|| Error::Artifact(format!("the Auto Scaling group of {svc} in release {release} is gone")))?;
            let (min, max) = published.get(svc).map_or((g.min, g.max), |s| (s.min, s.max));
            if *n < min || *n > max {
                return Err(Error::Artifact(format!(
                    "{svc}={n} is outside the service's scale, min {min} and max {max}; change `scale` in gilliam.yml for a wider range"
                )));
            }
            plan.push((g.name.clone(), g.min.min(*n), *n, g.max.max(*n)));
        }
        for (name, min, desired, max) in &plan {
            retry("set capacity", || self.aws.set_capacity(name, *min, *desired, *max)).await?;
        }
        let what: Vec<String> = changes.iter().map(|(s, n)| format!("{s}={n}")).collect();
        state::update(self.aws, &self.f.bucket, &self.f.prefix, &self.f.name, |st| {
            if let Some(r) = st.releases.get_mut(&release) {
                r.scale.extend(changes.iter().map(|(s, n)| (s.clone(), *n)));
            }
            st.history.push(state::event(format!("scale -r{release} {}", what.join(" "))));
        })
        .await?;
        Ok(())
    }

    /// Removes a release that carries no traffic: routing without it, its groups to zero, its
    /// stacks deleted. The latest release is kept: deploy another before retiring it.
    pub async fn retire(&self, release: u32) -> Result<(), Error> {
        let (m, _) = self.outputs().await?;
        if release == m.release.number {
            return Err(Error::Artifact(format!("release {release} is the latest deployed; deploy another release before retiring it")));
        }
        let st = self.state().await?;
        let record = st
            .releases
            .get(&release)
            .filter(|r| r.status == "live" || r.status == "cold")
            .ok_or_else(|| Error::Artifact(format!("release {release} is not live or cold")))?
            .clone();
        let weights = Self::weights(&self.rules(&m).await?);
        if weights.get(&release).copied().unwrap_or(0) > 0 {
            return Err(Error::Artifact(format!("release {release} carries traffic ({}%): move traffic away first (gilliam traffic)", weights[&release])));
        }
        let bundle: Bundle = crate::bundle::from_s3(self.aws, &self.f.bucket, &self.f.prefix, m.release.number).await.map_err(Error::Bundle)?;
        let c = Converger::new(self.aws, &bundle, Options::default(), self.say);
        Box::pin(c.retire_release(release, &record.stacks)).await?;
        state::update(self.aws, &self.f.bucket, &self.f.prefix, &self.f.name, |st| {
            if let Some(r) = st.releases.get_mut(&release) {
                r.status = "retired".into();
            }
            st.traffic.remove(&release);
            st.history.push(state::event(format!("retire release {release}")));
        })
        .await?;
        Ok(())
    }
}
