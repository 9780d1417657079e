//! Fuzzing in CI, short: every target on inputs mutated from valid ones (proptest picks the
//! seeds and mutation streams), plus the hostile classics (alias bombs, deep nesting, huge
//! inputs): errors are fine, panics are not. The long run is `cargo bench -p gilliam-tests
//! --bench fuzz -- SECONDS`.

#[path = "fuzz_targets.rs"]
mod fuzz_targets;

use fuzz_targets::{mutate, Corpus, Rng, TARGETS};
use proptest::prelude::*;
use std::sync::OnceLock;

fn corpus() -> &'static Corpus {
    static C: OnceLock<Corpus> = OnceLock::new();
    C.get_or_init(Corpus::new)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_inputs_never_panic(target in 0..TARGETS.len(), seed in any::<u64>(), rounds in 1usize..6) {
        let c = corpus();
        let name = TARGETS[target];
        let seeds = &c.seeds[name];
        let mut rng = Rng(seed);
        let mut input = seeds[rng.below(seeds.len())].clone();
        let other = seeds[rng.below(seeds.len())].clone();
        for _ in 0..rounds {
            input = mutate(&input, &other, &mut rng);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.run(name, &input)));
            prop_assert!(outcome.is_ok(), "{name} panicked on {:?}", String::from_utf8_lossy(&input));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(target in 0..TARGETS.len(), input in proptest::collection::vec(any::<u8>(), 0..512)) {
        let c = corpus();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.run(TARGETS[target], &input)));
        prop_assert!(outcome.is_ok(), "{} panicked", TARGETS[target]);
    }
}

#[test]
fn every_seed_is_accepted_so_the_fuzzer_starts_from_valid_inputs() {
    let c = corpus();
    for t in TARGETS {
        for s in &c.seeds[t] {
            assert!(c.run(t, s), "{t}: a seed is refused: {}", String::from_utf8_lossy(s));
        }
    }
}

#[test]
fn hostile_classics_get_bounded_clear_errors() {
    let [_, r, s] = gilliam_tests::load("seed");
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
    let deep = format!("api:\n  script: {}x{}\n", "[".repeat(10_000), "]".repeat(10_000));
    let huge = format!("api:\n  script: bin/api\n  env:\n    BIG: \"{}\"\n", "x".repeat(5 * 1024 * 1024));
    for (what, app) in [("alias bomb", bomb.to_string()), ("deep nesting", deep), ("huge", huge)] {
        let t = std::time::Instant::now();
        let err = gilliam_tests::compile_texts(&app, &r, &s).expect_err(what).to_string();
        assert!(err.contains("gilliam.yml:"), "{what}: says where: {err}");
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "{what}: bounded: {:?}", t.elapsed());
    }
}
