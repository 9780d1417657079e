//! A judged shift: traffic moved to a target step by step (a strategy), the releases gaining
//! it watched between steps (health, metric analysis, alarms) with hooks around it and
//! notifications of every step; any breach puts every weight back at once. Converge and the
//! operator's `traffic` both shift through here.

use crate::aws::Aws;
use crate::delivery::{self, Breach, Notifier, Series, Verdict};
use crate::error::Error;
use crate::formation::Formation;
use crate::strategy::Strategy;
use crate::traffic::{series, target_groups, weights, Traffic, TrafficChange};
use gilliam_compiler::manifest::{Analysis, Hooks, Manifest};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

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
pub async fn shift_on<A: Aws>(t: &Traffic<'_, A>, m: &Manifest, target: &BTreeMap<u32, u32>, opts: &ShiftOptions) -> Result<TrafficChange, Error> {
    let strategy = opts.strategy;
    let delivery = &m.delivery;
    let hooks = if opts.hooks { delivery.hooks.clone() } else { Hooks::default() };
    let analysis = delivery.analysis.clone().filter(|_| opts.judge);
    // Before any write: a step too short to judge would abort a healthy release.
    if let (Some(a), false) = (&analysis, strategy == Strategy::AllAtOnce) {
        if let Some(why) = delivery::step_wait_problem(a, &strategy.to_string(), strategy.wait()) {
            return Err(Error::Refused(why));
        }
    }
    let active = hooks.any() || !delivery.notifications.is_empty();
    if strategy == Strategy::AllAtOnce && !active {
        let rules = t.rules(m).await?;
        return t.traffic_on(&rules, target, "").await;
    }
    let mut rules = t.rules(m).await?;
    let before = weights(&rules);
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
    let watched = target_groups(&rules, |n| gaining.contains(&n));
    let series = series(&rules, &[candidate, baseline]);
    let notifier = Notifier::new(t.aws, delivery.notifications.clone(), &t.f.name, t.say);
    let about = |extra| delivery::with_fields(serde_json::json!({ "release": candidate, "baseline": baseline, "strategy": strategy.to_string() }), extra);
    let env = |hook: &str, traffic: &BTreeMap<u32, u32>, reason: Option<&str>| hook_env(&t.f, m, hook, candidate, baseline, traffic, reason);
    let timeout = Duration::from_secs(u64::from(hooks.timeout_seconds));

    // Healthy before any weight moves: nothing is changed when they never get there.
    if strategy != Strategy::AllAtOnce {
        let deadline = tokio::time::Instant::now() + opts.health_timeout;
        loop {
            let sick = t.unhealthy(&watched, true).await?;
            if sick.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                let why = format!("{strategy} not started, traffic unchanged: {} not healthy after {:?}", sick.join("; "), opts.health_timeout);
                notifier.send("aborted", about(serde_json::json!({ "reason": why, "traffic": before }))).await;
                return Err(Error::Timeout(why));
            }
            (t.say)(&format!("waiting for healthy targets: {}", sick.join("; ")));
            tokio::time::sleep(opts.poll).await;
        }
    }
    if let Some(a) = &analysis {
        // A misspelt alarm must not pass for a quiet one: checked before anything moves.
        delivery::alarms_firing(t.aws, &a.alarms).await?;
    }
    notifier.send("started", about(serde_json::json!({ "traffic": before, "target": target }))).await;
    if let (Some(cmd), Some(_)) = (&hooks.pre_traffic, candidate) {
        if let Err(why) = delivery::run_hook("pre_traffic", cmd, &env("pre_traffic", &before, None), timeout, t.say).await {
            let why = format!("{why}; traffic unchanged");
            t.record(&format!("abort {strategy} ({why})")).await?;
            after_abort(t, &hooks, &env("on_abort", &before, Some(&why)), &notifier, "aborted", about(serde_json::json!({ "reason": why, "traffic": before })))
                .await;
            return Err(Error::Aborted(format!("{strategy} aborted before any weight moved: {why}")));
        }
    }
    let n = steps.len();
    let mut change = TrafficChange { before: before.clone(), after: before.clone(), writes: 0 };
    for (i, step) in steps.iter().enumerate() {
        let label = format!("{strategy} step {}/{n}: ", i + 1);
        let c = t.traffic_on(&rules, step, &label).await?;
        let step_started = crate::clock::epoch();
        change.writes += c.writes;
        change.after = c.after;
        let shown: Vec<String> = step.iter().map(|(r, w)| format!("{r}={w}")).collect();
        (t.say)(&format!("{label}traffic {}", shown.join(" ")));
        notifier.send("step", about(serde_json::json!({ "step": { "index": i + 1, "of": n }, "traffic": step }))).await;
        if i + 1 == n {
            break;
        }
        rules = t.rules(m).await?;
        match watch_step(t, &watched, analysis.as_ref(), candidate, baseline, &series, step_started, strategy.wait(), opts.poll).await? {
            None => {}
            Some((why, breach)) => {
                let why = format!("{why} during step {}/{n}", i + 1);
                (t.say)(&format!("aborting {strategy}: {why}; traffic back"));
                let back = t.traffic_away(&rules, &before, &format!("abort {strategy} ({why}): "), candidate).await?;
                change.writes += back.writes;
                let fields = serde_json::json!({ "reason": why, "breach": breach, "traffic": before, "step": { "index": i + 1, "of": n } });
                after_abort(t, &hooks, &env("on_abort", &before, Some(&why)), &notifier, "aborted", about(fields)).await;
                return Err(Error::Aborted(format!("{strategy} aborted: {why}; traffic is back where it was")));
            }
        }
    }
    if let (Some(cmd), Some(_)) = (&hooks.post_traffic, candidate) {
        if let Err(why) = delivery::run_hook("post_traffic", cmd, &env("post_traffic", &change.after, None), timeout, t.say).await {
            (t.say)(&format!("{why}: traffic back"));
            let rules = t.rules(m).await?;
            let back = t.traffic_away(&rules, &before, &format!("rollback ({why}): "), candidate).await?;
            change.writes += back.writes;
            after_abort(
                t,
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

/// Watches one step for `wait`: health every `poll`, the metrics every analysis interval
/// and once more at the end, where only a pass lets the shift go on. `Some((why, breach))`
/// aborts.
#[allow(clippy::too_many_arguments)]
async fn watch_step<A: Aws>(
    t: &Traffic<'_, A>,
    watched: &[(u32, String)],
    analysis: Option<&Analysis>,
    candidate: Option<u32>,
    baseline: Option<u32>,
    series: &[Series],
    started: i64,
    wait: Duration,
    poll: Duration,
) -> Result<Option<(String, Option<Breach>)>, Error> {
    let until = tokio::time::Instant::now() + wait;
    let interval = analysis.map(|a| Duration::from_secs(u64::from(a.interval_seconds)));
    let mut next_check = interval.map(|i| tokio::time::Instant::now() + i);
    loop {
        let sick = t.unhealthy(watched, false).await?;
        if !sick.is_empty() {
            return Ok(Some((sick.join("; "), None)));
        }
        let now = tokio::time::Instant::now();
        let end = now >= until;
        if let (Some(a), Some(c)) = (analysis, candidate) {
            if end || next_check.is_some_and(|t| now >= t) {
                let (verdict, _) = delivery::check(t.aws, a, c, baseline, series, started, crate::clock::epoch()).await?;
                match verdict {
                    Verdict::Breach(b) => return Ok(Some((b.to_string(), Some(b)))),
                    Verdict::Inconclusive(why) if end => return Ok(Some((format!("{why}: not judged healthy"), None))),
                    Verdict::Pass(what) if end => (t.say)(&format!("analysis passed: {what}")),
                    Verdict::Inconclusive(why) => (t.say)(&format!("analysis: {why}; still watching")),
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

/// The environment of a hook: the release, its baseline, the test header that reaches it,
/// the formation's URLs and the current traffic.
pub fn hook_env(
    f: &Formation,
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
    env.push(("GILLIAM_FORMATION".into(), f.name.clone()));
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
pub async fn after_abort<A: Aws>(
    t: &Traffic<'_, A>,
    hooks: &Hooks,
    env: &[(String, String)],
    notifier: &Notifier<'_, A>,
    event: &str,
    fields: serde_json::Value,
) {
    if let Some(cmd) = &hooks.on_abort {
        if let Err(e) = delivery::run_hook("on_abort", cmd, env, Duration::from_secs(u64::from(hooks.timeout_seconds)), t.say).await {
            (t.say)(&e);
        }
    }
    notifier.send(event, fields).await;
}
