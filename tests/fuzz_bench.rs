//! The long fuzz run: mutates valid inputs of every target for SECONDS (default 60) and reports
//! executions and any panic (with the input saved under target/fuzz-crashes/).
//! `cargo bench -p gilliam-tests --bench fuzz -- SECONDS [SEED]`

#[path = "fuzz_targets.rs"]
mod fuzz_targets;

use fuzz_targets::{mutate, Corpus, Rng, TARGETS};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0x5eed);
    std::panic::set_hook(Box::new(|_| {}));
    let corpus = Corpus::new();
    let mut rng = Rng(seed);
    let mut execs: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut panics = 0;
    let start = Instant::now();
    let crashes = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-crashes");
    while start.elapsed() < Duration::from_secs(seconds) {
        let name = TARGETS[rng.below(TARGETS.len())];
        let seeds = &corpus.seeds[name];
        let mut input = seeds[rng.below(seeds.len())].clone();
        let other = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(8) {
            input = mutate(&input, &other, &mut rng);
            let e = execs.entry(name).or_default();
            e.0 += 1;
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| corpus.run(name, &input))) {
                Ok(true) => e.1 += 1,
                Ok(false) => {}
                Err(_) => {
                    panics += 1;
                    let _ = std::fs::create_dir_all(&crashes);
                    let path = crashes.join(format!("{name}-{panics}"));
                    let _ = std::fs::write(&path, &input);
                    println!("PANIC in {name}: input saved to {}", path.display());
                }
            }
        }
    }
    let total: u64 = execs.values().map(|e| e.0).sum();
    for (t, (n, ok)) in &execs {
        println!("{t:>9}: {n} executions, {ok} accepted");
    }
    println!(
        "{total} executions in {:.0} s ({:.0}/s), seed {seed}: {panics} panics",
        start.elapsed().as_secs_f64(),
        total as f64 / start.elapsed().as_secs_f64()
    );
    if panics > 0 {
        std::process::exit(1);
    }
}
