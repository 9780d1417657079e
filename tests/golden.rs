//! Golden snapshots of every fixture case: templates, userdata, uploads and the manifest,
//! reviewed like code. Regenerate with `INSTA_UPDATE=always cargo test -p gilliam-tests --test golden`
//! and review the diff before committing.

use gilliam_tests::{compile_case, fixtures, load, shared_dir, CASES};

fn snapshot_name(path: &str) -> String {
    path.replace(['/', '.'], "_")
}

/// Templates, and the runtime config in userdata, are emitted compact; snapshots show them
/// indented so that a diff reads like code.
fn reviewable(path: &str, bytes: &[u8]) -> String {
    let text = String::from_utf8(bytes.to_vec()).expect("outputs are UTF-8");
    if path.starts_with("templates/") {
        let v: serde_json::Value = serde_json::from_slice(bytes).expect("templates are JSON");
        let mut s = serde_json::to_string_pretty(&v).expect("JSON");
        s.push('\n');
        s
    } else if let Some(config) = gilliam_compiler::runtime::from_userdata(&text) {
        let v: serde_json::Value = serde_json::from_str(config).expect("runtime configs are JSON");
        text.replacen(config, &serde_json::to_string_pretty(&v).expect("JSON"), 1)
    } else {
        text
    }
}

#[test]
fn seed_example_is_the_shared_one_unchanged() {
    let [app, _, _] = load("seed");
    match shared_dir() {
        Some(d) => {
            let shared = std::fs::read_to_string(d.join("examples/gilliam.yml")).expect("read shared example");
            assert_eq!(app, shared, "tests/fixtures/seed/gilliam.yml must stay a byte-for-byte copy of shared/examples/gilliam.yml");
        }
        None => eprintln!("shared/ is not beside the repository; comparing against the committed copy only"),
    }
}

#[test]
fn small_cases_snapshot_every_file() {
    for case in ["seed", "full", "names", "image"] {
        let c = compile_case(case);
        insta::with_settings!({ snapshot_path => fixtures().join(case).join("snapshots"), prepend_module_to_snapshot => false, omit_expression => true }, {
            for (path, bytes) in c.files.iter().filter(|(p, _)| !p.starts_with("inputs/")) {
                insta::assert_snapshot!(snapshot_name(path), reviewable(path, bytes));
            }
            // Userdata is written once, in its launch template; reviewed on its own as well.
            for (name, script) in c.userdata().expect("userdata") {
                let path = format!("userdata/{name}.sh");
                insta::assert_snapshot!(snapshot_name(&path), reviewable(&path, script.as_bytes()));
            }
        });
    }
}

#[test]
fn split_case_snapshots_manifest_and_digests() {
    let c = compile_case("split");
    let digests: String = c.files.iter().map(|(p, b)| format!("{p} {} {}\n", b.len(), gilliam_compiler::names::sha256_hex(b))).collect();
    insta::with_settings!({ snapshot_path => fixtures().join("split").join("snapshots"), prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!("manifest_json", String::from_utf8_lossy(&c.files["manifest.json"]));
        insta::assert_snapshot!("file_digests", digests);
        insta::assert_snapshot!("templates_big-routing-1_json", reviewable("templates/big-routing-1.json", &c.files["templates/big-routing-1.json"]));
    });
}

#[test]
fn split_case_is_really_split() {
    let m = compile_case("split").manifest;
    let releases = m.stacks.iter().filter(|s| s.role == gilliam_compiler::manifest::StackRole::Release).count();
    assert!(releases >= 2, "150 services must not fit one release stack's 200 outputs; got {releases} stacks");
    assert_eq!(m.formation.routing_groups, 8);
    assert!(m.stacks.iter().any(|s| s.upload_required), "templates over 51,200 bytes must be marked for upload");
    assert_eq!(m.uploads.len(), 1, "large formations share one discovery document");
}

#[test]
fn every_case_is_deterministic() {
    for case in CASES {
        let a = compile_case(case);
        let b = compile_case(case);
        assert_eq!(a.files, b.files, "case {case}: two compiles differ");
    }
}

#[test]
fn output_does_not_depend_on_the_worker_count() {
    let [a, r, s] = load("split");
    let inputs = gilliam_compiler::Inputs {
        app: gilliam_compiler::Source { name: "gilliam.yml", text: &a },
        release: gilliam_compiler::Source { name: "release.json", text: &r },
        stage: gilliam_compiler::Source { name: "stage.yml", text: &s },
    };
    let with =
        |workers| gilliam_compiler::compile_with(&inputs, &gilliam_compiler::Options { traffic: None, workers, ..Default::default() }).expect("compiles").files;
    let one = with(1);
    for w in [2, 3, 16] {
        assert!(with(w) == one, "{w} workers gave different output than 1");
    }
}

/// A compile with a sink hands it every file but the manifest, each once and whole, and holds
/// only the manifest itself: the same bytes as a compile without one, at any worker count.
#[test]
fn a_sink_takes_every_file_once_and_the_manifest_stays() {
    #[derive(Debug, Default)]
    struct Collect(std::sync::Mutex<Vec<(String, Vec<u8>)>>);
    impl gilliam_compiler::FileSink for Collect {
        fn file(&self, path: &str, bytes: &[u8]) {
            self.0.lock().expect("sink").push((path.to_string(), bytes.to_vec()));
        }
    }
    for case in ["split", "full"] {
        let [a, r, s] = load(case);
        let inputs = gilliam_compiler::Inputs {
            app: gilliam_compiler::Source { name: "gilliam.yml", text: &a },
            release: gilliam_compiler::Source { name: "release.json", text: &r },
            stage: gilliam_compiler::Source { name: "stage.yml", text: &s },
        };
        let whole = gilliam_compiler::compile_with(&inputs, &gilliam_compiler::Options { workers: 1, ..Default::default() }).expect("compiles");
        for workers in [1, 3] {
            let sink = std::sync::Arc::new(Collect::default());
            let options = gilliam_compiler::Options { workers, sink: Some(sink.clone()), ..Default::default() };
            let streamed = gilliam_compiler::compile_with(&inputs, &options).expect("compiles");
            assert_eq!(streamed.files.keys().collect::<Vec<_>>(), ["manifest.json"], "{case}: only the manifest is held");
            assert_eq!(streamed.files["manifest.json"], whole.files["manifest.json"], "{case}: same manifest");
            let mut got = std::mem::take(&mut *sink.0.lock().expect("sink"));
            got.sort();
            let paths: Vec<&String> = got.iter().map(|(p, _)| p).collect();
            let mut unique = paths.clone();
            unique.dedup();
            assert_eq!(paths, unique, "{case}, {workers} workers: a file handed over twice");
            let want: Vec<(String, Vec<u8>)> = whole.files.iter().filter(|(p, _)| *p != "manifest.json").map(|(p, b)| (p.clone(), b.clone())).collect();
            assert!(got == want, "{case}, {workers} workers: the sink's files differ from the compile's without one");
        }
    }
}

/// The committed schema (what `gilliam-compile --print-schema` prints, built without schemars)
/// is the one the manifest's types generate. After a change to the manifest:
/// `GILLIAM_UPDATE_SCHEMA=1 cargo test -p gilliam-tests --test golden schema`, then review it.
#[test]
fn the_committed_manifest_schema_is_the_types_schema() {
    let generated = gilliam_compiler::manifest::schema_json();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../compiler/manifest.schema.json");
    if std::env::var_os("GILLIAM_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).expect("write the schema");
        return;
    }
    assert!(
        generated == gilliam_compiler::manifest::SCHEMA,
        "compiler/manifest.schema.json is stale: regenerate it with `GILLIAM_UPDATE_SCHEMA=1 cargo test -p gilliam-tests --test golden schema` (then rebuild)"
    );
}
