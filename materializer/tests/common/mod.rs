//! The world of the materializer's moto tests: a network made through CloudFormation, the
//! quickstart formation compiled as release N, and readers of what moto holds (rule weights).

#![allow(dead_code)]

use gilliam_materializer::aws::prelude::*;
use gilliam_materializer::aws::{Aws, StackRequest, TemplateSource};
use gilliam_materializer::bundle::Bundle;
use gilliam_materializer::converge::Options;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod fault_story;

pub const REGION: &str = "eu-west-1";
pub const BUCKET: &str = "gilliam-story";
/// Artifacts live in a bucket of their own here, so that the converge's bootstrap of BUCKET is
/// exercised too.
pub const ARTIFACTS: &str = "gilliam-story-artifacts";

/// A VPC with two public and two private subnets, made through CloudFormation (the seam has no
/// EC2 calls of its own) on the moto at `url`; returns the stage file for it.
pub async fn network<A: Aws>(aws: &A, url: &str) -> String {
    let body = gilliam_tests::network_template(REGION);
    aws.create_stack(&StackRequest { name: "network".into(), template: TemplateSource::Body(body), capabilities: vec![], tags: vec![] })
        .await
        .expect("network stack");
    let out: BTreeMap<String, String> = aws.describe_stack("network").await.expect("describe").expect("exists").outputs.into_iter().collect();
    gilliam_tests::finish_network(url, REGION, &out).await;
    format!(
        "formation: shop\nregion: {REGION}\nvpc: {}\npublic_subnets: [{}, {}]\nprivate_subnets:\n  - {{id: {}, zone: {REGION}a}}\n  - {{id: {}, zone: {REGION}b}}\noutputs_bucket: {BUCKET}\nkeep_releases: 2\nderegistration_delay: 0s\n",
        out["Vpc"], out["A"], out["B"], out["C"], out["D"]
    )
}

/// The SDK's configuration for the moto at `url`: for the clients a test uses to act as AWS
/// itself would (putting metrics, reading rules in full).
pub async fn sdk_config(url: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(url)
        .http_client(gilliam_materializer::sdk::http_client())
        .load()
        .await
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Compiles the quickstart formation as `number` with the given artifact into a fresh directory
/// under `target/test-scratch/TAG/`.
pub fn compile_in(tag: &str, stage: &str, number: u32, artifact_key: &str, sha: &str) -> Bundle {
    let app = std::fs::read_to_string(root().join("examples/quickstart/gilliam.yml")).expect("quickstart");
    compile_app(tag, &app, stage, number, artifact_key, sha)
}

/// Compiles release `number` of the gilliam.yml `app`, as `compile_in` does the quickstart's.
pub fn compile_app(tag: &str, app: &str, stage: &str, number: u32, artifact_key: &str, sha: &str) -> Bundle {
    let release = format!(
        r#"{{"number": {number}, "artifact": {{"url": "s3://{ARTIFACTS}/{artifact_key}", "sha256": "{sha}"}}, "runtime_image": "ami-0a1b2c3d4e5f60718", "revision": "rev{number}", "created": "2026-11-22T10:00:00Z"}}"#
    );
    let inputs = gilliam_compiler::Inputs {
        app: gilliam_compiler::Source { name: "gilliam.yml", text: app },
        release: gilliam_compiler::Source { name: "release.json", text: &release },
        stage: gilliam_compiler::Source { name: "stage.yml", text: stage },
    };
    let dir = root().join(format!("target/test-scratch/{tag}/r{number}"));
    gilliam_tests::compile_into(inputs.app.text, inputs.release.text, inputs.stage.text, &dir);
    Bundle::load(&dir).expect("bundle loads")
}

/// The routing stack's weighted listener rules (test-header rules left out).
pub async fn rule_arns<A: Aws>(aws: &A) -> Vec<String> {
    aws.stack_resources("shop-routing-1")
        .await
        .expect("resources")
        .into_iter()
        .filter(|r| r.2 == "AWS::ElasticLoadBalancingV2::ListenerRule" && !gilliam_compiler::names::is_test_rule(&r.0))
        .map(|r| r.1)
        .collect()
}

/// The routing stack's test-header rules.
pub async fn test_rule_arns<A: Aws>(aws: &A) -> Vec<String> {
    aws.stack_resources("shop-routing-1")
        .await
        .expect("resources")
        .into_iter()
        .filter(|r| r.2 == "AWS::ElasticLoadBalancingV2::ListenerRule" && gilliam_compiler::names::is_test_rule(&r.0))
        .map(|r| r.1)
        .collect()
}

/// Each rule's forward as (release, weight) pairs, as the routing stack's rules in moto hold them.
async fn forwards<A: Aws>(aws: &A) -> Vec<Vec<(u32, u32)>> {
    let exports: BTreeMap<String, String> = aws.list_exports().await.expect("exports").into_iter().map(|(n, v)| (v, n)).collect();
    let rules = rule_arns(aws).await;
    let release = |tg: &String| -> u32 { exports[tg].trim_start_matches("shop-r").split('-').next().expect("number").parse().expect("number") };
    aws.describe_rules(&rules).await.expect("rules").into_iter().map(|r| r.forward.iter().map(|(tg, w)| (release(tg), *w)).collect()).collect()
}

/// Whether any rule gives release `n` traffic: for polling while a shift writes its rules one
/// by one (they disagree meanwhile, which `weights` refuses).
pub async fn has_traffic<A: Aws>(aws: &A, n: u32) -> bool {
    forwards(aws).await.iter().flatten().any(|(r, w)| *r == n && *w > 0)
}

/// Weight per release number, as the routing stack's rules in moto hold them.
pub async fn weights<A: Aws>(aws: &A) -> BTreeMap<u32, u32> {
    let mut out = BTreeMap::new();
    for (n, w) in forwards(aws).await.into_iter().flatten() {
        let e = out.entry(n).or_insert(w);
        assert_eq!(*e, w, "rules disagree on release {n}'s weight");
    }
    out
}

pub fn formation() -> gilliam_materializer::Formation {
    gilliam_materializer::Formation { name: "shop".into(), region: REGION.into(), bucket: BUCKET.into(), prefix: "gilliam/shop/".into() }
}

pub fn opts() -> Options {
    Options {
        traffic_auto: true,
        poll: Duration::from_millis(100),
        stack_timeout: Duration::from_secs(60),
        health_timeout: Duration::from_secs(20),
        ..Options::default()
    }
}
