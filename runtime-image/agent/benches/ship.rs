//! The agent's cost of shipping logs: a service writing 1,000 lines per second for a while,
//! under the agent, against moto's CloudWatch Logs, with shipping on (the log group exists)
//! and off (the runtime config without `logs`). Prints the agent's CPU (user + system, its own
//! process only) per second of run and its peak resident memory, each the median of runs, and
//! how many lines reached CloudWatch Logs.
//! `cargo bench -p gilliam-agent --bench ship [-- SECONDS RUNS]`

#[path = "../tests/common/mod.rs"]
mod common;

use common::world::*;
use common::{tarball, Kind};
use std::process::Command;
use std::time::{Duration, Instant};

const CHATTY: &str = "#!/usr/bin/env python3\nimport sys, time\nn = 0\nwhile True:\n    for _ in range(100):\n        n += 1\n        print('request %d served in 3 ms from 10.0.0.7 GET /api/v1/orders?page=2 200' % n)\n    sys.stdout.flush()\n    time.sleep(0.1)\n";

fn ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    // utime and stime: fields 14 and 15 of stat, 12 and 13 after the command.
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (seconds, runs) = (args.first().copied().unwrap_or(10), args.get(1).copied().unwrap_or(3) as usize);
    let (moto, aws, cfn) = world();
    let art = tarball(&[("bin", Kind::Dir), ("bin/chatty", Kind::File(CHATTY.as_bytes(), 0o755))]);
    aws.put("boot-artifacts", "chatty.tar.gz", art.clone());
    aws.rt.block_on(aws.logs.create_log_group().log_group_name("/gilliam/boot").send()).expect("log group");
    let hz = 100.0; // USER_HZ on Linux
    for shipping in [false, true] {
        let (mut cpu, mut mem, mut shipped) = (Vec::new(), Vec::new(), 0usize);
        for i in 0..runs {
            let b = scratch_root(&format!("ship-{shipping}-{i}"));
            let rel = release(1, "s3://boot-artifacts/chatty.tar.gz", &sha256(&art));
            gilliam_tests::compile_into("chatty:\n  script: bin/chatty\n", &rel, STAGE, &b.dir.join("out"));
            let script = b.dir.join("out/userdata/chatty.sh");
            if !shipping {
                // The same config without `logs`: the agent closes its queue and ships nothing.
                let text = std::fs::read_to_string(&script).expect("userdata");
                let config = gilliam_compiler::runtime::from_userdata(&text).expect("config").to_string();
                let mut v: serde_json::Value = serde_json::from_str(&config).expect("JSON");
                v.as_object_mut().expect("object").remove("logs").expect("a logs key");
                let without = serde_json::to_string_pretty(&v).expect("JSON");
                std::fs::write(&script, text.replace(&config, &without)).expect("userdata");
            }
            let before = aws.log_events("/gilliam/boot").len();
            let mut agent = run_userdata(&b, &script, &moto, &cfn, &[("GILLIAM_WORKER_GRACE_SECONDS", "1")]);
            let pid = agent.child.id();
            std::thread::sleep(Duration::from_secs(2));
            let (t0, c0) = (Instant::now(), ticks(pid));
            std::thread::sleep(Duration::from_secs(seconds));
            let used = (ticks(pid) - c0) as f64 / hz / t0.elapsed().as_secs_f64();
            cpu.push(used * 100.0);
            mem.push(peak_kib(pid) as f64 / 1024.0);
            Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill");
            agent.wait_exit(Duration::from_secs(30));
            shipped = aws.log_events("/gilliam/boot").len() - before;
        }
        println!(
            "shipping {}: agent CPU {:.1}% of one core, peak RSS {:.1} MiB (medians of {runs} runs of {seconds} s at 1,000 lines/s); events in CloudWatch Logs from the last run: {shipped}",
            if shipping { "on " } else { "off" },
            median(cpu),
            median(mem)
        );
    }
}
