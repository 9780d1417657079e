//! A one-off process end to end on this machine: the task userdata the materializer makes
//! (`gilliam_compiler::task::userdata`, from the service's compiled userdata), run with the
//! agent binary in a scratch root against moto_server. The power-off command is a script that
//! records it ran: on EC2 the shutdown terminates the instance, which cannot happen here.

mod common;

use common::world::*;
use std::time::Duration;

/// The formation's web userdata, made into a task's: `command`, within `deadline` seconds.
fn task_userdata(b: &Scratch, command: &[&str], deadline: u32) -> std::path::PathBuf {
    let web = std::fs::read_to_string(b.dir.join("out/userdata/web.sh")).expect("web userdata");
    common::world::task_userdata(b, &web, command, deadline)
}

/// The task's events in its stream, and the last one's exit status and reason.
fn ended(aws: &Aws) -> (Vec<serde_json::Value>, serde_json::Value, serde_json::Value) {
    let events: Vec<serde_json::Value> = aws.log_events("/gilliam/boot").into_iter().filter(|(s, _)| s == "r1/web/i-0123456789test").map(|(_, m)| m).collect();
    let last = events.iter().rev().find(|m| m.get("task_exit").is_some()).cloned().expect("the task's last event");
    (events.clone(), last["task_exit"].clone(), last["task_reason"].clone())
}

fn setup(name: &str) -> (gilliam_tests::moto::Moto, Aws, Recorder, Scratch) {
    let (moto, aws, cfn) = world();
    let art = demo_artifact();
    aws.put("boot-artifacts", "web/r1.tar.gz", art.clone());
    aws.rt.block_on(aws.logs.create_log_group().log_group_name("/gilliam/boot").send()).expect("log group");
    let b = scratch_root(name);
    gilliam_tests::compile_into(&app(free_port()), &release(1, "s3://boot-artifacts/web/r1.tar.gz", &sha256(&art)), STAGE, &b.dir.join("out"));
    (moto, aws, cfn, b)
}

#[test]
fn a_task_runs_once_in_the_release_with_its_environment_reports_its_status_and_powers_off() {
    let (moto, aws, cfn, b) = setup("task-runs");
    let script = task_userdata(&b, &["sh", "-c", "echo \"migrating as $GILLIAM_SERVICE with $GREETING\"; ls bin; echo oops >&2; exit 3"], 120);
    let (off, mark) = poweroff(&b);
    let mut agent = run_userdata(&b, &script, &moto, &cfn, &[("GILLIAM_POWEROFF", &off), ("GILLIAM_LOG_INTERVAL_MS", "100")]);
    assert_eq!(agent.wait_exit(Duration::from_secs(60)).code(), Some(0), "{}", agent.text());
    assert!(mark.exists(), "powered off:\n{}", agent.text());
    let (events, exit, reason) = ended(&aws);
    assert_eq!(exit, 3, "the command's exit status");
    assert!(reason.is_null());
    let said = |source: &str, text: &str| events.iter().any(|m| m["source"] == source && m["message"].as_str().is_some_and(|t| t.contains(text)));
    assert!(said("stdout", "migrating as web with hello"), "the service's environment: {events:?}");
    assert!(said("stdout", "web"), "in the unpacked release: {events:?}");
    assert!(said("stderr", "oops"));
    assert!(cfn.signals().is_empty(), "a task signals no stack");

    // Run again on the same instance (systemd restarting a crashed agent): never a second run.
    std::fs::remove_file(&mark).expect("rm");
    let mut again = run_userdata(&b, &script, &moto, &cfn, &[("GILLIAM_POWEROFF", &off), ("GILLIAM_LOG_INTERVAL_MS", "100")]);
    assert_eq!(again.wait_exit(Duration::from_secs(60)).code(), Some(0), "{}", again.text());
    let (events, exit, reason) = ended(&aws);
    assert!(exit.is_null(), "{reason}");
    assert!(reason.as_str().is_some_and(|r| r.contains("not run a second time")), "{reason}");
    assert_eq!(events.iter().filter(|m| m["message"].as_str().is_some_and(|t| t.contains("migrating as web"))).count(), 1, "ran once");
    assert!(mark.exists(), "powered off again");
}

#[test]
fn a_task_past_its_deadline_is_killed_and_the_instance_still_powers_off() {
    let (moto, aws, cfn, b) = setup("task-deadline");
    let script = task_userdata(&b, &["sh", "-c", "echo started; exec sleep 60"], 2);
    let (off, mark) = poweroff(&b);
    let t = std::time::Instant::now();
    let mut agent = run_userdata(&b, &script, &moto, &cfn, &[("GILLIAM_POWEROFF", &off), ("GILLIAM_LOG_INTERVAL_MS", "100")]);
    assert_eq!(agent.wait_exit(Duration::from_secs(60)).code(), Some(0), "{}", agent.text());
    assert!(t.elapsed() < Duration::from_secs(30), "ended at the deadline, not at the command's end: {:?}", t.elapsed());
    assert!(mark.exists());
    let (_, exit, reason) = ended(&aws);
    assert!(exit.is_null());
    assert_eq!(reason, "killed at its deadline");
}

#[test]
fn a_task_whose_release_cannot_be_prepared_reports_why() {
    let (moto, aws, cfn, b) = setup("task-missing");
    // The bucket holds another artifact than the release names.
    aws.put("boot-artifacts", "web/r1.tar.gz", b"not the release".to_vec());
    let script = task_userdata(&b, &["bin/migrate"], 60);
    let (off, mark) = poweroff(&b);
    let mut agent = run_userdata(&b, &script, &moto, &cfn, &[("GILLIAM_POWEROFF", &off), ("GILLIAM_LOG_INTERVAL_MS", "100")]);
    assert_eq!(agent.wait_exit(Duration::from_secs(60)).code(), Some(0), "{}", agent.text());
    assert!(mark.exists());
    let (_, exit, reason) = ended(&aws);
    assert!(exit.is_null());
    assert!(reason.as_str().is_some_and(|r| r.contains("could not be prepared") && r.contains("sha256")), "{reason}");
}
