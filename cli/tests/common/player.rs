//! EC2 for one-off instances, played on this machine: moto records a RunInstances but runs
//! nothing, so a thread watches moto for instances tagged `gilliam:task` and boots each the
//! way EC2 would: its userdata (read back with DescribeInstanceAttribute) run by bash, with
//! the real agent binary, in a scratch root of its own, against moto. What cannot happen
//! here is faked, and only that: when the agent powers the instance off (`GILLIAM_POWEROFF`
//! runs a script that leaves a mark) and the instance was launched with
//! `InstanceInitiatedShutdownBehavior=terminate`, the player terminates it, as EC2 would.

use gilliam_ec2::Params;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What happened to one instance the player booted.
#[derive(Debug, Clone, Default)]
pub struct Played {
    pub userdata: String,
    /// `InstanceInitiatedShutdownBehavior` as EC2 holds it.
    pub shutdown_behavior: String,
    pub tags: BTreeMap<String, String>,
    /// The userdata's exit status, once it ended.
    pub exit: Option<i32>,
    /// The agent asked for a power-off.
    pub powered_off: bool,
    /// Its stdout and stderr.
    pub output: String,
}

pub struct Player {
    stop: Arc<AtomicBool>,
    pub played: Arc<Mutex<BTreeMap<String, Played>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The built agent binary beside this test's (built now when the workspace's build did not).
pub fn agent_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let agent = dir.join("gilliam-agent");
    if !agent.exists() {
        let target = dir.parent().expect("target");
        let ok = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "gilliam-agent", "--bin", "gilliam-agent"])
            .env("CARGO_TARGET_DIR", target)
            .status()
            .expect("cargo");
        assert!(ok.success(), "cannot build gilliam-agent");
    }
    agent
}

fn b64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

impl Player {
    /// Starts watching moto at `url` (region `region`); each instance gets `root/ID/`.
    pub fn start(url: &str, region: &str, root: &Path) -> Player {
        let agent = agent_binary();
        let stop = Arc::new(AtomicBool::new(false));
        let played: Arc<Mutex<BTreeMap<String, Played>>> = Arc::default();
        let (url, region, root, flag, book) = (url.to_string(), region.to_string(), root.to_path_buf(), stop.clone(), played.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            let ec2 = gilliam_tests::ec2(&url, &region);
            let mut running: Vec<(String, std::process::Child, PathBuf)> = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                let found = rt
                    .block_on(ec2.call_all(
                        "DescribeInstances",
                        &Params::new().filter("tag-key", &["gilliam:task"]).filter("instance-state-name", &["running"]),
                        "reservationSet",
                    ))
                    .unwrap_or_default();
                for r in found {
                    for i in r.items("instancesSet") {
                        let Some(id) = i.text("instanceId").map(str::to_string) else { continue };
                        if book.lock().expect("played").contains_key(&id) {
                            continue;
                        }
                        let attr = |name: &str| {
                            rt.block_on(ec2.call("DescribeInstanceAttribute", &Params::new().set("InstanceId", &id).set("Attribute", name)))
                                .ok()
                                .and_then(|n| {
                                    n.children
                                        .iter()
                                        .find(|c| c.name != "instanceId" && c.name != "requestId")
                                        .and_then(|c| c.text("value").map(str::to_string))
                                })
                                .unwrap_or_default()
                        };
                        let userdata = String::from_utf8_lossy(&b64(&attr("userData"))).into_owned();
                        let shutdown_behavior = attr("instanceInitiatedShutdownBehavior");
                        let tags = i.items("tagSet").filter_map(|t| Some((t.text("key")?.to_string(), t.text("value")?.to_string()))).collect();
                        let dir = root.join(&id);
                        let _ = std::fs::remove_dir_all(&dir);
                        std::fs::create_dir_all(dir.join("root")).expect("instance root");
                        for d in [root.as_path(), dir.as_path(), &dir.join("root")] {
                            std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
                        }
                        let script = dir.join("userdata.sh");
                        std::fs::write(&script, &userdata).expect("userdata");
                        let poweroff = dir.join("poweroff.sh");
                        std::fs::write(&poweroff, format!("#!/bin/sh\ntouch {}\n", dir.join("powered-off").display())).expect("poweroff");
                        std::fs::set_permissions(&poweroff, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
                        let mut cmd = Command::new("bash");
                        cmd.arg(&script).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
                        cmd.envs(gilliam_tests::moto::SAFE_ENV.iter().copied())
                            .env("GILLIAM_ROOT", dir.join("root"))
                            .env("GILLIAM_AGENT", &agent)
                            .env("GILLIAM_USER", "nobody")
                            .env("GILLIAM_INSTANCE_ID", &id)
                            .env("GILLIAM_POWEROFF", &poweroff)
                            .env("GILLIAM_LOG_INTERVAL_MS", "100")
                            .env("AWS_ENDPOINT_URL", &url)
                            .stdin(Stdio::null())
                            .stdout(std::fs::File::create(dir.join("output")).expect("output"))
                            .stderr(std::fs::File::create(dir.join("errors")).expect("errors"));
                        let child = cmd.spawn().expect("bash");
                        book.lock().expect("played").insert(id.clone(), Played { userdata, shutdown_behavior, tags, ..Played::default() });
                        running.push((id, child, dir));
                    }
                }
                let mut still = Vec::new();
                for (id, mut child, dir) in running.drain(..) {
                    match child.try_wait() {
                        Ok(Some(status)) => {
                            let powered_off = dir.join("powered-off").exists();
                            let output = format!(
                                "{}{}",
                                std::fs::read_to_string(dir.join("output")).unwrap_or_default(),
                                std::fs::read_to_string(dir.join("errors")).unwrap_or_default()
                            );
                            let mut book = book.lock().expect("played");
                            let p = book.get_mut(&id).expect("played");
                            (p.exit, p.powered_off, p.output) = (status.code(), powered_off, output);
                            // EC2: an instance that shuts itself down, launched to terminate on
                            // shutdown, terminates.
                            if powered_off && p.shutdown_behavior == "terminate" {
                                let _ = rt.block_on(ec2.call("TerminateInstances", &Params::new().set("InstanceId.1", &id)));
                            }
                        }
                        _ => still.push((id, child, dir)),
                    }
                }
                running = still;
                std::thread::sleep(Duration::from_millis(100));
            }
            for (_, mut child, _) in running {
                let _ = child.kill();
                let _ = child.wait();
            }
        });
        Player { stop, played, thread: Some(thread) }
    }

    pub fn played(&self) -> BTreeMap<String, Played> {
        self.played.lock().expect("played").clone()
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
