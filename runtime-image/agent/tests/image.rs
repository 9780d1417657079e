//! The image recipe: provision.sh run into a scratch root installs the agent, the unit (enabled)
//! and the service user, twice without harm, and refuses what it must; the unit parses with
//! systemd's own checker; the scripts pass shellcheck; the Packer template names files that
//! exist and keeps IMDSv2 and encryption on.

use std::path::{Path, PathBuf};
use std::process::Command;

fn image_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn provision(root: &Path, extra: &[&str]) -> std::process::Output {
    Command::new("bash")
        .arg(image_dir().join("provision.sh"))
        .args(["--root", &root.display().to_string(), "--no-packages", "--agent", env!("CARGO_BIN_EXE_gilliam-agent")])
        .args(extra)
        .output()
        .expect("bash")
}

fn found(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success())
}

#[test]
fn provisioning_installs_agent_unit_and_user_and_can_run_twice() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: provisioning creates a user and sets ownership, which needs root");
        return;
    }
    let root = gilliam_tests::scratch("image/provision");
    std::fs::create_dir_all(root.join("etc")).expect("etc");
    for (f, line) in
        [("passwd", "root:x:0:0:root:/root:/bin/bash\n"), ("group", "root:x:0:\n"), ("shadow", "root:*:19000:0:99999:7:::\n"), ("gshadow", "root:*::\n")]
    {
        std::fs::write(root.join("etc").join(f), line).expect("etc file");
    }
    let out = provision(&root, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mode = |p: &str| std::fs::metadata(root.join(p)).expect(p).permissions().mode() & 0o7777;
    assert_eq!(mode("usr/local/bin/gilliam-agent"), 0o755);
    assert_eq!(mode("etc/systemd/system/gilliam-agent.service"), 0o644);
    assert_eq!(
        std::fs::read(root.join("etc/systemd/system/gilliam-agent.service")).expect("unit"),
        std::fs::read(image_dir().join("gilliam-agent.service")).expect("unit")
    );
    let link = std::fs::read_link(root.join("etc/systemd/system/multi-user.target.wants/gilliam-agent.service")).expect("enabled");
    assert_eq!(link, Path::new("/etc/systemd/system/gilliam-agent.service"));
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("passwd");
    let user = gilliam_agent::identity::lookup_user(&passwd, "gilliam").expect("the service user exists");
    assert!(user.ids.uid > 0 && user.ids.uid < 1000, "a system account: {user:?}");
    assert!(passwd.lines().any(|l| l.starts_with("gilliam:") && l.ends_with("nologin")), "no login shell: {passwd}");
    let home = std::fs::metadata(root.join("var/lib/gilliam/home")).expect("home");
    assert_eq!((home.uid(), home.permissions().mode() & 0o777), (user.ids.uid, 0o750));
    assert!(!root.join("etc/gilliam/runtime.json").exists(), "no instance config baked in");

    let again = provision(&root, &[]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(std::fs::read_to_string(root.join("etc/passwd")).expect("passwd"), passwd, "the second run changes nothing");
}

#[test]
fn provisioning_refuses_what_it_cannot_do_right() {
    let root = gilliam_tests::scratch("image/refuse");
    let missing =
        Command::new("bash").arg(image_dir().join("provision.sh")).args(["--root", &root.display().to_string(), "--no-packages"]).output().expect("bash");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--agent PATH is required"));
    let unverified = provision(&root, &["--etcd-version", "3.5.17"]);
    assert_eq!(unverified.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unverified.stderr).contains("--etcd-sha256"), "{}", String::from_utf8_lossy(&unverified.stderr));
    let unknown = provision(&root, &["--frobnicate"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown argument --frobnicate"));
    assert!(!root.join("usr/local/bin/gilliam-agent").exists(), "nothing installed on refusal");
}

#[test]
fn the_unit_parses_with_systemd_and_the_scripts_with_shellcheck() {
    let unit = image_dir().join("gilliam-agent.service");
    let text = std::fs::read_to_string(&unit).expect("unit");
    for needed in [
        "ExecStart=/usr/local/bin/gilliam-agent run --config /etc/gilliam/runtime.json",
        "KillMode=mixed",
        "RestartPreventExitStatus=1 3",
        "WantedBy=multi-user.target",
    ] {
        assert!(text.contains(needed), "unit lacks {needed}");
    }
    if found("systemd-analyze") {
        let out = Command::new("systemd-analyze").arg("verify").arg(&unit).output().expect("systemd-analyze");
        let complaints: Vec<String> = String::from_utf8_lossy(&out.stderr)
            .lines()
            .chain(String::from_utf8_lossy(&out.stdout).lines())
            .filter(|l| !l.contains("is not executable"))
            .map(str::to_string)
            .collect();
        assert!(complaints.is_empty(), "systemd-analyze verify: {complaints:#?}");
    } else {
        eprintln!("systemd-analyze not found: unit not verified");
    }
    if found("shellcheck") {
        let c = gilliam_tests::compile_case("seed");
        let userdata = gilliam_tests::scratch("image/shellcheck").join("userdata.sh");
        let api = c.userdata().expect("userdata").remove("api").expect("api's userdata");
        std::fs::write(&userdata, &api).expect("userdata");
        // A one-off instance's userdata, as the materializer makes it from the service's.
        let command = ["bin/migrate".to_string(), "--all".to_string()];
        let t = gilliam_compiler::task::Task {
            formation: "f",
            release: 1,
            service: "api",
            purpose: "release phase",
            command: &command,
            deadline_seconds: 600,
            image: "ami-1",
        };
        let task = userdata.with_file_name("task.sh");
        std::fs::write(&task, gilliam_compiler::task::userdata(&t, &api).expect("task userdata")).expect("task");
        for script in [image_dir().join("provision.sh"), image_dir().join("build.sh"), userdata, task] {
            let out = Command::new("shellcheck").arg(&script).output().expect("shellcheck");
            assert!(out.status.success(), "{}: {}", script.display(), String::from_utf8_lossy(&out.stdout));
        }
    } else {
        eprintln!("shellcheck not found: scripts not checked (CI installs it)");
    }
}

#[test]
fn the_packer_template_names_files_that_exist_and_keeps_the_image_safe() {
    let hcl = std::fs::read_to_string(image_dir().join("gilliam-runtime.pkr.hcl")).expect("template");
    let mut named = 0;
    for part in hcl.split("${path.root}/").skip(1) {
        let file = part.split('"').next().expect("file name");
        assert!(image_dir().join(file).is_file(), "the template names {file}, which is not in runtime-image/");
        named += 1;
    }
    assert!(named >= 3, "unit, README and provision.sh come from runtime-image/");
    for needed in
        ["http_tokens                 = \"required\"", "encrypt_boot  = true", "imds_support  = \"v2.0\"", "post-processor \"manifest\"", "cloud-init clean"]
    {
        assert!(hcl.contains(needed), "template lacks {needed}");
    }
    for flag in ["--agent", "--unit", "--readme", "--etcd-version", "--etcd-sha256"] {
        let script = std::fs::read_to_string(image_dir().join("provision.sh")).expect("provision.sh");
        assert!(hcl.contains(flag) && script.contains(&format!("{flag})")), "{flag} passed by the template and taken by provision.sh");
    }
}
