//! The release phase and `gilliam run` end to end on moto: each one-off instance gilliam
//! launches is booted here by the EC2 player (`common::player`: its userdata run with the
//! real agent, which fetches the release's artifact from moto's S3, runs the command, ships
//! its lines to moto's CloudWatch Logs and powers off). A passing release phase lets the
//! deploy shift; a failing one stops it with every weight unchanged; `gilliam run` returns
//! the command's exit status; a killed `gilliam` leaves no instance behind.

mod common;

use common::player::Player;
use common::*;
use gilliam_materializer::aws::prelude::*;
use gilliam_materializer::aws::PutCondition;
use gilliam_materializer::sdk::{Endpoint, SdkAws};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const MIGRATE: &str = "#!/bin/sh\necho \"migrating to release $GILLIAM_RELEASE as $GILLIAM_SERVICE\"\necho \"schema check\" >&2\nexit \"${MIGRATE_EXIT:-0}\"\n";

/// The quickstart's services without its database, with a release phase.
fn app(dir: &Path) -> String {
    let quickstart = std::fs::read_to_string(root().join("examples/quickstart/gilliam.yml")).expect("app");
    let without_db = quickstart.split("\ndb:\n").next().expect("services").to_string();
    let text = format!("{without_db}\nx-gilliam:\n  release: {{command: bin/migrate, service: api, timeout: 2m}}\n");
    let path = dir.join("gilliam.yml");
    std::fs::write(&path, text).expect("app");
    path.display().to_string()
}

/// A tarball with the services' scripts and `bin/migrate`, in moto's artifact bucket; release
/// files whose config sets the migration's exit status.
async fn releases(moto: &gilliam_tests::moto::Moto, dir: &Path, exits: &[(u32, u32)]) {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("bin")).expect("tree");
    for (name, body) in
        [("migrate", MIGRATE), ("api", "#!/bin/sh\nexec sleep 600\n"), ("pricing", "#!/bin/sh\nexec sleep 600\n"), ("worker", "#!/bin/sh\nexec sleep 600\n")]
    {
        let p = tree.join("bin").join(name);
        std::fs::write(&p, body).expect("script");
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    }
    let tgz = dir.join("release.tgz");
    let ok = Command::new("tar").args(["-czf"]).arg(&tgz).arg("-C").arg(&tree).arg("bin").status().expect("tar");
    assert!(ok.success());
    let artifact = std::fs::read(&tgz).expect("tarball");
    let sha = gilliam_materializer::sha256_hex(&artifact);
    let aws = SdkAws::connect(&Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) }).await;
    aws.put_object("gilliam-cli-artifacts", "migrating.tgz", artifact, PutCondition::Always).await.expect("artifact");
    for (n, exit) in exits {
        let r = format!(
            r#"{{"number": {n}, "artifact": {{"url": "s3://gilliam-cli-artifacts/migrating.tgz", "sha256": "{sha}"}}, "runtime_image": "ami-0a1b2c3d4e5f60718", "revision": "r{n}", "created": "2026-11-22T10:00:00Z", "config": {{"MIGRATE_EXIT": "{exit}"}}}}"#
        );
        std::fs::write(dir.join(format!("task-release-{n}.json")), r).expect("release");
    }
}

/// Every task instance moto knows, with its state.
async fn task_instances(moto: &gilliam_tests::moto::Moto) -> Vec<(String, String)> {
    let ec2 = gilliam_tests::ec2(&moto.url, REGION);
    let found = ec2
        .call_all("DescribeInstances", &gilliam_ec2::Params::new().filter("tag-key", &["gilliam:task"]), "reservationSet")
        .await
        .expect("describe instances");
    found
        .iter()
        .flat_map(|r| {
            r.items("instancesSet")
                .map(|i| {
                    (
                        i.text("instanceId").unwrap_or_default().to_string(),
                        i.child("instanceState").and_then(|s| s.text("name")).unwrap_or_default().to_string(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn wait_all_terminated(moto: &gilliam_tests::moto::Moto, count: usize, limit: Duration) -> Vec<(String, String)> {
    let until = Instant::now() + limit;
    loop {
        let all = task_instances(moto).await;
        if all.len() >= count && all.iter().all(|(_, s)| s == "terminated") {
            return all;
        }
        assert!(Instant::now() < until, "task instances not all terminated: {all:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The weight of each release in the formation's rules, as `gilliam status --output json` says.
fn weights(moto: &gilliam_tests::moto::Moto, stage: &str) -> serde_json::Value {
    let o = gilliam(moto, stage, None, &["--output", "json", "status"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status json");
    v["traffic"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_phase_gates_the_deploy_and_gilliam_run_returns_the_commands_status() {
    let Session { moto, dir, stage, .. } = session("run").await;
    let app = app(&dir);
    releases(&moto, &dir, &[(1, 0), (2, 3)]).await;
    let instances = std::env::temp_dir().join("gilliam-run-tests");
    let player = Player::start(&moto.url, REGION, &instances);
    let g = |args: &[&str]| gilliam(&moto, &stage, None, args);
    let deploy = |n: u32| {
        let rel = dir.join(format!("task-release-{n}.json")).display().to_string();
        let out = dir.join(format!("out-{n}")).display().to_string();
        g(&["deploy", "--app", &app, "--release", &rel, "--out", &out, "--poll", "0.2"])
    };

    // Release 1: its release phase passes, then the traffic moves.
    let o = deploy(1);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("release phase: `bin/migrate` on a one-off instance of api of release 1"), "the plan says so: {t}");
    assert!(t.contains("[release phase stdout] migrating to release 1 as api"), "its output streams to the operator: {t}");
    assert!(t.contains("[release phase stderr] schema check"), "{t}");
    let first = wait_all_terminated(&moto, 1, Duration::from_secs(30)).await;
    let played = player.played();
    let p = &played[&first[0].0];
    assert_eq!(p.shutdown_behavior, "terminate", "launched to terminate when it shuts itself down");
    assert!(p.powered_off, "the agent powered the instance off:\n{}", p.output);
    assert_eq!(p.tags.get("gilliam:release").map(String::as_str), Some("1"));
    assert_eq!(p.tags.get("gilliam:service").map(String::as_str), Some("api"));
    assert_eq!(p.tags.get("gilliam:task").map(String::as_str), Some("release phase"));
    assert!(p.userdata.contains("shutdown -h +12 "), "the backstop: the 2 minutes of the phase and 10 more");
    assert_eq!(weights(&moto, &stage), serde_json::json!({ "1": 100 }), "release 1 serves");

    // Release 2: its release phase fails (exit 3): the deploy stops, nothing shifted.
    let before = weights(&moto, &stage);
    let o = deploy(2);
    assert_eq!(o.status.code(), Some(5), "aborted: {}", text(&o));
    let t = text(&o);
    assert!(t.contains("release phase `bin/migrate` exit status 3"), "{t}");
    assert!(t.contains("before any traffic moved"), "{t}");
    assert_eq!(weights(&moto, &stage), before, "every weight as it was");
    let h = text(&g(&["history"]));
    assert!(h.contains("deploy release 2 (release phase `bin/migrate` exit status 3"), "{h}");
    wait_all_terminated(&moto, 2, Duration::from_secs(30)).await;

    // `gilliam run`: the command's status is gilliam's, its output goes where it was written.
    let o = g(&["run", "-r", "1", "--poll", "0.2", "worker", "--", "sh", "-c", "echo \"out $MIGRATE_EXIT $GILLIAM_SERVICE\"; echo err >&2; exit 7"]);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "out 0 worker", "stdout to stdout, in the release's environment");
    assert!(String::from_utf8_lossy(&o.stderr).contains("err"), "{}", text(&o));
    let o = g(&["--output", "json", "run", "--poll", "0.2", "api", "--", "true"]);
    assert!(o.status.success(), "{}", text(&o));
    let last: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap_or_default()).expect("json");
    assert_eq!(last["exit"], 0);
    wait_all_terminated(&moto, 4, Duration::from_secs(30)).await;

    // Bad input: a service the release does not have, no command.
    let o = g(&["run", "nope", "--", "true"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("release 1 has no service nope: it has api, pricing, worker"), "{}", text(&o));
    let o = g(&["run", "api"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // A killed gilliam leaves no instance behind: the instance ends itself.
    let mut child = Command::new(env!("CARGO_BIN_EXE_gilliam"));
    child
        .args(["--stage", &stage, "run", "-r", "1", "api", "--", "sh", "-c", "sleep 4; echo done"])
        .env("AWS_ENDPOINT_URL", &moto.url)
        .env_remove("AWS_PROFILE");
    for (k, v) in gilliam_tests::moto::SAFE_ENV {
        child.env(k, v);
    }
    let mut child = child.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().expect("gilliam run");
    let until = Instant::now() + Duration::from_secs(30);
    while task_instances(&moto).await.len() < 5 {
        assert!(Instant::now() < until, "no instance launched");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // `gilliam ps` shows the one-off instance beside the release's own.
    let o = g(&["--output", "json", "ps", "-r", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).expect("ps json");
    let task = rows.iter().find(|r| r["service"] == "api (task)").unwrap_or_else(|| panic!("a task row: {rows:?}"));
    assert!(matches!(task["lifecycle"].as_str(), Some("running" | "pending")), "{task}");
    assert!(task["agent"].as_str().is_some_and(|a| a.starts_with("gilliam run by")), "{task}");
    child.kill().expect("kill gilliam");
    let _ = child.wait();
    wait_all_terminated(&moto, 5, Duration::from_secs(60)).await;
    let played = player.played();
    assert_eq!(played.len(), 5);
    assert!(played.values().all(|p| p.powered_off), "every instance powered itself off: {:?}", played.values().map(|p| &p.output).collect::<Vec<_>>());
    drop(player);
    let _ = std::fs::remove_dir_all(&instances);
}
