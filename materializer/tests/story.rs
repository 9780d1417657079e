//! The deploy story against moto on 127.0.0.1: release 1, release 2 with a health-gated shift,
//! and a second converge that changes nothing. Assertions read moto's resources (stacks, rule
//! weights), not the tool's own report.

use gilliam_tests::moto;

use gilliam_doubles::counting::Counting;
use gilliam_materializer::aws::prelude::*;
use gilliam_materializer::aws::{Aws, PutCondition};
use gilliam_materializer::bundle::Bundle;
use gilliam_materializer::sdk::{Endpoint, SdkAws};
use gilliam_materializer::{Converger, Options};
use std::collections::BTreeMap;

mod common;
use common::*;

/// Compiles into this test's own scratch directory.
fn compile(stage: &str, number: u32, artifact_key: &str, sha: &str) -> Bundle {
    compile_in("story", stage, number, artifact_key, sha)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_two_releases_shift_and_converge_again() {
    let moto = moto::Moto::start();
    let aws = Counting::new(SdkAws::connect(&Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) }).await);
    let stage = network(&aws, &moto.url).await;
    let say = |line: &str| eprintln!("{line}");

    // The artifact must be there, with the sha256 the release states.
    let artifact = b"a tarball".to_vec();
    let sha = gilliam_materializer::sha256_hex(&artifact);
    let r1 = compile(&stage, 1, "artifacts/a.tgz", &sha);
    let err = Converger::new(&aws, &r1, opts(), &say).run().await.expect_err("no artifact yet");
    assert!(err.to_string().contains("does not exist"), "{err}");
    aws.inner().create_secure_bucket(ARTIFACTS, REGION).await.expect("artifact bucket");
    aws.inner().put_object(ARTIFACTS, "artifacts/a.tgz", b"another tarball".to_vec(), PutCondition::Always).await.expect("upload");
    let err = Converger::new(&aws, &r1, opts(), &say).run().await.expect_err("wrong artifact");
    assert!(err.to_string().contains("refusing to create release 1"), "{err}");
    assert_eq!(aws.inner().describe_stack("shop-r1").await.expect("describe"), None, "no release stack for a bad artifact");
    aws.inner().put_object(ARTIFACTS, "artifacts/a.tgz", artifact, PutCondition::Always).await.expect("upload");

    let report = Converger::new(&aws, &r1, opts(), &say).run().await.unwrap_or_else(|e| panic!("{e}"));
    for stack in ["shop", "shop-r1", "shop-routing-1"] {
        assert_eq!(aws.inner().describe_stack(stack).await.expect("describe").map(|s| s.status), Some("CREATE_COMPLETE".into()), "{stack}");
    }
    assert_eq!(weights(&aws).await, BTreeMap::from([(1, 100)]));
    assert_eq!(report.traffic, vec![(1, 100)]);
    let published = aws.inner().get_object(BUCKET, "gilliam/shop/releases/1/manifest.json").await.expect("get").expect("published manifest");
    assert_eq!(published.body, std::fs::read(r1.dir.join("manifest.json")).expect("manifest"));

    // Release 2: created beside release 1, then traffic moves once it is healthy.
    let r2 = compile(&stage, 2, "artifacts/a.tgz", &sha);
    Converger::new(&aws, &r2, opts(), &say).run().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        aws.inner().describe_stack("shop-r1").await.expect("describe").map(|s| s.status),
        Some("CREATE_COMPLETE".into()),
        "release 1 stays for rollback"
    );
    assert_eq!(weights(&aws).await, BTreeMap::from([(1, 0), (2, 100)]));

    // The same inputs again: nothing to do, and no mutating call made.
    aws.reset();
    let report = Converger::new(&aws, &r2, opts(), &say).run().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.changes, Vec::<String>::new());
    assert_eq!(aws.mutations(), BTreeMap::new(), "calls: {:?}", aws.calls());
    // Reads that grow with the formation are made once a run: the three stacks this release
    // has (formation, its release stack, the routing group) are each described once, their
    // templates read once, the routing stack's resources and its listener's rules once. (The
    // routing stack was described twice: for its rules, then for its template.)
    let calls = aws.calls();
    for (op, most) in [("describe_stack", 3), ("get_template", 3), ("stack_resources", 1), ("describe_rules", 1)] {
        assert!(calls.get(op).copied().unwrap_or(0) <= most, "{op} more than {most} times in a converge with nothing to do: {calls:?}");
    }

    // Planning only reads; an up-to-date formation plans nothing.
    aws.reset();
    let plan = Converger::new(&aws, &r2, opts(), &say).plan().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(plan.is_empty(), "{}", plan.render());
    assert!(plan.render().contains("no changes"));
    assert_eq!(aws.mutations(), BTreeMap::new());

    // A saved plan for release 3, made stale by a traffic change behind its back, is refused.
    let r3 = compile(&stage, 3, "artifacts/a.tgz", &sha);
    let saved = Converger::new(&aws, &r3, opts(), &say).plan().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(saved.render().contains("+ stack shop-r3"), "{}", saved.render());
    let plan = gilliam_materializer::plan::Plan::from_json(&saved.to_json()).expect("round trip");
    assert_eq!(plan, saved);
    let rules = rule_arns(aws.inner()).await;
    let rule = aws.inner().describe_rules(&rules[..1]).await.expect("rules").remove(0);
    let flipped: Vec<(String, u32)> = rule.forward.iter().map(|(tg, w)| (tg.clone(), 100 - *w)).collect();
    aws.inner().set_rule_weights(&rule.arn, &flipped, rule.stickiness).await.expect("flip one rule");
    aws.reset();
    let err = Converger::new(&aws, &r3, opts(), &say).apply(&plan).await.expect_err("stale");
    assert!(err.to_string().contains("traffic weights changed"), "{err}");
    assert_eq!(aws.mutations(), BTreeMap::new(), "a refused plan changes nothing");
    assert_eq!(aws.inner().describe_stack("shop-r3").await.expect("describe"), None);
    aws.inner().set_rule_weights(&rule.arn, &rule.forward, rule.stickiness).await.expect("flip back");
    let plan = Converger::new(&aws, &r3, opts(), &say).plan().await.unwrap_or_else(|e| panic!("{e}"));
    Converger::new(&aws, &r3, opts(), &say).apply(&plan).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(weights(&aws).await, BTreeMap::from([(1, 0), (2, 0), (3, 100)]));

    // Release 4: retention keeps the newest two before it (3 and 2) and retires release 1,
    // which carries no traffic: out of the rules, scaled to zero, its stack deleted.
    let r4 = compile(&stage, 4, "artifacts/a.tgz", &sha);
    let plan = Converger::new(&aws, &r4, opts(), &say).plan().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(plan.render().contains("- release 1: scale to zero, then delete shop-r1"), "{}", plan.render());
    Converger::new(&aws, &r4, opts(), &say).apply(&plan).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(aws.inner().describe_stack("shop-r1").await.expect("describe"), None);
    assert_eq!(weights(&aws).await, BTreeMap::from([(2, 0), (3, 0), (4, 100)]));
    let (state, _) = gilliam_materializer::state::read(aws.inner(), BUCKET, "gilliam/shop/", "shop").await.expect("state");
    let status: Vec<(u32, &str)> = state.releases.iter().map(|(n, r)| (*n, r.status.as_str())).collect();
    assert_eq!(status, vec![(1, "retired"), (2, "live"), (3, "live"), (4, "live")]);
    let last = &state.history.last().expect("history").action;
    assert!(last.starts_with("deploy release 4 (traffic 2=0 3=0 4=100); retire release 1"), "{last}");

    // Operators: split, flip and roll back change weights only, one ELBv2 write per rule.
    let ops = gilliam_materializer::ops::Ops::new(&aws, formation(), &say);
    aws.reset();
    let change = ops.traffic(&BTreeMap::from([(3, 90), (4, 10)])).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(weights(&aws).await, BTreeMap::from([(2, 0), (3, 90), (4, 10)]));
    let rules = rule_arns(aws.inner()).await.len();
    assert_eq!((change.writes, aws.mutations().get("set_rule_weights").copied()), (rules, Some(rules)), "one write per affected rule");
    assert_eq!(aws.mutations().keys().copied().collect::<Vec<_>>(), vec!["put_object", "set_rule_weights"], "weights and the history, nothing else");
    ops.traffic(&BTreeMap::from([(4, 100)])).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(weights(&aws).await, BTreeMap::from([(2, 0), (3, 0), (4, 100)]));
    let to = ops.rollback(&Default::default()).await.unwrap_or_else(|e| panic!("{e}")).release;
    assert_eq!(to, 3);
    assert_eq!(weights(&aws).await, BTreeMap::from([(2, 0), (3, 100), (4, 0)]));
    assert!(ops.traffic(&BTreeMap::from([(1, 100)])).await.is_err(), "release 1 is retired");
    assert!(ops.traffic(&BTreeMap::from([(4, 1000)])).await.is_err(), "over the maximum weight");

    // A later converge of release 4 never undoes the rollback, and has nothing to do.
    aws.reset();
    let report = Converger::new(&aws, &r4, opts(), &say).run().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(weights(&aws).await, BTreeMap::from([(2, 0), (3, 100), (4, 0)]));
    assert_eq!((report.changes, aws.mutations()), (Vec::<String>::new(), BTreeMap::new()));

    // Scale within the service's range; retire refuses a release that carries traffic.
    ops.scale(4, &BTreeMap::from([("api".to_string(), 3)])).await.unwrap_or_else(|e| panic!("{e}"));
    let row = ops.releases().await.expect("releases").into_iter().find(|r| r.release == 4).expect("release 4");
    assert_eq!(row.services.iter().find(|s| s.service == "api").map(|s| s.desired), Some(3));
    let err = ops.scale(4, &BTreeMap::from([("api".to_string(), 7)])).await.expect_err("api max is 6");
    assert!(err.to_string().contains("min 2 and max 6"), "{err}");
    let err = ops.retire(3).await.expect_err("serving");
    assert!(err.to_string().contains("carries traffic"), "{err}");
    ops.retire(2).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(aws.inner().describe_stack("shop-r2").await.expect("describe"), None);
    assert_eq!(weights(&aws).await, BTreeMap::from([(3, 100), (4, 0)]));
    let rows: Vec<(u32, u32)> = ops.releases().await.expect("releases").iter().map(|r| (r.release, r.weight)).collect();
    assert_eq!(rows, vec![(3, 100), (4, 0)]);
    let st = ops.state().await.expect("state");
    assert_eq!(st.traffic, BTreeMap::from([(3, 100), (4, 0)]), "the published state holds the weights");
    assert_eq!(st.releases[&4].scale.get("api"), Some(&3), "and the scale factors");
    let history: Vec<String> = ops.history().await.expect("history").into_iter().map(|e| e.action).collect();
    assert_eq!(
        &history[history.len() - 6..],
        [
            "deploy release 4 (traffic 2=0 3=0 4=100); retire release 1",
            "traffic 2=0 3=90 4=10",
            "traffic 2=0 3=0 4=100",
            "rollback from release 4: traffic 2=0 3=100 4=0",
            "scale -r4 api=3",
            "retire release 2"
        ],
        "{history:?}"
    );

    // With manual traffic, a new release comes up beside the others and gets nothing.
    let r5 = compile(&stage, 5, "artifacts/a.tgz", &sha);
    let manual = Options { traffic_auto: false, ..opts() };
    Converger::new(&aws, &r5, manual, &say).run().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(weights(&aws).await, BTreeMap::from([(3, 100), (4, 0), (5, 0)]));

    // A release is immutable: the same number with other content is refused.
    let changed = compile(&format!("{stage}defaults: {{instance_type: t3.large}}\n"), 3, "artifacts/a.tgz", &sha);
    let err = Converger::new(&aws, &changed, opts(), &say).run().await.expect_err("immutable");
    assert!(err.to_string().contains("a release is immutable"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_templates_go_through_template_url() {
    let moto = moto::Moto::start();
    let aws = SdkAws::connect(&Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) }).await;
    let stage = network(&aws, &moto.url).await;
    aws.create_secure_bucket(ARTIFACTS, REGION).await.expect("bucket");
    aws.put_object(ARTIFACTS, "a.tgz", b"x".to_vec(), PutCondition::Always).await.expect("artifact");
    let sha = gilliam_materializer::sha256_hex(b"x");
    let mut app = String::new();
    for i in 0..40 {
        app.push_str(&format!("svc-{i:02}:\n  script: bin/svc\n  ports: [8080]\n  routes: [\"svc-{i:02}.example.com\"]\n"));
    }
    let release = format!(
        r#"{{"number": 1, "artifact": {{"url": "s3://{ARTIFACTS}/a.tgz", "sha256": "{sha}"}}, "runtime_image": "ami-0a1b2c3d4e5f60718", "revision": "r", "created": "2026-11-22T10:00:00Z"}}"#
    );
    let dir = root().join("target/test-scratch/story/large");
    let c = gilliam_tests::compile_into(&app, &release, &stage, &dir);
    let large: Vec<String> = c.manifest.stacks.iter().filter(|s| s.upload_required).map(|s| s.name.clone()).collect();
    assert!(!large.is_empty(), "40 routed services make a release template over 51,200 bytes");
    let b = Bundle::load(&dir).expect("bundle");
    Converger::new(&aws, &b, opts(), &|_| {}).run().await.unwrap_or_else(|e| panic!("{e}"));
    for name in &large {
        assert_eq!(aws.describe_stack(name).await.expect("describe").map(|s| s.status), Some("CREATE_COMPLETE".into()), "{name}");
        let key = &c.manifest.stacks.iter().find(|s| &s.name == name).expect("entry").s3_key;
        assert!(aws.head_object(BUCKET, key).await.expect("head").is_some(), "{name}'s template was uploaded to {key}");
    }
}

/// Desired capacity of each Auto Scaling group of a release stack, as moto holds it.
async fn desired<A: Aws>(aws: &A, stack: &str) -> Vec<u32> {
    let names: Vec<String> =
        aws.stack_resources(stack).await.expect("resources").into_iter().filter(|r| r.2 == "AWS::AutoScaling::AutoScalingGroup").map(|r| r.1).collect();
    assert!(!names.is_empty(), "{stack} has Auto Scaling groups");
    aws.describe_groups(&names).await.expect("groups").into_iter().map(|g| g.desired).collect()
}

/// The cold tier: with `keep_releases: 0` and `cold_releases: 1`, the release before the
/// serving one is out of routing and scaled to zero, its stacks kept; a rollback warms it (its
/// groups back to size, routed, healthy) before moving traffic, and says how long that took.
/// Under the strict layer: a target group outside every rule reports `unused` targets there,
/// as ELBv2 does, so warming must route before it can see healthy targets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_releases_go_cold_and_a_rollback_warms_one_first() {
    use gilliam_doubles::strict::Strict;
    use gilliam_materializer::ops::{Ops, WarmOptions};
    use std::time::Duration;
    let moto = moto::Moto::start();
    let aws = Counting::new(Strict::new(SdkAws::connect(&Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) }).await));
    // The target groups drain for 1 s: the deregistration delay is read back from ELBv2.
    let stage = network(&aws, &moto.url)
        .await
        .replace("keep_releases: 2\n", "keep_releases: 0\ncold_releases: 1\n")
        .replace("deregistration_delay: 0s\n", "deregistration_delay: 1s\n");
    let said = std::sync::Mutex::new(Vec::<String>::new());
    let say = |line: &str| {
        eprintln!("{line}");
        said.lock().expect("said").push(line.to_string());
    };
    aws.inner().inner.create_secure_bucket(ARTIFACTS, REGION).await.expect("artifact bucket");
    aws.inner().inner.put_object(ARTIFACTS, "a.tgz", b"cold".to_vec(), PutCondition::Always).await.expect("artifact");
    let sha = gilliam_materializer::sha256_hex(b"cold");
    let release = |n: u32| compile_in("cold", &stage, n, "a.tgz", &sha);
    Converger::new(&aws, &release(1), opts(), &say).run().await.unwrap_or_else(|e| panic!("{e}"));
    let up = desired(&aws, "shop-r1").await;
    assert!(up.iter().all(|d| *d > 0), "{up:?}");

    // Release 2: release 1 goes cold: out of every rule, groups at zero, its stack kept.
    let r2 = release(2);
    let plan = Converger::new(&aws, &r2, opts(), &say).plan().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(plan.render().contains("release 1: cold (out of routing, scaled to zero"), "{}", plan.render());
    Converger::new(&aws, &r2, opts(), &say).apply(&plan).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(weights(&aws).await, BTreeMap::from([(2, 100)]), "release 1 is in no forward");
    assert!(desired(&aws, "shop-r1").await.iter().all(|d| *d == 0));
    // Out of the rules, it drained for its target groups' deregistration delay first.
    let drained = said.lock().expect("said").iter().any(|l| l.contains("release 1: no traffic; waiting 1s (the target groups' deregistration delay)"));
    assert!(drained, "{:?}", said.lock().expect("said"));
    assert_eq!(aws.describe_stack("shop-r1").await.expect("describe").map(|s| s.status), Some("CREATE_COMPLETE".into()), "kept");
    let ops = Ops::new(&aws, formation(), &say);
    let st = ops.state().await.expect("state");
    assert_eq!(st.releases.iter().map(|(n, r)| (*n, r.status.as_str())).collect::<Vec<_>>(), vec![(1, "cold"), (2, "live")]);
    assert!(st.history.last().expect("history").action.ends_with("; cool release 1"), "{:?}", st.history.last());
    let rows: Vec<(u32, bool)> = ops.releases().await.expect("releases").iter().map(|r| (r.release, r.cold)).collect();
    assert_eq!(rows, vec![(1, true), (2, false)]);
    let err = ops.traffic(&BTreeMap::from([(1, 100)])).await.expect_err("cold");
    assert!(err.to_string().contains("`gilliam warm 1`"), "{err}");
    let err = ops.scale(1, &BTreeMap::from([("api".to_string(), 3)])).await.expect_err("cold");
    assert!(err.to_string().contains("is cold"), "{err}");
    // Converging release 2 again leaves release 1 as it is: in no rule, its ports kept open
    // in the formation's security group (observed as standby).
    let plan = Converger::new(&aws, &r2, opts(), &say).plan().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.observed.standby.iter().map(|s| s.release).collect::<Vec<_>>(), vec![1]);
    aws.reset();
    let report = Converger::new(&aws, &r2, opts(), &say).run().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.changes, aws.mutations()), (Vec::<String>::new(), BTreeMap::new()));

    // Release 3: release 2 goes cold in its turn, and release 1, past the cold tier, is retired.
    Converger::new(&aws, &release(3), opts(), &say).run().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(aws.describe_stack("shop-r1").await.expect("describe"), None);
    assert!(desired(&aws, "shop-r2").await.iter().all(|d| *d == 0));
    assert_eq!(weights(&aws).await, BTreeMap::from([(3, 100)]));

    // Converging the cold release again is refused (its groups are at zero), with the way back.
    let err = Converger::new(&aws, &release(2), opts(), &say).plan().await.expect_err("cold");
    assert!(err.to_string().contains("release 2 is cold") && err.to_string().contains("gilliam warm 2"), "{err}");
    // Rollback to the cold release 2: warmed first, then all traffic to it.
    let warm = WarmOptions { timeout: Duration::from_secs(60), poll: Duration::from_millis(100) };
    let r = ops.rollback(&warm).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.release, 2);
    let w = r.warmed.expect("release 2 was cold");
    assert_eq!(w.instances, desired(&aws, "shop-r2").await.iter().sum::<u32>());
    assert!(desired(&aws, "shop-r2").await.iter().all(|d| *d > 0));
    assert_eq!(weights(&aws).await, BTreeMap::from([(2, 100), (3, 0)]));
    let st = ops.state().await.expect("state");
    assert_eq!(st.releases[&2].status, "live");
    let history: Vec<&str> = st.history.iter().map(|e| e.action.as_str()).collect();
    assert!(history.iter().any(|a| a.starts_with("warm release 2: ") && a.contains(" in service and healthy in ")), "{history:?}");
    // Warming a release that is not cold is refused, and says why.
    let err = ops.warm(2, &warm).await.expect_err("live");
    assert!(err.to_string().contains("release 2 is live, not cold"), "{err}");
    // The rollback holds: converging release 3 again changes nothing.
    aws.reset();
    let report = Converger::new(&aws, &release(3), opts(), &say).run().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(weights(&aws).await, BTreeMap::from([(2, 100), (3, 0)]));
    assert_eq!((report.changes, aws.mutations()), (Vec::<String>::new(), BTreeMap::new()));
}

/// moto with the formation's network, a stage file whose retention is `retention`, and an
/// artifact uploaded: (emulator, client, stage file, artifact sha256).
async fn retention_world(retention: &str) -> (moto::Moto, SdkAws, String, String) {
    let moto = moto::Moto::start();
    let aws = SdkAws::connect(&Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) }).await;
    let stage = network(&aws, &moto.url).await.replace("keep_releases: 2\n", retention);
    aws.create_secure_bucket(ARTIFACTS, REGION).await.expect("artifact bucket");
    aws.put_object(ARTIFACTS, "a.tgz", b"retention".to_vec(), PutCondition::Always).await.expect("artifact");
    (moto, aws, stage, gilliam_materializer::sha256_hex(b"retention"))
}

/// Retention follows what served, not release numbers (keep_releases: 1): release 2 is judged
/// bad by a rollback during a 70/30 split; the deploy of release 3 lets release 2 go and keeps
/// release 1, the one that served before it; a rollback after that deploy returns to release 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_release_known_good_and_lets_the_one_rolled_back_from_go() {
    use gilliam_materializer::ops::Ops;
    let (_moto, aws, stage, sha) = retention_world("keep_releases: 1\n").await;
    let say = |line: &str| eprintln!("{line}");
    let release = |n: u32| compile_in("known-good", &stage, n, "a.tgz", &sha);
    Converger::new(&aws, &release(1), opts(), &say).run().await.unwrap_or_else(|e| panic!("{e}"));
    Converger::new(&aws, &release(2), opts(), &say).run().await.unwrap_or_else(|e| panic!("{e}"));
    let ops = Ops::new(&aws, formation(), &say);
    ops.traffic(&BTreeMap::from([(1, 70), (2, 30)])).await.unwrap_or_else(|e| panic!("{e}"));
    let r = ops.rollback(&Default::default()).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.release, 1);
    let st = ops.state().await.expect("state");
    assert!(st.releases[&2].rolled_back && st.releases[&1].served, "{:?}", st.releases);
    assert_eq!(st.history.last().expect("history").action, "rollback from release 2: traffic 1=100 2=0");

    // Release 3: release 2 (rolled back from) goes, release 1 (serving before) stays.
    let r3 = release(3);
    let plan = Converger::new(&aws, &r3, opts(), &say).plan().await.unwrap_or_else(|e| panic!("{e}"));
    let text = plan.render();
    assert!(text.contains("- release 2") && !text.contains("- release 1"), "{text}");
    Converger::new(&aws, &r3, opts(), &say).apply(&plan).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(weights(&aws).await, BTreeMap::from([(1, 0), (3, 100)]));
    assert_eq!(aws.describe_stack("shop-r2").await.expect("describe"), None, "release 2 retired");
    assert!(aws.describe_stack("shop-r1").await.expect("describe").is_some(), "release 1 kept");

    // A rollback after the deploy returns to the release that served before it.
    let r = ops.rollback(&Default::default()).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.release, 1);
    assert_eq!(weights(&aws).await, BTreeMap::from([(1, 100), (3, 0)]));
}

/// A deploy makes room first: with keep_releases 1 and a cold release warmed by hand, the live
/// releases and the new one are more than a weighted forward holds (keep_releases + 2 = 3).
/// The releases without traffic that retention lets go first leave the routing in the same
/// plan, instead of the render failing as an internal error; releases that carry traffic are
/// never dropped, and when they alone are too many the deploy is refused with the way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_makes_room_for_itself_in_the_routing() {
    use gilliam_materializer::ops::{Ops, WarmOptions};
    use std::time::Duration;
    let (_moto, aws, stage, sha) = retention_world("keep_releases: 1\ncold_releases: 1\n").await;
    let say = |line: &str| eprintln!("{line}");
    let release = |n: u32| compile_in("room", &stage, n, "a.tgz", &sha);
    for n in 1..=3 {
        Converger::new(&aws, &release(n), opts(), &say).run().await.unwrap_or_else(|e| panic!("release {n}: {e}"));
    }
    let ops = Ops::new(&aws, formation(), &say);
    assert_eq!(ops.state().await.expect("state").releases[&1].status, "cold");
    ops.warm(1, &WarmOptions { timeout: Duration::from_secs(60), poll: Duration::from_millis(100) }).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(weights(&aws).await, BTreeMap::from([(1, 0), (2, 0), (3, 100)]), "three routed: the forward is full");

    // Release 4: one of the idle releases leaves the routing first, and the deploy goes through.
    Converger::new(&aws, &release(4), opts(), &say).run().await.unwrap_or_else(|e| panic!("release 4: {e}"));
    let w = weights(&aws).await;
    assert_eq!(w.get(&4), Some(&100), "{w:?}");
    assert!(w.len() <= 3, "{w:?}");
    let st = ops.state().await.expect("state");
    assert_eq!(st.releases[&3].status, "live", "release 3 served before this deploy: kept");

    // Releases that carry traffic are never dropped: with every cold release warmed and the
    // traffic split over the three routed ones, a deploy of release 5 has no room and is
    // refused before anything is written.
    let warm = WarmOptions { timeout: Duration::from_secs(60), poll: Duration::from_millis(100) };
    for (n, r) in ops.state().await.expect("state").releases {
        if r.status == "cold" {
            ops.warm(n, &warm).await.unwrap_or_else(|e| panic!("warm {n}: {e}"));
        }
    }
    let routed: Vec<u32> = weights(&aws).await.keys().copied().collect();
    assert_eq!(routed.len(), 3, "{routed:?}");
    let split: BTreeMap<u32, u32> = routed.iter().map(|n| (*n, 10)).collect();
    ops.traffic(&split).await.unwrap_or_else(|e| panic!("{e}"));
    let err = Converger::new(&aws, &release(5), opts(), &say).plan().await.expect_err("no room");
    let text = err.to_string();
    assert!(text.contains("carry traffic") && text.contains("gilliam retire"), "{text}");
}

/// An aborted deploy that made room: the release the plan took out of the routing for the new
/// one is cooled (scaled to zero, recorded cold, so that `gilliam warm` or a rollback brings it
/// back), neither left running unrouted nor retired: the deploy did not succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_deploy_cools_the_release_it_took_out_of_the_routing() {
    use gilliam_materializer::ops::{Ops, WarmOptions};
    use std::time::Duration;
    let (_moto, aws, stage, sha) = retention_world("keep_releases: 1\ncold_releases: 1\n").await;
    let say = |line: &str| eprintln!("{line}");
    let release = |n: u32| compile_in("abort-room", &stage, n, "a.tgz", &sha);
    for n in 1..=3 {
        Converger::new(&aws, &release(n), opts(), &say).run().await.unwrap_or_else(|e| panic!("release {n}: {e}"));
    }
    let ops = Ops::new(&aws, formation(), &say);
    ops.warm(1, &WarmOptions { timeout: Duration::from_secs(60), poll: Duration::from_millis(100) }).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(weights(&aws).await, BTreeMap::from([(1, 0), (2, 0), (3, 100)]), "the forward is full");

    // Release 4's pre_traffic hook fails: the shift aborts with no weight moved.
    let failing = format!("{stage}hooks: {{pre_traffic: 'exit 3'}}\n");
    let r4 = compile_in("abort-room-4", &failing, 4, "a.tgz", &sha);
    let err = Converger::new(&aws, &r4, opts(), &say).run().await.expect_err("aborted");
    assert!(matches!(err, gilliam_materializer::Error::Aborted(_)), "{err}");
    let w = weights(&aws).await;
    assert_eq!((w.get(&3), w.get(&4)), (Some(&100), Some(&0)), "{w:?}");
    let gone: Vec<u32> = [1, 2].into_iter().filter(|n| !w.contains_key(n)).collect();
    assert_eq!(gone.len(), 1, "one idle release made room: {w:?}");
    let gone = gone[0];
    let st = ops.state().await.expect("state");
    assert_eq!(st.releases[&gone].status, "cold", "out of the routing and scaled to zero: cold, not live");
    assert!(desired(&aws, &format!("shop-r{gone}")).await.iter().all(|d| *d == 0), "its groups are at zero");
    assert!(aws.describe_stack(&format!("shop-r{gone}")).await.expect("describe").is_some(), "not retired: its stacks are kept");
    let last = st.history.last().expect("history").action.as_str();
    assert!(last.contains(&format!("cool release {gone}")) && last.contains("aborted"), "{last}");
    assert!(!st.traffic.contains_key(&gone), "{:?}", st.traffic);
}

/// A service dropped in release 2 keeps its listener rule and DNS name, forwarding to release
/// 1 (the only one that has it), while release 1 carries traffic: release 1 still calls it.
/// Once no release that has it serves, the next routing render removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_service_stays_routed_while_a_release_that_has_it_serves() {
    use gilliam_materializer::ops::Ops;
    let (_moto, aws, stage, sha) = retention_world("keep_releases: 2\n").await;
    let say = |line: &str| eprintln!("{line}");
    let quickstart = std::fs::read_to_string(root().join("examples/quickstart/gilliam.yml")).expect("quickstart");
    let start = quickstart.find("pricing:").expect("pricing");
    let end = quickstart.find("worker:").expect("worker");
    let without_pricing = format!("{}{}", &quickstart[..start], &quickstart[end..]);
    Converger::new(&aws, &compile_in("dropped", &stage, 1, "a.tgz", &sha), opts(), &say).run().await.unwrap_or_else(|e| panic!("{e}"));
    let routing = |aws: &SdkAws| {
        let aws = aws.clone();
        async move { aws.stack_resources("shop-routing-1").await.expect("resources").into_iter().map(|r| (r.0, r.1)).collect::<BTreeMap<String, String>>() }
    };
    let exports: BTreeMap<String, String> = aws.list_exports().await.expect("exports").into_iter().collect();
    let pricing_r1 = exports["shop-r1-Pricing-InternalTargetGroup"].clone();

    // Release 2 without pricing, its traffic left to the operator: release 1 serves and calls
    // pricing, whose rule and name stay, forwarding to release 1 alone; no test-header twin.
    let manual = Options { traffic_auto: false, ..opts() };
    Converger::new(&aws, &compile_app("dropped", &without_pricing, &stage, 2, "a.tgz", &sha), manual, &say).run().await.unwrap_or_else(|e| panic!("{e}"));
    let r = routing(&aws).await;
    assert!(r.contains_key("PricingDnsRecord"), "{r:?}");
    assert!(!r.contains_key("PricingInternalRuleTest"), "no release-2 target group for the header to reach: {r:?}");
    let rule = aws.describe_rules(&[r["PricingInternalRule"].clone()]).await.expect("rule");
    assert_eq!(rule[0].forward.iter().map(|(tg, _)| tg.clone()).collect::<Vec<_>>(), vec![pricing_r1], "{rule:?}");
    assert_eq!(weights(&aws).await.get(&1), Some(&100));

    // All traffic to release 2; release 3 (also without pricing) is deployed: no release that
    // has pricing serves any more, and its rule and name go.
    let ops = Ops::new(&aws, formation(), &say);
    ops.traffic(&BTreeMap::from([(2, 100)])).await.unwrap_or_else(|e| panic!("{e}"));
    Converger::new(&aws, &compile_app("dropped", &without_pricing, &stage, 3, "a.tgz", &sha), opts(), &say).run().await.unwrap_or_else(|e| panic!("{e}"));
    let r = routing(&aws).await;
    assert!(!r.contains_key("PricingInternalRule") && !r.contains_key("PricingDnsRecord"), "{r:?}");
}

/// A routing update creates its new rules before it deletes the ones they replace: on a
/// listener near the rules quota, a release that renames every route would hold both sets for
/// a while (ELBv2: TooManyRules, the update rolled back). The plan refuses it before any
/// write, saying how many rules the peak needs and what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routing_update_whose_peak_overflows_the_rules_quota_is_refused_before_any_write() {
    let (_moto, aws, stage, sha) = retention_world("keep_releases: 1\nquotas: {rules_per_load_balancer: 10}\n").await;
    let say = |line: &str| eprintln!("{line}");
    let quickstart = std::fs::read_to_string(root().join("examples/quickstart/gilliam.yml")).expect("quickstart");
    Converger::new(&aws, &compile_app("peak", &quickstart, &stage, 1, "a.tgz", &sha), opts(), &say).run().await.unwrap_or_else(|e| panic!("{e}"));
    // Three routes, three twins: 6 of 10 rules. Every route renamed: 6 more before 6 go.
    let renamed = quickstart.replace("- /api/*", "- /api2/*").replace("- api.shop.example.com", "- api2.shop.example.com").replace("/v1/{rest}", "/v2/{rest}");
    let err = Converger::new(&aws, &compile_app("peak", &renamed, &stage, 2, "a.tgz", &sha), opts(), &say).plan().await.expect_err("refused");
    let text = err.to_string();
    assert!(matches!(err, gilliam_materializer::Error::Refused(_)), "{text}");
    assert!(
        text.contains("PublicLoadBalancer would hold 12 rules") && text.contains("(6 deployed, 6 created") && text.contains("quotas.rules_per_load_balancer"),
        "{text}"
    );
    // One route renamed fits: 6 deployed + 2 created = 8.
    let one = quickstart.replace("- /api/*", "- /api2/*");
    Converger::new(&aws, &compile_app("peak", &one, &stage, 3, "a.tgz", &sha), opts(), &say).plan().await.unwrap_or_else(|e| panic!("{e}"));
}

/// The preflight reads the account's quotas and what the region holds, telling this
/// formation's target groups, load balancers and stacks from everything else's; with a smaller
/// account (the same usage, a lower quota) the formation's peak is refused before any write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preflight_counts_the_formations_peak_against_the_accounts_quotas() {
    let (_moto, aws, stage, sha) = retention_world("keep_releases: 1\n").await;
    let say = |line: &str| eprintln!("{line}");
    let r1 = compile_in("quotas", &stage, 1, "a.tgz", &sha);
    Converger::new(&aws, &r1, opts(), &say).run().await.unwrap_or_else(|e| panic!("{e}"));
    let m = &r1.manifest;
    let a = gilliam_materializer::quotas::read(&aws, m).await.expect("read");
    assert!(a.unread.is_empty(), "{:?}", a.unread);
    // api (public and internal) and pricing (internal): three target groups, two load
    // balancers, and the formation, routing and release stacks; the network stack is another's.
    assert_eq!(a.target_groups, Some((3, 3)));
    assert_eq!(a.load_balancers, Some((2, 2)));
    assert_eq!(a.stacks, Some((4, 3)));
    let peak = m.formation.footprint.expect("footprint");
    assert_eq!((peak.target_groups, peak.load_balancers), (3 * 3, 2), "keep 1 + 2 live releases");
    assert_eq!(gilliam_materializer::quotas::findings(m, &peak, &a).problems, Vec::<String>::new());
    let mut small = a.clone();
    small.elb_limits.as_mut().expect("limits").insert("target-groups".into(), 8);
    let f = gilliam_materializer::quotas::findings(m, &peak, &small);
    assert!(f.problems.len() == 1 && f.problems[0].contains("holds up to 9 at its peak"), "{f:?}");
}

/// A release from an image in the formation's ECR repository: refused while ECR lacks the
/// digest; held by its tag `gilliam-rN` from the deploy on (the repository's lifecycle policy
/// keeps what that tag holds), through a deploy that keeps it; its tag (and with the last
/// tag, the image) goes when the release is retired. Rollback and deploys between the tarball
/// and image kinds are ordinary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_release_is_held_by_its_tag_while_it_lives_and_let_go_when_retired() {
    use gilliam_materializer::ops::Ops;
    let (moto, aws, stage, sha) = retention_world("keep_releases: 0\n").await;
    let say = |line: &str| eprintln!("{line}");
    Converger::new(&aws, &compile_in("image", &stage, 1, "a.tgz", &sha), opts(), &say).run().await.unwrap_or_else(|e| panic!("{e}"));
    // `gilliam build` makes the formation's repository (as it does the bucket); CI pushes an
    // image to it.
    gilliam_materializer::images::ensure_repository(&aws, REGION, "shop", &say).await.expect("repository");
    let ecr = aws_sdk_ecr::Client::new(&sdk_config(&moto.url).await);
    let manifest = r#"{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2, "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}, "layers": []}"#;
    let pushed = ecr.put_image().repository_name("gilliam/shop").image_manifest(manifest).send().await.expect("push");
    let digest = pushed.image().and_then(|i| i.image_id()).and_then(|i| i.image_digest()).expect("digest").to_string();
    let quickstart = std::fs::read_to_string(root().join("examples/quickstart/gilliam.yml")).expect("quickstart");
    let image_release = |n: u32, digest: &str| {
        let release = format!(
            r#"{{"number": {n}, "artifact": {{"image": "123456789012.dkr.ecr.{REGION}.amazonaws.com/gilliam/shop@{digest}"}}, "runtime_image": "ami-0a1b2c3d4e5f60718", "revision": "img{n}", "created": "2026-12-01T10:00:00Z"}}"#
        );
        let dir = root().join(format!("target/test-scratch/image/r{n}"));
        gilliam_tests::compile_into(&quickstart, &release, &stage, &dir);
        Bundle::load(&dir).expect("bundle")
    };
    let tags = |digest: String| {
        let ecr = ecr.clone();
        async move {
            let id = aws_sdk_ecr::types::ImageIdentifier::builder().image_digest(digest).build();
            match ecr.describe_images().repository_name("gilliam/shop").image_ids(id).send().await {
                Ok(out) => out.image_details().first().map(|d| d.image_tags().to_vec()),
                Err(_) => None,
            }
        }
    };

    // A digest ECR does not hold is refused before anything is written.
    let missing = format!("sha256:{}", "0".repeat(64));
    let err = Converger::new(&aws, &image_release(2, &missing), opts(), &say).plan().await.expect_err("no such image");
    assert!(err.to_string().contains("is not in ECR repository gilliam/shop") && err.to_string().contains("push it"), "{err}");

    // Release 2 runs the image: its tag holds it.
    let r2 = image_release(2, &digest);
    let plan = Converger::new(&aws, &r2, opts(), &say).plan().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(plan.render().contains("+ tag image gilliam/shop@sha256:") && plan.render().contains("`gilliam-r2`"), "{}", plan.render());
    Converger::new(&aws, &r2, opts(), &say).apply(&plan).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tags(digest.clone()).await, Some(vec!["gilliam-r2".to_string()]));
    assert_eq!(weights(&aws).await.get(&2), Some(&100));

    // Release 3, a tarball again: release 2 served before it, so it stays, and so does its tag.
    Converger::new(&aws, &compile_in("image", &stage, 3, "a.tgz", &sha), opts(), &say).run().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tags(digest.clone()).await, Some(vec!["gilliam-r2".to_string()]), "a release that may be rolled back to keeps its image");
    // A rollback from the tarball release goes back to the image release.
    let ops = Ops::new(&aws, formation(), &say);
    assert_eq!(ops.rollback(&Default::default()).await.unwrap_or_else(|e| panic!("{e}")).release, 2);
    ops.traffic(&BTreeMap::from([(3, 100)])).await.unwrap_or_else(|e| panic!("{e}"));

    // Release 4: release 2 is past retention and retired; its tag goes, and with its last tag
    // the image.
    Converger::new(&aws, &compile_in("image", &stage, 4, "a.tgz", &sha), opts(), &say).run().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ops.state().await.expect("state").releases[&2].status, "retired");
    assert_eq!(tags(digest).await, None, "the retired release's image is gone");
}
