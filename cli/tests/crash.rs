//! Crash safety: `gilliam deploy` killed with SIGKILL right before its k-th AWS call, for k
//! spread over the whole deploy, then run again. At the moment of the kill, traffic points only
//! at target groups that exist and are healthy; after the second run the formation is exactly
//! where an uninterrupted deploy leaves it, and the release was created and recorded once.

mod common;

use common::*;
use gilliam_materializer::aws::prelude::*;
use gilliam_materializer::sdk::{Endpoint, SdkAws};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;

/// Rules of the routing stack: every target group with weight > 0 exists (is exported by a
/// live release stack) and has only healthy targets. Returns weight per release.
async fn traffic_is_safe(aws: &SdkAws, when: &str) -> BTreeMap<u32, u32> {
    let exports: BTreeMap<String, String> = aws.list_exports().await.expect("exports").into_iter().map(|(n, v)| (v, n)).collect();
    let rules: Vec<String> = aws
        .stack_resources("shop-routing-1")
        .await
        .expect("routing")
        .into_iter()
        .filter(|r| r.2 == "AWS::ElasticLoadBalancingV2::ListenerRule")
        .map(|r| r.1)
        .collect();
    let mut weights = BTreeMap::new();
    for r in aws.describe_rules(&rules).await.expect("rules") {
        for (tg, w) in r.forward {
            let Some(name) = exports.get(&tg) else {
                assert_eq!(w, 0, "{when}: weight {w} on target group {tg} that no live release exports");
                continue;
            };
            let n: u32 = name.trim_start_matches("shop-r").split('-').next().and_then(|n| n.parse().ok()).expect("release number");
            if w > 0 {
                let health = aws.target_health(&tg).await.expect("health");
                assert!(
                    !health.is_empty() && health.iter().all(|h| h == "healthy"),
                    "{when}: weight {w} on release {n}'s {name}, whose targets are {health:?}"
                );
            }
            *weights.entry(n).or_insert(0) += w;
        }
    }
    weights
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_killed_at_any_call_resumes_to_the_same_end_state() {
    let Session { moto, dir, stage, app } = session("crash").await;
    let deploy = |n: u32, env: &[(&str, &str)]| {
        let rel = dir.join(format!("release-{n}.json")).display().to_string();
        let out = dir.join(format!("out-{n}")).display().to_string();
        run_env(
            env!("CARGO_BIN_EXE_gilliam"),
            &moto.url,
            &["--stage", &stage, "-q", "deploy", "--app", &app, "--release", &rel, "--out", &out, "--poll", "0.1"],
            env,
        )
    };
    let aws = SdkAws::connect(&Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) }).await;
    assert_eq!(deploy(1, &[]).status.code(), Some(0));
    // How many calls an uninterrupted deploy makes.
    let o = deploy(2, &[("GILLIAM_FAULTS", "rate=0")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let total: usize = text(&o)
        .lines()
        .find_map(|l| l.strip_prefix("gilliam: GILLIAM_FAULTS: ").and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok()))
        .expect("call count");
    assert!(total > 20, "{total}");
    let step = (total / 12).max(1);
    let mut killed_at = Vec::new();
    let mut n = 2;
    for k in (1..=total).step_by(step) {
        n += 1;
        let spec = format!("kill_before_call={k}");
        let o = deploy(n, &[("GILLIAM_FAULTS", &spec)]);
        assert_eq!(o.status.signal(), Some(9), "release {n}: killed before call {k} of {total}: {}", text(&o));
        killed_at.push(k);
        traffic_is_safe(&aws, &format!("release {n} killed before call {k}")).await;

        let o = deploy(n, &[]);
        assert_eq!(o.status.code(), Some(0), "release {n}, resumed after a kill before call {k}: {}", text(&o));
        let weights = traffic_is_safe(&aws, &format!("release {n} resumed")).await;
        assert_eq!(weights.iter().filter(|(_, w)| **w > 0).map(|(r, _)| *r).collect::<Vec<_>>(), vec![n], "release {n} serves all: {weights:?}");
        let status = aws.describe_stack(&format!("shop-r{n}")).await.expect("describe").map(|s| s.status);
        assert_eq!(status.as_deref(), Some("CREATE_COMPLETE"), "release {n}");
        let state = gilliam_materializer::state::read(&aws, "gilliam-cli-outputs", "gilliam/shop/", "shop").await.expect("state").0;
        let deploys = state.history.iter().filter(|e| e.action.starts_with(&format!("deploy release {n} "))).count();
        assert_eq!(deploys, 1, "release {n} recorded once: {:?}", state.history.iter().map(|e| &e.action).collect::<Vec<_>>());
        let live: BTreeSet<u32> = state.releases.iter().filter(|(_, r)| r.status == "live").map(|(k, _)| *k).collect();
        assert!(live.contains(&n) && live.len() <= 4, "release {n}: live {live:?}");
        let published = aws.get_object("gilliam-cli-outputs", "gilliam/shop/manifest.json").await.expect("get").expect("published");
        let m: serde_json::Value = serde_json::from_slice(&published.body).expect("manifest");
        assert_eq!(m["release"]["number"], n, "release {n} published as the latest");
        // And nothing is left to do.
        let o = deploy(n, &[]);
        assert!(text(&o).contains("nothing to do"), "release {n}: {}", text(&o));
    }
    eprintln!("deploy of {total} AWS calls killed before calls {killed_at:?}; every resume converged");
}
