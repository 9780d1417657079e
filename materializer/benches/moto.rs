//! `cargo bench -p gilliam-materializer --bench moto [SERVICES]`: the materializer against moto
//! on 127.0.0.1, with a formation of SERVICES services (default 50: 60% routed, 40% workers)
//! and 3 live releases.
//! Prints medians of: a no-op converge (calls, mutating calls, time), a flip and a rollback
//! (ELBv2 writes, time), and a full deploy (total time, and the tool's own work: this
//! process's CPU time, moto being another process). Targets: a flip and a rollback make one
//! ELBv2 write per affected rule, well under a second here; a no-op converge makes no mutating
//! call, under one second here.

use gilliam_doubles::counting::Counting;
use gilliam_doubles::throttle::{aws_buckets, Buckets};
use gilliam_materializer::aws::prelude::*;
use gilliam_materializer::aws::{Aws, Layered, PutCondition, StackRequest, TemplateSource};
use gilliam_materializer::bundle::Bundle;
use gilliam_materializer::pacing::Pacing;
use gilliam_materializer::sdk::{Endpoint, SdkAws};
use gilliam_materializer::{Converger, Options};
use gilliam_materializer::{Formation, Ops};
use gilliam_tests::moto::Moto;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const REGION: &str = "eu-west-1";

fn app(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!("svc-{i:04}:\n  script: bin/svc\n"));
        if i % 5 < 3 {
            s.push_str(&format!("  ports: [8080]\n  routes: [\"svc-{i:04}.example.com\"]\n  scale: {{min: 1, desired: 1, max: 3}}\n"));
        } else {
            s.push_str("  scale: 1\n");
        }
    }
    s
}

/// The stage file; `groups` pins the routing groups (`None`: the compiler's choice).
async fn stage<A: Aws>(aws: &A, url: &str, groups: Option<u32>) -> String {
    let groups = groups.map_or(String::new(), |g| format!("routing_groups: {g}\n"));
    let body = gilliam_tests::network_template(REGION);
    aws.create_stack(&StackRequest { name: "net".into(), template: TemplateSource::Body(body), capabilities: vec![], tags: vec![] }).await.expect("network");
    let o: BTreeMap<String, String> = aws.describe_stack("net").await.expect("describe").expect("net").outputs.into_iter().collect();
    gilliam_tests::finish_network(url, REGION, &o).await;
    format!("formation: bench\nregion: {REGION}\nvpc: {}\npublic_subnets: [{}, {}]\nprivate_subnets: [{}, {}]\noutputs_bucket: bench-out\nkeep_releases: 2\n{groups}quotas: {{load_balancers: 300, target_groups: 12000}}\n", o["Vpc"], o["A"], o["B"], o["C"], o["D"])
}

fn bundle(stage: &str, services: usize, n: u32, sha: &str) -> Bundle {
    let release = format!(
        r#"{{"number": {n}, "artifact": {{"url": "s3://bench-art/a.tgz", "sha256": "{sha}"}}, "runtime_image": "ami-0a1b2c3d4e5f60718", "revision": "r{n}", "created": "2026-11-22T10:00:00Z"}}"#
    );
    let app = app(services);
    let inputs = gilliam_compiler::Inputs {
        app: gilliam_compiler::Source { name: "gilliam.yml", text: &app },
        release: gilliam_compiler::Source { name: "release.json", text: &release },
        stage: gilliam_compiler::Source { name: "stage.yml", text: stage },
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../target/bench-scratch/r{n}"));
    gilliam_tests::compile_into(inputs.app.text, inputs.release.text, inputs.stage.text, &dir);
    Bundle::load(&dir).expect("bundle")
}

/// CPU time (user and system, every thread) of this process: the materializer's own work.
/// moto runs in a process of its own, so a deploy's waiting on AWS is not in it. The calls run
/// concurrently, so their summed time is no measure of the tool's overhead: at 200 services
/// it exceeded the wall time. From /proc/self/stat (Linux), in clock ticks of 10 ms.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // After the command name in parentheses: state is field 3; utime and stime are 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok())).sum();
    Duration::from_millis(ticks * 10)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let services: usize = std::env::args().skip(1).find(|a| !a.starts_with('-')).and_then(|a| a.parse().ok()).unwrap_or(50);
    let moto = Moto::start();
    let aws = Counting::new(SdkAws::connect(&Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) }).await);
    let stage = stage(&aws, &moto.url, (services <= 50).then_some(2)).await;
    // Fewer runs of the figures without buckets for a large formation: each takes minutes on moto.
    let runs = if services > 100 { 3 } else { 7 };
    aws.inner().create_secure_bucket("bench-art", REGION).await.expect("bucket");
    aws.inner().put_object("bench-art", "a.tgz", b"art".to_vec(), PutCondition::Always).await.expect("artifact");
    let sha = gilliam_materializer::sha256_hex(b"art");
    let quiet = |_: &str| {};
    // moto's account holds ELBv2's default quotas (20 load balancers, 3,000 target groups),
    // which a formation of more than about 150 services with three live releases exceeds; the
    // preflight says so and refuses. A real account would raise them (the stage file's `quotas`).
    let opts = Options { poll: Duration::from_millis(50), preflight: services <= 150, ..Options::default() };

    // Three releases deployed: the full-deploy figures are the median of the three.
    let (mut totals, mut own) = (Vec::new(), Vec::new());
    let mut last = None;
    for n in 1..=3 {
        let b = bundle(&stage, services, n, &sha);
        aws.reset();
        let (t, cpu) = (Instant::now(), cpu_time());
        Converger::new(&aws, &b, opts.clone(), &quiet).run().await.unwrap_or_else(|e| panic!("{e}"));
        totals.push(t.elapsed());
        own.push(cpu_time().saturating_sub(cpu));
        last = Some(b);
    }
    let b = last.expect("release 3");
    let routed = b.manifest.services.iter().filter(|s| s.port.is_some()).count();
    println!(
        "full deploy of {services} services ({routed} routed, {} workers, {} routing groups): median {} in all; the tool's own work {} of CPU (3 deploys)",
        services - routed,
        b.manifest.formation.routing_groups,
        ms(median(totals)),
        ms(median(own))
    );

    let mut times = Vec::new();
    let (mut calls, mut mutating) = (0, 0);
    for _ in 0..runs {
        aws.reset();
        let t = Instant::now();
        let report = Converger::new(&aws, &b, opts.clone(), &quiet).run().await.unwrap_or_else(|e| panic!("{e}"));
        times.push(t.elapsed());
        assert!(report.changes.is_empty(), "{:?}", report.changes);
        calls = aws.calls().values().sum::<usize>();
        mutating = aws.mutations().values().sum::<usize>();
    }
    println!("no-op converge, 3 live releases: median {}, {calls} AWS calls, {mutating} mutating ({runs} runs)", ms(median(times)));

    let formation = Formation { name: "bench".into(), region: REGION.into(), bucket: "bench-out".into(), prefix: "gilliam/bench/".into() };
    let ops = Ops::new(&aws, formation, &quiet);
    let (mut flips, mut rollbacks) = (Vec::new(), Vec::new());
    let (mut flip_writes, mut flip_calls, mut rb_writes) = (0, 0, 0);
    for _ in 0..runs {
        aws.reset();
        let t = Instant::now();
        let c = ops.traffic(&BTreeMap::from([(3, 100)])).await.unwrap_or_else(|e| panic!("{e}"));
        flips.push(t.elapsed());
        flip_writes = c.writes;
        flip_calls = aws.calls().values().sum::<usize>();
        aws.reset();
        let t = Instant::now();
        let c = ops.rollback(&Default::default()).await.unwrap_or_else(|e| panic!("{e}")).change;
        rollbacks.push(t.elapsed());
        rb_writes = c.writes;
    }
    println!(
        "flip to release 3: median {}, {flip_writes} ELBv2 writes for {routed} routes + {routed} internal rules, {flip_calls} AWS calls in all ({runs} runs)",
        ms(median(flips))
    );
    println!("rollback to release 2: median {}, {rb_writes} ELBv2 writes ({runs} runs)", ms(median(rollbacks)));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        aws.reset();
        let t = Instant::now();
        ops.status().await.unwrap_or_else(|e| panic!("{e}"));
        statuses.push(t.elapsed());
    }
    let mut slowest: Vec<(&str, Duration)> = aws.busy_by_operation().into_iter().collect();
    slowest.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
    let slowest: Vec<String> = slowest.iter().take(3).map(|(op, d)| format!("{op} {}", ms(*d))).collect();
    println!(
        "status: median {}, {} AWS calls, the emulator's slowest answers {} (3 runs)",
        ms(median(statuses)),
        aws.calls().values().sum::<usize>(),
        slowest.join(", ")
    );

    // The same, behind AWS's token buckets (`gilliam_doubles::throttle`, real time), with the
    // client as gilliam makes it (paced at the seam): what a real account's rate limits make of
    // a no-op converge, `gilliam status`, a flip and a rollback. Each starts with full buckets
    // (a pause of a bucket's refill time before it), as a run would after a quiet minute.
    let throttled = Counting::new(Layered {
        layer: Pacing::default(),
        inner: Layered { layer: Buckets::aws(1.0), inner: SdkAws::connect(&Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) }).await },
    });
    let buckets = || &throttled.inner().inner.layer;
    let refill = aws_buckets().values().map(|b| b.capacity / b.refill_per_second).fold(0.0, f64::max);
    let quiet_minute = || tokio::time::sleep(Duration::from_secs_f64(refill));
    let per = |calls: usize| calls as f64 / services as f64;
    quiet_minute().await;
    let t = Instant::now();
    let report = Converger::new(&throttled, &b, opts.clone(), &quiet).run().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(report.changes.is_empty(), "{:?}", report.changes);
    let noop = t.elapsed();
    let noop_calls = throttled.calls().values().sum::<usize>();
    println!(
        "behind AWS's buckets: no-op converge {} ({noop_calls} calls, {:.2} per service; by operation {:?})",
        ms(noop),
        per(noop_calls),
        throttled.calls()
    );
    let formation = Formation { name: "bench".into(), region: REGION.into(), bucket: "bench-out".into(), prefix: "gilliam/bench/".into() };
    let ops = Ops::new(&throttled, formation, &quiet);
    quiet_minute().await;
    throttled.reset();
    let t = Instant::now();
    ops.status().await.unwrap_or_else(|e| panic!("{e}"));
    let status_calls = throttled.calls().values().sum::<usize>();
    println!(
        "behind AWS's buckets: status {} ({status_calls} calls, {:.2} per service; by operation {:?})",
        ms(t.elapsed()),
        per(status_calls),
        throttled.calls()
    );
    let write = aws_buckets()[&("elbv2", "write")];
    for (what, to) in [("flip to release 3", BTreeMap::from([(3, 100)])), ("rollback to release 2", BTreeMap::new())] {
        quiet_minute().await;
        throttled.reset();
        let (throttled_before, passed_before) = (buckets().throttled.load(Ordering::SeqCst), passed(buckets()));
        let t = Instant::now();
        let result = if to.is_empty() { ops.rollback(&Default::default()).await.map(|r| r.change) } else { ops.traffic(&to).await };
        let took = t.elapsed().as_secs_f64();
        let writes = passed(buckets()) - passed_before;
        let c = result.as_ref().map_or(0, |c| c.writes);
        // The bucket's bound: its burst at once, the rest at its refill rate.
        let bound = (writes as f64 - write.capacity).max(0.0) / write.refill_per_second;
        println!(
            "behind AWS's buckets: {what}: {took:.1} s, bound {bound:.1} s, ratio {:.3}; {c} rules changed, {:.2} writes per rule, {} throttled calls retried, {} failures",
            took / bound.max(f64::EPSILON),
            writes as f64 / c.max(1) as f64,
            buckets().throttled.load(Ordering::SeqCst) - throttled_before,
            usize::from(result.is_err()),
        );
    }
}

/// ModifyRule calls that went through the bucket so far.
fn passed(b: &Buckets) -> u64 {
    b.passed.lock().expect("passed").get("set_rule_weights").copied().unwrap_or(0)
}
