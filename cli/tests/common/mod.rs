//! What the CLI tests share: a moto world with a network, an artifact, stage and release
//! files; running a binary against it with safe credentials.

#![allow(dead_code)]

pub mod player;

use gilliam_materializer::aws::prelude::*;
use gilliam_materializer::aws::{PutCondition, StackRequest, TemplateSource};
use gilliam_materializer::sdk::{Endpoint, SdkAws};
use gilliam_tests::moto::{Moto, SAFE_ENV};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const REGION: &str = "eu-west-1";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn scratch(name: &str) -> PathBuf {
    let d = root().join("target/test-scratch/gilliam-cli").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch");
    d
}

pub fn run(bin: &str, endpoint: &str, args: &[&str]) -> Output {
    let mut c = Command::new(bin);
    c.args(args).env("AWS_ENDPOINT_URL", endpoint).env("GILLIAM_ACTOR", "ci").env_remove("AWS_PROFILE");
    for (k, v) in SAFE_ENV {
        c.env(k, v);
    }
    c.output().expect("run")
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A network made through CloudFormation in moto, an artifact, and the stage and release files.
pub async fn prepare(moto: &Moto, dir: &Path) {
    let aws = SdkAws::connect(&Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) }).await;
    let body = gilliam_tests::network_template(REGION);
    aws.create_stack(&StackRequest { name: "net".into(), template: TemplateSource::Body(body), capabilities: vec![], tags: vec![] }).await.expect("network");
    let o: BTreeMap<String, String> = aws.describe_stack("net").await.expect("describe").expect("net").outputs.into_iter().collect();
    gilliam_tests::finish_network(&moto.url, REGION, &o).await;
    let stage = std::fs::read_to_string(root().join("examples/quickstart/stage.yml"))
        .expect("stage")
        .replace("vpc-0a1b2c3d4e5f60718", &o["Vpc"])
        .replace("subnet-0a1b2c3d4e5f60001", &o["A"])
        .replace("subnet-0a1b2c3d4e5f60002", &o["B"])
        .replace("subnet-0a1b2c3d4e5f60011", &o["C"])
        .replace("subnet-0a1b2c3d4e5f60012", &o["D"])
        .replace("gilliam-quickstart-artifacts", "gilliam-cli-outputs")
        // No request is ever in flight on a local AWS: nothing to wait for before scaling down.
        + "deregistration_delay: 0s\n";
    std::fs::write(dir.join("stage.yml"), stage).expect("stage");
    aws.create_secure_bucket("gilliam-cli-artifacts", REGION).await.expect("bucket");
    let artifact = b"artifact".to_vec();
    let sha = gilliam_materializer::sha256_hex(&artifact);
    aws.put_object("gilliam-cli-artifacts", "a.tgz", artifact, PutCondition::Always).await.expect("artifact");
    for n in 1..=20 {
        let r = format!(
            r#"{{"number": {n}, "artifact": {{"url": "s3://gilliam-cli-artifacts/a.tgz", "sha256": "{sha}"}}, "runtime_image": "ami-0a1b2c3d4e5f60718", "revision": "r{n}", "created": "2026-11-22T10:00:00Z"}}"#
        );
        std::fs::write(dir.join(format!("release-{n}.json")), r).expect("release");
    }
}

/// `gilliam --stage DIR/stage.yml ...` against moto, from `cwd` (default: the test's).
pub fn gilliam(moto: &Moto, stage: &str, cwd: Option<&Path>, args: &[&str]) -> Output {
    gilliam_env(moto, stage, cwd, args, &[])
}

/// `gilliam`, with more environment.
pub fn gilliam_env(moto: &Moto, stage: &str, cwd: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gilliam"));
    c.args(["--stage", stage]).args(args).env("AWS_ENDPOINT_URL", &moto.url).env("GILLIAM_ACTOR", "ci").env_remove("AWS_PROFILE").env_remove("GILLIAM_FAULTS");
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    for (k, v) in SAFE_ENV.iter().chain(env) {
        c.env(k, v);
    }
    c.output().expect("run gilliam")
}

/// `run`, with more environment.
pub fn run_env(bin: &str, endpoint: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin);
    c.args(args).env("AWS_ENDPOINT_URL", endpoint).env("GILLIAM_ACTOR", "ci").env_remove("AWS_PROFILE").env_remove("GILLIAM_FAULTS");
    for (k, v) in SAFE_ENV.iter().chain(env) {
        c.env(k, v);
    }
    c.output().expect("run")
}

/// A CLI test's world: moto, a scratch directory prepared by `prepare`, the stage file in it
/// and the quickstart's gilliam.yml.
pub struct Session {
    pub moto: Moto,
    pub dir: PathBuf,
    pub stage: String,
    pub app: String,
}

pub async fn session(name: &str) -> Session {
    let moto = Moto::start();
    let dir = scratch(name);
    prepare(&moto, &dir).await;
    let stage = dir.join("stage.yml").display().to_string();
    let app = root().join("examples/quickstart/gilliam.yml").display().to_string();
    Session { moto, dir, stage, app }
}

/// An SDK configuration that talks to `moto`, for tests that read what gilliam did.
pub async fn sdk_config(moto: &Moto) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(&moto.url)
        .http_client(gilliam_materializer::sdk::http_client())
        .load()
        .await
}

/// The next stage's file beside `stage`: formation `shop-prod`, its own outputs bucket.
pub fn prod_stage(dir: &Path, stage: &str) -> String {
    let prod = dir.join("prod.yml");
    let text =
        std::fs::read_to_string(stage).expect("stage").replace("formation: shop", "formation: shop-prod").replace("gilliam-cli-outputs", "gilliam-cli-prod");
    std::fs::write(&prod, text).expect("prod stage");
    prod.display().to_string()
}
