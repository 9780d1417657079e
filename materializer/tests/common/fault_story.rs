//! The fault story: deploy three releases, split, flip, roll back, retire, with faults
//! injected at the seam, then the end state checked through a fault-free client. Shared by
//! the test (`tests/faults.rs`) and the benchmark that runs it many times (`benches/faults.rs`).

use super::*;
use gilliam_materializer::aws::PutCondition;
use gilliam_materializer::converge::Converger;
use gilliam_materializer::faults::{FaultSpec, Faulty};
use gilliam_materializer::ops::Ops;
use gilliam_materializer::sdk::{Endpoint, SdkAws};
use gilliam_tests::moto::Moto;
use std::collections::BTreeMap;
use std::time::Duration;

/// What one run met.
#[derive(Debug, Default)]
pub struct Counts {
    pub calls: usize,
    pub faults: usize,
}

/// Runs the story with faults at `rate` (seeded) and checks the end state through a fault-free
/// client. Returns the calls made and faults injected.
pub async fn story(seed: u64, rate: f64) -> Counts {
    let moto = Moto::start();
    let endpoint = Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) };
    // `real` sets the world up and reads the end state; the story itself goes through faults.
    let real = SdkAws::connect(&endpoint).await;
    let stage = network(&real, &moto.url).await;
    let artifact = b"a tarball".to_vec();
    let sha = gilliam_materializer::sha256_hex(&artifact);
    real.create_secure_bucket(ARTIFACTS, REGION).await.expect("artifact bucket");
    real.put_object(ARTIFACTS, "artifacts/a.tgz", artifact, PutCondition::Always).await.expect("upload");
    let aws = Faulty::new(
        SdkAws::connect(&endpoint).await,
        FaultSpec { rate, seed, slow: Duration::from_millis(30), kill_before_call: None, retry_base: Some(Duration::from_millis(5)) },
    );
    let say = |_: &str| {};
    let tag = format!("faults/{seed}");
    for n in 1..=3 {
        let b = compile_in(&tag, &stage, n, "artifacts/a.tgz", &sha);
        Converger::new(&aws, &b, opts(), &say).run().await.unwrap_or_else(|e| panic!("seed {seed}: deploy {n}: {e}"));
    }
    let ops = Ops::new(&aws, formation(), &say);
    ops.traffic(&BTreeMap::from([(2, 90), (3, 10)])).await.unwrap_or_else(|e| panic!("seed {seed}: split: {e}"));
    ops.traffic(&BTreeMap::from([(3, 100)])).await.unwrap_or_else(|e| panic!("seed {seed}: flip: {e}"));
    let to = ops.rollback(&Default::default()).await.unwrap_or_else(|e| panic!("seed {seed}: rollback: {e}")).release;
    assert_eq!(to, 2, "seed {seed}");
    ops.retire(1).await.unwrap_or_else(|e| panic!("seed {seed}: retire: {e}"));

    // The end state, read without faults.
    assert_eq!(weights(&real).await, BTreeMap::from([(2, 100), (3, 0)]), "seed {seed}");
    assert_eq!(real.describe_stack("shop-r1").await.expect("describe"), None, "seed {seed}: release 1 retired");
    for s in ["shop", "shop-r2", "shop-r3", "shop-routing-1"] {
        let status = real.describe_stack(s).await.expect("describe").map(|s| s.status).unwrap_or_default();
        assert!(status.ends_with("_COMPLETE") && !status.contains("ROLLBACK"), "seed {seed}: {s} is {status:?}");
    }
    let (state, _) = gilliam_materializer::state::read(&real, BUCKET, "gilliam/shop/", "shop").await.expect("state");
    let status: Vec<(u32, &str)> = state.releases.iter().map(|(n, r)| (*n, r.status.as_str())).collect();
    assert_eq!(status, vec![(1, "retired"), (2, "live"), (3, "live")], "seed {seed}");
    assert_eq!(state.traffic, BTreeMap::from([(2, 100), (3, 0)]), "seed {seed}");
    let history: Vec<&str> = state.history.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        history,
        [
            "deploy release 1 (traffic 1=100)",
            "deploy release 2 (traffic 1=0 2=100)",
            "deploy release 3 (traffic 1=0 2=0 3=100)",
            "traffic 1=0 2=90 3=10",
            "traffic 1=0 2=0 3=100",
            "rollback from release 3: traffic 1=0 2=100 3=0",
            "retire release 1"
        ],
        "seed {seed}: every step once, in order"
    );
    for n in 1..=3 {
        let m = real.get_object(BUCKET, &format!("gilliam/shop/releases/{n}/manifest.json")).await.expect("get");
        assert!(m.is_some(), "seed {seed}: release {n}'s manifest is published");
    }
    Counts { calls: aws.calls(), faults: aws.injected().values().sum() }
}
