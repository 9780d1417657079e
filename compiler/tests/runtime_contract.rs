//! The contract between userdata and the agent: every runtime config the compiler emits, for
//! every fixture case, parses with the agent's types, and points at what exists: its release
//! stack, the Auto Scaling group to signal, the artifact of the release.

use gilliam_compiler::runtime::{self, RuntimeConfig};
use gilliam_compiler::{compile, Inputs, Source};
use std::path::Path;

#[test]
fn every_emitted_runtime_config_parses_and_points_at_real_resources() {
    for case in ["seed", "full", "split", "image"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(case);
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("fixture");
        let (a, r, s) = (read("gilliam.yml"), read("release.json"), read("stage.yml"));
        let c = compile(&Inputs { app: Source { name: "a", text: &a }, release: Source { name: "r", text: &r }, stage: Source { name: "s", text: &s } })
            .expect("compiles");
        let mut seen = 0;
        for (path, script) in c.userdata().expect("userdata") {
            let text = runtime::from_userdata(&script).unwrap_or_else(|| panic!("{case}/{path}: no runtime config"));
            let cfg = runtime::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{case}/{path}: {e}"));
            let (stack, resource) = match &cfg {
                RuntimeConfig::Service(s) => {
                    // Exactly one of a tarball and an image, as the manifest says.
                    let (url, sha) = match (&s.artifact, &s.image) {
                        (Some(a), None) => (a.url.clone(), a.sha256.clone()),
                        (None, Some(i)) => (i.reference.clone(), i.digest.trim_start_matches("sha256:").to_string()),
                        other => panic!("{case}/{path}: artifact and image {other:?}"),
                    };
                    assert_eq!((url.as_str(), sha.as_str()), (c.manifest.release.artifact_url.as_str(), c.manifest.release.artifact_sha256.as_str()));
                    assert!(s.limits.is_some(), "{case}/{path}: every service of a known instance type has limits");
                    if let Some(d) = &s.discovery {
                        let u = c.manifest.uploads.iter().find(|u| d.url.ends_with(&u.s3_key)).expect("discovery is an upload");
                        assert_eq!(d.sha256, u.sha256);
                        let doc: runtime::Discovery = serde_json::from_slice(&c.files[&u.path]).expect("discovery document");
                        assert!(doc.env.keys().any(|k| k.ends_with("_URL")), "{case}: discovery holds URLs");
                    }
                    (s.signal.stack.clone(), s.signal.resource.clone())
                }
                RuntimeConfig::Etcd(e) => (e.signal.stack.clone(), e.signal.resource.clone()),
                RuntimeConfig::Task(_) => panic!("{case}/{path}: the compiler writes no task userdata; the materializer makes it at launch"),
                RuntimeConfig::Pointer(p) => panic!("{case}/{path}: unexpected pointer {p:?}"),
            };
            let entry = c.manifest.stacks.iter().find(|s| s.name == stack).unwrap_or_else(|| panic!("{case}/{path}: signals unknown stack {stack}"));
            let template: serde_json::Value = serde_json::from_slice(&c.files[&entry.template]).expect("template");
            let ty = template["Resources"][&resource]["Type"].as_str().unwrap_or_else(|| panic!("{case}/{path}: {resource} is not in {stack}"));
            assert_eq!(ty, "AWS::AutoScaling::AutoScalingGroup");
            assert!(template["Resources"][&resource]["CreationPolicy"]["ResourceSignal"].is_object(), "{case}/{path}: {resource} waits for no signal");
            seen += 1;
        }
        assert!(seen >= 2, "{case}: {seen} configs");
    }
}

#[test]
fn unknown_versions_roles_and_fields_are_refused() {
    assert!(runtime::parse(br#"{"format_version": 2}"#).expect_err("refused").contains("format_version"));
    assert!(runtime::parse(br#"{"format_version": 1, "role": "db"}"#).expect_err("refused").contains("role"));
    assert!(runtime::parse(br#"{"format_version": 1, "config_url": "s3://b/k", "config_sha256": "x", "region": "r", "extra": 1}"#)
        .expect_err("refused")
        .contains("extra"));
    assert!(runtime::parse(b"not json").is_err());
}
