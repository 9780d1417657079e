//! A release is scaled down only once ELBv2's rules, read back, give it no weight and it has
//! carried none for its target groups' deregistration delay (argo-rollouts #4595: old pods
//! scaled down while the load balancer still sent them requests). At the seam, with the fake's
//! scripted rules standing for ELBv2's eventual consistency, and time paused: tokio's clock is
//! the fake clock, so the waits are measured exactly and cost nothing.

use gilliam_doubles::fake::{Fake, FakeStack};
use gilliam_materializer::bundle::Bundle;
use gilliam_materializer::drain::wait_drained;
use gilliam_materializer::state::{self, ReleaseRecord};
use gilliam_materializer::Error;
use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

const STAGE: &str = "formation: shop\nregion: eu-west-1\nvpc: vpc-0a1b2c3d4e5f60718\npublic_subnets: [subnet-00000001, subnet-00000002]\nprivate_subnets: [subnet-00000011, subnet-00000012]\noutputs_bucket: out-bucket\n";
const RULE: &str = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener-rule/app/shop-public-1/1/2/3";

fn bundle(name: &str) -> Bundle {
    let app = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart/gilliam.yml")).expect("quickstart");
    let sha = gilliam_materializer::sha256_hex(b"art");
    let release = format!(
        r#"{{"number": 2, "artifact": {{"url": "s3://art/a.tgz", "sha256": "{sha}"}}, "runtime_image": "ami-0a1b2c3d4e5f60718", "revision": "r", "created": "2026-11-22T10:00:00Z"}}"#
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-scratch/drain").join(name);
    gilliam_tests::compile_into(&app, &release, STAGE, &dir);
    Bundle::load(&dir).expect("bundle")
}

/// Releases 1 and 2 with one target group each behind one weighted rule, whose reads answer
/// `reads` in turn; release 1's target group drains for `delay` seconds.
fn world(b: &Bundle, reads: Vec<Vec<(String, u32)>>, delay: u32) -> Fake {
    let aws = Fake::default();
    let routing = b.manifest.stacks.iter().find(|s| s.role == gilliam_compiler::manifest::StackRole::Routing).expect("a routing stack").name.clone();
    aws.with(|w| {
        w.buckets.push("out-bucket".into());
        w.stacks.insert(routing.clone(), FakeStack { status: "UPDATE_COMPLETE".into(), ..FakeStack::default() });
        w.resources.insert(routing.clone(), vec![("ApiRoute1".into(), RULE.into(), "AWS::ElasticLoadBalancingV2::ListenerRule".into())]);
        w.exports.insert("shop-r1-Api-PublicTargetGroup".into(), "tg-1".into());
        w.exports.insert("shop-r2-Api-PublicTargetGroup".into(), "tg-2".into());
        w.rules.insert(RULE.into(), VecDeque::from(reads));
        w.delays.insert("tg-1".into(), delay);
    });
    aws
}

fn fwd(w1: u32, w2: u32) -> Vec<(String, u32)> {
    vec![("tg-1".into(), w1), ("tg-2".into(), w2)]
}

fn quiet(_: &str) {}

#[tokio::test(start_paused = true)]
async fn a_release_is_scaled_down_only_after_its_weight_reads_back_zero_for_the_deregistration_delay() {
    let b = bundle("read-back");
    // ELBv2 answers the old weights twice after the write that took release 1 out.
    let aws = world(&b, vec![fwd(10, 90), fwd(10, 90), fwd(0, 100)], 45);
    let t = tokio::time::Instant::now();
    let waited = wait_drained(&aws, &b.manifest, &[1], Duration::from_secs(2), &quiet).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(waited, Duration::from_secs(45), "the whole delay: nothing says since when it carried none");
    // Two polls until the rule read back without it, then the delay.
    assert_eq!(t.elapsed(), Duration::from_secs(2 * 2 + 45));
    assert_eq!(aws.with(|w| w.calls.iter().filter(|c| **c == "describe_rules").count()), 3);
}

#[tokio::test(start_paused = true)]
async fn the_delay_counts_from_when_the_state_saw_the_release_carry_none() {
    let b = bundle("since");
    let aws = world(&b, vec![fwd(0, 100)], 300);
    let f = &b.manifest.formation;
    let record = |since: i64| ReleaseRecord {
        revision: "r".into(),
        created: String::new(),
        artifact_sha256: String::new(),
        stacks: vec![],
        groups: Default::default(),
        scale: Default::default(),
        status: "live".into(),
        served: true,
        rolled_back: false,
        unrouted_since: Some(since),
        release_phase_failed: false,
    };
    let now = gilliam_materializer::clock::epoch();
    // Out of traffic for 100 s: 200 s left of the 300.
    state::update(&aws, &f.outputs_bucket, &f.s3_prefix, &f.name, |st| {
        st.releases.insert(1, record(now - 100));
    })
    .await
    .expect("state");
    let waited = wait_drained(&aws, &b.manifest, &[1], Duration::from_secs(1), &quiet).await.expect("drained");
    assert!((199..=200).contains(&waited.as_secs()), "{waited:?}");
    // Out of traffic for an hour: nothing to wait for.
    state::update(&aws, &f.outputs_bucket, &f.s3_prefix, &f.name, |st| {
        st.releases.insert(1, record(now - 3600));
    })
    .await
    .expect("state");
    let t = tokio::time::Instant::now();
    assert_eq!(wait_drained(&aws, &b.manifest, &[1], Duration::from_secs(1), &quiet).await.expect("drained"), Duration::ZERO);
    assert_eq!(t.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_release_that_keeps_its_weight_is_not_scaled_down() {
    let b = bundle("stuck");
    let aws = world(&b, vec![fwd(10, 90)], 30);
    let err = wait_drained(&aws, &b.manifest, &[1], Duration::from_secs(5), &quiet).await.expect_err("still weighted");
    assert!(matches!(err, Error::Refused(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("release 1 still has weight 10 in rule ApiRoute1") && text.contains("gilliam traffic"), "{text}");
    // It never read the delay: nothing is scaled down on a guess.
    assert_eq!(aws.with(|w| w.calls.iter().filter(|c| **c == "deregistration_delay").count()), 0);
}
