//! The container engine and registry of the tests, the real things: Debian's `dockerd` (vfs
//! storage, no bridge, no iptables, its own data root, exec root and socket) and
//! `docker-registry` on 127.0.0.1, started here and stopped by their PIDs when dropped.
//!
//! With `Engine::start_for_ecr`, the registry stands in for an ECR registry and moto for
//! ECR's API: the registry's push notifications reach a bridge here, which puts each pushed
//! manifest into moto's repository of the same name (PutImage with the registry's digest), so
//! that what is pushed is then listed by DescribeImages, as in ECR. That bridge is the one
//! piece that is not AWS's: ECR is one service where here they are two.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// dockerd and docker-registry, stopped (by PID) when dropped.
#[derive(Debug)]
pub struct Engine {
    pub dir: PathBuf,
    pub socket: PathBuf,
    /// `127.0.0.1:PORT`.
    pub registry: String,
    /// Manifests the registry reported pushed (`REPOSITORY:TAG@DIGEST`), when bridged to moto.
    pub pushed: Arc<Mutex<Vec<String>>>,
    children: Vec<Child>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Containers first, while the engine is up.
        let all = self.docker(&["ps", "-aq"]).output().map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default();
        let ids: Vec<&str> = all.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = self.docker(&[&["rm", "-f"][..], &ids].concat()).output();
        }
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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One HTTP/1.0 exchange on loopback: the status and the body.
pub fn http(addr: &str, request: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let head_end = out.windows(4).position(|w| w == b"\r\n\r\n")?;
    let code = std::str::from_utf8(out.get(9..12)?).ok()?.parse().ok()?;
    Some((code, out[head_end + 4..].to_vec()))
}

/// Reads one HTTP request's body from `s` (by its Content-Length).
fn read_request(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).ok()?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(buf[end + 4..].to_vec());
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The bridge: takes the registry's notifications; each manifest pushed with a tag is put into
/// moto's ECR repository of the same name, with the registry's digest, in the first of
/// `places` (account, region) that has such a repository: one registry stands in for the
/// registries of several accounts and regions, whose repositories' names differ.
fn bridge(listener: TcpListener, registry: String, moto: String, places: Vec<(String, String)>, pushed: Arc<Mutex<Vec<String>>>) {
    let moto_addr = moto.trim_start_matches("http://").to_string();
    for conn in listener.incoming() {
        let Ok(mut s) = conn else { continue };
        let body = read_request(&mut s).unwrap_or_default();
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        drop(s);
        let Ok(envelope) = serde_json::from_slice::<serde_json::Value>(&body) else { continue };
        for e in envelope["events"].as_array().into_iter().flatten() {
            let t = &e["target"];
            let (Some(repo), Some(digest), Some(tag), Some(media)) =
                (t["repository"].as_str(), t["digest"].as_str(), t["tag"].as_str(), t["mediaType"].as_str())
            else {
                continue;
            };
            if e["action"] != "push" || !media.contains("manifest") {
                continue;
            }
            let get = format!("GET /v2/{repo}/manifests/{digest} HTTP/1.0\r\nHost: {registry}\r\nAccept: {media}\r\n\r\n");
            let Some((200, manifest)) = http(&registry, &get, b"") else { continue };
            let put = serde_json::json!({
                "repositoryName": repo,
                "imageManifest": String::from_utf8_lossy(&manifest),
                "imageManifestMediaType": media,
                "imageTag": tag,
                "imageDigest": digest,
            })
            .to_string();
            let mut refusals = Vec::new();
            for (account, region) in &places {
                let request = format!(
                    "POST / HTTP/1.0\r\nHost: {moto_addr}\r\nX-Amz-Target: AmazonEC2ContainerRegistry_V20150921.PutImage\r\nContent-Type: application/x-amz-json-1.1\r\nx-moto-account-id: {account}\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/ecr/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\n\r\n",
                    put.len()
                );
                match http(&moto_addr, &request, put.as_bytes()) {
                    Some((200, _)) => {
                        pushed.lock().expect("pushed").push(format!("{repo}:{tag}@{digest}"));
                        refusals.clear();
                        break;
                    }
                    answer => refusals.push(format!("{account}/{region}: {:?}", answer.map(|(c, b)| (c, String::from_utf8_lossy(&b).to_string())))),
                }
            }
            if !refusals.is_empty() {
                eprintln!("bridge: moto took PutImage {repo}:{tag} nowhere: {refusals:?}");
            }
        }
    }
}

impl Engine {
    pub fn docker(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.args(args).env("DOCKER_HOST", self.host()).env_remove("DOCKER_CONFIG");
        c
    }

    /// `unix://SOCKET`, for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn run(&self, args: &[&str]) -> String {
        let out = self.docker(args).output().expect("docker");
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Starts both, or `None` when this machine cannot (then the caller skips; in CI, where
    /// `CI_REQUIRE_DOCKER` is set, it fails instead).
    pub fn start() -> Option<Engine> {
        Engine::start_with(None)
    }

    /// As `start`, the registry standing in for the ECR registries of `places` (account,
    /// region), moto (at `moto`) for ECR's API.
    pub fn start_for_ecr(moto: &str, places: &[(&str, &str)]) -> Option<Engine> {
        Engine::start_with(Some((moto.to_string(), places.iter().map(|(a, r)| (a.to_string(), r.to_string())).collect())))
    }

    fn start_with(ecr: Option<(String, Vec<(String, String)>)>) -> Option<Engine> {
        let have = |b: &str| Command::new("sh").args(["-c", &format!("command -v {b}")]).output().is_ok_and(|o| o.status.success());
        let missing: Vec<&str> = ["dockerd", "docker", "docker-registry", "busybox"].into_iter().filter(|b| !have(b)).collect();
        let root = Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if !missing.is_empty() || !root {
            let why = if root { format!("missing {}", missing.join(", ")) } else { "not root".into() };
            assert!(std::env::var("CI_REQUIRE_DOCKER").is_err(), "CI needs the container engine here: {why}");
            eprintln!("skipped: no container engine ({why}); scripts/setup.sh installs docker.io, docker-registry and busybox-static");
            return None;
        }
        // Short paths: the engine's sockets live under it. One directory per engine.
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = PathBuf::from(format!("/tmp/gilliam-dk-{}-{n}", std::process::id()));
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
        let registry = format!("127.0.0.1:{port}");
        let pushed = Arc::new(Mutex::new(Vec::new()));
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {registry}\n",
            dir.join("registry").display()
        );
        if let Some((moto, places)) = ecr {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bridge");
            let url = format!("http://{}/events", listener.local_addr().expect("addr"));
            config.push_str(&format!(
                "notifications:\n  endpoints:\n    - name: ecr\n      url: {url}\n      timeout: 5s\n      threshold: 3\n      backoff: 1s\n"
            ));
            let (r, p) = (registry.clone(), pushed.clone());
            std::thread::spawn(move || bridge(listener, r, moto, places, p));
        }
        let config_path = dir.join("registry.yml");
        std::fs::write(&config_path, config).expect("registry config");
        let reg = Command::new("docker-registry").arg("serve").arg(&config_path).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("docker-registry");
        let e = Engine { dir, socket, registry: registry.clone(), pushed, children: vec![dockerd, reg] };
        wait_for("dockerd", Duration::from_secs(60), || e.docker(&["version"]).output().is_ok_and(|o| o.status.success()));
        wait_for("docker-registry", Duration::from_secs(30), || http(&registry, &format!("GET /v2/ HTTP/1.0\r\nHost: {registry}\r\n\r\n"), b"").is_some());
        Some(e)
    }

    /// A root filesystem of busybox that serves `/www` on `$PORT`: its directory.
    pub fn web_rootfs(&self) -> PathBuf {
        let rootfs = self.dir.join("rootfs");
        for d in ["bin", "www", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).expect("rootfs");
        }
        let busybox = Command::new("sh").args(["-c", "command -v busybox"]).output().expect("which");
        std::fs::copy(String::from_utf8_lossy(&busybox.stdout).trim(), rootfs.join("bin/busybox")).expect("busybox");
        for tool in ["sh", "httpd", "cat", "echo", "sleep"] {
            let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(tool));
        }
        std::fs::write(rootfs.join("www/healthz"), "ok").expect("page");
        rootfs
    }

    /// The shell command that imports `web_rootfs` as the image named `name` (a shell word).
    pub fn import_command(&self, name: &str) -> String {
        let entry = r#"ENTRYPOINT ["/bin/sh", "-c", "echo web listening on $PORT; exec httpd -f -v -p $PORT -h /www"]"#;
        format!("tar -C {} -c . | docker import -c '{entry}' - {name}", self.web_rootfs().display())
    }

    /// The web image, pushed to the registry: its reference by digest. The local copy is
    /// removed, so that whoever runs it must pull it.
    pub fn push_web_image(&self) -> String {
        self.push_image("web", &self.import_command(&format!("{}/gilliam-test/web:1", self.registry)))
    }

    /// The web image's files without an entrypoint or command (a task names its own), pushed.
    pub fn push_tool_image(&self) -> String {
        let tag = format!("{}/gilliam-test/tool:1", self.registry);
        self.push_image("tool", &format!("tar -C {} -c . | docker import - {tag}", self.web_rootfs().display()))
    }

    /// Runs `import` (which makes `REGISTRY/gilliam-test/NAME:1`), pushes that image and removes
    /// the local copy: its reference by digest.
    fn push_image(&self, name: &str, import: &str) -> String {
        let tag = format!("{}/gilliam-test/{name}:1", self.registry);
        let out = Command::new("sh").args(["-c", import]).env("DOCKER_HOST", self.host()).output().expect("import");
        assert!(out.status.success(), "docker import: {}", String::from_utf8_lossy(&out.stderr));
        self.run(&["push", &tag]);
        let pinned = self.run(&["inspect", "--format", "{{index .RepoDigests 0}}", &tag]);
        self.run(&["rmi", &tag]);
        pinned
    }
}
