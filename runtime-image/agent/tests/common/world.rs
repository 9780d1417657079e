//! The world the agent's end-to-end tests and boot benchmark run in: moto_server for S3,
//! Secrets Manager and EC2; a CloudFormation recorder for SignalResource (moto has none; the
//! recorder speaks the wire protocol, so the signal travels through the agent's real SDK
//! client); a compiled formation; a scratch root with a journal socket; the userdata run.

use super::{tarball, Kind};
use gilliam_tests::moto::{Moto, SAFE_ENV};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const REGION: &str = "eu-west-1";
pub const PASSWORD: &str = "s3cr3t-Pa55word-xyz";
/// The database's own endpoint, which CloudFormation's SecretTargetAttachment writes into the
/// secret beside the credentials (`host`, and `port` as a number).
pub const DB_ENDPOINT: &str = "boot-db.c0ffee.eu-west-1.rds.amazonaws.com";

/// The demo service: answers /healthz, /whoami (pid and uid), /env/NAME, and logs each request.
pub const WEB: &str = r#"#!/usr/bin/env python3
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

pub const WORKER: &str = "#!/bin/sh\necho worker up\nexec sleep 600\n";

/// etcd stand-in: records its arguments, answers /health on the client port it is given.
pub const FAKE_ETCD: &str = r#"#!/usr/bin/env python3
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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.get(9..12)?.parse().ok()?;
    Some((code, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
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
pub struct Recorder {
    pub url: String,
    pub calls: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
}

pub fn form_decode(s: &str) -> String {
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

pub fn recorder() -> Recorder {
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
    pub fn signals(&self) -> Vec<BTreeMap<String, String>> {
        self.calls.lock().expect("calls").iter().filter(|c| c.get("Action").map(String::as_str) == Some("SignalResource")).cloned().collect()
    }

    pub fn signal_for(&self, resource: &str) -> Option<BTreeMap<String, String>> {
        self.signals().into_iter().find(|c| c.get("LogicalResourceId").map(String::as_str) == Some(resource))
    }
}

pub struct Aws {
    pub rt: tokio::runtime::Runtime,
    pub s3: aws_sdk_s3::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub ec2: gilliam_ec2::Ec2,
    pub logs: aws_sdk_cloudwatchlogs::Client,
}

pub fn aws(moto: &Moto) -> Aws {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let conf = rt.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(gilliam_agent::sdk::http_client())
            .endpoint_url(&moto.url)
            .region(aws_config::Region::new(REGION))
            .load(),
    );
    let s3conf = aws_sdk_s3::config::Builder::from(&conf).force_path_style(true).build();
    Aws {
        s3: aws_sdk_s3::Client::from_conf(s3conf),
        secrets: aws_sdk_secretsmanager::Client::new(&conf),
        ec2: gilliam_tests::ec2(&moto.url, REGION),
        logs: aws_sdk_cloudwatchlogs::Client::new(&conf),
        rt,
    }
}

impl Aws {
    pub fn put(&self, bucket: &str, key: &str, body: Vec<u8>) {
        let cfg = aws_sdk_s3::types::CreateBucketConfiguration::builder().location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest1).build();
        let _ = self.rt.block_on(self.s3.create_bucket().bucket(bucket).create_bucket_configuration(cfg).send());
        self.rt.block_on(self.s3.put_object().bucket(bucket).key(key).body(body.into()).send()).expect("put object");
    }
}

pub fn sha256(b: &[u8]) -> String {
    gilliam_agent::unpack::sha256_hex(b)
}

pub const STAGE: &str = "formation: boot
region: eu-west-1
vpc: vpc-0123456789abcdef0
private_subnets:
  - {id: subnet-0123456789abcdef1, zone: eu-west-1a}
  - {id: subnet-0123456789abcdef2, zone: eu-west-1b}
outputs_bucket: boot-outputs
auxiliary_image: ami-0123456789abcdef0
";

pub fn app(port: u16) -> String {
    format!(
        "web:\n  script: bin/web\n  ports: [{port}]\n  health: /healthz\n  env:\n    GREETING: hello\nworker:\n  script: bin/work\ndb:\n  type: postgres\n  database: app\netcd:\n  type: etcd\n  size: 1\n"
    )
}

pub fn release(number: u32, url: &str, sha: &str) -> String {
    format!(
        r#"{{"number": {number}, "artifact": {{"url": "{url}", "sha256": "{sha}"}}, "runtime_image": "ami-0123456789abcdef0", "revision": "r{number}", "created": "2026-11-22T00:00:00Z", "config": {{"FEATURE": "on"}}}}"#
    )
}

pub fn demo_artifact() -> Vec<u8> {
    tarball(&[
        ("bin", Kind::Dir),
        ("bin/web", Kind::File(WEB.as_bytes(), 0o755)),
        ("bin/work", Kind::File(WORKER.as_bytes(), 0o755)),
        ("README", Kind::File(b"demo\n", 0o644)),
    ])
}

/// One scratch root: compiled output, the journal socket, the agent's state.
pub struct Scratch {
    pub dir: PathBuf,
    pub root: PathBuf,
    pub journal: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
}

pub fn scratch_root(name: &str) -> Scratch {
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
    Scratch { dir, root, journal }
}

/// The userdata script, run as cloud-init would, with the agent pointed at the built binary.
pub struct Agent {
    pub child: Child,
    pub out: Arc<Mutex<Vec<String>>>,
}

pub fn run_userdata(b: &Scratch, script: &Path, moto: &Moto, cfn: &Recorder, extra: &[(&str, &str)]) -> Agent {
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
    pub fn text(&self) -> String {
        self.out.lock().expect("out").join("\n")
    }

    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
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

pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// moto, clients to it, a CloudFormation recorder, and the database secret the demo formation's
/// services resolve at boot.
pub fn world() -> (Moto, Aws, Recorder) {
    let moto = Moto::start();
    let aws = aws(&moto);
    aws.rt
        .block_on(
            aws.secrets
                .create_secret()
                .name("gilliam/boot/db")
                .secret_string(format!(r#"{{"username":"app","password":"{PASSWORD}","host":"{DB_ENDPOINT}","port":5432}}"#))
                .send(),
        )
        .expect("secret");
    (moto, aws, recorder())
}

impl Aws {
    /// Every event of log group `group` as (stream, message JSON), oldest first.
    pub fn log_events(&self, group: &str) -> Vec<(String, serde_json::Value)> {
        let mut all = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let Ok(out) = self.rt.block_on(self.logs.filter_log_events().log_group_name(group).set_next_token(next.clone()).send()) else { return all };
            all.extend(
                out.events()
                    .iter()
                    .map(|e| (e.log_stream_name().unwrap_or_default().to_string(), serde_json::from_str(e.message().unwrap_or_default()).unwrap_or_default())),
            );
            match out.next_token() {
                Some(t) if !t.is_empty() && !out.events().is_empty() => next = Some(t.to_string()),
                _ => return all,
            }
        }
    }
}

/// A task's userdata, as the materializer makes it from `service_userdata` (web's of the boot
/// formation, release 1): `command` within `deadline` seconds; written to `b.dir/task.sh`.
pub fn task_userdata(b: &Scratch, service_userdata: &str, command: &[&str], deadline: u32) -> PathBuf {
    let command: Vec<String> = command.iter().map(|s| s.to_string()).collect();
    let t = gilliam_compiler::task::Task {
        formation: "boot",
        release: 1,
        service: "web",
        purpose: "release phase",
        command: &command,
        deadline_seconds: deadline,
        image: "ami-0123456789abcdef0",
    };
    let path = b.dir.join("task.sh");
    std::fs::write(&path, gilliam_compiler::task::userdata(&t, service_userdata).expect("task userdata")).expect("write");
    path
}

/// A power-off command that leaves a mark (on EC2 the shutdown terminates the instance, which
/// cannot happen here): the command, and the mark's path.
pub fn poweroff(b: &Scratch) -> (String, PathBuf) {
    let mark = b.dir.join("powered-off");
    let script = b.dir.join("poweroff.sh");
    std::fs::write(&script, format!("#!/bin/sh\ntouch {}\n", mark.display())).expect("write");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    (script.display().to_string(), mark)
}
