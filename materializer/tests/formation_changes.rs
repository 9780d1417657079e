//! A formation changed between releases the way teams change them, deployed against moto
//! behind the strict layer (`strict::Strict`: real CloudFormation's and ELBv2's rules that moto
//! does not enforce), with traffic split across live releases at every step: each step
//! converges, and traffic stays where the operator put it. Assertions read what moto holds.

use gilliam_doubles::counting::Counting;
use gilliam_doubles::strict::Strict;
use gilliam_materializer::aws::prelude::*;
use gilliam_materializer::aws::{Aws, PutCondition};
use gilliam_materializer::bundle::Bundle;
use gilliam_materializer::sdk::{Endpoint, SdkAws};
use gilliam_materializer::{Converger, Options};
use gilliam_tests::moto;
use std::collections::BTreeMap;

#[macro_use]
mod common;
use common::*;

/// Compiles into a directory of the test's own (`tag`): tests of this file run in parallel.
fn bundle(tag: &str, stage: &str, app: &str, number: u32, sha: &str) -> Bundle {
    let release = format!(
        r#"{{"number": {number}, "artifact": {{"url": "s3://{ARTIFACTS}/a.tgz", "sha256": "{sha}"}}, "runtime_image": "ami-0a1b2c3d4e5f60718", "revision": "rev{number}", "created": "2026-11-22T10:00:00Z"}}"#
    );
    let dir = root().join(format!("target/test-scratch/formation-changes/{tag}/r{number}"));
    gilliam_tests::compile_into(app, &release, stage, &dir);
    Bundle::load(&dir).expect("bundle")
}

/// Weight per release as the gilliam observes it, checked against every rule: each rule holds
/// the formation's weights for the releases that have its service (or, when none of them has
/// any, 1 for the newest).
async fn weights<A: Aws>(aws: &A, b: &Bundle) -> BTreeMap<u32, u32> {
    let observed = gilliam_materializer::observe::traffic(aws, &b.manifest).await.expect("observe");
    let w: BTreeMap<u32, u32> = observed.releases.iter().filter_map(|(n, l)| l.weight.map(|w| (*n, w))).collect();
    let exports: BTreeMap<String, String> = aws.list_exports().await.expect("exports").into_iter().map(|(n, v)| (v, n)).collect();
    for (_, rule) in gilliam_materializer::observe::routing_rules(aws, &b.manifest).await.expect("rules") {
        let releases: Vec<u32> =
            rule.forward.iter().map(|(tg, _)| exports[tg].trim_start_matches("shop-r").split('-').next().expect("n").parse().expect("number")).collect();
        let mut want: Vec<u32> = releases.iter().map(|n| w.get(n).copied().unwrap_or(0)).collect();
        if want.iter().all(|x| *x == 0) {
            let newest = releases.iter().enumerate().max_by_key(|(_, n)| **n).map(|(i, _)| i).expect("a target group");
            want[newest] = 1;
        }
        assert_eq!(rule.forward.iter().map(|(_, w)| *w).collect::<Vec<_>>(), want, "rule {} of releases {releases:?}", rule.arn);
    }
    w
}

const V1: &str = "api:\n  script: bin/api\n  ports: [8080]\n  routes: [api.example.com, example.com/api/*]\nweb:\n  script: bin/web\n  ports: [8080]\n  routes: [example.com]\nworker:\n  script: bin/worker\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formation_changes_converge_on_strict_aws_and_traffic_stays_where_the_operator_put_it() {
    let moto = moto::Moto::start();
    let aws = Counting::new(Strict::new(SdkAws::connect(&Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) }).await));
    let stage = network(&aws, &moto.url).await;
    let say = |line: &str| eprintln!("{line}");
    aws.create_secure_bucket(ARTIFACTS, REGION).await.expect("artifact bucket");
    aws.put_object(ARTIFACTS, "a.tgz", b"a tarball".to_vec(), PutCondition::Always).await.expect("artifact");
    let sha = gilliam_materializer::sha256_hex(b"a tarball");
    let manual = Options { traffic_auto: false, ..opts() };
    let ops = gilliam_materializer::ops::Ops::new(&aws, formation(), &say);

    let v2 = V1.replace("routes: [api.example.com, example.com/api/*]", "routes: [api.example.com, example.com/api/*, example.com/api/v2/*]");
    let v3 = v2.replace("routes: [api.example.com, example.com/api/*, example.com/api/v2/*]", "routes: [example.com/api/v2/*, example.com/api/*]")
        + "search:\n  script: bin/search\n  ports: [9000]\n  routes: [example.com/search/*]\n";
    let v4 = v3
        .replace("web:\n  script: bin/web\n  ports: [8080]\n  routes: [example.com]\n", "")
        .replace("ports: [9000]\n  routes: [example.com/search/*]", "ports: [9100]\n  internal: true");
    // (release, app, the operator's split after it is up)
    let steps: Vec<(u32, String, BTreeMap<u32, u32>)> = vec![
        (2, v2.clone(), BTreeMap::from([(1, 50), (2, 50)])),
        (3, v3.clone(), BTreeMap::from([(2, 90), (3, 10)])),
        (4, v4.clone(), BTreeMap::from([(3, 50), (4, 50)])),
    ];

    let r1 = bundle("story", &stage, V1, 1, &sha);
    Converger::new(&aws, &r1, opts(), &say).run().await.unwrap_or_else(|e| panic!("release 1: {e}"));
    assert_eq!(weights(&aws, &r1).await, BTreeMap::from([(1, 100)]));
    let mut expected = BTreeMap::from([(1, 100)]);
    for (n, app, split) in steps {
        let b = bundle("story", &stage, &app, n, &sha);
        Converger::new(&aws, &b, manual.clone(), &say).run().await.unwrap_or_else(|e| panic!("release {n}: {e}"));
        // Retention drops releases older than keep_releases (2) that carry nothing.
        expected.insert(n, 0);
        while expected.len() > 3 {
            let oldest = *expected.keys().next().expect("a release");
            expected.remove(&oldest);
        }
        assert_eq!(weights(&aws, &b).await, expected, "release {n} came up beside the others without moving traffic");
        ops.traffic(&split).await.unwrap_or_else(|e| panic!("split after release {n}: {e}"));
        expected = expected.keys().map(|r| (*r, split.get(r).copied().unwrap_or(0))).collect();
        assert_eq!(weights(&aws, &b).await, expected);
        // Converging the same release again changes nothing and undoes nothing.
        aws.reset();
        let report = Converger::new(&aws, &b, manual.clone(), &say).run().await.unwrap_or_else(|e| panic!("release {n} again: {e}"));
        assert_eq!(report.changes, Vec::<String>::new(), "release {n}");
        assert_eq!(aws.mutations(), BTreeMap::new(), "release {n}");
        assert_eq!(weights(&aws, &b).await, expected);
        if n == 3 {
            // search is new in release 3, which holds 10%: its rule is release 3's alone, its
            // target group is in a rule (so health-checked, not `unused`), and rolling back to
            // release 2, which has no search, is not refused.
            let to = ops.rollback(&Default::default()).await.unwrap_or_else(|e| panic!("rollback: {e}")).release;
            assert_eq!(to, 2);
            assert_eq!(weights(&aws, &b).await, BTreeMap::from([(1, 0), (2, 100), (3, 0)]));
            let exports: BTreeMap<String, String> = aws.list_exports().await.expect("exports").into_iter().collect();
            let tg = &exports["shop-r3-Search-PublicTargetGroup"];
            assert!(aws.target_health(tg).await.expect("health").iter().all(|h| h != "unused"), "search's target group is routed");
            ops.traffic(&split).await.expect("split again");
        }
    }
    // The formation keeps open every port a live release uses: 9000 (search in release 3) and
    // 9100 (search in release 4) both, as well as 8080.
    let formation: serde_json::Value = serde_json::from_str(&aws.get_template("shop").await.expect("template")).expect("json");
    for p in [8080, 9000, 9100] {
        assert!(formation["Resources"].get(format!("InstanceIngressInternal{p}")).is_some(), "port {p} open");
    }

    // A release whose target groups the rules forward to cannot be deleted (real AWS refuses
    // both the imported exports and the target groups in use): the strict layer says so.
    let err = aws.delete_stack("shop-r4").await.expect_err("in use");
    assert!(err.to_string().contains("in use by"), "{err}");

    // Every routed service goes; then a worker-only release: the routing stack is deleted once
    // empty, and the formation's exports stay for as long as anything imports them.
    let v5 = "api:\n  script: bin/api\n  ports: [8080]\n  internal: true\nworker:\n  script: bin/worker\n";
    let b5 = bundle("story", &stage, v5, 5, &sha);
    Converger::new(&aws, &b5, opts(), &say).run().await.unwrap_or_else(|e| panic!("release 5: {e}"));
    let b6 = bundle("story", &stage, "worker:\n  script: bin/worker\n", 6, &sha);
    Converger::new(&aws, &b6, opts(), &say).run().await.unwrap_or_else(|e| panic!("release 6: {e}"));
    assert_eq!(aws.describe_stack("shop-routing-1").await.expect("describe"), None, "an empty routing group has no stack");
    assert!(aws.describe_stack("shop-r6").await.expect("describe").is_some());
}

/// CloudFormation's behaviour when a routing stack's update fails, which moto does not show:
/// the stack rolls back to the deployed template, and with it ELBv2 gets that template's
/// weights back, which are older than a flip made since with ELBv2 writes only. The rollback
/// ends UPDATE_ROLLBACK_COMPLETE, or UPDATE_ROLLBACK_FAILED until continued.
struct RollingBack<A> {
    inner: A,
    /// The status a failing update ends in; `None`: updates go through.
    fail_with: std::sync::Mutex<Option<&'static str>>,
    /// Stacks whose status is what the failed update left.
    status: std::sync::Mutex<BTreeMap<String, String>>,
}

impl<A: Aws> RollingBack<A> {
    /// What CloudFormation's rollback does to ELBv2: the deployed template's weights again.
    async fn restore_template_weights(&self, stack: &str) {
        let t: serde_json::Value = serde_json::from_str(&self.inner.get_template(stack).await.expect("template")).expect("json");
        let exports: BTreeMap<String, String> = self.inner.list_exports().await.expect("exports").into_iter().collect();
        let physical: BTreeMap<String, String> =
            self.inner.stack_resources(stack).await.expect("resources").into_iter().map(|(id, arn, _)| (id, arn)).collect();
        for (id, r) in t["Resources"].as_object().expect("resources") {
            let Some(groups) = r["Properties"]["Actions"][0]["ForwardConfig"]["TargetGroups"].as_array() else { continue };
            let forward: Vec<(String, u32)> = groups
                .iter()
                .map(|g| (exports[g["TargetGroupArn"]["Fn::ImportValue"].as_str().expect("import")].clone(), g["Weight"].as_u64().expect("weight") as u32))
                .collect();
            self.inner.set_rule_weights(&physical[id], &forward, None).await.expect("rollback weights");
        }
    }
}

gilliam_materializer::forward!(impl[A: Aws] Aws for RollingBack<A> => inner, except CloudFormation);

impl<A: Aws> CloudFormation for RollingBack<A> {
    async fn describe_stack(&self, name: &str) -> gilliam_materializer::aws::AwsResult<Option<gilliam_materializer::aws::Stack>> {
        let st = self.inner.describe_stack(name).await?;
        let over = self.status.lock().expect("status").get(name).cloned();
        Ok(st.map(|mut s| {
            if let Some(status) = over {
                s.reason = Some("The following resource(s) failed to update: [RouteX]".into());
                s.status = status;
            }
            s
        }))
    }
    async fn create_stack(&self, req: &gilliam_materializer::aws::StackRequest) -> gilliam_materializer::aws::AwsResult<String> {
        self.inner.create_stack(req).await
    }
    async fn update_stack(&self, req: &gilliam_materializer::aws::StackRequest) -> gilliam_materializer::aws::AwsResult<()> {
        let fail = *self.fail_with.lock().expect("fail");
        match fail {
            Some(status) if req.name.contains("-routing-") => {
                self.restore_template_weights(&req.name).await;
                self.status.lock().expect("status").insert(req.name.clone(), status.to_string());
                Ok(())
            }
            _ => {
                self.status.lock().expect("status").remove(&req.name);
                self.inner.update_stack(req).await
            }
        }
    }
    async fn delete_stack(&self, name: &str) -> gilliam_materializer::aws::AwsResult<()> {
        self.inner.delete_stack(name).await
    }
    async fn continue_update_rollback(&self, name: &str) -> gilliam_materializer::aws::AwsResult<()> {
        self.status.lock().expect("status").insert(name.to_string(), "UPDATE_ROLLBACK_COMPLETE".into());
        Ok(())
    }
    async fn stack_events(&self, name: &str) -> gilliam_materializer::aws::AwsResult<Vec<gilliam_materializer::aws::StackEvent>> {
        self.inner.stack_events(name).await
    }
    async fn get_template(&self, name: &str) -> gilliam_materializer::aws::AwsResult<String> {
        self.inner.get_template(name).await
    }
    async fn stack_resources(&self, name: &str) -> gilliam_materializer::aws::AwsResult<Vec<(String, String, String)>> {
        self.inner.stack_resources(name).await
    }
    async fn list_exports(&self) -> gilliam_materializer::aws::AwsResult<Vec<(String, String)>> {
        self.inner.list_exports().await
    }
    async fn stack_limit(&self) -> gilliam_materializer::aws::AwsResult<Option<u32>> {
        self.inner.stack_limit().await
    }
    async fn stack_names(&self) -> gilliam_materializer::aws::AwsResult<Vec<String>> {
        self.inner.stack_names().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_routing_update_never_moves_traffic() {
    let moto = moto::Moto::start();
    let inner = SdkAws::connect(&Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) }).await;
    let aws = RollingBack { inner: Strict::new(inner), fail_with: std::sync::Mutex::new(None), status: std::sync::Mutex::new(BTreeMap::new()) };
    let stage = network(&aws, &moto.url).await;
    let say = |line: &str| eprintln!("{line}");
    aws.create_secure_bucket(ARTIFACTS, REGION).await.expect("artifact bucket");
    aws.put_object(ARTIFACTS, "a.tgz", b"a tarball".to_vec(), PutCondition::Always).await.expect("artifact");
    let sha = gilliam_materializer::sha256_hex(b"a tarball");
    let ops = gilliam_materializer::ops::Ops::new(&aws, formation(), &say);
    for n in [1, 2] {
        let b = bundle("rollback", &stage, V1, n, &sha);
        Converger::new(&aws, &b, opts(), &say).run().await.unwrap_or_else(|e| panic!("release {n}: {e}"));
    }
    // The routing template says 2=100; a rollback by ELBv2 writes moves traffic to 1.
    ops.rollback(&Default::default()).await.unwrap_or_else(|e| panic!("rollback: {e}"));
    let r2 = bundle("rollback", &stage, V1, 2, &sha);
    assert_eq!(weights(&aws, &r2).await, BTreeMap::from([(1, 100), (2, 0)]));

    let manual = Options { traffic_auto: false, ..opts() };
    for ending in ["UPDATE_ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_FAILED"] {
        *aws.fail_with.lock().expect("fail") = Some(ending);
        // Release 3's routing update fails and CloudFormation rolls it back, which writes the
        // template's 2=100 into ELBv2: the converge puts 1=100 back and says what failed.
        let n = if ending == "UPDATE_ROLLBACK_COMPLETE" { 3 } else { 4 };
        let b = bundle("rollback", &stage, V1, n, &sha);
        let err = Converger::new(&aws, &b, manual.clone(), &say).run().await.expect_err("the routing update fails");
        assert!(err.to_string().contains("shop-routing-1 ended"), "{err}");
        assert_eq!(weights(&aws, &b).await, BTreeMap::from([(1, 100), (2, 0)]), "after {ending}, traffic is where the operator put it");
        let history: Vec<String> = ops.history().await.expect("history").into_iter().map(|e| e.action).collect();
        assert!(history.last().is_some_and(|h| h.starts_with("traffic re-asserted after a failed routing update: 1=100 2=0")), "{history:?}");
    }
    // Once the update can go through, the next converge finishes the job (an
    // UPDATE_ROLLBACK_COMPLETE routing stack is updated like any other).
    *aws.fail_with.lock().expect("fail") = None;
    let b = bundle("rollback", &stage, V1, 4, &sha);
    Converger::new(&aws, &b, manual, &say).run().await.unwrap_or_else(|e| panic!("release 4 again: {e}"));
    let w = weights(&aws, &b).await;
    // Release 2, rolled back from, is the first to go; release 1, serving, stays.
    assert_eq!((w.get(&1), w.get(&2), w.get(&4)), (Some(&100), None, Some(&0)), "{w:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_names_as_long_as_teams_write_them_deploy_on_strict_aws() {
    let moto = moto::Moto::start();
    let aws = Strict::new(SdkAws::connect(&Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) }).await);
    let stage = network(&aws, &moto.url).await;
    let say = |line: &str| eprintln!("{line}");
    aws.create_secure_bucket(ARTIFACTS, REGION).await.expect("artifact bucket");
    aws.put_object(ARTIFACTS, "a.tgz", b"a tarball".to_vec(), PutCondition::Always).await.expect("artifact");
    let sha = gilliam_materializer::sha256_hex(b"a tarball");
    // Two 63-character names that share their first 32 characters, and one with `_`.
    let (a, b) = ("recommendation-engine-feature-store-gateway-for-the-storefront1", "recommendation-engine-feature-store-gateway-for-the-storefront2");
    let app = format!("{a}:\n  script: bin/a\n  ports: [8080]\n  routes: [a.example.com]\n{b}:\n  script: bin/b\n  ports: [8080]\n  internal: true\npayments_api:\n  script: bin/p\n  ports: [9000]\n  routes: [example.com/payments/*]\n");
    for n in [1, 2] {
        let b = bundle("names", &stage, &app, n, &sha);
        Converger::new(&aws, &b, opts(), &say).run().await.unwrap_or_else(|e| panic!("release {n}: {e}"));
    }
    let r2 = bundle("names", &stage, &app, 2, &sha);
    assert_eq!(weights(&aws, &r2).await, BTreeMap::from([(1, 0), (2, 100)]));
    let ops = gilliam_materializer::ops::Ops::new(&aws, formation(), &say);
    ops.traffic(&BTreeMap::from([(1, 30), (2, 70)])).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(weights(&aws, &r2).await, BTreeMap::from([(1, 30), (2, 70)]));
    let exports: Vec<String> = aws.list_exports().await.expect("exports").into_iter().map(|(n, _)| n).collect();
    for n in [1, 2] {
        for svc in ["RecommendationEngineFeatureStoreGatewayForTheStorefront1", "RecommendationEngineFeatureStoreGatewayForTheStorefront2", "PaymentsApi"] {
            assert!(exports.contains(&format!("shop-r{n}-{svc}-InternalTargetGroup")), "{svc} of release {n}: {exports:?}");
        }
    }
}
