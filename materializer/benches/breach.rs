//! How fast a breach puts the weights back, and what an analysis costs: against moto (the
//! quickstart formation, releases 1 and 2), a canary step is watched with a one-second analysis
//! interval; at a varying moment after the step, the new release's metrics turn bad (at the
//! seam: the next GetMetricData answers a 5xx rate of 25%). Measured per run: breach to the
//! last restoring ELBv2 write, the restoring write round alone, and the API calls per analysis
//! check. Target: one check interval plus one write round.
//! `cargo bench -p gilliam-materializer --bench breach [-- RUNS]`

#[path = "../tests/common/mod.rs"]
#[macro_use]
mod common;

use common::*;
use gilliam_materializer::aws::prelude::*;
use gilliam_materializer::aws::{AwsResult, MetricQuery, Object, ObjectHead, PutCondition, Rule, Stack, StackEvent, StackRequest};
use gilliam_materializer::sdk::{Endpoint, SdkAws};
use gilliam_materializer::{Converger, Options};
use gilliam_materializer::{Ops, ShiftOptions};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// moto behind the seam, with the metrics of the new release answered here: good until
/// `breach` is set, bad after; every weight write timed.
struct Bench {
    inner: SdkAws,
    breach: Mutex<Option<Instant>>,
    writes: Mutex<Vec<(Instant, Instant)>>,
    metric_calls: AtomicU64,
    alarm_calls: AtomicU64,
    other_calls: AtomicU64,
}

impl Bench {
    fn other(&self) {
        self.other_calls.fetch_add(1, Ordering::Relaxed);
    }
}

impl S3 for Bench {
    async fn bucket_exists(&self, b: &str) -> AwsResult<bool> {
        self.inner.bucket_exists(b).await
    }
    async fn create_secure_bucket(&self, b: &str, r: &str) -> AwsResult<()> {
        self.inner.create_secure_bucket(b, r).await
    }
    async fn get_object(&self, b: &str, k: &str) -> AwsResult<Option<Object>> {
        self.other();
        self.inner.get_object(b, k).await
    }
    async fn head_object(&self, b: &str, k: &str) -> AwsResult<Option<ObjectHead>> {
        self.inner.head_object(b, k).await
    }
    async fn put_object(&self, b: &str, k: &str, body: Vec<u8>, c: PutCondition) -> AwsResult<String> {
        self.other();
        self.inner.put_object(b, k, body, c).await
    }
}

impl CloudFormation for Bench {
    async fn describe_stack(&self, n: &str) -> AwsResult<Option<Stack>> {
        self.other();
        self.inner.describe_stack(n).await
    }
    async fn create_stack(&self, r: &StackRequest) -> AwsResult<String> {
        self.inner.create_stack(r).await
    }
    async fn update_stack(&self, r: &StackRequest) -> AwsResult<()> {
        self.inner.update_stack(r).await
    }
    async fn delete_stack(&self, n: &str) -> AwsResult<()> {
        self.inner.delete_stack(n).await
    }
    async fn continue_update_rollback(&self, n: &str) -> AwsResult<()> {
        self.inner.continue_update_rollback(n).await
    }
    async fn stack_events(&self, n: &str) -> AwsResult<Vec<StackEvent>> {
        self.inner.stack_events(n).await
    }
    async fn get_template(&self, n: &str) -> AwsResult<String> {
        self.inner.get_template(n).await
    }
    async fn stack_resources(&self, n: &str) -> AwsResult<Vec<(String, String, String)>> {
        self.other();
        self.inner.stack_resources(n).await
    }
    async fn list_exports(&self) -> AwsResult<Vec<(String, String)>> {
        self.other();
        self.inner.list_exports().await
    }
    async fn stack_limit(&self) -> AwsResult<Option<u32>> {
        self.other();
        self.inner.stack_limit().await
    }
    async fn stack_names(&self) -> AwsResult<Vec<String>> {
        self.other();
        self.inner.stack_names().await
    }
}

impl Elbv2 for Bench {
    async fn targets(&self, target_group_arn: &str) -> AwsResult<Vec<(String, String)>> {
        self.inner.targets(target_group_arn).await
    }
    async fn describe_rules(&self, arns: &[String]) -> AwsResult<Vec<Rule>> {
        self.other();
        self.inner.describe_rules(arns).await
    }
    async fn set_rule_weights(&self, arn: &str, forward: &[(String, u32)], stickiness: Option<u32>) -> AwsResult<()> {
        let start = Instant::now();
        let r = self.inner.set_rule_weights(arn, forward, stickiness).await;
        self.writes.lock().expect("writes").push((start, Instant::now()));
        r
    }
    async fn target_health(&self, tg: &str) -> AwsResult<Vec<String>> {
        self.other();
        self.inner.target_health(tg).await
    }
    async fn deregistration_delay(&self, tg: &str) -> AwsResult<u32> {
        self.other();
        self.inner.deregistration_delay(tg).await
    }
    async fn elb_limits(&self) -> AwsResult<std::collections::BTreeMap<String, u32>> {
        self.other();
        self.inner.elb_limits().await
    }
    async fn target_group_arns(&self) -> AwsResult<Vec<String>> {
        self.other();
        self.inner.target_group_arns().await
    }
    async fn load_balancer_arns(&self) -> AwsResult<Vec<String>> {
        self.other();
        self.inner.load_balancer_arns().await
    }
}

gilliam_materializer::forward!(impl[] Aws for Bench => inner, except S3 CloudFormation Elbv2 CloudWatch);

impl CloudWatch for Bench {
    async fn metric_data(&self, queries: &[MetricQuery], start: i64, end: i64) -> AwsResult<BTreeMap<String, Vec<f64>>> {
        self.metric_calls.fetch_add(1, Ordering::Relaxed);
        // The real round trip, then the answer of a release that is fine or failing.
        self.inner.metric_data(queries, start, end).await?;
        let bad = self.breach.lock().expect("breach").is_some_and(|t| Instant::now() >= t);
        Ok(queries
            .iter()
            .map(|q| {
                let v = match (q.id.get(..3), bad) {
                    (Some("req"), _) => 200.0,
                    (Some("err"), true) => 50.0,
                    (Some("err"), false) => 0.0,
                    _ => 0.1,
                };
                (q.id.clone(), vec![v])
            })
            .collect())
    }
    async fn alarm_states(&self, names: &[String]) -> AwsResult<Vec<(String, String)>> {
        self.alarm_calls.fetch_add(1, Ordering::Relaxed);
        self.inner.alarm_states(names).await
    }
    async fn log_events(&self, group: &str, stream_prefix: Option<&str>, start_ms: i64, next: Option<&str>) -> AwsResult<gilliam_materializer::aws::LogPage> {
        self.inner.log_events(group, stream_prefix, start_ms, next).await
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args().skip(1).find(|a| !a.starts_with('-')).and_then(|a| a.parse().ok()).unwrap_or(15);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let moto = gilliam_tests::moto::Moto::start();
        let endpoint = Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) };
        let aws = Bench {
            inner: SdkAws::connect(&endpoint).await,
            breach: Mutex::new(None),
            writes: Mutex::new(Vec::new()),
            metric_calls: AtomicU64::new(0),
            alarm_calls: AtomicU64::new(0),
            other_calls: AtomicU64::new(0),
        };
        let interval = Duration::from_secs(1);
        let stage = network(&aws.inner, &moto.url).await + "analysis: {max_error_rate: 1%, min_requests: 50, interval: 1s, lag: 0s, alarms: [shop-5xx]}\n";
        let cw = {
            aws_sdk_cloudwatch::Client::new(&sdk_config(&moto.url).await)
        };
        cw.put_metric_alarm()
            .alarm_name("shop-5xx")
            .namespace("AWS/ApplicationELB")
            .metric_name("HTTPCode_ELB_5XX_Count")
            .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
            .period(60)
            .evaluation_periods(1)
            .threshold(100.0)
            .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
            .send()
            .await
            .expect("alarm");
        let artifact = b"a tarball".to_vec();
        let sha = gilliam_materializer::sha256_hex(&artifact);
        aws.inner.create_secure_bucket(ARTIFACTS, REGION).await.expect("bucket");
        aws.inner.put_object(ARTIFACTS, "artifacts/a.tgz", artifact, PutCondition::Always).await.expect("upload");
        let say = |_: &str| {};
        for (n, auto) in [(1, true), (2, false)] {
            let b = compile_in("bench-breach", &stage, n, "artifacts/a.tgz", &sha);
            Converger::new(&aws.inner, &b, Options { traffic_auto: auto, ..opts() }, &say).run().await.unwrap_or_else(|e| panic!("{e}"));
        }
        let ops = Ops::new(&aws, formation(), &say);
        let (m, _) = ops.outputs().await.expect("outputs");
        let rules = rule_arns(&aws.inner).await.len();
        let shift = ShiftOptions {
            strategy: "canary:50:60s".parse().expect("strategy"),
            poll: Duration::from_millis(250),
            health_timeout: Duration::from_secs(10),
            judge: true,
            hooks: true,
        };
        let (mut reaction, mut round, mut per_check, mut others) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for run in 0..runs {
            *aws.breach.lock().expect("breach") = None;
            aws.metric_calls.store(0, Ordering::Relaxed);
            aws.alarm_calls.store(0, Ordering::Relaxed);
            // The breach lands at a different point of the check interval each run.
            let offset = Duration::from_millis(1200 + (run as u64 * 379) % 1000);
            let arm = async {
                for _ in 0..400 {
                    if weights(&aws.inner).await.get(&2).copied().unwrap_or(0) > 0 {
                        tokio::time::sleep(offset).await;
                        *aws.breach.lock().expect("breach") = Some(Instant::now());
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                panic!("release 2 never got traffic");
            };
            aws.other_calls.store(0, Ordering::Relaxed);
            let all_to_2 = BTreeMap::from([(2, 100)]);
            let (r, ()) = tokio::join!(ops.shift_on(&m, &all_to_2, &shift), arm);
            assert!(r.is_err(), "the breach aborts the canary");
            let at = aws.breach.lock().expect("breach").expect("breached");
            let restoring: Vec<(Instant, Instant)> = aws.writes.lock().expect("writes").drain(..).filter(|(s, _)| *s >= at).collect();
            assert_eq!(restoring.len(), rules, "one write per rule restores the weights");
            assert_eq!(weights(&aws.inner).await, BTreeMap::from([(1, 100), (2, 0)]));
            let first = restoring.iter().map(|(s, _)| *s).min().expect("writes");
            let last = restoring.iter().map(|(_, e)| *e).max().expect("writes");
            let checks = aws.metric_calls.load(Ordering::Relaxed);
            reaction.push((last - at).as_secs_f64());
            round.push((last - first).as_secs_f64());
            per_check.push((checks + aws.alarm_calls.load(Ordering::Relaxed)) as f64 / checks as f64);
            others.push(aws.other_calls.load(Ordering::Relaxed) as f64);
            println!(
                "run {run}: breach {:.0} ms after the step; weights restored {:.0} ms after the breach ({} writes in {:.0} ms); {checks} analysis checks",
                offset.as_secs_f64() * 1000.0,
                (last - at).as_secs_f64() * 1000.0,
                restoring.len(),
                (last - first).as_secs_f64() * 1000.0
            );
        }
        println!(
            "{runs} runs, {rules} weighted rules, check interval {} ms: breach to every weight restored median {:.0} ms (max {:.0} ms); restoring write round median {:.0} ms; target: interval + write round = {:.0} ms",
            interval.as_millis(),
            median(reaction.clone()) * 1000.0,
            reaction.iter().copied().fold(0.0, f64::max) * 1000.0,
            median(round.clone()) * 1000.0,
            (interval.as_secs_f64() + median(round)) * 1000.0
        );
        println!(
            "API calls per analysis check: {:.0} (one GetMetricData for every target group of both releases, one DescribeAlarms); other calls per shift (rules, health, state): median {:.0}",
            median(per_check),
            median(others)
        );
    });
}
