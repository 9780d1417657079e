//! Every template the compiler emits for the fixture cases and the quickstart example passes
//! cfn-lint with no errors. cfn-lint is required: set GILLIAM_SKIP_CFN_LINT=1 to skip knowingly.

use gilliam_tests::{cfn_lint, compile_texts, fixtures, scratch, CASES};
use std::process::Command;

#[test]
fn templates_pass_cfn_lint() {
    if std::env::var_os("GILLIAM_SKIP_CFN_LINT").is_some() {
        eprintln!("GILLIAM_SKIP_CFN_LINT is set: cfn-lint not run");
        return;
    }
    let lint = cfn_lint().expect("cfn-lint not found: run `.ci/setup` (creates .venv), set CFN_LINT, or set GILLIAM_SKIP_CFN_LINT=1");
    let dir = scratch("cfn-lint");
    let quickstart = fixtures().join("../../examples/quickstart");
    let mut cases: Vec<(String, std::path::PathBuf)> = CASES.iter().map(|c| (c.to_string(), fixtures().join(c))).collect();
    cases.push(("quickstart".into(), quickstart));
    let mut files = Vec::new();
    for (name, src) in cases {
        let read = |f: &str| std::fs::read_to_string(src.join(f)).expect("fixture");
        let c = compile_texts(&read("gilliam.yml"), &read("release.json"), &read("stage.yml")).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (path, bytes) in c.files.iter().filter(|(p, _)| p.starts_with("templates/")) {
            let out = dir.join(format!("{name}-{}", path.trim_start_matches("templates/")));
            std::fs::write(&out, bytes).expect("write template");
            files.push(out);
        }
    }
    assert!(files.len() >= 15, "expected templates from every case, got {}", files.len());
    let out = Command::new(&lint).args(["--format", "parseable"]).args(&files).output().expect("run cfn-lint");
    let text = String::from_utf8_lossy(&out.stdout);
    // cfn-lint's exit code is a bit mask: 2 errors, 4 warnings, 8 informational.
    let code = out.status.code().unwrap_or(-1);
    assert!(code >= 0 && code & 2 == 0 && code & 1 == 0, "cfn-lint found errors (exit {code}):\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.lines().any(|l| l.contains(":E")), "cfn-lint errors:\n{text}");
}
