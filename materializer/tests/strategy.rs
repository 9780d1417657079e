//! Gradual shifts against moto: linear and canary steps land in moto's rules and in the
//! history; an unhealthy new release (health answers injected at the seam, since moto's
//! targets are always healthy) aborts, puts the weights back at once and says why, for a
//! `traffic` change and for a deploy.

#[macro_use]
mod common;

use common::*;
use gilliam_materializer::aws::prelude::*;
use gilliam_materializer::aws::{AwsResult, PutCondition, Rule};
use gilliam_materializer::ops::Ops;
use gilliam_materializer::sdk::{Endpoint, SdkAws};
use gilliam_materializer::strategy::Strategy;
use gilliam_materializer::{Converger, Error, Options};
use gilliam_tests::moto::Moto;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// moto behind the seam, except that once a rule is written while `sick_release`'s target
/// groups are set, their targets answer "unhealthy".
struct SickAfterFirstStep {
    inner: SdkAws,
    /// Export-name fragment of the sick release's target groups (`shop-r3-`).
    sick: std::sync::Mutex<Option<(String, Vec<String>)>>,
    tripped: AtomicBool,
}

impl SickAfterFirstStep {
    async fn sicken(&self, release: u32) {
        let prefix = format!("shop-r{release}-");
        let arns = self.inner.list_exports().await.expect("exports").into_iter().filter(|(n, _)| n.starts_with(&prefix)).map(|(_, v)| v).collect();
        *self.sick.lock().expect("sick") = Some((prefix, arns));
        self.tripped.store(false, Ordering::SeqCst);
    }
}

gilliam_materializer::forward!(impl[] Aws for SickAfterFirstStep => inner, except Elbv2);

impl Elbv2 for SickAfterFirstStep {
    async fn describe_rules(&self, arns: &[String]) -> AwsResult<Vec<Rule>> {
        self.inner.describe_rules(arns).await
    }
    async fn set_rule_weights(&self, arn: &str, forward: &[(String, u32)], stickiness: Option<u32>) -> AwsResult<()> {
        if let Some((_, arns)) = &*self.sick.lock().expect("sick") {
            if forward.iter().any(|(tg, w)| *w > 0 && arns.contains(tg)) {
                self.tripped.store(true, Ordering::SeqCst);
            }
        }
        self.inner.set_rule_weights(arn, forward, stickiness).await
    }
    async fn deregistration_delay(&self, tg: &str) -> AwsResult<u32> {
        self.inner.deregistration_delay(tg).await
    }
    async fn targets(&self, tg: &str) -> AwsResult<Vec<(String, String)>> {
        self.inner.targets(tg).await
    }
    async fn elb_limits(&self) -> AwsResult<std::collections::BTreeMap<String, u32>> {
        self.inner.elb_limits().await
    }
    async fn target_group_arns(&self) -> AwsResult<Vec<String>> {
        self.inner.target_group_arns().await
    }
    async fn load_balancer_arns(&self) -> AwsResult<Vec<String>> {
        self.inner.load_balancer_arns().await
    }
    async fn target_health(&self, tg: &str) -> AwsResult<Vec<String>> {
        let states = self.inner.target_health(tg).await?;
        let sick = self.sick.lock().expect("sick").as_ref().is_some_and(|(_, arns)| arns.iter().any(|a| a == tg));
        if sick && self.tripped.load(Ordering::SeqCst) {
            return Ok(states.iter().map(|_| "unhealthy".to_string()).collect());
        }
        Ok(states)
    }
}

fn history_tail(state: &gilliam_materializer::state::State, n: usize) -> Vec<String> {
    let h: Vec<String> = state.history.iter().map(|e| e.action.clone()).collect();
    h[h.len().saturating_sub(n)..].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gradual_shifts_step_and_an_unhealthy_release_is_aborted() {
    let moto = Moto::start();
    let endpoint = Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) };
    let aws = SickAfterFirstStep { inner: SdkAws::connect(&endpoint).await, sick: std::sync::Mutex::new(None), tripped: AtomicBool::new(false) };
    let stage = network(&aws.inner, &moto.url).await;
    let artifact = b"a tarball".to_vec();
    let sha = gilliam_materializer::sha256_hex(&artifact);
    aws.inner.create_secure_bucket(ARTIFACTS, REGION).await.expect("bucket");
    aws.inner.put_object(ARTIFACTS, "artifacts/a.tgz", artifact, PutCondition::Always).await.expect("upload");
    let say = |_: &str| {};
    let manual = Options { traffic_auto: false, ..opts() };
    let r1 = compile_in("strategy", &stage, 1, "artifacts/a.tgz", &sha);
    Converger::new(&aws, &r1, opts(), &say).run().await.unwrap_or_else(|e| panic!("{e}"));
    let r2 = compile_in("strategy", &stage, 2, "artifacts/a.tgz", &sha);
    Converger::new(&aws, &r2, manual.clone(), &say).run().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(weights(&aws.inner).await, BTreeMap::from([(1, 100), (2, 0)]));
    let ops = Ops::new(&aws, formation(), &say);
    let poll = Duration::from_millis(100);

    // linear:50 in two steps, both in the history.
    let linear: Strategy = "linear:50:300ms".parse().expect("strategy");
    ops.shift(&BTreeMap::from([(2, 100)]), linear, poll, Duration::from_secs(10)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(weights(&aws.inner).await, BTreeMap::from([(1, 0), (2, 100)]));
    let st = ops.state().await.expect("state");
    assert_eq!(history_tail(&st, 2), ["linear:50:0.3s step 1/2: traffic 1=50 2=50", "linear:50:0.3s step 2/2: traffic 1=0 2=100"]);

    // Release 3 turns unhealthy once it takes traffic: the canary aborts and puts it back.
    let r3 = compile_in("strategy", &stage, 3, "artifacts/a.tgz", &sha);
    Converger::new(&aws, &r3, manual.clone(), &say).run().await.unwrap_or_else(|e| panic!("{e}"));
    aws.sicken(3).await;
    let canary: Strategy = "canary:20:5s".parse().expect("strategy");
    let started = std::time::Instant::now();
    let err = ops.shift(&BTreeMap::from([(3, 100)]), canary, poll, Duration::from_secs(10)).await.expect_err("aborted");
    assert!(matches!(err, Error::Aborted(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(4), "aborted at the first unhealthy answer, not at the end of the wait");
    assert!(err.to_string().contains("release 3") && err.to_string().contains("unhealthy"), "{err}");
    assert_eq!(weights(&aws.inner).await, BTreeMap::from([(1, 0), (2, 100), (3, 0)]), "weights back at once");
    let st = ops.state().await.expect("state");
    let tail = history_tail(&st, 2);
    assert_eq!(tail[0], "canary:20:5s step 1/2: traffic 1=0 2=80 3=20");
    assert!(
        tail[1].starts_with("abort canary:20:5s (release 3: ") && tail[1].contains("unhealthy") && tail[1].ends_with("): traffic 1=0 2=100 3=0"),
        "{tail:?}"
    );
    assert_eq!(st.traffic, BTreeMap::from([(1, 0), (2, 100), (3, 0)]));

    // A deploy by canary: healthy, it ends with all traffic on the new release.
    *aws.sick.lock().expect("sick") = None;
    let r4 = compile_in("strategy", &stage, 4, "artifacts/a.tgz", &sha);
    let by_canary = Options { strategy: "canary:50:200ms".parse().expect("strategy"), ..opts() };
    let plan = Converger::new(&aws, &r4, by_canary.clone(), &say).plan().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(plan.render().contains("by canary:50:0.2s"), "{}", plan.render());
    let back = gilliam_materializer::plan::Plan::from_json(&plan.to_json()).expect("a saved plan keeps its strategy");
    assert_eq!(back, plan);
    Converger::new(&aws, &r4, by_canary.clone(), &say).apply(&plan).await.unwrap_or_else(|e| panic!("{e}"));
    // Retention retired release 3 with this deploy: its canary aborted (judged bad), so it goes
    // first; release 2 (serving before the deploy) and release 1 (which served before it) stay.
    assert_eq!(weights(&aws.inner).await, BTreeMap::from([(1, 0), (2, 0), (4, 100)]));
    let st = ops.state().await.expect("state");
    assert!(st.releases[&3].rolled_back && st.releases[&3].status == "retired", "{:?}", st.releases[&3]);
    assert!(st.releases[&1].served && st.releases[&2].served && !st.releases[&2].rolled_back);
    let st = ops.state().await.expect("state");
    let tail = history_tail(&st, 3);
    assert_eq!(tail[0], "canary:50:0.2s step 1/2: traffic 1=0 2=50 3=0 4=50");
    assert_eq!(tail[1], "canary:50:0.2s step 2/2: traffic 1=0 2=0 3=0 4=100");
    assert!(tail[2].starts_with("deploy release 4 (traffic 1=0 2=0 4=100); retire release 3"), "{tail:?}");

    // A deploy by canary that turns unhealthy: aborted, recorded, not published, nothing retired.
    let r5 = compile_in("strategy", &stage, 5, "artifacts/a.tgz", &sha);
    let plan = Converger::new(&aws, &r5, by_canary.clone(), &say).plan().await.unwrap_or_else(|e| panic!("{e}"));
    let retiring = plan.render().contains("- release 1");
    // Release 5's target groups exist once its stack does: make them sick as soon as they take traffic.
    let sicken = async {
        for _ in 0..200 {
            if aws.inner.list_exports().await.expect("exports").iter().any(|(n, _)| n.starts_with("shop-r5-")) {
                aws.sicken(5).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let by_slow_canary = Options { strategy: "canary:50:5s".parse().expect("strategy"), ..opts() };
    let c = Converger::new(&aws, &r5, by_slow_canary, &say);
    let (r, ()) = tokio::join!(c.run(), sicken);
    let err = r.expect_err("aborted deploy");
    assert!(matches!(err, Error::Aborted(_)), "{err}");
    assert_eq!(weights(&aws.inner).await, BTreeMap::from([(1, 0), (2, 0), (4, 100), (5, 0)]), "traffic back on release 4");
    let st = ops.state().await.expect("state");
    assert!(st.releases.contains_key(&5), "the aborted release is recorded");
    assert!(st.releases[&5].rolled_back && !st.releases[&5].served, "judged bad: {:?}", st.releases[&5]);
    let last = &st.history.last().expect("history").action;
    assert!(last.starts_with("deploy release 5 (canary:50:5s aborted: release 5: ") && last.ends_with("traffic 1=0 2=0 4=100 5=0)"), "{last}");
    if retiring {
        assert!(aws.inner.describe_stack("shop-r1").await.expect("describe").is_some(), "no retention after an abort");
    }
    let published = ops.outputs().await.expect("outputs").0;
    assert_eq!(published.release.number, 4, "the aborted release is not published as the latest");
    // The routing rendered by an operator's command after the abort (retiring release 1) comes
    // from the newest live release, 5, not from the latest published, 4: the test header still
    // reaches release 5, whose stacks are live.
    let header_targets = || async {
        let exports: BTreeMap<String, String> = aws.inner.list_exports().await.expect("exports").into_iter().map(|(n, v)| (v, n)).collect();
        let rules = test_rule_arns(&aws.inner).await;
        let mut owners = std::collections::BTreeSet::new();
        for r in aws.inner.describe_rules(&rules).await.expect("rules") {
            for (tg, _) in r.forward {
                owners.insert(exports[&tg].trim_start_matches("shop-r").split('-').next().expect("number").to_string());
            }
        }
        owners
    };
    assert_eq!(header_targets().await, std::collections::BTreeSet::from(["5".to_string()]), "the aborted deploy's routing sends the header to 5");
    ops.retire(1).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(header_targets().await, std::collections::BTreeSet::from(["5".to_string()]), "and retiring release 1 keeps it there");
}
