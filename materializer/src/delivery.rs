//! Judging a release while traffic moves to it, and telling people: per-release load balancer
//! metrics from CloudWatch compared with the baseline's (`judge`), CloudWatch alarms, the
//! operator's hooks (`run_hook`) and notifications to a webhook, SNS and EventBridge
//! (`Notifier`). Every release has its own target groups, so its metrics are its own.

use crate::aws::{Aws, MetricQuery};
use crate::error::Error;
use crate::retry::retry;
use gilliam_compiler::manifest::{Analysis, Notifications};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// What one release served over a window, summed over its target groups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Sample {
    pub requests: f64,
    /// 5xx answers from the release's targets.
    pub errors_5xx: f64,
    /// Requests whose connection to a target failed (TargetConnectionErrorCount, and the TLS
    /// handshakes that failed: TargetTLSNegotiationErrorCount): clients got a 502 or 503 from
    /// the load balancer, which its target group's 5xx count does not show.
    #[serde(skip_serializing_if = "is_zero")]
    pub connection_errors: f64,
    /// The highest per-minute p99 target response time of its target groups, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
}

impl Sample {
    /// Requests that failed because of the release's targets: their 5xx and the connections
    /// to them that failed.
    pub fn failed(&self) -> f64 {
        self.errors_5xx + self.connection_errors
    }

    /// Failed requests in percent of requests (0 without any).
    pub fn error_rate_percent(&self) -> f64 {
        let all = self.requests.max(self.failed());
        if all > 0.0 {
            self.failed() * 100.0 / all
        } else {
            0.0
        }
    }
}

impl std::fmt::Display for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.connection_errors > 0.0 {
            write!(
                f,
                "{} requests, {:.2}% failed ({} 5xx, {} target connection errors)",
                self.requests as u64,
                self.error_rate_percent(),
                self.errors_5xx as u64,
                self.connection_errors as u64
            )?;
        } else {
            write!(f, "{} requests, {:.2}% 5xx", self.requests as u64, self.error_rate_percent())?;
        }
        if let Some(p) = self.p99_ms {
            write!(f, ", p99 {p:.0} ms")?;
        }
        Ok(())
    }
}

/// A threshold the release went past.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breach {
    pub release: u32,
    /// `error_rate`, `p99`, `error_rate_vs_baseline`, `p99_vs_baseline`, `alarm`, `health`,
    /// `hook`.
    pub metric: String,
    pub value: String,
    pub threshold: String,
}

impl std::fmt::Display for Breach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "release {}: {} {} over the threshold {}", self.release, self.metric, self.value, self.threshold)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Within every threshold, on enough requests; says what was seen.
    Pass(String),
    Breach(Breach),
    /// Too little traffic to judge: never a pass.
    Inconclusive(String),
}

/// Judges the candidate's sample against the thresholds and the baseline's sample over the
/// same window. `alarms_firing`: the named alarms now in ALARM.
pub fn judge(a: &Analysis, candidate: (u32, Sample), baseline: Option<(u32, Sample)>, alarms_firing: &[String]) -> Verdict {
    let (n, c) = candidate;
    let breach = |metric: &str, value: String, threshold: String| Verdict::Breach(Breach { release: n, metric: metric.into(), value, threshold });
    if let Some(alarm) = alarms_firing.first() {
        return breach("alarm", format!("{alarm} in ALARM"), "OK".into());
    }
    // So many errors that even min_requests requests would be over the rate: a breach on
    // however little traffic.
    let floor = c.requests.max(f64::from(a.min_requests));
    if c.failed() > 0.0 && c.failed() * 100.0 / floor.max(c.failed()) > a.max_error_rate_percent {
        return breach(
            "error_rate",
            format!("{:.2}% ({} of {} requests)", c.error_rate_percent(), c.failed() as u64, c.requests.max(c.failed()) as u64),
            format!("{}%", a.max_error_rate_percent),
        );
    }
    if c.requests < f64::from(a.min_requests) {
        return Verdict::Inconclusive(format!("release {n}: too little traffic to judge ({} requests, {} needed)", c.requests as u64, a.min_requests));
    }
    if let (Some(p99), Some(max)) = (c.p99_ms, a.max_p99_ms) {
        if p99 > f64::from(max) {
            return breach("p99", format!("{p99:.0} ms"), format!("{max} ms"));
        }
    }
    let mut compared = String::from("no baseline to compare with");
    if let Some((b, s)) = baseline {
        if s.requests >= f64::from(a.min_requests) {
            let ratio = a.max_ratio_vs_baseline;
            let (cr, br) = (c.error_rate_percent(), s.error_rate_percent());
            if br > 0.0 && cr > ratio * br {
                return breach("error_rate_vs_baseline", format!("{cr:.2}% vs {br:.2}% for release {b}"), format!("{ratio}x the baseline"));
            }
            if let (Some(cp), Some(bp)) = (c.p99_ms, s.p99_ms) {
                if bp > 0.0 && cp > ratio * bp {
                    return breach("p99_vs_baseline", format!("{cp:.0} ms vs {bp:.0} ms for release {b}"), format!("{ratio}x the baseline"));
                }
            }
            compared = format!("release {b}: {s}");
        } else {
            compared = format!("baseline release {b} too quiet to compare ({} requests)", s.requests as u64);
        }
    }
    Verdict::Pass(format!("release {n}: {c}; {compared}"))
}

/// A target group of a release, as CloudWatch names it: the load balancer and target group
/// dimensions (`app/NAME/ID`, `targetgroup/NAME/ID`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Series {
    pub release: u32,
    pub load_balancer: String,
    pub target_group: String,
}

impl Series {
    /// From a listener rule's ARN (which holds its load balancer's) and a target group's ARN.
    pub fn new(release: u32, rule_arn: &str, tg_arn: &str) -> Option<Series> {
        let lb = rule_arn.split_once(":listener-rule/")?.1.split('/').take(3).collect::<Vec<_>>().join("/");
        let tg = format!("targetgroup/{}", tg_arn.split_once(":targetgroup/")?.1);
        (lb.split('/').count() == 3).then_some(Series { release, load_balancer: lb, target_group: tg })
    }
}

const NAMESPACE: &str = "AWS/ApplicationELB";
/// GetMetricData's most queries a call.
pub const MAX_QUERIES: usize = 500;
/// GetMetricData calls in flight at once, when a formation needs several.
const METRIC_CALLS_AT_ONCE: usize = 4;

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// The queries for `series`: six per target group, read 500 to a GetMetricData call. Only what
/// ELBv2 publishes per target group can be attributed to a release; the load balancer's own
/// 5xx (`HTTPCode_ELB_5XX_Count`: no target to answer, timeouts) have no target group
/// dimension: guard them with a load-balancer alarm in `analysis.alarms`.
pub fn queries(series: &[Series]) -> Vec<MetricQuery> {
    let mut out = Vec::new();
    for (i, s) in series.iter().enumerate() {
        let dims = vec![("LoadBalancer".to_string(), s.load_balancer.clone()), ("TargetGroup".to_string(), s.target_group.clone())];
        for (key, name, stat) in [
            ("req", "RequestCount", "Sum"),
            ("err", "HTTPCode_Target_5XX_Count", "Sum"),
            ("tce", "TargetConnectionErrorCount", "Sum"),
            ("tls", "TargetTLSNegotiationErrorCount", "Sum"),
            ("p99", "TargetResponseTime", "p99"),
            ("p50", "TargetResponseTime", "p50"),
        ] {
            out.push(MetricQuery {
                id: format!("{key}{i}"),
                namespace: NAMESPACE.into(),
                name: name.into(),
                dimensions: dims.clone(),
                stat: stat.into(),
                period: 60,
            });
        }
    }
    out
}

/// Each release's sample over `[start, end)` (seconds since the epoch).
pub async fn samples<A: Aws>(aws: &A, series: &[Series], start: i64, end: i64) -> Result<BTreeMap<u32, Sample>, Error> {
    let mut out: BTreeMap<u32, Sample> = series.iter().map(|s| (s.release, Sample::default())).collect();
    if series.is_empty() {
        return Ok(out);
    }
    // Whole minutes: ELBv2 publishes one datapoint a minute.
    let start = start - start.rem_euclid(60);
    let end = (end + 59) / 60 * 60;
    let qs = queries(series);
    // GetMetricData takes at most 500 queries: one call each 500, so that what the seam
    // counts (and the throttling layers charge) is what AWS is asked. A formation of 1,000
    // services has 44 of them for three live releases: 4 at a time, not one after another
    // (CloudWatch throttles each action per account and region; 4 stay far below it, and a
    // throttled call is tried again).
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    let end = end.max(start + 60);
    let data: BTreeMap<String, Vec<f64>> = stream::iter(qs.chunks(MAX_QUERIES))
        .map(|chunk| retry("read CloudWatch metrics", move || aws.metric_data(chunk, start, end)))
        .buffer_unordered(METRIC_CALLS_AT_ONCE)
        .try_fold(BTreeMap::new(), |mut all, part| async move {
            all.extend(part);
            Ok(all)
        })
        .await?;
    let get = |id: String| data.get(&id).cloned().unwrap_or_default();
    for (i, s) in series.iter().enumerate() {
        let e = out.entry(s.release).or_default();
        e.requests += get(format!("req{i}")).iter().sum::<f64>();
        e.errors_5xx += get(format!("err{i}")).iter().sum::<f64>();
        e.connection_errors += get(format!("tce{i}")).iter().sum::<f64>() + get(format!("tls{i}")).iter().sum::<f64>();
        // TargetResponseTime is in seconds.
        let worst = |v: Vec<f64>| v.into_iter().filter(|x| x.is_finite()).map(|x| x * 1000.0).fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        for (slot, v) in [(&mut e.p99_ms, worst(get(format!("p99{i}")))), (&mut e.p50_ms, worst(get(format!("p50{i}"))))] {
            if let Some(v) = v {
                *slot = Some(slot.map_or(v, |m: f64| m.max(v)));
            }
        }
    }
    Ok(out)
}

/// The named alarms now in ALARM; an alarm that does not exist is an error (a typo in the
/// stage file must not pass for a quiet alarm).
pub async fn alarms_firing<A: Aws>(aws: &A, names: &[String]) -> Result<Vec<String>, Error> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let states = retry("read CloudWatch alarms", || aws.alarm_states(names)).await?;
    let missing: Vec<&String> = names.iter().filter(|n| !states.iter().any(|(s, _)| s == *n)).collect();
    if !missing.is_empty() {
        let list: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        return Err(Error::NotFound(format!(
            "CloudWatch alarm{} {} named under `analysis.alarms` do{} not exist in this region; fix the name or create the alarm",
            if list.len() == 1 { "" } else { "s" },
            list.join(", "),
            if list.len() == 1 { "es" } else { "" }
        )));
    }
    Ok(states.into_iter().filter(|(_, s)| s == "ALARM").map(|(n, _)| n).collect())
}

/// Reads and judges in one go: the candidate against the baseline over `[start, now)`.
/// API calls: one GetMetricData call for each 500 queries, plus one DescribeAlarms when alarms are named.
pub async fn check<A: Aws>(
    aws: &A,
    a: &Analysis,
    candidate: u32,
    baseline: Option<u32>,
    series: &[Series],
    start: i64,
    now: i64,
) -> Result<(Verdict, BTreeMap<u32, Sample>), Error> {
    let wanted: Vec<Series> = series.iter().filter(|s| s.release == candidate || Some(s.release) == baseline).cloned().collect();
    // Only minutes old enough to be complete in CloudWatch (`analysis.lag`).
    let end = now - i64::from(a.lag_seconds);
    let samples = if end > start { samples(aws, &wanted, start, end).await? } else { BTreeMap::new() };
    let firing = alarms_firing(aws, &a.alarms).await?;
    let c = samples.get(&candidate).copied().unwrap_or_default();
    let b = baseline.map(|b| (b, samples.get(&b).copied().unwrap_or_default()));
    Ok((judge(a, (candidate, c), b, &firing), samples))
}

/// Why a step wait of `wait` cannot hold one judged interval (its minutes judged once they are
/// `analysis.lag` old, over `analysis.interval`), or `None`. A shorter wait would always end
/// with too little traffic to judge, and abort a healthy release.
pub fn step_wait_problem(a: &Analysis, strategy: &str, wait: Duration) -> Option<String> {
    let need = u64::from(a.lag_seconds) + u64::from(a.interval_seconds);
    (wait.as_secs() < need).then(|| {
        format!(
            "--strategy {strategy}: a step wait of {}s cannot hold one judged interval: metrics are judged once they are {}s old (analysis.lag) over {}s (analysis.interval); wait at least {need}s per step, shorten analysis.lag or analysis.interval, or pass --no-analysis",
            wait.as_secs(),
            a.lag_seconds,
            a.interval_seconds
        )
    })
}

/// Runs one hook (`sh -c CMD`) with `env`, streaming its output through `say`; killed after
/// `timeout`. `Err` says why it failed.
pub async fn run_hook(name: &str, cmd: &str, env: &[(String, String)], timeout: Duration, say: &(dyn Fn(&str) + Sync)) -> Result<(), String> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    say(&format!("hook {name}: running `{cmd}`"));
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("hook {name} could not start: {e}"))?;
    let mut out = child.stdout.take().map(|o| BufReader::new(o).lines());
    let mut err = child.stderr.take().map(|e| BufReader::new(e).lines());
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            line = async { out.as_mut().expect("guarded").next_line().await }, if out.is_some() => match line {
                Ok(Some(l)) => say(&format!("hook {name}: {l}")),
                _ => out = None,
            },
            line = async { err.as_mut().expect("guarded").next_line().await }, if err.is_some() => match line {
                Ok(Some(l)) => say(&format!("hook {name}: {l}")),
                _ => err = None,
            },
            status = child.wait(), if out.is_none() && err.is_none() => {
                return match status {
                    Ok(s) if s.success() => Ok(()),
                    Ok(s) => Err(format!("hook {name} failed ({s})")),
                    Err(e) => Err(format!("hook {name}: {e}")),
                };
            }
            _ = &mut deadline => {
                let _ = child.kill().await;
                return Err(format!("hook {name} still running after {}s: killed", timeout.as_secs()));
            }
        }
    }
}

/// `base` (a JSON object) with the fields of `extra` (another) added or replaced.
pub fn with_fields(mut base: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    if let (Some(b), serde_json::Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

/// The JSON schema name of a notification body.
pub const EVENT_SCHEMA: &str = "gilliam.deploy-event/1";

/// Sends deploy events to the webhook, SNS topic and EventBridge bus the stage file names.
/// Best effort: a sink that fails is reported through `say` and never fails the deploy.
pub struct Notifier<'a, A: Aws> {
    aws: &'a A,
    to: Notifications,
    formation: String,
    say: &'a (dyn Fn(&str) + Sync),
}

impl<A: Aws> std::fmt::Debug for Notifier<'_, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").field("to", &self.to).finish()
    }
}

impl<'a, A: Aws> Notifier<'a, A> {
    pub fn new(aws: &'a A, to: Notifications, formation: &str, say: &'a (dyn Fn(&str) + Sync)) -> Self {
        Notifier { aws, to, formation: formation.to_string(), say }
    }

    /// The body sent for `event`: the schema, the event, formation, actor and time, and the
    /// event's own fields.
    pub fn body(&self, event: &str, fields: serde_json::Value) -> serde_json::Value {
        let body = serde_json::json!({
            "schema": EVENT_SCHEMA,
            "event": event,
            "formation": self.formation,
            "actor": crate::clock::actor(),
            "time": crate::clock::now(),
        });
        with_fields(body, fields)
    }

    pub async fn send(&self, event: &str, fields: serde_json::Value) {
        if self.to.is_empty() {
            return;
        }
        let body = self.body(event, fields);
        let text = body.to_string();
        // SNS takes a subject "less than 100 characters long".
        let subject: String = format!("gilliam {}: {event}", self.formation).chars().take(99).collect();
        if let Some(url) = &self.to.webhook {
            if let Err(e) = post(url, &text).await {
                (self.say)(&format!("notification {event} to the webhook failed: {e}"));
            }
        }
        if let Some(topic) = &self.to.sns_topic {
            if let Err(e) = retry("publish to SNS", || self.aws.publish(topic, &subject, &text)).await {
                (self.say)(&format!("notification {event} to SNS failed: {e}"));
            }
        }
        if let Some(bus) = &self.to.event_bus {
            let detail_type = format!("gilliam deploy {event}");
            if let Err(e) = retry("put an EventBridge event", || self.aws.put_event(bus, &detail_type, &text)).await {
                (self.say)(&format!("notification {event} to EventBridge failed: {e}"));
            }
        }
    }
}

/// POSTs a JSON body; up to three attempts, ten seconds each. `http://` goes without TLS (and
/// needs no root certificates on the machine); `https://` verifies against the system's roots.
async fn post(url: &str, body: &str) -> Result<(), String> {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    if url.starts_with("http://") {
        return attempts(&Client::builder(TokioExecutor::new()).build_http(), url, body).await;
    }
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| format!("no TLS root certificates on this machine for {url}: {e}"))?
        .https_only()
        .enable_http1()
        .build();
    attempts(&Client::builder(TokioExecutor::new()).build(connector), url, body).await
}

async fn attempts<C>(client: &hyper_util::client::legacy::Client<C, http_body_util::Full<bytes::Bytes>>, url: &str, body: &str) -> Result<(), String>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let mut last = String::new();
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
        let req = hyper::Request::post(url)
            .header("content-type", "application/json")
            .header("user-agent", concat!("gilliam/", env!("CARGO_PKG_VERSION")))
            .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))
            .map_err(|e| format!("bad webhook URL {url}: {e}"))?;
        match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
            Ok(Ok(resp)) if resp.status().is_success() => return Ok(()),
            Ok(Ok(resp)) if resp.status().is_client_error() => return Err(format!("{url} answered {}", resp.status())),
            Ok(Ok(resp)) => last = format!("{url} answered {}", resp.status()),
            Ok(Err(e)) => last = format!("{url}: {e}"),
            Err(_) => last = format!("{url}: no answer in 10 s"),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a() -> Analysis {
        Analysis {
            max_error_rate_percent: 1.0,
            max_p99_ms: Some(500),
            max_ratio_vs_baseline: 1.5,
            min_requests: 50,
            interval_seconds: 60,
            lag_seconds: 0,
            alarms: vec![],
        }
    }
    fn s(requests: f64, errors_5xx: f64, p99: Option<f64>) -> Sample {
        Sample { requests, errors_5xx, connection_errors: 0.0, p99_ms: p99, p50_ms: None }
    }

    #[test]
    fn within_thresholds_passes() {
        let v = judge(&a(), (2, s(1000.0, 5.0, Some(120.0))), Some((1, s(9000.0, 40.0, Some(110.0)))), &[]);
        assert!(matches!(&v, Verdict::Pass(m) if m.contains("release 1")), "{v:?}");
    }

    #[test]
    fn error_rate_over_the_ceiling_is_a_breach_naming_value_and_threshold() {
        let Verdict::Breach(b) = judge(&a(), (2, s(1000.0, 30.0, None)), None, &[]) else { panic!("no breach") };
        assert_eq!((b.metric.as_str(), b.threshold.as_str()), ("error_rate", "1%"));
        assert!(b.value.starts_with("3.00%"), "{b}");
    }

    #[test]
    fn too_little_traffic_is_never_a_pass() {
        assert!(matches!(judge(&a(), (2, s(10.0, 0.0, Some(50.0))), None, &[]), Verdict::Inconclusive(_)));
        assert!(matches!(judge(&a(), (2, s(0.0, 0.0, None)), None, &[]), Verdict::Inconclusive(_)));
        // ...unless the errors alone already break the rate over min_requests requests.
        assert!(matches!(judge(&a(), (2, s(10.0, 10.0, None)), None, &[]), Verdict::Breach(_)));
    }

    #[test]
    fn latency_and_ratios() {
        assert!(matches!(judge(&a(), (2, s(100.0, 0.0, Some(900.0))), None, &[]), Verdict::Breach(b) if b.metric == "p99"));
        let v = judge(&a(), (2, s(1000.0, 8.0, Some(100.0))), Some((1, s(1000.0, 2.0, Some(100.0)))), &[]);
        assert!(matches!(v, Verdict::Breach(b) if b.metric == "error_rate_vs_baseline"));
        let v = judge(&a(), (2, s(1000.0, 0.0, Some(400.0))), Some((1, s(1000.0, 0.0, Some(100.0)))), &[]);
        assert!(matches!(v, Verdict::Breach(b) if b.metric == "p99_vs_baseline"));
        // A baseline too quiet to compare is said so, and not used.
        let v = judge(&a(), (2, s(1000.0, 0.0, Some(400.0))), Some((1, s(3.0, 0.0, Some(10.0)))), &[]);
        assert!(matches!(&v, Verdict::Pass(m) if m.contains("too quiet")), "{v:?}");
    }

    #[test]
    fn an_alarm_in_alarm_is_a_breach_whatever_the_traffic() {
        let v = judge(&a(), (2, s(0.0, 0.0, None)), None, &["api-5xx".to_string()]);
        assert!(matches!(v, Verdict::Breach(b) if b.metric == "alarm" && b.value.contains("api-5xx")));
    }

    #[test]
    fn series_come_from_the_rule_and_target_group_arns() {
        let s = Series::new(
            3,
            "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener-rule/app/shop-public-1/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee",
            "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/shop-r3-api-p/73e2d6bc24d8a067",
        )
        .expect("parsed");
        assert_eq!(s.load_balancer, "app/shop-public-1/50dc6c495c0c9188");
        assert_eq!(s.target_group, "targetgroup/shop-r3-api-p/73e2d6bc24d8a067");
        assert!(Series::new(3, "arn:aws:elasticloadbalancing:x", "tg").is_none());
    }

    #[test]
    fn failed_connections_to_targets_count_as_errors() {
        // A release whose targets reset connections: no 5xx of its own, 3% of clients get a
        // 502 from the load balancer.
        let c = Sample { connection_errors: 30.0, ..s(1000.0, 0.0, Some(100.0)) };
        let Verdict::Breach(b) = judge(&a(), (2, c), None, &[]) else { panic!("not a breach") };
        assert_eq!((b.metric.as_str(), b.value.as_str()), ("error_rate", "3.00% (30 of 1000 requests)"));
        assert_eq!(c.to_string(), "1000 requests, 3.00% failed (0 5xx, 30 target connection errors), p99 100 ms");
        // They are read per target group, with the 5xx.
        let q = queries(&[Series::new(
            2,
            "arn:aws:elasticloadbalancing:eu-west-1:1:listener-rule/app/shop-public-1/abc/def/ghi",
            "arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/shop-r2-api/123",
        )
        .expect("series")]);
        let names: Vec<&str> = q.iter().map(|q| q.name.as_str()).collect();
        assert!(names.contains(&"TargetConnectionErrorCount") && names.contains(&"TargetTLSNegotiationErrorCount"), "{names:?}");
        assert!(q.iter().all(|q| q.dimensions.iter().any(|(k, _)| k == "TargetGroup")));
    }

    #[test]
    fn a_step_wait_must_hold_the_lag_and_one_interval() {
        let with_lag = Analysis { lag_seconds: 180, ..a() };
        let why = step_wait_problem(&with_lag, "canary:10:2m", Duration::from_secs(120)).expect("refused");
        assert!(why.contains("wait at least 240s") && why.contains("analysis.lag") && why.contains("--no-analysis"), "{why}");
        assert_eq!(step_wait_problem(&with_lag, "canary:10:5m", Duration::from_secs(300)), None);
        assert_eq!(step_wait_problem(&a(), "canary:10:1m", Duration::from_secs(60)), None, "no lag: one interval is enough");
    }
}
