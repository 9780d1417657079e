//! End to end on this machine: the compiled userdata of a small formation, run with the agent
//! binary (GILLIAM_AGENT) in a scratch root (GILLIAM_ROOT), against moto_server on 127.0.0.1
//! for S3, Secrets Manager and EC2, and a local CloudFormation recorder for SignalResource,
//! which moto does not implement: the recorder speaks CloudFormation's wire protocol, so the
//! signal travels through the agent's real SDK client. A real artifact holds a tiny HTTP
//! service; the test asserts it answers, is healthy, signalled, restarted, drained, and that
//! bad artifacts are refused with FAILURE signalled.

mod common;

use common::{tarball, Kind};
use gilliam_tests::moto::{Moto, SAFE_ENV};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const REGION: &str = "eu-west-1";
const PASSWORD: &str = "s3cr3t-Pa55word-xyz";

/// The demo service: answers /healthz, /whoami (pid and uid), /env/NAME, and logs each request.
const WEB: &str = r#"#!/usr/bin/env python3
import http.server, os, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def do_GET(self):
        if self.path == "/healthz":
            body = b"ok"
        elif self.path == "/whoami":
            body = ("%d %d" % (os.getpid(), os.getuid())).encode()
        elif self.path.startswith("/env/"):
            body = os.environ.get(self.path[5:], "").encode()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, fmt, *args):
        sys.stderr.write("request %s\n" % self.path)
        sys.stderr.flush()
print("web listening on port %s for release %s" % (os.environ["PORT"], os.environ["GILLIAM_RELEASE"]), flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

const WORKER: &str = "#!/bin/sh\necho worker up\nexec sleep 600\n";

/// etcd stand-in: records its arguments, answers /health on the client port it is given.
const FAKE_ETCD: &str = r#"#!/usr/bin/env python3
import http.server, sys
args = sys.argv[1:]
open("etcd.args", "w").write("\n".join(args))  # in its data directory, the working one
port = int(args[args.index("--listen-client-urls") + 1].rsplit(":", 1)[1])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.get(9..12)?.parse().ok()?;
    Some((code, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A CloudFormation endpoint that records SignalResource calls (form fields) and accepts them.
struct Recorder {
    url: String,
    calls: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
}

fn form_decode(s: &str) -> String {
    let b = s.replace('+', " ").into_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&String::from_utf8_lossy(&b[i + 1..i + 3]), 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn recorder() -> Recorder {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().expect("clone"));
                let mut w = s;
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.to_ascii_lowercase();
                        if let Some(v) = l.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        if l.starts_with("expect: 100-continue") {
                            let _ = w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0u8; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let fields: BTreeMap<String, String> =
                        String::from_utf8_lossy(&body).split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (form_decode(k), form_decode(v))).collect();
                    let ok = fields.get("Action").map(String::as_str) == Some("SignalResource");
                    seen.lock().expect("calls").push(fields);
                    let (status, xml) = if ok {
                        ("200 OK", "<SignalResourceResponse xmlns=\"http://cloudformation.amazonaws.com/doc/2010-05-15/\"><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></SignalResourceResponse>")
                    } else {
                        ("400 Bad Request", "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code><Message>recorder takes SignalResource only</Message></Error></ErrorResponse>")
                    };
                    let _ = write!(w, "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{xml}", xml.len());
                }
            });
        }
    });
    Recorder { url, calls }
}

impl Recorder {
    fn signals(&self) -> Vec<BTreeMap<String, String>> {
        self.calls.lock().expect("calls").iter().filter(|c| c.get("Action").map(String::as_str) == Some("SignalResource")).cloned().collect()
    }

    fn signal_for(&self, resource: &str) -> Option<BTreeMap<String, String>> {
        self.signals().into_iter().find(|c| c.get("LogicalResourceId").map(String::as_str) == Some(resource))
    }
}

struct Aws {
    rt: tokio::runtime::Runtime,
    s3: aws_sdk_s3::Client,
    secrets: aws_sdk_secretsmanager::Client,
    ec2: aws_sdk_ec2::Client,
}

fn aws(moto: &Moto) -> Aws {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let conf = rt.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(gilliam_agent::sdk::http_client())
            .endpoint_url(&moto.url)
            .region(aws_config::Region::new(REGION))
            .load(),
    );
    let s3conf = aws_sdk_s3::config::Builder::from(&conf).force_path_style(true).build();
    Aws { s3: aws_sdk_s3::Client::from_conf(s3conf), secrets: aws_sdk_secretsmanager::Client::new(&conf), ec2: aws_sdk_ec2::Client::new(&conf), rt }
}

impl Aws {
    fn put(&self, bucket: &str, key: &str, body: Vec<u8>) {
        let cfg = aws_sdk_s3::types::CreateBucketConfiguration::builder().location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest1).build();
        let _ = self.rt.block_on(self.s3.create_bucket().bucket(bucket).create_bucket_configuration(cfg).send());
        self.rt.block_on(self.s3.put_object().bucket(bucket).key(key).body(body.into()).send()).expect("put object");
    }
}

fn sha256(b: &[u8]) -> String {
    gilliam_agent::unpack::sha256_hex(b)
}

const STAGE: &str = "formation: boot
region: eu-west-1
vpc: vpc-0123456789abcdef0
private_subnets:
  - {id: subnet-0123456789abcdef1, zone: eu-west-1a}
  - {id: subnet-0123456789abcdef2, zone: eu-west-1b}
outputs_bucket: boot-outputs
auxiliary_image: ami-0123456789abcdef0
";

fn app(port: u16) -> String {
    format!(
        "web:\n  script: bin/web\n  ports: [{port}]\n  health: /healthz\n  env:\n    GREETING: hello\nworker:\n  script: bin/work\ndb:\n  type: postgres\n  database: app\netcd:\n  type: etcd\n  size: 1\n"
    )
}

fn release(number: u32, url: &str, sha: &str) -> String {
    format!(
        r#"{{"number": {number}, "artifact": {{"url": "{url}", "sha256": "{sha}"}}, "runtime_image": "ami-0123456789abcdef0", "revision": "r{number}", "created": "2026-11-22T00:00:00Z", "config": {{"FEATURE": "on"}}}}"#
    )
}

fn demo_artifact() -> Vec<u8> {
    tarball(&[
        ("bin", Kind::Dir),
        ("bin/web", Kind::File(WEB.as_bytes(), 0o755)),
        ("bin/work", Kind::File(WORKER.as_bytes(), 0o755)),
        ("README", Kind::File(b"demo\n", 0o644)),
    ])
}

/// One scratch root: compiled output, the journal socket, the agent's state.
struct Box_ {
    dir: PathBuf,
    root: PathBuf,
    journal: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
}

fn scratch_root(name: &str) -> Box_ {
    // Under the system's temporary directory, whose ancestors every user may traverse: the
    // service runs as an unprivileged user and must reach its release directory.
    let dir = std::env::temp_dir().join("gilliam-agent-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch");
    {
        use std::os::unix::fs::PermissionsExt;
        for d in [dir.parent().expect("parent"), dir.as_path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
    }
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("run/systemd/journal")).expect("mkdir");
    let sock = UnixDatagram::bind(root.join("run/systemd/journal/socket")).expect("journal socket");
    let journal = Arc::new(Mutex::new(Vec::new()));
    let j = journal.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        while let Ok(n) = sock.recv(&mut buf) {
            let entry = String::from_utf8_lossy(&buf[..n]).lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
            j.lock().expect("journal").push(entry);
        }
    });
    Box_ { dir, root, journal }
}

/// The userdata script, run as cloud-init would, with the agent pointed at the built binary.
struct Agent {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
}

fn run_userdata(b: &Box_, script: &Path, moto: &Moto, cfn: &Recorder, extra: &[(&str, &str)]) -> Agent {
    let mut cmd = Command::new("bash");
    cmd.arg(script).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.envs(SAFE_ENV.iter().copied());
    cmd.env("GILLIAM_ROOT", &b.root)
        .env("GILLIAM_AGENT", env!("CARGO_BIN_EXE_gilliam-agent"))
        .env("GILLIAM_USER", "nobody")
        .env("GILLIAM_INSTANCE_ID", "i-0123456789test")
        .env("GILLIAM_HEALTH_INTERVAL_MS", "100")
        .env("GILLIAM_STOP_GRACE_SECONDS", "5")
        .env("AWS_ENDPOINT_URL", &moto.url)
        .env("AWS_ENDPOINT_URL_CLOUDFORMATION", &cfn.url)
        .envs(extra.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("bash");
    let out = Arc::new(Mutex::new(Vec::new()));
    for r in [Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>, Box::new(child.stderr.take().expect("stderr"))] {
        let out = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                out.lock().expect("out").push(line);
            }
        });
    }
    Agent { child, out }
}

impl Agent {
    fn text(&self) -> String {
        self.out.lock().expect("out").join("\n")
    }

    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let until = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(Instant::now() < until, "agent did not exit; output:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until && self.child.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[test]
fn a_release_boots_serves_is_restarted_and_drains_on_sigterm() {
    let moto = Moto::start();
    let aws = aws(&moto);
    let cfn = recorder();
    let art = demo_artifact();
    aws.put("boot-artifacts", "web/r1.tar.gz", art.clone());
    aws.rt
        .block_on(aws.secrets.create_secret().name("gilliam/boot/db").secret_string(format!(r#"{{"username":"app","password":"{PASSWORD}"}}"#)).send())
        .expect("secret");
    let port = free_port();
    let b = scratch_root("serve");
    let c = gilliam_tests::compile_into(&app(port), &release(1, "s3://boot-artifacts/web/r1.tar.gz", &sha256(&art)), STAGE, &b.dir.join("out"));

    let t = Instant::now();
    let mut agent = run_userdata(&b, &b.dir.join("out/userdata/web.sh"), &moto, &cfn, &[]);
    let signal = wait_for("the success signal", Duration::from_secs(60), || cfn.signal_for("WebAutoScalingGroup"));
    let boot_to_healthy = t.elapsed();
    assert_eq!(signal.get("Status").map(String::as_str), Some("SUCCESS"), "{signal:?}");
    assert_eq!(signal.get("UniqueId").map(String::as_str), Some("i-0123456789test"));
    let cfg =
        gilliam_compiler::runtime::from_userdata(&std::fs::read_to_string(b.dir.join("out/userdata/web.sh")).expect("userdata")).expect("config").to_string();
    let gilliam_compiler::runtime::RuntimeConfig::Service(cfg) = gilliam_compiler::runtime::parse(cfg.as_bytes()).expect("config") else { panic!("service") };
    assert_eq!(signal.get("StackName"), Some(&cfg.signal.stack));
    assert_eq!(cfg.signal.stack, gilliam_compiler::names::release_stack("boot", 1, 1, 1), "signals its own release stack");
    assert!(c.manifest.stacks.iter().any(|s| s.name == cfg.signal.stack));
    eprintln!("boot to healthy (SUCCESS signalled): {boot_to_healthy:?}");

    // It serves, with the environment the config promises, as an unprivileged user.
    assert_eq!(get(port, "/healthz"), Some((200, "ok".into())));
    assert_eq!(get(port, "/env/GREETING").map(|r| r.1), Some("hello".into()));
    assert_eq!(get(port, "/env/FEATURE").map(|r| r.1), Some("on".into()), "release config");
    assert_eq!(get(port, "/env/GILLIAM_RELEASE").map(|r| r.1), Some("1".into()));
    let db = get(port, "/env/DATABASE_URL").map(|r| r.1).expect("DATABASE_URL");
    assert!(db.starts_with(&format!("postgres://app:{PASSWORD}@db.")) && db.ends_with(":5432/app"), "secret resolved at boot: {db}");
    let who = get(port, "/whoami").expect("whoami").1;
    let (pid, uid) = who.split_once(' ').map(|(p, u)| (p.parse::<u32>().expect("pid"), u.parse::<u32>().expect("uid"))).expect("pid uid");
    if rustix::process::geteuid().is_root() {
        assert_ne!(uid, 0, "the service never runs as root");
    }
    // The release directory holds the artifact, read-only to the service.
    let dir = b.root.join("var/lib/gilliam/releases/boot/1/web");
    assert_eq!(std::fs::read_to_string(dir.join("README")).expect("unpacked"), "demo\n");

    // Logs: stdout lines and journal entries carry the formation, service and release.
    wait_for("the service's output in the log", Duration::from_secs(10), || agent.text().contains("web listening on port").then_some(()));
    let text = agent.text();
    assert!(text.lines().any(|l| l.contains("formation=boot service=web release=1 source=stdout web listening")), "{text}");
    assert!(text.lines().any(|l| l.contains("service=web release=1 source=stderr request /healthz")), "{text}");
    let journal = b.journal.lock().expect("journal").clone();
    let entry = journal.iter().find(|e| e.get("MESSAGE").is_some_and(|m| m.starts_with("web listening"))).expect("journal entry of the service's output");
    assert_eq!((entry["GILLIAM_SERVICE"].as_str(), entry["GILLIAM_RELEASE"].as_str(), entry["GILLIAM_FORMATION"].as_str()), ("web", "1", "boot"));
    assert_eq!(entry["SYSLOG_IDENTIFIER"], "gilliam-agent");
    assert!(journal.iter().any(|e| e.get("MESSAGE").is_some_and(|m| m.contains("signalled SUCCESS"))));

    // A killed service is restarted.
    Command::new("kill").args(["-KILL", &pid.to_string()]).status().expect("kill");
    let new_pid = wait_for("a restarted service", Duration::from_secs(30), || {
        get(port, "/whoami").and_then(|(_, w)| w.split_once(' ').and_then(|(p, _)| p.parse::<u32>().ok())).filter(|p| *p != pid)
    });
    assert!(agent.text().contains("exited (signal: 9"), "the exit is logged: {}", agent.text());

    // SIGTERM drains: an open request holds the process; once it closes, the service stops.
    let held = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    std::thread::sleep(Duration::from_millis(200));
    Command::new("kill").args(["-TERM", &agent.child.id().to_string()]).status().expect("kill");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(agent.child.try_wait().expect("wait").is_none(), "the agent waits for the request in flight");
    assert!(process_alive(new_pid), "the service still runs while draining");
    drop(held);
    let status = agent.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", agent.text());
    assert!(!process_alive(new_pid), "the service stopped with the agent");
    assert!(get(port, "/healthz").is_none(), "nothing listens any more");
    let text = agent.text();
    assert!(text.contains("draining") && text.contains("stopped"), "{text}");

    // No secret value in any log line, stdout or journal.
    assert!(!text.contains(PASSWORD));
    assert!(!b.journal.lock().expect("journal").iter().any(|e| e.values().any(|v| v.contains(PASSWORD))));
    // Exactly one signal for this group.
    assert_eq!(cfn.signals().iter().filter(|s| s["LogicalResourceId"] == "WebAutoScalingGroup").count(), 1);
}

#[test]
fn a_worker_is_healthy_once_it_stays_up() {
    let moto = Moto::start();
    let aws = aws(&moto);
    let cfn = recorder();
    let art = demo_artifact();
    aws.put("boot-artifacts", "w.tar.gz", art.clone());
    aws.rt
        .block_on(aws.secrets.create_secret().name("gilliam/boot/db").secret_string(format!(r#"{{"username":"app","password":"{PASSWORD}"}}"#)).send())
        .expect("secret");
    let b = scratch_root("worker");
    gilliam_tests::compile_into(&app(free_port()), &release(2, "s3://boot-artifacts/w.tar.gz", &sha256(&art)), STAGE, &b.dir.join("out"));
    let mut agent = run_userdata(&b, &b.dir.join("out/userdata/worker.sh"), &moto, &cfn, &[("GILLIAM_WORKER_GRACE_SECONDS", "1")]);
    let s = wait_for("the worker's signal", Duration::from_secs(60), || cfn.signal_for("WorkerAutoScalingGroup"));
    assert_eq!(s["Status"], "SUCCESS");
    assert!(agent.text().contains("source=stdout worker up"), "{}", agent.text());
    Command::new("kill").args(["-TERM", &agent.child.id().to_string()]).status().expect("kill");
    assert_eq!(agent.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

#[test]
fn mismatched_or_unsafe_artifacts_are_refused_and_failure_is_signalled() {
    let moto = Moto::start();
    let aws = aws(&moto);
    let cfn = recorder();
    aws.rt
        .block_on(aws.secrets.create_secret().name("gilliam/boot/db").secret_string(format!(r#"{{"username":"app","password":"{PASSWORD}"}}"#)).send())
        .expect("secret");
    let good = demo_artifact();
    let dotdot = tarball(&[("bin/web", Kind::File(WEB.as_bytes(), 0o755)), ("../escaped", Kind::File(b"x", 0o644))]);
    let symlink = tarball(&[("bin/web", Kind::File(WEB.as_bytes(), 0o755)), ("etc", Kind::Symlink("../../../../../../etc"))]);
    let cases: [(&str, &[u8], String, &str); 3] = [
        ("wrong-sha", &good, sha256(b"something else"), "sha256"),
        ("dotdot", &dotdot, sha256(&dotdot), "contains `..`"),
        ("symlink", &symlink, sha256(&symlink), "outside the release"),
    ];
    for (n, (name, bytes, sha, why)) in cases.into_iter().enumerate() {
        let number = 10 + n as u32;
        aws.put("boot-artifacts", &format!("{name}.tar.gz"), bytes.to_vec());
        let b = scratch_root(name);
        gilliam_tests::compile_into(&app(free_port()), &release(number, &format!("s3://boot-artifacts/{name}.tar.gz"), &sha), STAGE, &b.dir.join("out"));
        let before = cfn.signals().len();
        let mut agent = run_userdata(&b, &b.dir.join("out/userdata/web.sh"), &moto, &cfn, &[]);
        let status = agent.wait_exit(Duration::from_secs(60));
        assert_eq!(status.code(), Some(3), "{name}: {}", agent.text());
        assert!(agent.text().contains(why), "{name}: says why ({why}): {}", agent.text());
        let signals = cfn.signals();
        assert_eq!(signals.len(), before + 1, "{name}: one signal");
        assert_eq!(signals[before]["Status"], "FAILURE", "{name}");
        assert_eq!(signals[before]["LogicalResourceId"], "WebAutoScalingGroup");
        let releases = b.root.join(format!("var/lib/gilliam/releases/boot/{number}"));
        assert!(!releases.join("web").exists(), "{name}: nothing runnable is left behind");
        assert!(!b.root.join("var/lib/gilliam/releases/boot/escaped").exists() && !releases.join("escaped").exists(), "{name}: nothing escaped");
    }
}

#[test]
fn an_etcd_member_attaches_its_interface_and_volume_then_signals() {
    let moto = Moto::start();
    let aws = aws(&moto);
    let cfn = recorder();
    let b = scratch_root("etcd");
    gilliam_tests::compile_into(&app(free_port()), &release(1, "s3://boot-artifacts/x.tar.gz", &sha256(b"x")), STAGE, &b.dir.join("out"));
    // The member's network interface and volume, tagged as the formation stack tags them, and
    // the instance the Auto Scaling group would have started.
    let ec2 = &aws.ec2;
    let tag = |t: aws_sdk_ec2::types::ResourceType| {
        aws_sdk_ec2::types::TagSpecification::builder()
            .resource_type(t)
            .tags(aws_sdk_ec2::types::Tag::builder().key("gilliam:member").value("boot/etcd-0").build())
            .build()
    };
    let (eni, vol, instance) = aws.rt.block_on(async {
        let vpc = ec2.create_vpc().cidr_block("10.1.0.0/16").send().await.expect("vpc").vpc.expect("vpc").vpc_id.expect("id");
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block("10.1.1.0/24")
            .availability_zone("eu-west-1a")
            .send()
            .await
            .expect("subnet")
            .subnet
            .expect("subnet")
            .subnet_id
            .expect("id");
        let eni = ec2
            .create_network_interface()
            .subnet_id(&subnet)
            .tag_specifications(tag(aws_sdk_ec2::types::ResourceType::NetworkInterface))
            .send()
            .await
            .expect("eni")
            .network_interface
            .expect("eni")
            .network_interface_id
            .expect("id");
        let vol = ec2
            .create_volume()
            .availability_zone("eu-west-1a")
            .size(20)
            .encrypted(true)
            .tag_specifications(tag(aws_sdk_ec2::types::ResourceType::Volume))
            .send()
            .await
            .expect("volume")
            .volume_id
            .expect("id");
        let images = ec2.describe_images().send().await.expect("images");
        let image = images.images().first().and_then(|i| i.image_id()).expect("moto has images").to_string();
        let run = ec2.run_instances().image_id(image).min_count(1).max_count(1).subnet_id(&subnet).send().await.expect("instance");
        (eni, vol, run.instances()[0].instance_id().expect("id").to_string())
    });
    // etcd itself is a stand-in that records its arguments and answers /health.
    let fake = b.dir.join("etcd");
    std::fs::write(&fake, FAKE_ETCD).expect("fake etcd");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let data = b.dir.join("etcd-data");
    let fake_s = fake.display().to_string();
    let data_s = data.display().to_string();
    let mut agent = run_userdata(
        &b,
        &b.dir.join("out/userdata/etcd-0.sh"),
        &moto,
        &cfn,
        &[("GILLIAM_INSTANCE_ID", instance.as_str()), ("GILLIAM_ETCD", fake_s.as_str()), ("GILLIAM_ETCD_DATA_DIR", data_s.as_str())],
    );
    let s = wait_for("the member's signal", Duration::from_secs(60), || cfn.signal_for("AuxEtcdMember0Group"));
    assert_eq!((s["Status"].as_str(), s["UniqueId"].as_str()), ("SUCCESS", instance.as_str()), "{}", agent.text());
    let (eni_at, vol_at) = aws.rt.block_on(async {
        let e = ec2.describe_network_interfaces().network_interface_ids(&eni).send().await.expect("eni");
        let v = ec2.describe_volumes().volume_ids(&vol).send().await.expect("vol");
        (
            e.network_interfaces()[0].attachment().and_then(|a| a.instance_id()).map(str::to_string),
            v.volumes()[0].attachments().first().and_then(|a| a.instance_id()).map(str::to_string),
        )
    });
    assert_eq!(eni_at.as_deref(), Some(instance.as_str()), "interface attached to the member's instance");
    assert_eq!(vol_at.as_deref(), Some(instance.as_str()), "volume attached to the member's instance");
    let args = std::fs::read_to_string(data.join("etcd.args")).expect("etcd ran");
    let args: Vec<&str> = args.lines().collect();
    let flag = |f: &str| args.iter().position(|a| *a == f).map(|i| args[i + 1]);
    assert_eq!(flag("--name"), Some("etcd-0"));
    assert_eq!(flag("--data-dir"), Some(data_s.as_str()));
    assert_eq!(flag("--initial-cluster-state"), Some("new"));
    assert!(flag("--initial-cluster").is_some_and(|c| c.starts_with("etcd-0=http://etcd-0.")), "{args:?}");
    assert!(flag("--advertise-client-urls").is_some_and(|u| u.ends_with(":2379")));
    Command::new("kill").args(["-TERM", &agent.child.id().to_string()]).status().expect("kill");
    assert_eq!(agent.wait_exit(Duration::from_secs(30)).code(), Some(0), "{}", agent.text());
}
