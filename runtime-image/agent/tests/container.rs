//! Image releases end to end on this machine, with the real components: Debian's `dockerd`
//! (vfs storage, no bridge, no iptables, its own data root and socket) and `docker-registry`
//! on 127.0.0.1, started here and stopped by their PIDs; a test image built locally from
//! busybox-static (`docker import`), pushed to that registry and pulled by the agent by digest.
//! The agent runs from the compiled userdata, as on an instance. Nothing comes from the
//! internet. Without the engine (or root) the test says so and passes, except in CI
//! (`CI_REQUIRE_DOCKER=1`), which installs them.

mod common;

use common::world::*;
use gilliam_tests::engine::Engine;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn image_release(number: u32, reference: &str) -> String {
    format!(
        r#"{{"number": {number}, "artifact": {{"image": "{reference}"}}, "runtime_image": "ami-0123456789abcdef0", "revision": "img{number}", "created": "2026-12-01T00:00:00Z"}}"#
    )
}

fn web_app(port: u16) -> String {
    // With the demo's database: DATABASE_URL carries a password resolved at boot.
    format!("web:\n  ports: [{port}]\n  health: /healthz\n  memory: 64M\n  cpus: 0.5\n  env:\n    GREETING: hello\ndb:\n  type: postgres\n  database: app\n")
}

fn userdata(b: &Scratch, port: u16, release: &str) -> PathBuf {
    gilliam_tests::compile_into(&web_app(port), release, STAGE, &b.dir.join("out"));
    b.dir.join("out/userdata/web.sh")
}

#[test]
fn an_image_release_is_pulled_by_digest_run_within_its_limits_restarted_and_drained() {
    let Some(engine) = Engine::start() else { return };
    let (moto, _aws, cfn) = world();
    let pinned = engine.push_web_image();
    let socket = engine.socket.display().to_string();
    let extra = [("GILLIAM_DOCKER_SOCKET", socket.as_str()), ("GILLIAM_PULL_DEADLINE_SECONDS", "20")];
    let port = free_port();
    let b = scratch_root("image");
    let script = userdata(&b, port, &image_release(1, &pinned));

    let t = Instant::now();
    let mut agent = run_userdata(&b, &script, &moto, &cfn, &extra);
    let signal = wait_for("the success signal", Duration::from_secs(120), || cfn.signal_for("WebAutoScalingGroup"));
    let boot_to_healthy = t.elapsed();
    assert_eq!(signal["Status"], "SUCCESS", "{}", agent.text());
    eprintln!("image release: boot to healthy (pull included) {boot_to_healthy:?}");
    assert_eq!(get(port, "/healthz"), Some((200, "ok".into())));
    assert!(agent.text().contains("pulled and verified"), "{}", agent.text());
    wait_for("the container's output in the log", Duration::from_secs(10), || agent.text().contains(&format!("web listening on {port}")).then_some(()));

    // The container as the engine holds it: host network, the limits, no privilege, a
    // read-only root filesystem; the memory limit is the container's cgroup's.
    let name = "gilliam-boot-r1-web";
    let host = engine.run(&[
        "inspect",
        "--format",
        "{{.HostConfig.NetworkMode}} {{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.Privileged}} {{json .HostConfig.CapDrop}} {{json .HostConfig.SecurityOpt}}",
        name,
    ]);
    assert_eq!(host, r#"host 67108864 500000000 true false ["ALL"] ["no-new-privileges"]"#);
    let cgroup = engine.run(&["exec", name, "sh", "-c", "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"]);
    assert_eq!(cgroup, "67108864", "the kernel enforces the limit");
    let config = engine.run(&["inspect", "--format", "{{json .Config.Cmd}} {{.Config.Image}}", name]);
    assert!(config.ends_with(&pinned), "runs the image by digest: {config}");
    let env = engine.run(&["exec", name, "sh", "-c", "echo $GREETING $GILLIAM_RELEASE"]);
    assert_eq!(env, "hello 1");
    // The secret reaches the service, and never its command line, the userdata, or a file on
    // the instance that others may read.
    let db = engine.run(&["exec", name, "sh", "-c", "echo $DATABASE_URL"]);
    assert!(db.contains(PASSWORD), "resolved at boot: {db}");
    let args = engine.run(&["inspect", "--format", "{{json .Path}} {{json .Args}} {{json .Config.Cmd}} {{json .Config.Entrypoint}}", name]);
    assert!(!args.contains(PASSWORD), "{args}");
    assert!(!std::fs::read_to_string(&script).expect("userdata").contains(PASSWORD));
    // As another user (nobody): what the engine and the agent keep is out of reach.
    let readable = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "grep", "-rl", PASSWORD])
        .arg(&engine.dir)
        .arg(&b.root)
        .output()
        .expect("setpriv");
    assert_eq!(String::from_utf8_lossy(&readable.stdout).trim(), "", "files others may read hold no secret");

    // A container that dies is started again.
    engine.run(&["kill", name]);
    wait_for("the restarted container", Duration::from_secs(60), || agent.text().contains("exited").then_some(()));
    wait_for("the service again", Duration::from_secs(60), || get(port, "/healthz").filter(|r| r.0 == 200));

    // SIGTERM drains and stops the container; the agent exits cleanly.
    Command::new("kill").args(["-TERM", &agent.child.id().to_string()]).status().expect("kill");
    assert_eq!(agent.wait_exit(Duration::from_secs(60)).code(), Some(0), "{}", agent.text());
    assert!(get(port, "/healthz").is_none(), "nothing listens any more");
    assert_eq!(engine.run(&["ps", "-aq", "--filter", &format!("name={name}")]), "", "the container is gone");

    // Booting again: the image is there, and not pulled again.
    let b2 = scratch_root("image-again");
    let t = Instant::now();
    let mut again = run_userdata(&b2, &userdata(&b2, port, &image_release(1, &pinned)), &moto, &cfn, &extra);
    wait_for("the service, without a pull", Duration::from_secs(60), || get(port, "/healthz").filter(|r| r.0 == 200));
    eprintln!("image release: boot to healthy, image already present {:?}", t.elapsed());
    assert!(again.text().contains("already present: not pulled again"), "{}", again.text());
    Command::new("kill").args(["-TERM", &again.child.id().to_string()]).status().expect("kill");
    assert_eq!(again.wait_exit(Duration::from_secs(60)).code(), Some(0));

    // A digest the registry does not hold: FAILURE, with the reason.
    let (registry_repo, _) = pinned.split_once('@').expect("pinned");
    let wrong = format!("{registry_repo}@sha256:{}", "0".repeat(64));
    let b3 = scratch_root("image-wrong");
    let before = cfn.signals().len();
    let mut failed = run_userdata(&b3, &userdata(&b3, free_port(), &image_release(2, &wrong)), &moto, &cfn, &extra);
    let status = failed.wait_exit(Duration::from_secs(120));
    assert!(!status.success(), "{}", failed.text());
    let signals = cfn.signals();
    assert_eq!(signals.len(), before + 1, "{signals:?}");
    assert_eq!(signals.last().map(|s| s["Status"].as_str()), Some("FAILURE"));
    assert!(failed.text().contains("cannot pull") && failed.text().contains("FAILURE signalled"), "{}", failed.text());
}

#[test]
fn a_task_of_an_image_release_runs_its_command_in_the_image_and_reports_its_status() {
    let Some(engine) = Engine::start() else { return };
    let (moto, aws, cfn) = world();
    aws.rt.block_on(aws.logs.create_log_group().log_group_name("/gilliam/boot").send()).expect("log group");
    // No entrypoint: the task's command is what runs.
    let pinned = engine.push_tool_image();
    let socket = engine.socket.display().to_string();
    let b = scratch_root("image-task");
    let web = std::fs::read_to_string(userdata(&b, free_port(), &image_release(1, &pinned))).expect("web userdata");
    let script =
        task_userdata(&b, &web, &["sh", "-c", "echo \"from the image: $GREETING $GILLIAM_RELEASE\"; [ -n \"$DATABASE_URL\" ] && echo has-db; exit 4"], 120);
    let (off, mark) = poweroff(&b);
    let extra = [
        ("GILLIAM_DOCKER_SOCKET", socket.as_str()),
        ("GILLIAM_PULL_DEADLINE_SECONDS", "20"),
        ("GILLIAM_POWEROFF", off.as_str()),
        ("GILLIAM_LOG_INTERVAL_MS", "100"),
    ];
    let mut agent = run_userdata(&b, &script, &moto, &cfn, &extra);
    assert_eq!(agent.wait_exit(Duration::from_secs(120)).code(), Some(0), "{}", agent.text());
    assert!(mark.exists(), "powered off: {}", agent.text());
    let events: Vec<serde_json::Value> = aws.log_events("/gilliam/boot").into_iter().filter(|(s, _)| s == "r1/web/i-0123456789test").map(|(_, m)| m).collect();
    let said = |text: &str| events.iter().any(|m| m["source"] == "stdout" && m["message"] == text);
    assert!(said("from the image: hello 1"), "in the image, with the service's environment: {events:?}");
    assert!(said("has-db"), "secrets resolved as for the service");
    let last = events.iter().rev().find(|m| m.get("task_exit").is_some()).expect("the exit status");
    assert_eq!(last["task_exit"], 4);
    assert!(cfn.signals().is_empty(), "a task signals nothing");
    let left = engine.run(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(!left.contains("gilliam-boot-r1-web-task"), "the task's container is removed: {left}");
}
