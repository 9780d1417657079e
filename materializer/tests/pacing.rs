//! A flip through ELBv2's `ModifyRule` token bucket (`gilliam_doubles::throttle`, on tokio's
//! paused clock): it never fails on throttling, writes each rule once, and ends close to the
//! bucket's bound, with the whole bucket and with half of it taken by another tool; with no
//! throttling, the pacer goes at its top speed (200 writes a second). The client is paced as
//! gilliam makes it (`pacing::Pacing` around it). (`cargo bench --bench throttle` prints the figures.)

use gilliam_doubles::fake::Fake;
use gilliam_doubles::throttle::{aws_buckets, Buckets};
use gilliam_materializer::aws::Layered;
use gilliam_materializer::pacing::Pacing;
use gilliam_materializer::traffic::{RuleWrite, Traffic};
use std::sync::atomic::Ordering;
use std::time::Duration;

fn formation() -> gilliam_materializer::Formation {
    gilliam_materializer::Formation { name: "pace".into(), region: "us-east-1".into(), bucket: "b".into(), prefix: "gilliam/pace/".into() }
}

fn writes(rules: usize, to: u32) -> Vec<RuleWrite> {
    (0..rules).map(|i| (format!("arn:rule/{i}"), vec![("tg-1".to_string(), 100 - to), ("tg-2".to_string(), to)], None)).collect()
}

#[tokio::test(start_paused = true)]
async fn a_flip_paced_to_the_bucket_never_fails_and_ends_near_its_bound() {
    let rules = 300;
    let full = aws_buckets()[&("elbv2", "write")];
    for share in [1.0, 0.5] {
        // The client as gilliam makes it (paced at the seam), in front of AWS's buckets.
        let aws = Layered { layer: Pacing::default(), inner: Layered { layer: Buckets::aws(share), inner: Fake::default() } };
        let say = |_: &str| {};
        let t = Traffic::new(&aws, formation(), &say);
        let started = tokio::time::Instant::now();
        t.write(&writes(rules, 100)).await.expect("a flip never fails on throttling");
        let took = started.elapsed().as_secs_f64();
        let (capacity, refill) = ((full.capacity * share).max(1.0), full.refill_per_second * share);
        let bound = (rules as f64 - capacity) / refill;
        assert!(took >= bound * 0.99, "no faster than the bucket allows: {took:.1} s, bound {bound:.1} s");
        assert!(took <= bound * 1.2, "within 1.2x of the bound: {took:.1} s, bound {bound:.1} s (share {share})");
        assert!(aws.inner.layer.throttled.load(Ordering::SeqCst) > 0, "the bucket did throttle");
        assert_eq!(aws.inner.layer.passed.lock().expect("passed").get("set_rule_weights").copied(), Some(rules as u64), "one write per rule");
        let written = aws.inner.inner.with(|w| w.rules.values().filter(|f| f.back().is_some_and(|f| f[1].1 == 100)).count());
        assert_eq!(written, rules, "every rule holds its new weights");
    }
}

#[tokio::test(start_paused = true)]
async fn without_throttling_the_pacer_goes_at_its_top_speed() {
    let aws = Layered { layer: Pacing::default(), inner: Fake::default() };
    let say = |_: &str| {};
    let t = Traffic::new(&aws, formation(), &say);
    let started = tokio::time::Instant::now();
    t.write(&writes(300, 100)).await.expect("flip");
    assert!(started.elapsed() <= Duration::from_secs(2), "300 rules at the pacer's top speed: {:?}", started.elapsed());
}

/// Reads that grow with the formation (stack reads, here 400 of them, 16 at a time as
/// `gilliam status` and a converge make them) through CloudFormation's read bucket: none fails,
/// and the run ends close to the bucket's bound, where retries backing off exponentially up to
/// 20 s (gilliam's before the pacing layer) would wait out most of it.
#[tokio::test(start_paused = true)]
async fn reads_paced_at_the_seam_never_fail_and_end_near_the_bucket_bound() {
    use futures_util::stream::{self, StreamExt};
    use gilliam_materializer::aws::CloudFormation;
    let reads = 400;
    let full = aws_buckets()[&("cloudformation", "read")];
    for share in [1.0, 0.5] {
        let aws = Layered { layer: Pacing::default(), inner: Layered { layer: Buckets::aws(share), inner: Fake::default() } };
        let started = tokio::time::Instant::now();
        let results: Vec<_> = stream::iter(0..reads)
            .map(|i| {
                let aws = &aws;
                let name = format!("stack-{i}");
                async move { gilliam_materializer::retry::retry("describe stack", || aws.describe_stack(&name)).await }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let took = started.elapsed().as_secs_f64();
        assert!(results.iter().all(Result::is_ok), "no read fails on throttling (share {share})");
        let (capacity, refill) = ((full.capacity * share).max(1.0), full.refill_per_second * share);
        let bound = (reads as f64 - capacity) / refill;
        let throttled = aws.inner.layer.throttled.load(Ordering::SeqCst);
        assert!(throttled > 0, "the bucket did throttle");
        // Paced, a throttled read is news of an empty bucket, not a habit: 153 and 186 here,
        // where unpaced retries every few tens of milliseconds would make thousands.
        assert!(throttled < reads / 2, "{throttled} reads throttled of {reads} (share {share})");
        assert!(took >= bound * 0.99 && took <= bound * 1.2, "{took:.1} s against a bound of {bound:.1} s (share {share})");
        assert_eq!(aws.inner.layer.passed.lock().expect("passed").get("describe_stack").copied(), Some(reads), "each read made once");
    }
}
