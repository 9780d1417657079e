//! `cargo bench -p gilliam-materializer --bench throttle [RULES]`: a flip and a rollback of a
//! formation's weighted rules (default 1,000: a formation of 1,000 HTTP services; their test-header twins follow the newest release, not the weights, and are not written by a flip)
//! through ELBv2's `ModifyRule` token bucket (`gilliam_doubles::throttle`), with the whole
//! bucket and with half of it (another tool on the account takes the rest). On tokio's paused
//! clock, so the figures are the buckets' and the pacing's, not this machine's: time taken
//! against the bucket's bound (the rules past its capacity over its refill rate), writes per
//! rule, throttled calls retried, failures.

use gilliam_doubles::fake::Fake;
use gilliam_doubles::throttle::{aws_buckets, Buckets};
use gilliam_materializer::aws::Layered;
use gilliam_materializer::pacing::Pacing;
use gilliam_materializer::traffic::{RuleWrite, Traffic};
use std::sync::atomic::Ordering;

fn formation() -> gilliam_materializer::Formation {
    gilliam_materializer::Formation { name: "bench".into(), region: "us-east-1".into(), bucket: "b".into(), prefix: "gilliam/bench/".into() }
}

fn writes(rules: usize, to: u32) -> Vec<RuleWrite> {
    (0..rules).map(|i| (format!("arn:rule/{i}"), vec![("tg-1".to_string(), 100 - to), ("tg-2".to_string(), to)], None)).collect()
}

fn main() {
    let rules: usize = std::env::args().skip(1).find(|a| !a.starts_with('-')).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let bucket = aws_buckets()[&("elbv2", "write")];
    for share in [1.0, 0.5] {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("runtime");
        // The client as gilliam makes it (paced at the seam), in front of AWS's buckets.
        let aws = Layered { layer: Pacing::default(), inner: Layered { layer: Buckets::aws(share), inner: Fake::default() } };
        let say = |_: &str| {};
        let t = Traffic::new(&aws, formation(), &say);
        let (capacity, refill) = ((bucket.capacity * share).max(1.0), bucket.refill_per_second * share);
        for (what, to, full) in [("flip", 100, true), ("rollback", 0, false)] {
            let throttled_before = aws.inner.layer.throttled.load(Ordering::SeqCst);
            let passed_before = aws.inner.layer.passed.lock().expect("passed").get("set_rule_weights").copied().unwrap_or(0);
            let (result, took) = rt.block_on(async {
                let started = tokio::time::Instant::now();
                (t.write(&writes(rules, to)).await, started.elapsed())
            });
            // The flip starts with a full bucket; the rollback right after it, with an empty one.
            let bound = if full { (rules as f64 - capacity).max(0.0) / refill } else { rules as f64 / refill };
            let passed = aws.inner.layer.passed.lock().expect("passed").get("set_rule_weights").copied().unwrap_or(0) - passed_before;
            println!(
                "{what:<8} {rules} rules, {:>3.0}% of the bucket ({capacity:.0} tokens, {refill:.1}/s): {:>7.1} s, bound {:>7.1} s, ratio {:.3}; {:.2} writes per rule, {} throttled calls retried, {} failures",
                share * 100.0,
                took.as_secs_f64(),
                bound,
                took.as_secs_f64() / bound.max(f64::EPSILON),
                passed as f64 / rules as f64,
                aws.inner.layer.throttled.load(Ordering::SeqCst) - throttled_before,
                usize::from(result.is_err()),
            );
        }
    }
}
