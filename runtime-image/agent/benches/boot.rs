//! Boot-to-healthy of the demo service: the compiled userdata run with the agent against moto
//! (artifact fetched from S3, sha256 checked, unpacked, secret resolved, service started,
//! health probed, SUCCESS signalled), from a fresh root each time. Prints the median of runs.
//! `cargo bench -p gilliam-agent --bench boot [-- RUNS]`

#[path = "../tests/common/mod.rs"]
mod common;

use common::world::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(9);
    let (moto, aws, cfn) = world();
    let art = demo_artifact();
    aws.put("boot-artifacts", "bench.tar.gz", art.clone());
    let (mut healthy, mut stopped) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let port = free_port();
        let b = scratch_root(&format!("bench-{i}"));
        gilliam_tests::compile_into(&app(port), &release(1, "s3://boot-artifacts/bench.tar.gz", &sha256(&art)), STAGE, &b.dir.join("out"));
        let before = cfn.signals().len();
        let t = Instant::now();
        let mut agent = run_userdata(&b, &b.dir.join("out/userdata/web.sh"), &moto, &cfn, &[]);
        wait_for("the success signal", Duration::from_secs(60), || (cfn.signals().len() > before).then_some(()));
        healthy.push(t.elapsed());
        assert_eq!(cfn.signals()[before]["Status"], "SUCCESS", "{}", agent.text());
        let t = Instant::now();
        Command::new("kill").args(["-TERM", &agent.child.id().to_string()]).status().expect("kill");
        agent.wait_exit(Duration::from_secs(30));
        stopped.push(t.elapsed());
    }
    println!(
        "boot to healthy (userdata start to SUCCESS signal), {runs} cold boots: median {:.0} ms (min {:.0}, max {:.0})",
        median(healthy.clone()).as_secs_f64() * 1e3,
        healthy.iter().min().expect("runs").as_secs_f64() * 1e3,
        healthy.iter().max().expect("runs").as_secs_f64() * 1e3
    );
    println!("SIGTERM to stopped with nothing in flight: median {:.0} ms", median(stopped).as_secs_f64() * 1e3);
}
