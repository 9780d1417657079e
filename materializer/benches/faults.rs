//! The fault story many times: deploy, split, flip, rollback, retire against moto with 20% of
//! calls meeting a fault; every run must end in the intended state (the story asserts it).
//! Prints the counts. `cargo bench -p gilliam-materializer --bench faults [-- RUNS [RATE]]`

#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let runs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let rate: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0.2);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (mut calls, mut faults) = (0, 0);
    let start = std::time::Instant::now();
    for seed in 1..=runs {
        let c = rt.block_on(common::fault_story::story(1000 + seed, rate));
        calls += c.calls;
        faults += c.faults;
        println!("run {seed}: {} calls, {} faults, end state reached", c.calls, c.faults);
    }
    println!(
        "{runs} stories at a {:.0}% fault rate: all reached the intended end state; {calls} calls, {faults} faults injected ({:.1}%), {:.0} s",
        rate * 100.0,
        faults as f64 * 100.0 / calls as f64,
        start.elapsed().as_secs_f64()
    );
}
