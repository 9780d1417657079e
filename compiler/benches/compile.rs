//! `cargo bench -p gilliam-compiler [SIZE]`: compiles formations of 10, 100 and 1,000 services
//! and prints median wall times (all templates, userdata and manifest) with as many workers as
//! the machine has cores and with one, interleaved so both see the same machine, and the peak
//! resident memory of a fresh process doing one compile. Target: 1,000 services under 100 ms
//! and under 100 MiB on the project's 2-core machine.

use gilliam_compiler::{compile_with, Compiled, Inputs, Options, Source};
use std::time::{Duration, Instant};

// The system allocator, as gilliam-compile ships with, so that the figures are the binary's.

/// A formation of `n` services: half routed web services, a fifth internal ones, the rest
/// workers, and three auxiliaries.
fn formation(n: usize) -> (String, String) {
    let mut app = String::new();
    for i in 0..n {
        let name = format!("svc-{i:04}");
        app.push_str(&format!("{name}:\n  script: bin/{name}\n"));
        match i % 10 {
            0..=4 => app.push_str(&format!(
                "  ports: [8080]\n  health: /healthz\n  routes: [\"{name}.example.com\", \"example.com/{name}/*\"]\n  scale: {{min: 2, desired: 2, max: 8}}\n"
            )),
            5 | 6 => app.push_str("  ports: [9000]\n  internal: true\n"),
            _ => app.push_str("  scale: 1\n"),
        }
        app.push_str("  env:\n    LOG_LEVEL: info\n");
    }
    app.push_str("db:\n  type: postgres\ncache:\n  type: redis\ncoord:\n  type: etcd\n  size: 3\n");
    let stage = "formation: bench\nregion: us-east-1\nvpc: vpc-0123456789abcdef0\npublic_subnets: [subnet-00000001, subnet-00000002]\nprivate_subnets:\n  - {id: subnet-00000011, zone: us-east-1a}\n  - {id: subnet-00000012, zone: us-east-1b}\noutputs_bucket: bench-bucket\nauxiliary_image: ami-0123456789abcdef0\nquotas: {load_balancers: 300, target_groups: 6000}\n".to_string();
    (app, stage)
}

const RELEASE: &str = r#"{"number": 12, "artifact": {"url": "s3://bench-bucket/a.tgz", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}, "runtime_image": "ami-0123456789abcdef0", "revision": "r", "created": "2026-01-01T00:00:00Z", "config": {"A": "b"}}"#;

/// As gilliam-compile does: as many workers as the machine has cores.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

fn once(app: &str, stage: &str, workers: usize) -> Compiled {
    let inputs = Inputs {
        app: Source { name: "gilliam.yml", text: app },
        release: Source { name: "release.json", text: RELEASE },
        stage: Source { name: "stage.yml", text: stage },
    };
    match compile_with(&inputs, &Options { traffic: None, workers, ..Options::default() }) {
        Ok(c) => c,
        Err(e) => panic!("bench formation does not compile: {e}"),
    }
}

fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Inputs mode: write the formation of N services as gilliam-compile's three inputs, for
    // the whole-process figure (scripts/bench_compile.sh).
    if let Some(i) = args.iter().position(|a| a == "--write-inputs") {
        let (n, dir) = (args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(1000usize), args.get(i + 2).cloned().unwrap_or_else(|| ".".into()));
        let (app, stage) = formation(n);
        let dir = std::path::Path::new(&dir);
        for (name, text) in [("gilliam.yml", app.as_str()), ("release.json", RELEASE), ("stage.yml", stage.as_str())] {
            if let Err(e) = std::fs::write(dir.join(name), text) {
                panic!("cannot write {}: {e}", dir.join(name).display());
            }
        }
        return;
    }
    // Child mode: one compile in a fresh process, then report the peak resident set size.
    if let Some(i) = args.iter().position(|a| a == "--peak-child") {
        let n: usize = args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(10);
        let (app, stage) = formation(n);
        std::hint::black_box(once(&app, &stage, cores()));
        println!("{}", peak_rss_kib().unwrap_or(0));
        return;
    }
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-')).cloned();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for n in [10usize, 100, 1000] {
        if filter.as_ref().is_some_and(|f| !n.to_string().contains(f.as_str())) {
            continue;
        }
        let (app, stage) = formation(n);
        let c = once(&app, &stage, cores());
        let bytes: usize = c.files.values().map(Vec::len).sum();
        let runs = if n >= 1000 { 21 } else { 51 };
        // Serial and parallel runs interleaved, so that both see the same machine.
        let (mut serial, mut parallel): (Vec<Duration>, Vec<Duration>) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            for (workers, times) in [(1, &mut serial), (cores(), &mut parallel)] {
                let t = Instant::now();
                std::hint::black_box(once(&app, &stage, workers));
                times.push(t.elapsed());
            }
        }
        serial.sort();
        parallel.sort();
        let peak = std::process::Command::new(&args[0])
            .args(["--peak-child", &n.to_string()])
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<u64>().ok());
        println!(
            "compile {n:>4} services: median {:>7.2} ms with {} workers (min {:.2}, max {:.2}), {:>7.2} ms with 1; {runs} runs each; {} stacks, {} routing groups, {} files, {:.1} MiB output; peak RSS {}",
            ms(parallel[runs / 2]),
            cores(),
            ms(parallel[0]),
            ms(parallel[runs - 1]),
            ms(serial[runs / 2]),
            c.manifest.stacks.len(),
            c.manifest.formation.routing_groups,
            c.files.len(),
            bytes as f64 / 1048576.0,
            peak.map_or("unknown".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
        );
    }
}
