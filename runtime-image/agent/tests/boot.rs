//! End to end on this machine: the compiled userdata of a small formation, run with the agent
//! binary (GILLIAM_AGENT) in a scratch root (GILLIAM_ROOT), against moto_server on 127.0.0.1
//! for S3, Secrets Manager and EC2, and a local CloudFormation recorder for SignalResource,
//! which moto does not implement: the recorder speaks CloudFormation's wire protocol, so the
//! signal travels through the agent's real SDK client. A real artifact holds a tiny HTTP
//! service; the test asserts it answers, is healthy, signalled, restarted, drained, and that
//! bad artifacts are refused with FAILURE signalled.

mod common;

use common::world::*;
use common::{tarball, Kind};
use gilliam_ec2::Params;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn a_release_boots_serves_is_restarted_and_drains_on_sigterm() {
    let (moto, aws, cfn) = world();
    let art = demo_artifact();
    aws.put("boot-artifacts", "web/r1.tar.gz", art.clone());
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
    assert_eq!(db, format!("postgres://app:{PASSWORD}@{DB_ENDPOINT}:5432/app"), "secret resolved at boot, with the database's own endpoint");
    let who = get(port, "/whoami").expect("whoami").1;
    let (pid, uid) = who.split_once(' ').map(|(p, u)| (p.parse::<u32>().expect("pid"), u.parse::<u32>().expect("uid"))).expect("pid uid");
    if rustix::process::geteuid().is_root() {
        assert_ne!(uid, 0, "the service never runs as root");
        // Its own cgroup holds it within the limits its instance type gives it (t3.small:
        // 2048 MiB less 384 for the agent and the OS).
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
        let limit = match cgroups.lines().find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string())) {
            Some(p) => format!("/sys/fs/cgroup/memory{p}/memory.limit_in_bytes"),
            None => format!("/sys/fs/cgroup{}/memory.max", cgroups.lines().find_map(|l| l.strip_prefix("0::")).expect("v2")),
        };
        assert!(limit.contains("gilliam-web"), "{cgroups}");
        assert_eq!(std::fs::read_to_string(&limit).expect("limit").trim(), (1664u64 * 1024 * 1024).to_string(), "{limit}");
    }
    // The release directory holds the artifact, read-only to the service.
    let dir = b.root.join("var/lib/gilliam/releases/boot/1/web");
    assert_eq!(std::fs::read_to_string(dir.join("README")).expect("unpacked"), "demo\n");

    // Logs: stdout lines and journal entries carry the formation, service and release.
    wait_for("the service's output in the log", Duration::from_secs(10), || agent.text().contains("web listening on port").then_some(()));
    let text = agent.text();
    assert!(text.lines().any(|l| l.contains("formation=boot service=web release=1 instance=i-0123456789test source=stdout web listening")), "{text}");
    assert!(text.lines().any(|l| l.contains("service=web release=1 instance=i-0123456789test source=stderr request /healthz")), "{text}");
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
    let (moto, aws, cfn) = world();
    let art = demo_artifact();
    aws.put("boot-artifacts", "w.tar.gz", art.clone());
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
    let (moto, aws, cfn) = world();
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
    let (moto, aws, cfn) = world();
    let b = scratch_root("etcd");
    gilliam_tests::compile_into(&app(free_port()), &release(1, "s3://boot-artifacts/x.tar.gz", &sha256(b"x")), STAGE, &b.dir.join("out"));
    // The member's network interface and volume, tagged as the formation stack tags them, and
    // the instance the Auto Scaling group would have started.
    let ec2 = &aws.ec2;
    // Tagged at creation, as the formation stack tags them.
    let tagged = |p: Params, kind: &str| {
        p.set("TagSpecification.1.ResourceType", kind)
            .set("TagSpecification.1.Tag.1.Key", "gilliam:member")
            .set("TagSpecification.1.Tag.1.Value", "boot/etcd-0")
    };
    let (eni, vol, instance) = aws.rt.block_on(async {
        let call = |action: &'static str, p: Params| async move { ec2.call(action, &p).await.unwrap_or_else(|e| panic!("{e}")) };
        let vpc = call("CreateVpc", Params::new().set("CidrBlock", "10.1.0.0/16")).await;
        let vpc = vpc.child("vpc").and_then(|v| v.text("vpcId")).expect("vpc id").to_string();
        let subnet = call("CreateSubnet", Params::new().set("VpcId", &vpc).set("CidrBlock", "10.1.1.0/24").set("AvailabilityZone", "eu-west-1a")).await;
        let subnet = subnet.child("subnet").and_then(|s| s.text("subnetId")).expect("subnet id").to_string();
        let eni = call("CreateNetworkInterface", tagged(Params::new().set("SubnetId", &subnet), "network-interface")).await;
        let eni = eni.child("networkInterface").and_then(|n| n.text("networkInterfaceId")).expect("eni id").to_string();
        let vol = call("CreateVolume", tagged(Params::new().set("AvailabilityZone", "eu-west-1a").set("Size", "20").set("Encrypted", "true"), "volume")).await;
        let vol = vol.text("volumeId").expect("volume id").to_string();
        let images = call("DescribeImages", Params::new()).await;
        let image = images.items("imagesSet").find_map(|i| i.text("imageId")).expect("moto has images").to_string();
        let run = call("RunInstances", Params::new().set("ImageId", image).set("MinCount", "1").set("MaxCount", "1").set("SubnetId", &subnet)).await;
        let instance = run.items("instancesSet").find_map(|i| i.text("instanceId")).expect("instance id").to_string();
        (eni, vol, instance)
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
        let e = ec2.call("DescribeNetworkInterfaces", &Params::new().list("NetworkInterfaceId", &[&eni])).await.expect("eni");
        let v = ec2.call("DescribeVolumes", &Params::new().list("VolumeId", &[&vol])).await.expect("vol");
        let eni_at = e.items("networkInterfaceSet").next().and_then(|n| n.child("attachment")).and_then(|a| a.text("instanceId")).map(str::to_string);
        let vol_at = v.items("volumeSet").next().and_then(|v| v.items("attachmentSet").next()).and_then(|a| a.text("instanceId")).map(str::to_string);
        (eni_at, vol_at)
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

#[test]
fn userdata_signals_failure_itself_when_the_image_has_no_agent() {
    // An image without the agent would leave CloudFormation waiting out the whole signal
    // timeout: userdata signals FAILURE with curl's SigV4 (here with the environment's
    // credentials and endpoint; on an instance, the role's credentials from IMDSv2).
    let (moto, _aws, cfn) = world();
    let b = scratch_root("no-agent");
    gilliam_tests::compile_into(&app(free_port()), &release(1, "s3://boot-artifacts/web/r1.tar.gz", &"0".repeat(64)), STAGE, &b.dir.join("out"));
    let mut agent = run_userdata(&b, &b.dir.join("out/userdata/web.sh"), &moto, &cfn, &[("GILLIAM_AGENT", "/nonexistent/gilliam-agent")]);
    let status = agent.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{}", agent.text());
    let signal = cfn.signal_for("WebAutoScalingGroup").unwrap_or_else(|| panic!("no signal: {}", agent.text()));
    assert_eq!(signal.get("Status").map(String::as_str), Some("FAILURE"), "{signal:?}");
    assert_eq!(signal.get("StackName").map(String::as_str), Some("boot-r1"));
    assert_eq!(signal.get("UniqueId").map(String::as_str), Some("i-0123456789test"));
    wait_for("the log line", Duration::from_secs(5), || agent.text().contains("signalled FAILURE for WebAutoScalingGroup of boot-r1").then_some(()));
}

/// A stand-in for the instance metadata service (IMDSv2) on 127.0.0.1: a session token, the
/// instance id, the role's credentials; every read must carry the token. Returns its URL and
/// the paths it answered.
fn fake_imds() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming().map_while(Result::ok) {
            let mut r = BufReader::new(s.try_clone().expect("clone"));
            let mut w = s;
            let (mut first, mut line, mut token) = (String::new(), String::new(), false);
            r.read_line(&mut first).expect("request line");
            while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                token |= line.to_ascii_lowercase().starts_with("x-aws-ec2-metadata-token: tok");
                line.clear();
            }
            let path = first.split_whitespace().nth(1).unwrap_or_default().to_string();
            let body = match (first.starts_with("PUT"), token, path.as_str()) {
                (true, _, "/latest/api/token") => Some("tok".to_string()),
                (false, true, "/latest/meta-data/instance-id") => Some("i-0imds".to_string()),
                (false, true, "/latest/meta-data/iam/security-credentials/") => Some("release-role".to_string()),
                (false, true, "/latest/meta-data/iam/security-credentials/release-role") => {
                    Some("{\n  \"Code\" : \"Success\",\n  \"AccessKeyId\" : \"ASIAIMDS\",\n  \"SecretAccessKey\" : \"imds-secret\",\n  \"Token\" : \"imds-session\"\n}".to_string())
                }
                _ => None,
            };
            log.lock().expect("seen").push(format!("{} {path}", if body.is_some() { "200" } else { "401" }));
            let (status, body) = body.map_or(("401 Unauthorized", String::new()), |b| ("200 OK", b));
            let _ = write!(w, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    (url, seen)
}

#[test]
fn without_credentials_in_the_environment_userdata_signals_as_the_instance_role() {
    let (moto, _aws, cfn) = world();
    let (imds, seen) = fake_imds();
    let b = scratch_root("no-agent-imds");
    gilliam_tests::compile_into(&app(free_port()), &release(1, "s3://boot-artifacts/web/r1.tar.gz", &"0".repeat(64)), STAGE, &b.dir.join("out"));
    let env = [
        ("GILLIAM_AGENT", "/nonexistent/gilliam-agent"),
        ("AWS_ACCESS_KEY_ID", ""),
        ("AWS_SECRET_ACCESS_KEY", ""),
        ("GILLIAM_INSTANCE_ID", ""),
        ("AWS_EC2_METADATA_DISABLED", "false"),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.as_str()),
    ];
    let mut agent = run_userdata(&b, &b.dir.join("out/userdata/web.sh"), &moto, &cfn, &env);
    assert_eq!(agent.wait_exit(Duration::from_secs(30)).code(), Some(1));
    let signal = cfn.signal_for("WebAutoScalingGroup").unwrap_or_else(|| panic!("no signal: {}", agent.text()));
    assert_eq!((signal.get("Status").map(String::as_str), signal.get("UniqueId").map(String::as_str)), (Some("FAILURE"), Some("i-0imds")));
    let seen = seen.lock().expect("seen").clone();
    assert!(seen.iter().all(|s| s.starts_with("200")), "every metadata read carried the session token: {seen:?}");
    assert!(seen.iter().any(|s| s.ends_with("/security-credentials/release-role")), "{seen:?}");
}

/// The FAILURE fallback of userdata on a machine we cannot be: a China region (whose
/// endpoints are under `amazonaws.com.cn`) and an image whose curl predates `--aws-sigv4`
/// (7.75.0). A `curl` stand-in first on PATH reports the version asked for and records what
/// it is called with; nothing leaves the machine.
#[test]
fn userdata_failure_fallback_knows_china_endpoints_and_old_curl() {
    let b = scratch_root("fallback-cn");
    let stage = STAGE.replace("region: eu-west-1", "region: cn-north-1").replace("eu-west-1a", "cn-north-1a").replace("eu-west-1b", "cn-north-1b");
    gilliam_tests::compile_into(&app(free_port()), &release(1, "s3://boot-artifacts/web/r1.tar.gz", &"0".repeat(64)), &stage, &b.dir.join("out"));
    let run = |version: &str| {
        let bin = b.dir.join(format!("bin-{version}"));
        std::fs::create_dir_all(&bin).expect("bin");
        let calls = b.dir.join(format!("curl-{version}.calls"));
        let shim = format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'curl {version} (x86_64-pc-linux-gnu)'; exit 0; fi\necho \"$@\" >> '{}'\n",
            calls.display()
        );
        let path = bin.join("curl");
        std::fs::write(&path, shim).expect("shim");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let out = Command::new("bash")
            .arg(b.dir.join("out/userdata/web.sh"))
            .env_clear()
            .env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()))
            .envs(gilliam_tests::moto::SAFE_ENV.iter().copied())
            .env("GILLIAM_ROOT", &b.root)
            .env("GILLIAM_AGENT", "/nonexistent/gilliam-agent")
            .env("GILLIAM_INSTANCE_ID", "i-0123456789test")
            .output()
            .expect("userdata");
        (String::from_utf8_lossy(&out.stderr).into_owned(), std::fs::read_to_string(&calls).unwrap_or_default())
    };
    let (log, calls) = run("8.5.0");
    assert!(calls.contains("https://cloudformation.cn-north-1.amazonaws.com.cn/"), "{calls}\n{log}");
    assert!(calls.contains("aws:amz:cn-north-1:cloudformation"), "{calls}");
    let (log, calls) = run("7.74.0");
    assert!(calls.is_empty(), "no unsigned request is sent: {calls}");
    assert!(log.contains("curl 7.74.0 cannot sign requests (--aws-sigv4 needs 7.75.0 or later)"), "{log}");
}

/// Central logs on moto's CloudWatch Logs: the log group is missing at first (an outage as the
/// agent sees it: CreateLogStream fails), so lines wait in the spool on disk while the release
/// boots and serves; once the group exists they arrive, oldest first, each a JSON event with
/// formation, service, release, instance, source and level, in the stream `r1/web/INSTANCE`;
/// the agent's last lines go out as it stops.
#[test]
fn lines_reach_cloudwatch_logs_with_their_fields_after_an_outage() {
    let (moto, aws, cfn) = world();
    let art = demo_artifact();
    aws.put("boot-artifacts", "web/r1.tar.gz", art.clone());
    let port = free_port();
    let b = scratch_root("logs");
    gilliam_tests::compile_into(&app(port), &release(1, "s3://boot-artifacts/web/r1.tar.gz", &sha256(&art)), STAGE, &b.dir.join("out"));
    let mut agent = run_userdata(&b, &b.dir.join("out/userdata/web.sh"), &moto, &cfn, &[("GILLIAM_LOG_INTERVAL_MS", "100")]);
    wait_for("the success signal", Duration::from_secs(60), || cfn.signal_for("WebAutoScalingGroup"));
    assert_eq!(get(port, "/healthz"), Some((200, "ok".into())));
    let spool = b.root.join("var/lib/gilliam/spool");
    let segments =
        || std::fs::read_dir(&spool).map(|d| d.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with("seg-")).count()).unwrap_or(0);
    wait_for("lines spooled during the outage", Duration::from_secs(10), || (segments() > 0).then_some(()));
    assert!(aws.log_events("/gilliam/boot").is_empty());

    // CloudWatch Logs answers again (the group exists): the spool drains.
    aws.rt.block_on(aws.logs.create_log_group().log_group_name("/gilliam/boot").send()).expect("log group");
    let events = wait_for("the lines in CloudWatch Logs", Duration::from_secs(60), || {
        let e = aws.log_events("/gilliam/boot");
        e.iter().any(|(_, m)| m["message"].as_str().is_some_and(|t| t.starts_with("web listening"))).then_some(e)
    });
    let (stream, first) = events.iter().find(|(_, m)| m["message"].as_str().is_some_and(|t| t.starts_with("web listening"))).expect("the service's line");
    assert_eq!(stream, "r1/web/i-0123456789test");
    assert_eq!((first["formation"].as_str(), first["service"].as_str(), first["release"].as_str()), (Some("boot"), Some("web"), Some("1")));
    assert_eq!((first["instance"].as_str(), first["source"].as_str(), first["level"].as_str()), (Some("i-0123456789test"), Some("stdout"), Some("info")));
    let booting = events.iter().position(|(_, m)| m["message"].as_str().is_some_and(|t| t.starts_with("booting release 1"))).expect("the agent's first line");
    let signalled = events.iter().position(|(_, m)| m["message"].as_str().is_some_and(|t| t.contains("signalled SUCCESS"))).expect("the agent's signal line");
    assert!(booting < signalled, "oldest first");
    assert_eq!(events[signalled].1["source"], "agent");
    wait_for("the spool drained", Duration::from_secs(30), || (segments() == 0).then_some(()));
    assert!(!events.iter().any(|(_, m)| m.to_string().contains(PASSWORD)), "no secret in the logs");

    // Stopping: the last lines go out before the agent exits.
    Command::new("kill").args(["-TERM", &agent.child.id().to_string()]).status().expect("kill");
    assert_eq!(agent.wait_exit(Duration::from_secs(30)).code(), Some(0), "{}", agent.text());
    let events = aws.log_events("/gilliam/boot");
    assert!(events.iter().any(|(_, m)| m["message"] == "stopped"), "{:?}", events.iter().rev().take(3).collect::<Vec<_>>());
}
