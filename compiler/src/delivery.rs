//! How a release is judged and announced while traffic moves to it: metric analysis
//! thresholds, hooks, sticky sessions and notifications, read from `x-gilliam` in gilliam.yml
//! and from the stage file (the stage file wins, key by key), and published in the manifest.

use crate::decode::{self, Fields};
use crate::diag::{Pos, Sink};
use crate::manifest::{
    Analysis, Delivery, Hooks, Notifications, ReleasePhase, DEFAULT_ANALYSIS, DEFAULT_HOOK_TIMEOUT_SECONDS, DEFAULT_RELEASE_PHASE_TIMEOUT_SECONDS,
};
use crate::node::{Node, Value};

/// The header that reaches the newest release at any weight (`X-Gilliam-Release: 12`).
pub const TEST_HEADER: &str = "X-Gilliam-Release";

const ANALYSIS_KEYS: &[&str] = &["max_error_rate", "max_p99_ms", "max_ratio_vs_baseline", "min_requests", "interval", "lag", "alarms"];
const HOOK_KEYS: &[&str] = &["pre_traffic", "post_traffic", "on_abort", "timeout"];
const NOTIFY_KEYS: &[&str] = &["webhook", "sns_topic", "event_bus"];

/// The delivery settings of one file, each key only where the file gives it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Partial {
    analysis: Option<PartialAnalysis>,
    pre_traffic: Option<String>,
    post_traffic: Option<String>,
    on_abort: Option<String>,
    hook_timeout: Option<u32>,
    stickiness: Option<u32>,
    webhook: Option<String>,
    sns_topic: Option<String>,
    event_bus: Option<String>,
    release: Option<PartialRelease>,
}

/// `release:` as one file gives it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PartialRelease {
    /// `release: false` (a stage without the release phase).
    pub(crate) off: bool,
    pub(crate) command: Option<Vec<String>>,
    pub(crate) service: Option<(String, Pos)>,
    pub(crate) timeout: Option<u32>,
    pub(crate) pos: Pos,
}

const RELEASE_KEYS: &[&str] = &["command", "service", "timeout"];

/// A command as a string (split on whitespace, as a service's `script`) or a list of arguments.
fn argv(n: &Node, sink: &mut Sink<'_>, what: &str) -> Option<Vec<String>> {
    let words: Vec<String> = if let Value::Seq(items) = &n.value {
        items.iter().filter_map(|i| decode::scalar_text(i, sink, what)).collect()
    } else {
        decode::scalar_text(n, sink, what)?.split_whitespace().map(str::to_string).collect()
    };
    if words.first().is_none_or(|w| w.trim().is_empty()) {
        sink.error_hint(n.pos, format!("{what} is empty"), "give the program and its arguments: `bin/migrate` or `[bin/rails, db:migrate]`");
        return None;
    }
    Some(words)
}

/// `release: CMD`, `release: [ARGV...]`, `release: {command, service, timeout}`, or (to turn it
/// off for a stage) `release: false`.
fn release(n: &Node, sink: &mut Sink<'_>) -> Option<PartialRelease> {
    let mut r = PartialRelease { pos: n.pos, ..PartialRelease::default() };
    match &n.value {
        Value::Bool(false) => r.off = true,
        Value::Bool(true) => {
            sink.error_hint(n.pos, "`release: true` names no command", "write `release: bin/migrate` (the command), or `release: false` to turn it off");
            return None;
        }
        Value::Map(_) => {
            let before = sink.out.len();
            let entries = decode::map(n, sink, "`release`")?;
            let mut f = Fields::new(entries);
            r.command = f.get("command").and_then(|c| argv(c, sink, "`release.command`"));
            r.service = f.get("service").and_then(|c| decode::string(c, sink, "`release.service`").map(|s| (s, c.pos)));
            // From a minute to twelve hours: a migration that takes longer is not a release phase.
            r.timeout = f.get("timeout").and_then(|c| seconds(c, sink, "`release.timeout`", 60, 43_200));
            f.finish(sink, RELEASE_KEYS, "`release`");
            // Said once: a `release` with a bad key is not also one without a command.
            if sink.out.len() > before {
                return None;
            }
        }
        _ => r.command = Some(argv(n, sink, "`release`")?),
    }
    Some(r)
}

#[derive(Debug, Clone, Default, PartialEq)]
struct PartialAnalysis {
    max_error_rate_percent: Option<f64>,
    max_p99_ms: Option<u32>,
    max_ratio_vs_baseline: Option<f64>,
    min_requests: Option<u32>,
    interval_seconds: Option<u32>,
    lag_seconds: Option<u32>,
    alarms: Option<Vec<String>>,
}

/// `90`, `90s`, `5m`, `1h` as whole seconds within `lo..=hi`.
pub(crate) fn seconds(n: &Node, sink: &mut Sink<'_>, what: &str, lo: u32, hi: u32) -> Option<u32> {
    let text = decode::scalar_text(n, sink, what)?;
    let (num, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&text[..i], &text[i..]),
        None => (text.as_str(), "s"),
    };
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    match num.trim().parse::<u64>() {
        Ok(v) if mult > 0 && (u64::from(lo)..=u64::from(hi)).contains(&(v * mult)) => Some((v * mult) as u32),
        Ok(_) if mult > 0 => {
            sink.error_hint(n.pos, format!("{what} `{text}` is out of range"), format!("give between {lo} and {hi} seconds"));
            None
        }
        _ => {
            sink.error_hint(n.pos, format!("{what} `{text}` is not a duration"), "write whole seconds, minutes or hours: `30s`, `5m`, `1h`");
            None
        }
    }
}

/// A number, or a percentage written `1%` or `0.5%` (returned in percent).
fn percent(n: &Node, sink: &mut Sink<'_>, what: &str) -> Option<f64> {
    let text = decode::scalar_text(n, sink, what)?;
    let v = text.trim_end_matches('%').trim().parse::<f64>().ok().filter(|v| (0.0..=100.0).contains(v) && v.is_finite());
    if v.is_none() {
        sink.error_hint(n.pos, format!("{what} `{text}` is not a percentage"), "write a percentage from 0% to 100%, such as `1%` or `0.5%`");
    }
    v
}

fn command(n: &Node, sink: &mut Sink<'_>, what: &str) -> Option<String> {
    let c = decode::string(n, sink, what)?;
    if c.trim().is_empty() {
        sink.error_hint(n.pos, format!("{what} is empty"), "give a shell command, or leave the key out");
        return None;
    }
    Some(c)
}

fn analysis(n: &Node, sink: &mut Sink<'_>) -> Option<PartialAnalysis> {
    // `analysis: true` (or `{}`) turns the defaults on.
    if let Value::Bool(b) = n.value {
        return b.then(PartialAnalysis::default);
    }
    let entries = decode::map(n, sink, "`analysis`")?;
    let mut f = Fields::new(entries);
    let mut a = PartialAnalysis {
        max_error_rate_percent: f.get("max_error_rate").and_then(|n| percent(n, sink, "`analysis.max_error_rate`")),
        max_p99_ms: f.get("max_p99_ms").and_then(|n| decode::int_in(n, sink, "`analysis.max_p99_ms`", 1, 600_000)).map(|v| v as u32),
        max_ratio_vs_baseline: None,
        min_requests: f.get("min_requests").and_then(|n| decode::int_in(n, sink, "`analysis.min_requests`", 0, 1_000_000_000)).map(|v| v as u32),
        interval_seconds: f.get("interval").and_then(|n| seconds(n, sink, "`analysis.interval`", 1, 3600)),
        lag_seconds: f.get("lag").and_then(|n| seconds(n, sink, "`analysis.lag`", 0, 3600)),
        alarms: None,
    };
    if let Some(n) = f.get("max_ratio_vs_baseline") {
        let text = decode::scalar_text(n, sink, "`analysis.max_ratio_vs_baseline`");
        match text.as_deref().map(str::parse::<f64>) {
            Some(Ok(v)) if (1.0..=1000.0).contains(&v) => a.max_ratio_vs_baseline = Some(v),
            Some(_) => sink.error_hint(
                n.pos,
                "`analysis.max_ratio_vs_baseline` must be a number from 1 to 1000",
                "1.5 lets the new release be 50% worse than the baseline",
            ),
            None => {}
        }
    }
    if let Some(list) = f.get("alarms").and_then(|n| decode::seq(n, sink, "`analysis.alarms`")) {
        let mut alarms = Vec::new();
        for item in list {
            if let Some(s) = decode::string(item, sink, "an alarm name") {
                if s.len() > 255 {
                    sink.error_hint(item.pos, "an alarm name has at most 255 characters", "give the CloudWatch alarm's name");
                } else if !alarms.contains(&s) {
                    alarms.push(s);
                }
            }
        }
        if alarms.len() > 100 {
            sink.error_hint(list[100].pos, "at most 100 alarms are watched", "combine them in a composite alarm");
        }
        a.alarms = Some(alarms);
    }
    f.finish(sink, ANALYSIS_KEYS, "`analysis`");
    Some(a)
}

fn is_url(s: &str) -> bool {
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace))
}

/// Reads the delivery keys of one mapping (`x-gilliam` or the stage file's top level); the
/// caller has already checked that no other keys are there.
pub(crate) fn decode(f: &mut Fields<'_>, sink: &mut Sink<'_>, stage: bool) -> Partial {
    let mut p = Partial::default();
    if let Some(n) = f.get("analysis") {
        p.analysis = analysis(n, sink);
    }
    if let Some(entries) = f.get("hooks").and_then(|n| decode::map(n, sink, "`hooks`")) {
        let mut h = Fields::new(entries);
        p.pre_traffic = h.get("pre_traffic").and_then(|n| command(n, sink, "`hooks.pre_traffic`"));
        p.post_traffic = h.get("post_traffic").and_then(|n| command(n, sink, "`hooks.post_traffic`"));
        p.on_abort = h.get("on_abort").and_then(|n| command(n, sink, "`hooks.on_abort`"));
        p.hook_timeout = h.get("timeout").and_then(|n| seconds(n, sink, "`hooks.timeout`", 1, 7200));
        h.finish(sink, HOOK_KEYS, "`hooks`");
    }
    // ELBv2's target group stickiness lasts 1 second to 7 days.
    p.stickiness = f.get("stickiness").and_then(|n| seconds(n, sink, "`stickiness`", 1, 604_800));
    p.release = f.get("release").and_then(|n| release(n, sink));
    if stage {
        if let Some(entries) = f.get("notifications").and_then(|n| decode::map(n, sink, "`notifications`")) {
            let mut nf = Fields::new(entries);
            if let Some(n) = nf.get("webhook") {
                p.webhook = decode::string(n, sink, "`notifications.webhook`")
                    .filter(|s| decode::check(sink, n.pos, is_url(s), format!("bad webhook URL `{s}`"), "write an http:// or https:// URL"));
            }
            if let Some(n) = nf.get("sns_topic") {
                p.sns_topic = decode::string(n, sink, "`notifications.sns_topic`").filter(|s| {
                    let ok = s.starts_with("arn:") && s.split(':').nth(2) == Some("sns") && s.split(':').count() == 6;
                    decode::check(sink, n.pos, ok, format!("bad SNS topic `{s}`"), "give the topic's ARN: arn:aws:sns:REGION:ACCOUNT:NAME")
                });
            }
            if let Some(n) = nf.get("event_bus") {
                p.event_bus = decode::string(n, sink, "`notifications.event_bus`").filter(|s| {
                    let ok = s.len() <= 1600 && (s.starts_with("arn:") || s.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-/".contains(&c)));
                    decode::check(sink, n.pos, ok, format!("bad event bus `{s}`"), "give an EventBridge bus name (`default`) or ARN")
                });
            }
            nf.finish(sink, NOTIFY_KEYS, "`notifications`");
        }
    }
    p
}

/// gilliam.yml's settings overlaid by the stage file's, key by key.
pub(crate) fn merge(app: &Partial, stage: &Partial) -> Delivery {
    let analysis = match (&app.analysis, &stage.analysis) {
        (None, None) => None,
        (a, s) => {
            let d = DEFAULT_ANALYSIS;
            let pick = |f: fn(&PartialAnalysis) -> Option<f64>, dv: f64| s.as_ref().and_then(f).or(a.as_ref().and_then(f)).unwrap_or(dv);
            let pick_u = |f: fn(&PartialAnalysis) -> Option<u32>| s.as_ref().and_then(f).or(a.as_ref().and_then(f));
            Some(Analysis {
                max_error_rate_percent: pick(|p| p.max_error_rate_percent, d.max_error_rate_percent),
                max_p99_ms: pick_u(|p| p.max_p99_ms),
                max_ratio_vs_baseline: pick(|p| p.max_ratio_vs_baseline, d.max_ratio_vs_baseline),
                min_requests: pick_u(|p| p.min_requests).unwrap_or(d.min_requests),
                interval_seconds: pick_u(|p| p.interval_seconds).unwrap_or(d.interval_seconds),
                lag_seconds: pick_u(|p| p.lag_seconds).unwrap_or(d.lag_seconds),
                alarms: s.as_ref().and_then(|p| p.alarms.clone()).or_else(|| a.as_ref().and_then(|p| p.alarms.clone())).unwrap_or_default(),
            })
        }
    };
    let or = |s: &Option<String>, a: &Option<String>| s.clone().or_else(|| a.clone());
    let hooks = Hooks {
        pre_traffic: or(&stage.pre_traffic, &app.pre_traffic),
        post_traffic: or(&stage.post_traffic, &app.post_traffic),
        on_abort: or(&stage.on_abort, &app.on_abort),
        timeout_seconds: stage.hook_timeout.or(app.hook_timeout).unwrap_or(DEFAULT_HOOK_TIMEOUT_SECONDS),
    };
    Delivery {
        analysis,
        hooks,
        notifications: Notifications { webhook: stage.webhook.clone(), sns_topic: stage.sns_topic.clone(), event_bus: stage.event_bus.clone() },
        stickiness_seconds: stage.stickiness.or(app.stickiness),
        release_phase: None,
    }
}

/// The release phase of gilliam.yml overlaid by the stage file's, key by key (`release:
/// false` in the stage file turns it off): its service defaults to `web`, or to the only
/// service with a process. `services` are the formation's own code (no auxiliaries); a
/// problem is reported at the file (`files`: gilliam.yml's and the stage file's names) that
/// wrote it.
pub(crate) fn release_phase(
    app: &Partial,
    stage: &Partial,
    services: &[&str],
    files: (&str, &str),
    out: &mut Vec<crate::diag::Diagnostic>,
) -> Option<ReleasePhase> {
    match release_phase_in(app, stage, services) {
        Ok(r) => r,
        Err(Problem { in_stage, pos, message, hint }) => {
            Sink { file: if in_stage { files.1 } else { files.0 }, out }.error_hint(pos, message, hint);
            None
        }
    }
}

struct Problem {
    in_stage: bool,
    pos: Pos,
    message: String,
    hint: String,
}

fn release_phase_in(app: &Partial, stage: &Partial, services: &[&str]) -> Result<Option<ReleasePhase>, Problem> {
    let (a, s) = (app.release.as_ref(), stage.release.as_ref());
    if s.is_some_and(|s| s.off) || (s.is_none() && a.is_some_and(|a| a.off)) || (a.is_none() && s.is_none()) {
        return Ok(None);
    }
    // Where a problem of the merged setting is reported: the stage file's when it gave `release`.
    let (in_stage, pos) = match (s, a) {
        (Some(r), _) => (true, r.pos),
        (None, Some(r)) => (false, r.pos),
        (None, None) => (false, Pos::default()),
    };
    let command = s.and_then(|s| s.command.clone()).or_else(|| a.and_then(|a| a.command.clone()));
    let timeout_seconds = s.and_then(|s| s.timeout).or(a.and_then(|a| a.timeout)).unwrap_or(DEFAULT_RELEASE_PHASE_TIMEOUT_SECONDS);
    let Some(command) = command else {
        return Err(Problem { in_stage, pos, message: "`release` has no `command`".into(), hint: "add `command: bin/migrate`".into() });
    };
    let given = s.and_then(|s| s.service.clone().map(|x| (x, true))).or_else(|| a.and_then(|a| a.service.clone().map(|x| (x, false))));
    let service = match given {
        Some(((name, pos), in_stage)) if !services.contains(&name.as_str()) => {
            return Err(Problem {
                in_stage,
                pos,
                message: format!("`release.service` names `{name}`, which is not a service of this formation with a process of its own"),
                hint: format!("name one of: {}", services.join(", ")),
            });
        }
        Some(((name, _), _)) => name,
        None if services.contains(&"web") => "web".to_string(),
        None if services.len() == 1 => services[0].to_string(),
        None => {
            return Err(Problem {
                in_stage,
                pos,
                message:
                    "the release phase runs as one of the formation's services (its environment, secrets and instance), and there is no `web` to default to"
                        .into(),
                hint: format!("write `release: {{command: ..., service: NAME}}` with one of: {}", services.join(", ")),
            });
        }
    };
    Ok(Some(ReleasePhase { service, command, timeout_seconds }))
}
