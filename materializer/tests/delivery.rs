//! Progressive delivery against moto (behind the strict layer): releases judged by their own
//! target groups' CloudWatch metrics (put with PutMetricData, as ELBv2 would), the test-header
//! route and sticky weighted forwards as moto's ELBv2 holds them, hooks that pass and fail,
//! notifications arriving at a local HTTP receiver (webhook, and SNS through an HTTP
//! subscription), and a bake window that rolls back on a breach.

#[macro_use]
mod common;

use common::*;
use gilliam_doubles::strict::Strict;
use gilliam_materializer::aws::prelude::*;
use gilliam_materializer::aws::PutCondition;
use gilliam_materializer::delivery::Series;
use gilliam_materializer::lock::LockOptions;
use gilliam_materializer::ops::{Ops, ShiftOptions, WatchOutcome};
use gilliam_materializer::sdk::{Endpoint, SdkAws};
use gilliam_materializer::{Converger, Error, Options};
use gilliam_tests::moto::Moto;
use gilliam_tests::receiver::Receiver;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

struct World {
    _moto: Moto,
    url: String,
    aws: Strict<SdkAws>,
    stage: String,
    sha: String,
    hooks: std::path::PathBuf,
    receiver: Receiver,
}

/// moto with a network, the artifact, release 1 serving and release 2 deployed without
/// traffic; the stage file carries `extra` (analysis, hooks, notifications).
async fn world(tag: &str, extra: impl Fn(&Receiver, &Path) -> String) -> World {
    let moto = Moto::start();
    let endpoint = Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) };
    let aws = Strict::new(SdkAws::connect(&endpoint).await);
    let receiver = Receiver::start();
    let hooks = root().join(format!("target/test-scratch/{tag}/hooks"));
    let _ = std::fs::remove_dir_all(&hooks);
    std::fs::create_dir_all(&hooks).expect("hooks dir");
    let stage = network(&aws, &moto.url).await + &extra(&receiver, &hooks);
    let artifact = b"a tarball".to_vec();
    let sha = gilliam_materializer::sha256_hex(&artifact);
    aws.create_secure_bucket(ARTIFACTS, REGION).await.expect("bucket");
    aws.put_object(ARTIFACTS, "artifacts/a.tgz", artifact, PutCondition::Always).await.expect("upload");
    let w = World { url: moto.url.clone(), _moto: moto, aws, stage, sha, hooks, receiver };
    w.deploy(tag, 1, opts()).await.unwrap_or_else(|e| panic!("{e}"));
    w.deploy(tag, 2, Options { traffic_auto: false, ..opts() }).await.unwrap_or_else(|e| panic!("{e}"));
    w
}

impl World {
    async fn deploy(&self, tag: &str, n: u32, o: Options) -> Result<(), Error> {
        let b = compile_in(tag, &self.stage, n, "artifacts/a.tgz", &self.sha);
        Converger::new(&self.aws, &b, o, &|_: &str| {}).run().await.map(|_| ())
    }

    /// The CloudWatch series of release `n`'s public and internal target groups.
    async fn series(&self, n: u32) -> Vec<Series> {
        let exports: BTreeMap<String, String> = self.aws.list_exports().await.expect("exports").into_iter().map(|(k, v)| (v, k)).collect();
        let mut out = Vec::new();
        for r in self.aws.describe_rules(&rule_arns(&self.aws).await).await.expect("rules") {
            for (tg, _) in r.forward {
                if exports.get(&tg).is_some_and(|e| e.starts_with(&format!("shop-r{n}-"))) {
                    out.extend(Series::new(n, &r.arn, &tg));
                }
            }
        }
        out.sort();
        out.dedup();
        assert!(!out.is_empty(), "release {n} has target groups in the rules");
        out
    }

    /// Puts what ELBv2 would publish for release `n`: `requests` requests, `errors` of them
    /// 5xx, answered in `latency` seconds, on its first target group.
    async fn serve(&self, n: u32, requests: f64, errors: f64, latency: f64) {
        use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
        let conf = sdk_config(&self.url).await;
        let cw = aws_sdk_cloudwatch::Client::new(&conf);
        let s = &self.series(n).await[0];
        let dims = vec![
            Dimension::builder().name("LoadBalancer").value(&s.load_balancer).build(),
            Dimension::builder().name("TargetGroup").value(&s.target_group).build(),
        ];
        let datum =
            |name: &str, v: f64, unit: StandardUnit| MetricDatum::builder().metric_name(name).set_dimensions(Some(dims.clone())).value(v).unit(unit).build();
        cw.put_metric_data()
            .namespace("AWS/ApplicationELB")
            .metric_data(datum("RequestCount", requests, StandardUnit::Count))
            .metric_data(datum("HTTPCode_Target_5XX_Count", errors, StandardUnit::Count))
            .metric_data(datum("TargetResponseTime", latency, StandardUnit::Seconds))
            .send()
            .await
            .expect("put metric data");
    }

    fn hook_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.hooks.join(name)).unwrap_or_default()
    }

    /// The notification bodies the webhook got.
    fn webhook(&self) -> Vec<Value> {
        self.receiver.received().into_iter().filter(|(p, _)| p == "/hook").map(|(_, b)| serde_json::from_str(&b).expect("a JSON body")).collect()
    }
}

fn analysis_and_hooks(r: &Receiver, hooks: &Path) -> String {
    let h = hooks.display();
    format!(
        "analysis: {{max_error_rate: 1%, min_requests: 50, max_p99_ms: 800, interval: 1s, lag: 0s}}\n\
         hooks:\n  pre_traffic: 'env | grep ^GILLIAM_ | sort > {h}/pre; echo checking the release'\n  \
         post_traffic: 'echo $GILLIAM_RELEASE >> {h}/post'\n  on_abort: 'echo \"$GILLIAM_REASON\" >> {h}/abort'\n  timeout: 20s\n\
         notifications: {{webhook: {}/hook, event_bus: default}}\n",
        r.url
    )
}

/// Metrics put before a step count when they fall in the minute the step starts in (windows
/// are whole minutes): waits out the last seconds of a minute so that they do.
async fn clear_of_minute_edge() {
    let sec = gilliam_materializer::clock::epoch().rem_euclid(60);
    if sec >= 50 {
        tokio::time::sleep(Duration::from_secs((61 - sec) as u64)).await;
    }
}

fn history_tail(st: &gilliam_materializer::state::State, n: usize) -> Vec<String> {
    let h: Vec<String> = st.history.iter().map(|e| e.action.clone()).collect();
    h[h.len().saturating_sub(n)..].to_vec()
}

fn canary(wait: &str) -> ShiftOptions {
    ShiftOptions {
        strategy: format!("canary:50:{wait}").parse().expect("strategy"),
        poll: Duration::from_millis(100),
        health_timeout: Duration::from_secs(10),
        judge: true,
        hooks: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_within_thresholds_is_promoted_and_one_whose_errors_rise_is_aborted_at_the_next_check() {
    let w = world("delivery-judged", analysis_and_hooks).await;
    let lines = std::sync::Mutex::new(Vec::<String>::new());
    let say = |l: &str| lines.lock().expect("lines").push(l.to_string());
    let ops = Ops::new(&w.aws, formation(), &say);
    let (m, _) = ops.outputs().await.expect("outputs");

    // Release 2 serves well, as does its baseline: promoted after the analysis passes.
    clear_of_minute_edge().await;
    w.serve(1, 1000.0, 2.0, 0.1).await;
    w.serve(2, 400.0, 1.0, 0.12).await;
    ops.shift_on(&m, &BTreeMap::from([(2, 100)]), &canary("1500ms")).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(weights(&w.aws).await, BTreeMap::from([(1, 0), (2, 100)]));
    let said = lines.lock().expect("lines").join("\n");
    assert!(said.contains("analysis passed: release 2: 400 requests, 0.25% 5xx, p99 120 ms; release 1: 1000 requests"), "{said}");
    assert!(said.contains("hook pre_traffic: checking the release"), "hook output is streamed: {said}");
    // The hooks saw the release, its baseline and the header that reaches it.
    let pre = w.hook_log("pre");
    for want in ["GILLIAM_RELEASE=2", "GILLIAM_BASELINE=1", "GILLIAM_TEST_HEADER=X-Gilliam-Release: 2", "GILLIAM_HOOK=pre_traffic", "GILLIAM_TRAFFIC=1=100 2=0"]
    {
        assert!(pre.lines().any(|l| l == want), "{want} in\n{pre}");
    }
    assert_eq!(w.hook_log("post").trim(), "2");
    // Notifications: started, a step per step, completed, with the documented fields.
    let events: Vec<Value> = w.webhook().into_iter().filter(|e| e["release"] == 2).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap_or_default()).collect();
    assert_eq!(kinds, ["started", "step", "step", "completed"]);
    for e in &events {
        assert_eq!(e["schema"], "gilliam.deploy-event/1");
        assert_eq!(e["formation"], "shop");
        assert_eq!(e["baseline"], 1);
        assert!(e["time"].as_str().is_some_and(|t| t.ends_with('Z')) && e["actor"].is_string() && e["strategy"] == "canary:50:1.5s", "{e}");
    }
    assert_eq!(events[1]["step"], serde_json::json!({ "index": 1, "of": 2 }));
    assert_eq!(events[1]["traffic"], serde_json::json!({ "1": 50, "2": 50 }));
    assert!(!said.contains("notification"), "no sink failed (EventBridge took the events): {said}");

    // Release 3 starts well, then its 5xx rate rises mid-canary: aborted at the next check,
    // long before the end of the wait, every weight back, and everyone told which metric.
    w.deploy("delivery-judged", 3, Options { traffic_auto: false, ..opts() }).await.unwrap_or_else(|e| panic!("{e}"));
    let (m, _) = ops.outputs().await.expect("outputs");
    w.serve(2, 1000.0, 1.0, 0.1).await;
    let started = Instant::now();
    let worsen = async {
        for _ in 0..300 {
            if has_traffic(&w.aws, 3).await {
                w.serve(3, 200.0, 50.0, 0.1).await;
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("release 3 never got traffic");
    };
    let (all_to_3, slow) = (BTreeMap::from([(3, 100)]), canary("60s"));
    let (r, worsened) = tokio::join!(ops.shift_on(&m, &all_to_3, &slow), worsen);
    let err = r.expect_err("aborted");
    let took = started.elapsed() - worsened;
    assert!(matches!(err, Error::Aborted(_)), "{err}");
    assert!(took < Duration::from_secs(10), "aborted at the next check ({took:?} after the breach), not at the end of the 60 s wait");
    assert!(err.to_string().contains("release 3: error_rate 25.00% (50 of 200 requests) over the threshold 1%"), "{err}");
    assert_eq!(weights(&w.aws).await, BTreeMap::from([(1, 0), (2, 100), (3, 0)]), "every weight back");
    let st = ops.state().await.expect("state");
    let last = history_tail(&st, 1).remove(0);
    assert!(last.starts_with("abort canary:50:60s (release 3: error_rate 25.00%") && last.ends_with("): traffic 1=0 2=100 3=0"), "{last}");
    assert!(w.hook_log("abort").contains("error_rate 25.00%"), "on_abort got the reason: {}", w.hook_log("abort"));
    let aborted = w.webhook().into_iter().find(|e| e["event"] == "aborted" && e["release"] == 3).expect("an aborted event");
    assert_eq!(aborted["breach"]["metric"], "error_rate");
    assert_eq!(aborted["breach"]["threshold"], "1%");
    assert!(aborted["breach"]["value"].as_str().is_some_and(|v| v.starts_with("25.00%")), "{aborted}");
    assert_eq!(aborted["traffic"], serde_json::json!({ "1": 0, "2": 100, "3": 0 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_little_traffic_is_not_judged_healthy_failing_hooks_stop_or_roll_back_and_a_bake_breach_rolls_back() {
    let w = world("delivery-quiet", |r, h| {
        analysis_and_hooks(r, h).replace("pre_traffic: 'env", &format!("pre_traffic: 'test -e {}/refuse && exit 4; env", h.display()))
    })
    .await;
    let say = |_: &str| {};
    let ops = Ops::new(&w.aws, formation(), &say);
    let (m, _) = ops.outputs().await.expect("outputs");

    // Ten requests are not fifty: never a pass, so the canary does not go on.
    clear_of_minute_edge().await;
    w.serve(1, 1000.0, 0.0, 0.1).await;
    w.serve(2, 10.0, 0.0, 0.1).await;
    let err = ops.shift_on(&m, &BTreeMap::from([(2, 100)]), &canary("1s")).await.expect_err("not judged");
    assert!(err.to_string().contains("too little traffic to judge (10 requests, 50 needed): not judged healthy"), "{err}");
    assert_eq!(weights(&w.aws).await, BTreeMap::from([(1, 100), (2, 0)]));

    // A failing pre_traffic hook stops the shift before any weight moves.
    std::fs::write(w.hooks.join("refuse"), "").expect("refuse");
    let err = ops.shift_on(&m, &BTreeMap::from([(2, 100)]), &canary("1s")).await.expect_err("refused by the hook");
    assert!(err.to_string().contains("aborted before any weight moved: hook pre_traffic failed"), "{err}");
    assert_eq!(weights(&w.aws).await, BTreeMap::from([(1, 100), (2, 0)]));
    let st = ops.state().await.expect("state");
    assert!(history_tail(&st, 1)[0].starts_with("abort canary:50:1s (hook pre_traffic failed"), "{:?}", history_tail(&st, 1));
    std::fs::remove_file(w.hooks.join("refuse")).expect("allow");

    // A failing post_traffic hook rolls the traffic back.
    clear_of_minute_edge().await;
    w.serve(2, 500.0, 0.0, 0.1).await;
    let failing_post = {
        let mut m = m.clone();
        m.delivery.hooks.post_traffic = Some("echo smoke test failed >&2; exit 3".into());
        m
    };
    let err = ops.shift_on(&failing_post, &BTreeMap::from([(2, 100)]), &canary("1s")).await.expect_err("rolled back");
    assert!(err.to_string().contains("hook post_traffic failed"), "{err}");
    assert_eq!(weights(&w.aws).await, BTreeMap::from([(1, 100), (2, 0)]));
    assert!(w.webhook().iter().any(|e| e["event"] == "rolled_back" && e["reason"].as_str().is_some_and(|r| r.contains("post_traffic"))));

    // Promoted, then baked: a breach during the bake puts the earlier traffic back, under
    // the lock, and tells everyone.
    clear_of_minute_edge().await;
    w.serve(2, 500.0, 0.0, 0.1).await;
    ops.shift_on(&m, &BTreeMap::from([(2, 100)]), &canary("1s")).await.unwrap_or_else(|e| panic!("{e}"));
    let bake = ops.begin_bake(2, &BTreeMap::from([(1, 100), (2, 0)]), Duration::from_secs(60)).await.expect("bake");
    assert_eq!(ops.state().await.expect("state").bake, Some(bake.clone()), "the window is recorded for `gilliam watch`");
    let started = Instant::now();
    let breach = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        w.serve(2, 300.0, 0.0, 2.5).await;
    };
    let (r, ()) = tokio::join!(ops.watch(Duration::from_millis(200), LockOptions::default()), breach);
    let err = r.expect_err("the bake rolls back");
    assert!(started.elapsed() < Duration::from_secs(15), "rolled back at the next check, not at the end of the hour");
    assert!(err.to_string().contains("release 2: p99 2500 ms over the threshold 800 ms during the bake of release 2"), "{err}");
    assert_eq!(weights(&w.aws).await, BTreeMap::from([(1, 100), (2, 0)]));
    let st = ops.state().await.expect("state");
    assert_eq!(st.bake, None);
    assert!(history_tail(&st, 1)[0].starts_with("bake rollback (release 2: p99 2500 ms"), "{:?}", history_tail(&st, 1));
    let rolled = w.webhook().into_iter().find(|e| e["event"] == "rolled_back" && e["breach"]["metric"] == "p99").expect("rolled_back event");
    assert_eq!(rolled["bake"]["until"], bake.until);
    let (lock, _) = gilliam_materializer::lock::read(&w.aws, &formation()).await.expect("lock").expect("the rollback took the lock");
    assert!(lock.released && lock.operation == "bake rollback", "{lock:?}");

    // A window whose weights someone changed is left alone.
    ops.begin_bake(1, &BTreeMap::from([(2, 100)]), Duration::from_secs(60)).await.expect("bake");
    ops.traffic(&BTreeMap::from([(1, 50), (2, 50)])).await.expect("a manual split");
    assert_eq!(ops.watch(Duration::from_millis(100), LockOptions::default()).await.expect("watch"), WatchOutcome::Nothing, "the change ended the window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_header_reaches_only_the_new_release_and_weighted_forwards_stay_sticky() {
    let w = world("delivery-header", |r, _| format!("stickiness: 1h\nnotifications: {{sns_topic: arn:aws:sns:{REGION}:123456789012:deploys}}\n# {}\n", r.url))
        .await;
    let conf = sdk_config(&w.url).await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf);
    let exports: BTreeMap<String, String> = w.aws.list_exports().await.expect("exports").into_iter().map(|(k, v)| (v, k)).collect();

    // Each route and each internal name has a twin that matches `X-Gilliam-Release: 2` and
    // forwards to release 2's target group alone, evaluated just before it.
    let tests = test_rule_arns(&w.aws).await;
    let weighted = rule_arns(&w.aws).await;
    assert_eq!(tests.len(), weighted.len(), "one test rule per weighted rule");
    let described = elb.describe_rules().set_rule_arns(Some(tests.iter().chain(&weighted).cloned().collect())).send().await.expect("rules");
    let by_arn: BTreeMap<String, _> = described.rules().iter().map(|r| (r.rule_arn().unwrap_or_default().to_string(), r.clone())).collect();
    for arn in &tests {
        let r = &by_arn[arn];
        let header = r.conditions().iter().find(|c| c.field() == Some("http-header")).and_then(|c| c.http_header_config()).expect("a header condition");
        assert_eq!(header.http_header_name(), Some("X-Gilliam-Release"));
        assert_eq!(header.values(), ["2"]);
        let groups = r.actions()[0].forward_config().expect("forward").target_groups();
        assert_eq!(groups.len(), 1);
        let export = &exports[groups[0].target_group_arn().expect("tg")];
        assert!(export.starts_with("shop-r2-"), "{export}");
        // Its twin: the same other conditions, a larger priority number.
        let twin = weighted
            .iter()
            .map(|a| &by_arn[a])
            .find(|t| {
                let others = |r: &aws_sdk_elasticloadbalancingv2::types::Rule| {
                    r.conditions().iter().filter(|c| c.field() != Some("http-header")).map(|c| format!("{c:?}")).collect::<Vec<_>>()
                };
                // Same listener: the rule ARN holds the listener's.
                let listener = |r: &aws_sdk_elasticloadbalancingv2::types::Rule| r.rule_arn().and_then(|a| a.rsplit_once('/')).map(|(l, _)| l.to_string());
                listener(t) == listener(r) && others(t) == others(r)
            })
            .expect("a twin");
        let prio = |r: &aws_sdk_elasticloadbalancingv2::types::Rule| r.priority().unwrap_or_default().parse::<u32>().expect("number");
        assert!(prio(r) < prio(twin), "the test rule is evaluated first");
    }

    // The weighted forwards are sticky, and stay so through the operator's weight writes.
    // The split is told to SNS, whose HTTP subscription delivers it to the local receiver.
    let sns = aws_sdk_sns::Client::new(&conf);
    let topic = sns.create_topic().name("deploys").send().await.expect("topic").topic_arn().expect("arn").to_string();
    sns.subscribe().topic_arn(&topic).protocol("http").endpoint(format!("{}/sns", w.receiver.url)).send().await.expect("subscribe");
    let say = |_: &str| {};
    let ops = Ops::new(&w.aws, formation(), &say);
    let all_at_once = ShiftOptions { strategy: "all-at-once".parse().expect("strategy"), ..canary("1s") };
    let (m, _) = ops.outputs().await.expect("outputs");
    ops.shift_on(&m, &BTreeMap::from([(1, 90), (2, 10)]), &all_at_once).await.expect("split");
    let told: Vec<Value> = w
        .receiver
        .received()
        .into_iter()
        .filter(|(p, _)| p == "/sns")
        .filter_map(|(_, b)| serde_json::from_str::<Value>(&b).ok())
        .filter_map(|envelope| envelope["Message"].as_str().and_then(|m| serde_json::from_str::<Value>(m).ok()))
        .collect();
    let kinds: Vec<&str> = told.iter().map(|e| e["event"].as_str().unwrap_or_default()).collect();
    assert_eq!(kinds, ["started", "step", "completed"], "{told:?}");
    assert_eq!(told[2]["traffic"], serde_json::json!({ "1": 90, "2": 10 }));
    let after = elb.describe_rules().set_rule_arns(Some(weighted.clone())).send().await.expect("rules");
    for r in after.rules() {
        let sticky = r.actions()[0].forward_config().and_then(|f| f.target_group_stickiness_config()).expect("stickiness");
        assert_eq!((sticky.enabled(), sticky.duration_seconds()), (Some(true), Some(3600)), "{r:?}");
    }
    assert_eq!(weights(&w.aws).await, BTreeMap::from([(1, 90), (2, 10)]));

    // ELBv2 keeps a client whose cookie names a target group there for the whole duration,
    // whatever its weight: a rollback drops the stickiness, so that the canary's sticky clients
    // leave the bad release with everyone else. The next forward change puts it back.
    let sticky_of = |rules: &[aws_sdk_elasticloadbalancingv2::types::Rule]| -> Vec<Option<bool>> {
        rules.iter().map(|r| r.actions()[0].forward_config().and_then(|f| f.target_group_stickiness_config()).and_then(|c| c.enabled())).collect()
    };
    ops.rollback(&gilliam_materializer::ops::WarmOptions::default()).await.expect("rollback");
    assert_eq!(weights(&w.aws).await, BTreeMap::from([(1, 100), (2, 0)]));
    let rolled = elb.describe_rules().set_rule_arns(Some(weighted.clone())).send().await.expect("rules");
    assert!(sticky_of(rolled.rules()).iter().all(|e| *e != Some(true)), "stickiness dropped: {:?}", rolled.rules());
    ops.traffic(&BTreeMap::from([(1, 50), (2, 50)])).await.expect("forward again");
    let again = elb.describe_rules().set_rule_arns(Some(weighted.clone())).send().await.expect("rules");
    assert!(sticky_of(again.rules()).iter().all(|e| *e == Some(true)), "stickiness back: {:?}", again.rules());
}

/// ELBv2's metrics reach CloudWatch minutes late: a step wait too short to judge one interval
/// after that lag would always end "too little traffic" and abort a healthy release. Such a
/// shift is refused before anything is read or written, naming what to change.
#[tokio::test(start_paused = true)]
async fn a_step_too_short_to_judge_is_refused_before_any_write() {
    let stage = "formation: shop\nregion: eu-west-1\nvpc: vpc-0a1b2c3d4e5f60718\npublic_subnets: [subnet-00000001, subnet-00000002]\nprivate_subnets: [subnet-00000011, subnet-00000012]\noutputs_bucket: out-bucket\nanalysis: true\n";
    let b = compile_in("too-short", stage, 1, "a.tgz", &gilliam_materializer::sha256_hex(b"x"));
    let aws = gilliam_doubles::fake::Fake::default();
    let short = Options { strategy: "canary:10:2m".parse().expect("strategy"), ..opts() };
    let err = Converger::new(&aws, &b, short, &|_| {}).plan().await.expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("a step wait of 120s cannot hold one judged interval") && text.contains("wait at least 240s"), "{text}");
    assert!(aws.with(|w| w.calls.is_empty()), "nothing was read or written");
    // Without the analysis, or with steps long enough, planning goes on.
    let unjudged = Options { strategy: "canary:10:2m".parse().expect("strategy"), judge: false, ..opts() };
    assert!(!matches!(Converger::new(&aws, &b, unjudged, &|_| {}).plan().await, Err(Error::Refused(_))));
}

/// A formation's metrics past GetMetricData's 500 queries a call (six per target group: 100
/// target groups are 600 queries) are read in calls of at most 500, each one API call at the
/// seam (which the strict layer holds to AWS's limit), their answers put together.
#[tokio::test]
async fn metrics_past_500_queries_are_read_in_calls_of_500() {
    use gilliam_doubles::counting::Counting;
    let moto = Moto::start();
    let endpoint = Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) };
    let aws = Counting::new(Strict::new(SdkAws::connect(&endpoint).await));
    let series: Vec<Series> = (0..100)
        .map(|i| Series {
            release: 1 + i % 2,
            load_balancer: format!("app/shop-{i}/0123456789abcdef"),
            target_group: format!("targetgroup/shop-tg-{i}/0123456789abcdef"),
        })
        .collect();
    // Requests on the last target group (release 2), whose queries are in the second call.
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
    let last = &series[99];
    let dims = [("LoadBalancer", &last.load_balancer), ("TargetGroup", &last.target_group)].map(|(n, v)| Dimension::builder().name(n).value(v).build());
    let datum = MetricDatum::builder().metric_name("RequestCount").set_dimensions(Some(dims.to_vec())).value(7.0).unit(StandardUnit::Count).build();
    let cw = aws_sdk_cloudwatch::Client::new(&sdk_config(&moto.url).await);
    cw.put_metric_data().namespace("AWS/ApplicationELB").metric_data(datum).send().await.expect("put metric data");
    let end = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64 + 60;
    let samples = gilliam_materializer::delivery::samples(&aws, &series, end - 360, end).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(samples.keys().copied().collect::<Vec<_>>(), [1, 2], "a sample for each release");
    assert_eq!((samples[&1].requests, samples[&2].requests), (0.0, 7.0), "the second call's answer is put with the first's");
    assert_eq!(aws.calls().get("metric_data"), Some(&2), "600 queries: two calls, {:?}", aws.calls());
}
