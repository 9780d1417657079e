//! `gilliam-compile` end to end: files written, documented exit codes, error format,
//! determinism across runs and input key order, stale output removed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gilliam-compile"))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scratch(name: &str) -> PathBuf {
    let d = root().join("target/test-scratch/cli").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn run(dir: &Path, out: &Path) -> Output {
    bin()
        .arg("--app")
        .arg(dir.join("gilliam.yml"))
        .arg("--release")
        .arg(dir.join("release.json"))
        .arg("--stage")
        .arg(dir.join("stage.yml"))
        .arg("--out")
        .arg(out)
        .output()
        .expect("run gilliam-compile")
}

fn read_tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push((p.strip_prefix(dir).expect("prefix").display().to_string(), std::fs::read(&p).expect("read")));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn quickstart_compiles_and_manifest_describes_the_files() {
    let out = scratch("quickstart");
    let o = run(&root().join("examples/quickstart"), &out);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("compiled formation shop release 1"), "{stdout}");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).expect("manifest")).expect("manifest is JSON");
    assert_eq!(manifest["format_version"], 1);
    let stacks = manifest["stacks"].as_array().expect("stacks");
    assert_eq!(stacks.iter().map(|s| s["name"].as_str().unwrap_or("")).collect::<Vec<_>>(), ["shop", "shop-r1", "shop-routing-1"]);
    for s in stacks {
        let path = out.join(s["template"].as_str().expect("template path"));
        let bytes = std::fs::read(&path).expect("template file exists");
        assert_eq!(s["bytes"].as_u64(), Some(bytes.len() as u64));
        assert_eq!(s["sha256"].as_str(), Some(gilliam_compiler::names::sha256_hex(&bytes).as_str()));
    }
    // Each byte once: userdata lives in its launch template, where the manifest points.
    assert!(!out.join("userdata").exists(), "no userdata files without --userdata");
    let services = manifest["services"].as_array().expect("services");
    let api = services.iter().find(|s| s["name"] == "api").expect("api");
    let entry = &api["userdata"][0];
    let (file, pointer) = entry["path"].as_str().expect("path").split_once('#').expect("a place in a template");
    let template: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join(file)).expect("template")).expect("JSON");
    let script = template.pointer(pointer).and_then(serde_json::Value::as_str).expect("the script is where the manifest says");
    assert!(script.starts_with("#!/bin/bash\n# gilliam userdata: formation shop, release 1, service api."), "{script}");
    assert_eq!(entry["sha256"].as_str(), Some(gilliam_compiler::names::sha256_hex(script.as_bytes()).as_str()));
    assert_eq!(entry["bytes"].as_u64(), Some(script.len() as u64));
    // --userdata writes them out for review, the same bytes.
    let o = bin()
        .args(["--userdata", "-q", "--app"])
        .arg(root().join("examples/quickstart/gilliam.yml"))
        .arg("--release")
        .arg(root().join("examples/quickstart/release.json"))
        .arg("--stage")
        .arg(root().join("examples/quickstart/stage.yml"))
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run gilliam-compile");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(out.join("userdata/api.sh")).expect("api.sh"), script);
    for svc in ["pricing", "worker"] {
        assert!(out.join(format!("userdata/{svc}.sh")).is_file(), "userdata for {svc}");
    }
}

#[test]
fn invalid_input_exits_1_with_every_problem_positioned() {
    let dir = scratch("invalid-in");
    std::fs::write(dir.join("gilliam.yml"), "api:\n  scirpt: bin/api\n  ports: [80, 70000]\nBad_Name:\n  script: x\n").expect("write");
    std::fs::write(dir.join("release.json"), "{\"number\": \"12\"}").expect("write");
    std::fs::write(dir.join("stage.yml"), "formation: shop\nregion: eu-west-1\n").expect("write");
    let o = run(&dir, &dir.join("out"));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    let app = dir.join("gilliam.yml").display().to_string();
    for want in [
        format!("{app}:2:3: unknown key `scirpt` in service `api`\n  hint: did you mean `script`?"),
        format!("{app}:3:15: a port must be between 1 and 65535, found 70000"),
        format!("{app}:4:1: bad service name `Bad_Name`"),
        format!("{}:1:12: release number must be a positive integer, found string \"12\"", dir.join("release.json").display()),
        format!("{}:1:1: the stage file has no `vpc`", dir.join("stage.yml").display()),
    ] {
        assert!(err.contains(&want), "missing:\n{want}\nin:\n{err}");
    }
    assert!(err.trim_end().ends_with("problems found"), "{err}");
    assert!(!dir.join("out/manifest.json").exists(), "nothing is written for invalid input");
}

#[test]
fn usage_errors_exit_2() {
    let o = bin().args(["--app", "x.yml"]).output().expect("run");
    assert_eq!(o.status.code(), Some(2));
    let dir = scratch("usage");
    let o = run(&dir, &dir.join("out"));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read"), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(dir.join("gilliam.yml"), [0xff, 0xfe, 0x00]).expect("write");
    std::fs::write(dir.join("release.json"), "{}").expect("write");
    std::fs::write(dir.join("stage.yml"), "").expect("write");
    let o = run(&dir, &dir.join("out"));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not UTF-8"));
    // An endless input is refused at the limit rather than read to the end.
    let o = bin().args(["--app", "/dev/zero", "--release", "/dev/null", "--stage", "/dev/null", "--out"]).arg(dir.join("out")).output().expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("larger than the 4194304 bytes accepted"), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Files are written while the compile renders; the output directory is touched only once the
/// inputs are checked: invalid inputs leave an earlier output whole, and an output that cannot
/// be written is a usage error naming where, with no manifest left behind.
#[test]
fn invalid_input_leaves_the_output_and_an_unwritable_one_exits_2() {
    let case = root().join("tests/fixtures/full");
    let dir = scratch("keep-out");
    let out = dir.join("out");
    assert!(run(&case, &out).status.success());
    let before = read_tree(&out);
    for f in ["gilliam.yml", "release.json", "stage.yml"] {
        std::fs::copy(case.join(f), dir.join(f)).expect("copy");
    }
    std::fs::write(dir.join("release.json"), "{\"number\": 0}").expect("write");
    let o = run(&dir, &out);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(read_tree(&out) == before, "an invalid compile changed the earlier output");

    // An output directory under a regular file cannot be made.
    std::fs::write(dir.join("file"), "").expect("write");
    let o = run(&case, &dir.join("file/out"));
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot write") && err.contains("file/out"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn same_inputs_same_bytes_and_stale_files_go() {
    let case = root().join("tests/fixtures/full");
    let (a, b) = (scratch("det-a"), scratch("det-b"));
    std::fs::create_dir_all(b.join("templates")).expect("mkdir");
    std::fs::write(b.join("templates/stale.json"), "{}").expect("write");
    assert!(run(&case, &a).status.success());
    assert!(run(&case, &b).status.success());
    assert_eq!(read_tree(&a), read_tree(&b), "two compiles of the same inputs differ (or a stale file survived)");
}

#[test]
fn key_order_in_the_input_changes_nothing_but_the_recorded_inputs() {
    let case = root().join("tests/fixtures/full");
    let dir = scratch("reordered-in");
    // Services and keys in reverse order, flow style: same meaning, different text.
    std::fs::write(
        dir.join("gilliam.yml"),
        r#"coord: {size: 3, storage: 30, type: etcd}
sessions: {version: "7.1", type: redis}
db: {instance_type: db.t4g.small, database: shop, storage: 50, version: "17.5", type: postgres}
mailer: {scale: 2, script: bin/mailer}
sales: {scale: {max: 4, min: 1}, health: /status, internal: true, ports: [9000], script: bin/sales}
api:
  routes: [{"{tenant}.tenants.example.com/app/{rest}": "{tenant}.api.internal/{rest}"}, {"api.shop.example.com/users/{rest}": "/v2/users/{rest}"}, "*.partners.example.com/hooks/*", api.shop.example.com/v1/*, shop.example.com/api/*]
  health: /healthz
  ports: [8080]
  script: bin/api --listen 0.0.0.0:8080
web:
  env: {WEB_CONCURRENCY: 4, RAILS_ENV: production}
  instance_type: t3.medium
  scale: {cpu: 55, max: 10, desired: 3, min: 2}
  routes: [www.shop.example.com/*, shop.example.com]
  health: /up
  ports: [3000]
  script: bin/web
"#,
    )
    .expect("write");
    let release: serde_json::Value = serde_json::from_slice(&std::fs::read(case.join("release.json")).expect("read")).expect("json");
    std::fs::write(dir.join("release.json"), serde_json::to_string(&release).expect("json")).expect("write");
    std::fs::copy(case.join("stage.yml"), dir.join("stage.yml")).expect("copy");
    let (a, b) = (scratch("reordered-a"), scratch("reordered-b"));
    assert!(run(&case, &a).status.success());
    let o = run(&dir, &b);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let strip = |files: Vec<(String, Vec<u8>)>| -> Vec<(String, Vec<u8>)> {
        files
            .into_iter()
            .filter(|(p, _)| !p.starts_with("inputs"))
            .map(|(p, b)| {
                if p == "manifest.json" {
                    let mut m: serde_json::Value = serde_json::from_slice(&b).expect("json");
                    m["inputs"] = serde_json::Value::Null;
                    (p, serde_json::to_vec(&m).expect("json"))
                } else {
                    (p, b)
                }
            })
            .collect()
    };
    let (ta, tb) = (strip(read_tree(&a)), strip(read_tree(&b)));
    assert_eq!(ta.len(), tb.len());
    for ((pa, ba), (pb, bb)) in ta.iter().zip(&tb) {
        assert_eq!(pa, pb);
        assert!(ba == bb, "{pa} differs when only the input's key order changed");
    }
}

#[test]
fn prints_the_manifest_schema() {
    let o = bin().arg("--print-schema").output().expect("run");
    assert!(o.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).expect("the schema is JSON");
    assert_eq!(printed["title"], "Manifest", "{printed}");
    assert!(printed["properties"]["formation"].is_object(), "{printed}");
}
