//! One-off instances at the seam, on the in-memory AWS behind the strict layer (EC2's rules for
//! RunInstances checked there): what a task is launched from, and how its end is read: an exit
//! status in its stream, an instance that ends without one, and no result before the limit.
//! In every case gilliam terminates the instance once it is over. (End to end, with the real
//! agent on moto: cli/tests/run.rs.)

use gilliam_doubles::fake::Fake;
use gilliam_doubles::strict::{launch_problem, Strict};
use gilliam_materializer::aws::prelude::*;
use gilliam_materializer::aws::{InstanceLaunch, InstanceState, LogEvent};
use gilliam_materializer::bundle::Bundle;
use gilliam_materializer::task::{self, TaskSpec};
use std::sync::Mutex;
use std::time::Duration;

/// The seed case compiled, and a fake whose release stack holds api's launch template.
fn world(tag: &str) -> (Strict<Fake>, Bundle) {
    let [app, release, stage] = gilliam_tests::load("seed");
    let dir = gilliam_tests::scratch(&format!("task/{tag}"));
    gilliam_tests::compile_into(&app, &release, &stage, &dir);
    let bundle = Bundle::load(&dir).expect("bundle");
    let stack = bundle.manifest.services.iter().find(|s| s.name == "api").expect("api").stack.clone();
    let aws = Fake::default();
    aws.with(|w| w.resources.insert(stack, vec![("ApiLaunchTemplate".into(), "lt-0123456789abcdef0".into(), "AWS::EC2::LaunchTemplate".into())]));
    (Strict::new(aws), bundle)
}

fn spec(bundle: &Bundle) -> TaskSpec {
    TaskSpec {
        release: bundle.manifest.release.number,
        service: "api".into(),
        command: vec!["bin/migrate".into(), "--all".into()],
        timeout: Duration::from_secs(60),
        purpose: "release phase".into(),
    }
}

/// The agent's events, as it ships them.
fn event(stream: &str, id: &str, json: serde_json::Value) -> LogEvent {
    LogEvent { id: id.into(), ts_ms: gilliam_materializer::clock::epoch_ms(), stream: stream.into(), message: json.to_string() }
}

#[tokio::test]
async fn a_task_is_launched_from_the_services_launch_template_with_its_own_userdata() {
    let (aws, bundle) = world("launch");
    let src = task::source(&aws, &bundle, "api").await.expect("source");
    assert_eq!(src.launch_template, "lt-0123456789abcdef0");
    assert!(!src.subnets.is_empty());
    let id = task::launch(&aws, "seed", &src, &spec(&bundle)).await.expect("launch");
    let (req, state) = aws.inner.with(|w| w.instances[&id].clone());
    assert_eq!(state.name, "running");
    assert!(req.shutdown_terminates, "an instance that powers itself off is gone");
    assert!(src.subnets.contains(&req.subnet));
    assert_eq!(req.version, "$Latest");
    let cfg = gilliam_compiler::runtime::from_userdata(&req.user_data).expect("a runtime config");
    let gilliam_compiler::runtime::RuntimeConfig::Task(t) = gilliam_compiler::runtime::parse(cfg.as_bytes()).expect("parses") else { panic!("a task config") };
    assert_eq!(t.command, ["bin/migrate", "--all"]);
    assert_eq!(t.service["service"], "api", "the service's own runtime config, inside");
    let tags: std::collections::BTreeMap<_, _> = req.tags.iter().cloned().collect();
    assert_eq!(tags.get("gilliam:task").map(String::as_str), Some("release phase"));
    assert!(req.client_token.len() <= 64);

    // A service without a process of its own, and one the release does not have.
    let e = task::source(&aws, &bundle, "etcd").await.expect_err("auxiliary");
    assert!(e.to_string().contains("auxiliary"), "{e}");
    let e = task::source(&aws, &bundle, "nope").await.expect_err("missing");
    assert!(e.to_string().contains("has no service nope: it has api, worker"), "{e}");
}

#[test]
fn the_strict_layer_refuses_what_ec2_refuses() {
    let ok = InstanceLaunch {
        launch_template_id: "lt-1".into(),
        version: "$Latest".into(),
        subnet: "subnet-1".into(),
        user_data: "#!/bin/bash\n".into(),
        tags: vec![("Name".into(), "x".into())],
        client_token: "gilliam-0123".into(),
        shutdown_terminates: true,
    };
    assert_eq!(launch_problem(&ok), None);
    assert!(launch_problem(&InstanceLaunch { client_token: "x".repeat(65), ..ok.clone() }).is_some_and(|p| p.contains("64")));
    assert!(launch_problem(&InstanceLaunch { user_data: "x".repeat(16 * 1024 + 1), ..ok.clone() }).is_some_and(|p| p.contains("16384")));
    assert!(launch_problem(&InstanceLaunch { tags: vec![("aws:x".into(), "v".into())], ..ok.clone() }).is_some_and(|p| p.contains("aws:")));
    let many: Vec<(String, String)> = (0..51).map(|i| (format!("k{i}"), "v".into())).collect();
    assert!(launch_problem(&InstanceLaunch { tags: many, ..ok }).is_some_and(|p| p.contains("TagLimitExceeded")));
}

#[tokio::test]
async fn a_client_token_is_one_launch() {
    let (aws, bundle) = world("token");
    let src = task::source(&aws, &bundle, "api").await.expect("source");
    let req = InstanceLaunch {
        launch_template_id: src.launch_template.clone(),
        version: "$Latest".into(),
        subnet: src.subnets[0].clone(),
        user_data: "#!/bin/bash\n".into(),
        tags: vec![],
        client_token: "gilliam-same".into(),
        shutdown_terminates: true,
    };
    let first = aws.run_instance(&req).await.expect("launch");
    assert_eq!(aws.run_instance(&req).await.expect("retried"), first, "a retry is the same launch");
    let e = aws.run_instance(&InstanceLaunch { user_data: "#!/bin/sh\n".into(), ..req }).await.expect_err("another launch, same token");
    assert!(e.to_string().contains("IdempotentParameterMismatch"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn the_exit_status_in_the_stream_ends_the_task_and_the_instance() {
    let (aws, bundle) = world("exit");
    let src = task::source(&aws, &bundle, "api").await.expect("source");
    let id = task::launch(&aws, "seed", &src, &spec(&bundle)).await.expect("launch");
    let stream = format!("r{}/api/{id}", bundle.manifest.release.number);
    let group = "/gilliam/seed";
    // An unrelated stream with an exit field must not end this task.
    aws.inner.with(|w| {
        let events = w.log_events.entry(group.into()).or_default();
        events.push(event("r9/api/i-other", "o1", serde_json::json!({ "message": "task finished", "task_exit": 0 })));
        events.push(event(&stream, "e1", serde_json::json!({ "source": "stdout", "message": "migrating" })));
        events.push(event(
            &stream,
            "e2",
            serde_json::json!({ "source": "agent", "message": "task finished: exit status 3", "task_exit": 3, "task_reason": null }),
        ));
    });
    let lines = Mutex::new(Vec::new());
    let out = |source: &str, line: &str| lines.lock().expect("lines").push(format!("{source}: {line}"));
    let o = task::follow(&aws, group, &stream, &id, Duration::from_secs(600), Duration::from_secs(1), &out).await.expect("follow");
    assert_eq!((o.exit, o.reason.as_deref()), (Some(3), None));
    assert_eq!(*lines.lock().expect("lines"), ["stdout: migrating", "agent: task finished: exit status 3"]);
    assert_eq!(aws.inner.with(|w| w.instances[&id].1.name.clone()), "terminated", "gilliam ends the instance once it has the result");
}

#[tokio::test(start_paused = true)]
async fn an_instance_that_ends_without_reporting_and_a_task_past_its_limit_fail() {
    let (aws, bundle) = world("silent");
    let src = task::source(&aws, &bundle, "api").await.expect("source");
    let nothing = |_: &str, _: &str| {};
    // Gone without a word (the agent missing from the image, say): said after a grace.
    let id = task::launch(&aws, "seed", &src, &spec(&bundle)).await.expect("launch");
    aws.inner.with(|w| {
        w.instances.get_mut(&id).expect("instance").1 = InstanceState { name: "terminated".into(), reason: "Client.InstanceInitiatedShutdown".into() }
    });
    let o = task::follow(&aws, "/gilliam/seed", "r1/api/x", &id, Duration::from_secs(600), Duration::from_secs(1), &nothing).await.expect("follow");
    assert_eq!(o.exit, None);
    let why = o.reason.unwrap_or_default();
    assert!(why.contains("without reporting") && why.contains("InstanceInitiatedShutdown"), "{why}");

    // Running on past the limit: terminated here.
    let id = task::launch(&aws, "seed", &src, &TaskSpec { command: vec!["sleep".into()], ..spec(&bundle) }).await.expect("launch");
    let o = task::follow(&aws, "/gilliam/seed", "r1/api/y", &id, Duration::from_secs(120), Duration::from_secs(5), &nothing).await.expect("follow");
    assert_eq!(o.exit, None);
    assert!(o.reason.as_deref().is_some_and(|r| r.starts_with("no result after")), "{o:?}");
    assert_eq!(aws.inner.with(|w| w.instances[&id].1.name.clone()), "terminated");
}
