//! `gilliam` and `gilliam-materialize` as an operator runs them, against moto on 127.0.0.1:
//! deploys, JSON read verbs, traffic, rollback, saved plans, and the documented exit codes.

use gilliam_materializer::aws::{Aws, PutCondition, StackRequest, TemplateSource};
use gilliam_materializer::sdk::{Endpoint, SdkAws};
use gilliam_tests::moto::{Moto, SAFE_ENV};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const REGION: &str = "eu-west-1";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scratch(name: &str) -> PathBuf {
    let d = root().join("target/test-scratch/gilliam-cli").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch");
    d
}

fn run(bin: &str, endpoint: &str, args: &[&str]) -> Output {
    let mut c = Command::new(bin);
    c.args(args).env("AWS_ENDPOINT_URL", endpoint).env("GILLIAM_ACTOR", "ci").env_remove("AWS_PROFILE");
    for (k, v) in SAFE_ENV {
        c.env(k, v);
    }
    c.output().expect("run")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A network made through CloudFormation in moto, an artifact, and the stage and release files.
async fn prepare(moto: &Moto, dir: &Path) {
    let aws = SdkAws::connect(&Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) }).await;
    let body = gilliam_tests::network_template(REGION);
    aws.create_stack(&StackRequest { name: "net".into(), template: TemplateSource::Body(body), capabilities: vec![], tags: vec![] }).await.expect("network");
    let o: BTreeMap<String, String> = aws.describe_stack("net").await.expect("describe").expect("net").outputs.into_iter().collect();
    let stage = std::fs::read_to_string(root().join("examples/quickstart/stage.yml"))
        .expect("stage")
        .replace("vpc-0a1b2c3d4e5f60718", &o["Vpc"])
        .replace("subnet-0a1b2c3d4e5f60001", &o["A"])
        .replace("subnet-0a1b2c3d4e5f60002", &o["B"])
        .replace("subnet-0a1b2c3d4e5f60011", &o["C"])
        .replace("subnet-0a1b2c3d4e5f60012", &o["D"])
        .replace("gilliam-quickstart-artifacts", "gilliam-cli-outputs");
    std::fs::write(dir.join("stage.yml"), stage).expect("stage");
    aws.create_secure_bucket("gilliam-cli-artifacts", REGION).await.expect("bucket");
    let artifact = b"artifact".to_vec();
    let sha = gilliam_materializer::sha256_hex(&artifact);
    aws.put_object("gilliam-cli-artifacts", "a.tgz", artifact, PutCondition::Always).await.expect("artifact");
    for n in [1, 2] {
        let r = format!(
            r#"{{"number": {n}, "artifact": {{"url": "s3://gilliam-cli-artifacts/a.tgz", "sha256": "{sha}"}}, "runtime_image": "ami-0a1b2c3d4e5f60718", "revision": "r{n}", "created": "2026-11-22T10:00:00Z"}}"#
        );
        std::fs::write(dir.join(format!("release-{n}.json")), r).expect("release");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_session() {
    let moto = Moto::start();
    let dir = scratch("session");
    prepare(&moto, &dir).await;
    let stage = dir.join("stage.yml").display().to_string();
    let app = root().join("examples/quickstart/gilliam.yml").display().to_string();
    let g = |args: &[&str]| {
        let mut all = vec!["--stage", stage.as_str()];
        all.extend_from_slice(args);
        run(env!("CARGO_BIN_EXE_gilliam"), &moto.url, &all)
    };

    // Nothing deployed yet: read verbs say so and fail as refused (4).
    let o = g(&["status"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("has no published release"), "{}", text(&o));

    for n in ["1", "2"] {
        let rel = dir.join(format!("release-{n}.json")).display().to_string();
        let out = dir.join(format!("out-{n}")).display().to_string();
        let o = g(&["deploy", "--app", &app, "--release", &rel, "--out", &out, "--poll", "0.1"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(text(&o).contains(&format!("deployed release {n} of shop")), "{}", text(&o));
    }
    let o = g(&["--output", "json", "releases"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let weights: Vec<(u64, u64)> =
        rows.as_array().expect("rows").iter().map(|r| (r["release"].as_u64().unwrap_or(0), r["weight"].as_u64().unwrap_or(0))).collect();
    assert_eq!(weights, vec![(1, 0), (2, 100)]);

    let o = g(&["traffic", "1=90", "2=10"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = g(&["--output", "json", "status"]);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(s["traffic"], serde_json::json!({ "1": 90, "2": 10 }));
    let o = g(&["rollback"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("rolled back to release 1"), "{}", text(&o));
    let o = g(&["rollback"]);
    assert_eq!(o.status.code(), Some(4), "nothing older than release 1: {}", text(&o));
    assert!(text(&o).contains("nothing to roll back to"), "{}", text(&o));

    // Refusals (4), usage errors (2), invalid input (1).
    assert_eq!(g(&["traffic", "7"]).status.code(), Some(4));
    assert_eq!(g(&["retire", "1"]).status.code(), Some(4), "release 1 carries traffic");
    assert_eq!(g(&["scale", "-r2", "api=99"]).status.code(), Some(4), "over api's max");
    assert_eq!(g(&["traffic", "1=x"]).status.code(), Some(2));
    assert_eq!(g(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(run(env!("CARGO_BIN_EXE_gilliam"), &moto.url, &["--stage", "/nonexistent.yml", "status"]).status.code(), Some(2));
    std::fs::write(dir.join("bad.yml"), "formation: Shop!\n").expect("write");
    let o = run(env!("CARGO_BIN_EXE_gilliam"), &moto.url, &["--stage", &dir.join("bad.yml").display().to_string(), "status"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("bad.yml:1:12: bad formation name"), "{}", text(&o));

    // gilliam-materialize: a saved plan applies, a stale one is refused; a no-op says so.
    let out2 = dir.join("out-2").display().to_string();
    let plan = dir.join("plan.json").display().to_string();
    let m = |args: &[&str]| run(env!("CARGO_BIN_EXE_gilliam-materialize"), &moto.url, args);
    let o = m(&["--from", &out2]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("no AWS call that changes anything"), "{}", text(&o));
    let o = m(&["--from", &out2, "--plan-only", "--out", &plan]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(g(&["traffic", "2"]).status.code(), Some(0));
    let o = m(&["--from", &out2, "--plan", &plan]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("the plan is stale: traffic weights changed"), "{}", text(&o));
    std::fs::write(&plan, "{\"plan_version\": 99}").expect("write");
    assert_eq!(m(&["--from", &out2, "--plan", &plan]).status.code(), Some(1));

    let o = g(&["history"]);
    let h = text(&o);
    assert!(h.contains("ci") && h.contains("deploy release 2") && h.contains("traffic 1=90 2=10"), "{h}");
}
