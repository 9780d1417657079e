//! Shared helpers for the workspace tests: fixture loading, compiling a fixture case, and
//! locating the tools the tests drive (the built binaries, cfn-lint).

use gilliam_compiler::{compile, Compiled, Inputs, Source};
use std::path::{Path, PathBuf};

/// The fixture cases under `tests/fixtures/`, each a `gilliam.yml`, `release.json` and `stage.yml`.
pub const CASES: &[&str] = &["seed", "full", "split"];

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The three input texts of a fixture case.
pub fn load(case: &str) -> [String; 3] {
    let dir = fixtures().join(case);
    ["gilliam.yml", "release.json", "stage.yml"].map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{case}/{f}: {e}")))
}

pub fn compile_texts(app: &str, release: &str, stage: &str) -> Result<Compiled, gilliam_compiler::Error> {
    compile(&Inputs {
        app: Source { name: "gilliam.yml", text: app },
        release: Source { name: "release.json", text: release },
        stage: Source { name: "stage.yml", text: stage },
    })
}

pub fn compile_case(case: &str) -> Compiled {
    let [a, r, s] = load(case);
    compile_texts(&a, &r, &s).unwrap_or_else(|e| panic!("fixture {case} does not compile:\n{e}"))
}

/// The shared design folder beside the repository (`../shared`), when present.
pub fn shared_dir() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    d.is_dir().then_some(d)
}

/// cfn-lint from `$CFN_LINT`, else the project's virtual environment, else `PATH`.
pub fn cfn_lint() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CFN_LINT") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/cfn-lint");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("cfn-lint")).find(|p| p.is_file()))
}

/// A fresh scratch directory under the target directory, removed first if it exists.
pub fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-scratch").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    d
}
