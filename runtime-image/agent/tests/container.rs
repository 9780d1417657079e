//! Image releases end to end on this machine, with the real components: Debian's `dockerd`
//! (vfs storage, no bridge, no iptables, its own data root and socket) and `docker-registry`
//! on 127.0.0.1, started here and stopped by their PIDs; a test image built locally from
//! busybox-static (`docker import`), pushed to that registry and pulled by the agent by digest.
//! The agent runs from the compiled userdata, as on an instance. Nothing comes from the
//! internet. Without the engine (or root) the test says so and passes, except in CI
//! (`CI_REQUIRE_DOCKER=1`), which installs them.

mod common;

use common::world::*;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// dockerd and docker-registry, stopped (by PID) when dropped.
struct Engine {
    dir: PathBuf,
    socket: PathBuf,
    registry: String,
    children: Vec<Child>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Containers first, while the engine is up.
        let _ = self.docker(&["rm", "-f", "gilliam-boot-r1-web", "gilliam-boot-r2-web"]).output();
        for c in &mut self.children {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        }
        for c in &mut self.children {
            let until = Instant::now() + Duration::from_secs(15);
            while Instant::now() < until && c.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // The engine leaves mounts under its roots (the default network namespace's, its
        // storage): each let go, deepest first, before the directory goes.
        let dir = self.dir.display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut under: Vec<&str> = mounts.lines().filter_map(|l| l.split(' ').nth(1)).filter(|m| m.starts_with(&dir)).collect();
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in under {
            let _ = Command::new("umount").args(["-l", m]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Engine {
    fn docker(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.args(args).env("DOCKER_HOST", format!("unix://{}", self.socket.display())).env_remove("DOCKER_CONFIG");
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.docker(args).output().expect("docker");
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Starts both, or `None` when this machine cannot (then the caller skips).
    fn start() -> Option<Engine> {
        let have = |b: &str| Command::new("sh").args(["-c", &format!("command -v {b}")]).output().is_ok_and(|o| o.status.success());
        let missing: Vec<&str> = ["dockerd", "docker", "docker-registry", "busybox"].into_iter().filter(|b| !have(b)).collect();
        let root = rustix::process::geteuid().is_root();
        if !missing.is_empty() || !root {
            let why = if root { format!("missing {}", missing.join(", ")) } else { "not root".into() };
            assert!(std::env::var("CI_REQUIRE_DOCKER").is_err(), "CI needs the container engine here: {why}");
            eprintln!("skipped: no container engine ({why}); scripts/setup.sh installs docker.io, docker-registry and busybox-static");
            return None;
        }
        // Short paths: the engine's sockets live under it.
        let dir = PathBuf::from(format!("/tmp/gilliam-dk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("engine dir");
        let socket = dir.join("d.sock");
        let log = std::fs::File::create(dir.join("dockerd.log")).expect("log");
        let dockerd = Command::new("dockerd")
            .args(["--storage-driver", "vfs", "--bridge=none", "--iptables=false", "--ip6tables=false"])
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("d.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd");
        let port = free_port();
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("registry").display()
            ),
        )
        .expect("registry config");
        let registry = Command::new("docker-registry").arg("serve").arg(&config).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("docker-registry");
        let e = Engine { dir, socket, registry: format!("127.0.0.1:{port}"), children: vec![dockerd, registry] };
        wait_for("dockerd", Duration::from_secs(60), || e.docker(&["version"]).output().ok().filter(|o| o.status.success()).map(|_| ()));
        wait_for("docker-registry", Duration::from_secs(30), || get(port, "/v2/").map(|_| ()));
        Some(e)
    }

    /// A busybox image that serves /www on $PORT, pushed to the registry: its reference by
    /// digest. The local copy is removed, so that the agent must pull it.
    fn push_web_image(&self) -> String {
        let rootfs = self.dir.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).expect("bin");
        std::fs::create_dir_all(rootfs.join("www")).expect("www");
        std::fs::create_dir_all(rootfs.join("tmp")).expect("tmp");
        let busybox = Command::new("sh").args(["-c", "command -v busybox"]).output().expect("which");
        std::fs::copy(String::from_utf8_lossy(&busybox.stdout).trim(), rootfs.join("bin/busybox")).expect("busybox");
        for tool in ["sh", "httpd", "cat", "echo", "sleep"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(tool)).expect("link");
        }
        std::fs::write(rootfs.join("www/healthz"), "ok").expect("page");
        let tag = format!("{}/gilliam-test/web:1", self.registry);
        let entry = r#"ENTRYPOINT ["/bin/sh", "-c", "echo web listening on $PORT; exec httpd -f -v -p $PORT -h /www"]"#;
        let import = format!("tar -C {} -c . | docker import -c '{entry}' - {tag}", rootfs.display());
        let out = Command::new("sh").args(["-c", &import]).env("DOCKER_HOST", format!("unix://{}", self.socket.display())).output().expect("import");
        assert!(out.status.success(), "docker import: {}", String::from_utf8_lossy(&out.stderr));
        self.run(&["push", &tag]);
        let pinned = self.run(&["inspect", "--format", "{{index .RepoDigests 0}}", &tag]);
        self.run(&["rmi", &tag]);
        pinned
    }
}

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
