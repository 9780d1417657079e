//! `cargo bench -p gilliam-materializer --bench moto`: the materializer against moto on
//! 127.0.0.1, with a 50-service formation (30 routed, 20 workers) and 3 live releases.
//! Prints medians of: a no-op converge (calls, mutating calls, time), a flip and a rollback
//! (ELBv2 writes, time), and a full deploy (total time, and the part that is the tool's own,
//! beyond the time spent waiting on the emulator). Targets: a flip and a rollback make one
//! ELBv2 write per affected rule, well under a second here; a no-op converge makes no mutating
//! call, under one second here.

use gilliam_doubles::counting::Counting;
use gilliam_materializer::aws::prelude::*;
use gilliam_materializer::aws::{Aws, PutCondition, StackRequest, TemplateSource};
use gilliam_materializer::bundle::Bundle;
use gilliam_materializer::sdk::{Endpoint, SdkAws};
use gilliam_materializer::{Converger, Options};
use gilliam_materializer::{Formation, Ops};
use gilliam_tests::moto::Moto;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const REGION: &str = "eu-west-1";

fn app() -> String {
    let mut s = String::new();
    for i in 0..50 {
        s.push_str(&format!("svc-{i:02}:\n  script: bin/svc\n"));
        if i < 30 {
            s.push_str(&format!("  ports: [8080]\n  routes: [\"svc-{i:02}.example.com\"]\n  scale: {{min: 1, desired: 1, max: 3}}\n"));
        } else {
            s.push_str("  scale: 1\n");
        }
    }
    s
}

async fn stage<A: Aws>(aws: &A, url: &str) -> String {
    let body = gilliam_tests::network_template(REGION);
    aws.create_stack(&StackRequest { name: "net".into(), template: TemplateSource::Body(body), capabilities: vec![], tags: vec![] }).await.expect("network");
    let o: BTreeMap<String, String> = aws.describe_stack("net").await.expect("describe").expect("net").outputs.into_iter().collect();
    gilliam_tests::finish_network(url, REGION, &o).await;
    format!("formation: bench\nregion: {REGION}\nvpc: {}\npublic_subnets: [{}, {}]\nprivate_subnets: [{}, {}]\noutputs_bucket: bench-out\nkeep_releases: 2\nrouting_groups: 2\n", o["Vpc"], o["A"], o["B"], o["C"], o["D"])
}

fn bundle(stage: &str, n: u32, sha: &str) -> Bundle {
    let release = format!(
        r#"{{"number": {n}, "artifact": {{"url": "s3://bench-art/a.tgz", "sha256": "{sha}"}}, "runtime_image": "ami-0a1b2c3d4e5f60718", "revision": "r{n}", "created": "2026-11-22T10:00:00Z"}}"#
    );
    let app = app();
    let inputs = gilliam_compiler::Inputs {
        app: gilliam_compiler::Source { name: "gilliam.yml", text: &app },
        release: gilliam_compiler::Source { name: "release.json", text: &release },
        stage: gilliam_compiler::Source { name: "stage.yml", text: stage },
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../target/bench-scratch/r{n}"));
    gilliam_tests::compile_into(inputs.app.text, inputs.release.text, inputs.stage.text, &dir);
    Bundle::load(&dir).expect("bundle")
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
    let moto = Moto::start();
    let aws = Counting::new(SdkAws::connect(&Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) }).await);
    let stage = stage(&aws, &moto.url).await;
    aws.inner().create_secure_bucket("bench-art", REGION).await.expect("bucket");
    aws.inner().put_object("bench-art", "a.tgz", b"art".to_vec(), PutCondition::Always).await.expect("artifact");
    let sha = gilliam_materializer::sha256_hex(b"art");
    let quiet = |_: &str| {};
    let opts = Options { poll: Duration::from_millis(50), ..Options::default() };

    // Three releases deployed: the full-deploy figures are the median of the three.
    let (mut totals, mut own) = (Vec::new(), Vec::new());
    let mut last = None;
    for n in 1..=3 {
        let b = bundle(&stage, n, &sha);
        aws.reset();
        let t = Instant::now();
        Converger::new(&aws, &b, opts.clone(), &quiet).run().await.unwrap_or_else(|e| panic!("{e}"));
        let total = t.elapsed();
        totals.push(total);
        own.push(total.saturating_sub(aws.busy().min(total)));
        last = Some(b);
    }
    let b = last.expect("release 3");
    println!(
        "full deploy of 50 services (30 routed, 20 workers): median {} in all, {} of it the tool's own beyond waiting on the emulator (3 deploys)",
        ms(median(totals)),
        ms(median(own))
    );

    let mut times = Vec::new();
    let (mut calls, mut mutating) = (0, 0);
    for _ in 0..7 {
        aws.reset();
        let t = Instant::now();
        let report = Converger::new(&aws, &b, opts.clone(), &quiet).run().await.unwrap_or_else(|e| panic!("{e}"));
        times.push(t.elapsed());
        assert!(report.changes.is_empty(), "{:?}", report.changes);
        calls = aws.calls().values().sum::<usize>();
        mutating = aws.mutations().values().sum::<usize>();
    }
    println!("no-op converge, 3 live releases: median {}, {calls} AWS calls, {mutating} mutating (7 runs)", ms(median(times)));

    let formation = Formation { name: "bench".into(), region: REGION.into(), bucket: "bench-out".into(), prefix: "gilliam/bench/".into() };
    let ops = Ops::new(&aws, formation, &quiet);
    let (mut flips, mut rollbacks) = (Vec::new(), Vec::new());
    let (mut flip_writes, mut flip_calls, mut rb_writes) = (0, 0, 0);
    for _ in 0..7 {
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
        "flip to release 3: median {}, {flip_writes} ELBv2 writes for 30 routes + 30 internal rules, {flip_calls} AWS calls in all (7 runs)",
        ms(median(flips))
    );
    println!("rollback to release 2: median {}, {rb_writes} ELBv2 writes (7 runs)", ms(median(rollbacks)));

    // The same, behind AWS's token buckets (`gilliam_doubles::throttle`, real time): what a
    // real account's rate limits make of a no-op converge, `gilliam status` and a flip.
    let throttled = Counting::new(gilliam_materializer::aws::Layered {
        layer: gilliam_doubles::throttle::Buckets::aws(1.0),
        inner: SdkAws::connect(&Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) }).await,
    });
    let t = Instant::now();
    Converger::new(&throttled, &b, opts.clone(), &quiet).run().await.unwrap_or_else(|e| panic!("{e}"));
    let noop = t.elapsed();
    let noop_calls = throttled.calls().values().sum::<usize>();
    let formation = Formation { name: "bench".into(), region: REGION.into(), bucket: "bench-out".into(), prefix: "gilliam/bench/".into() };
    let ops = Ops::new(&throttled, formation, &quiet);
    throttled.reset();
    let t = Instant::now();
    ops.status().await.unwrap_or_else(|e| panic!("{e}"));
    let status = t.elapsed();
    let status_calls = throttled.calls().values().sum::<usize>();
    throttled.reset();
    let t = Instant::now();
    let c = ops.traffic(&BTreeMap::from([(3, 100)])).await.unwrap_or_else(|e| panic!("{e}"));
    let flip = t.elapsed();
    let layer = &throttled.inner().layer;
    println!(
        "behind AWS's buckets: no-op converge {} ({noop_calls} calls, {:.1} per service); status {} ({status_calls} calls, {:.1} per service); flip {} ({} writes); {} calls throttled and retried in all",
        ms(noop),
        noop_calls as f64 / 50.0,
        ms(status),
        status_calls as f64 / 50.0,
        ms(flip),
        c.writes,
        layer.throttled.load(std::sync::atomic::Ordering::SeqCst)
    );
}
