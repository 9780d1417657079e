//! Fuzz targets and a mutator, shared by the CI test (`tests/fuzz.rs`, proptest-driven, short)
//! and the long run (`cargo bench -p gilliam-tests --bench fuzz -- SECONDS`). Every target
//! takes arbitrary bytes and must answer with a value or an error, never a panic: the
//! gilliam.yml, release and stage parsers (through the whole compiler), the runtime config,
//! the saved plan, the published state, the deploy lock and a published manifest.

#![allow(dead_code)]

use gilliam_materializer::plan::{Action, Observed, Plan, Share, PLAN_VERSION};
use std::collections::{BTreeMap, BTreeSet};

/// `app`, `release` and `stage` mutate one file of the seed case (the other two as they are);
/// the `-full` ones the same for the case with every feature.
pub const TARGETS: &[&str] = &["app", "release", "stage", "app-full", "release-full", "stage-full", "runtime", "plan", "state", "lock", "manifest"];

/// Valid inputs of each target, to mutate.
pub struct Corpus {
    pub seeds: BTreeMap<&'static str, Vec<Vec<u8>>>,
    /// The seed case's compiled files, for manifest verification.
    files: BTreeMap<String, Vec<u8>>,
    base: [String; 3],
    full: [String; 3],
}

fn sample_plan() -> Vec<u8> {
    let observed = Observed {
        bucket_exists: true,
        objects: BTreeMap::from([("gilliam/f/releases/2/templates/f.json".into(), Some("ab".repeat(32)))]),
        stacks: BTreeMap::from([("f".into(), Some(("CREATE_COMPLETE".into(), "cd".repeat(32)))), ("f-r2".into(), None)]),
        weights: BTreeMap::from([(1, Some(100)), (2, None)]),
        rules: BTreeMap::from([(
            "f-routing-1".into(),
            gilliam_compiler::priority::DeployedRules(BTreeMap::from([("ApiInternalRule".into(), ("InternalListener".into(), 10))])),
        )]),
        secrets: BTreeMap::from([("gilliam/f/db".into(), Some(true)), ("gilliam/f/cache".into(), None)]),
        standby: Vec::new(),
    };
    let share = |release, weight| Share {
        release,
        weight,
        internal: BTreeSet::from(["api".into()]),
        public: BTreeSet::from(["api".into()]),
        ports: BTreeMap::from([("api".into(), 8080)]),
    };
    let observed = Observed { standby: vec![share(0, 0)], ..observed };
    let plan = Plan {
        plan_version: PLAN_VERSION,
        formation: "f".into(),
        release: 2,
        manifest_sha256: "ef".repeat(32),
        observed_sha256: observed.sha256(),
        observed,
        actions: vec![
            Action::Upload { path: "templates/f-r2.json".into(), key: "gilliam/f/releases/2/templates/f-r2.json".into(), sha256: "01".repeat(32) },
            Action::UpdateStack { stack: "f".into(), template_sha256: "04".repeat(32), shares: Some(vec![share(1, 100), share(2, 0)]) },
            Action::CreateStack { stack: "f-r2".into(), template_sha256: "02".repeat(32), shares: None },
            Action::DeleteStack { stack: "f-routing-2".into() },
            Action::CreateSecret { name: "gilliam/f/cache".into() },
            Action::RestoreSecret { name: "gilliam/f/db".into() },
            Action::SecretEndpoint { name: "gilliam/f/cache".into() },
            Action::Routing { stack: "f-routing-1".into(), create: false, shares: vec![share(1, 100), share(2, 0)], template_sha256: "03".repeat(32) },
            Action::ShiftWhenHealthy { release: 2, shares: vec![share(1, 0), share(2, 100)], strategy: Some("canary:10:300s".into()) },
            Action::Cool { release: 1, stacks: vec!["f-r1".into()] },
            Action::Record { release: 2, retired: vec![], cooled: vec![1], deploy: true },
        ],
    };
    plan.to_json()
}

impl Corpus {
    pub fn new() -> Corpus {
        let mut seeds: BTreeMap<&'static str, Vec<Vec<u8>>> = BTreeMap::new();
        for (case, suffix) in [("seed", ""), ("full", "-full")] {
            let [a, r, s] = gilliam_tests::load(case);
            let key = |k: &str| -> &'static str { TARGETS.iter().find(|t| **t == format!("{k}{suffix}")).copied().unwrap_or("app") };
            seeds.entry(key("app")).or_default().push(a.into_bytes());
            seeds.entry(key("release")).or_default().push(r.into_bytes());
            seeds.entry(key("stage")).or_default().push(s.into_bytes());
            let c = gilliam_tests::compile_case(case);
            for script in c.userdata().expect("userdata").values() {
                if let Some(cfg) = gilliam_compiler::runtime::from_userdata(script) {
                    seeds.entry("runtime").or_default().push(cfg.as_bytes().to_vec());
                }
            }
        }
        seeds.insert("plan", vec![sample_plan()]);
        seeds.insert(
            "state",
            vec![br#"{"format_version": 1, "formation": "pitch", "releases": {"1": {"revision": "r", "created": "2026-11-22T00:00:00Z", "artifact_sha256": "ab", "stacks": ["pitch-r1"], "groups": {"api": ["ApiAutoScalingGroup", "pitch-r1"]}, "scale": {"api": 2}, "status": "live"}}, "traffic": {"1": 100}, "history": [{"at": "2026-11-22T00:00:00Z", "actor": "ci", "action": "deploy release 1 (traffic 1=100)"}]}"#.to_vec()],
        );
        seeds.insert(
            "lock",
            vec![br#"{"format_version": 1, "formation": "pitch", "owner": "ci", "host": "h", "pid": 1, "operation": "deploy release 1", "token": "t", "acquired": "2026-11-22T00:00:00Z", "expires_unix": 1, "released": false}"#.to_vec()],
        );
        let c = gilliam_tests::compile_case("seed");
        seeds.insert("manifest", vec![c.files["manifest.json"].clone()]);
        Corpus { seeds, files: c.files.clone().into_iter().collect(), base: gilliam_tests::load("seed"), full: gilliam_tests::load("full") }
    }

    /// Runs one target on one input. Returns whether the input was accepted; panics are the
    /// caller's to catch.
    pub fn run(&self, target: &str, input: &[u8]) -> bool {
        let text = String::from_utf8_lossy(input);
        let [a, r, s] = &self.base;
        let [fa, fr, fs] = &self.full;
        let compiled = |app: &str, rel: &str, stage: &str| match gilliam_tests::compile_texts(app, rel, stage) {
            Ok(_) => true,
            Err(e) => {
                let m = e.to_string();
                assert!(!m.trim().is_empty(), "an error with no message");
                false
            }
        };
        match target {
            "app" => compiled(&text, r, s),
            "release" => compiled(a, &text, s),
            "stage" => compiled(a, r, &text),
            "app-full" => compiled(&text, fr, fs),
            "release-full" => compiled(fa, &text, fs),
            "stage-full" => compiled(fa, fr, &text),
            "runtime" => gilliam_compiler::runtime::parse(input).is_ok(),
            "plan" => gilliam_materializer::plan::Plan::from_json(input).is_ok(),
            "state" => gilliam_materializer::state::parse(input, "state.json", "pitch").is_ok(),
            "lock" => gilliam_materializer::lock::parse(input, "lock.json", "pitch").is_ok(),
            "manifest" => gilliam_materializer::bundle::Bundle::verify(std::path::Path::new(""), "manifest.json", input.to_vec(), |rel| {
                self.files.get(rel).cloned().ok_or_else(|| format!("{rel} missing"))
            })
            .is_ok(),
            other => panic!("no target {other}"),
        }
    }
}

impl Default for Corpus {
    fn default() -> Self {
        Corpus::new()
    }
}

/// Tokens that tend to reach deep into YAML and JSON parsers.
const TOKENS: &[&str] = &[
    "&a [*a, *a, *a]",
    "*a",
    "!!binary",
    "? ",
    ": ",
    "- ",
    "{",
    "}",
    "[",
    "]",
    "\"",
    "'",
    "\\u0000",
    "\n  ",
    "\t",
    "#",
    "---\n",
    "...\n",
    "null",
    "~",
    "-1",
    "4294967296",
    "1e309",
    "NaN",
    "true",
    "\u{feff}",
    "\u{2028}",
    "{{",
    "}}",
    "${AWS::Region}",
    "/*",
    "..",
    "%",
    "\r\n",
    "\0",
];

/// A small seeded generator (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four mutations of `input`: byte flips, insertions, deletions, token insertions,
/// line duplication or swaps, truncation, splicing with another seed.
pub fn mutate(input: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(8) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.insert(at.min(v.len()), (rng.next() & 0xff) as u8),
            2 if !v.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            3 => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                v.splice(at..at, t.iter().copied());
            }
            4 => {
                let text = String::from_utf8_lossy(&v).into_owned();
                let mut lines: Vec<&str> = text.lines().collect();
                if !lines.is_empty() {
                    let i = rng.below(lines.len());
                    let j = rng.below(lines.len());
                    if rng.below(2) == 0 {
                        lines.insert(j, lines[i]);
                    } else {
                        lines.swap(i, j);
                    }
                }
                v = lines.join("\n").into_bytes();
            }
            5 => v.truncate(at),
            6 if !other.is_empty() => {
                let from = rng.below(other.len());
                let len = rng.below(64).min(other.len() - from);
                v.splice(at..at, other[from..from + len].iter().copied());
            }
            _ => {
                // Deep nesting or a long run.
                let t = if rng.below(2) == 0 { "[".repeat(1 + rng.below(200)) } else { "a".repeat(rng.below(5000)) };
                v.splice(at..at, t.bytes());
            }
        }
    }
    v
}
