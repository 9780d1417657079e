//! Config releases against moto on 127.0.0.1: `gilliam env set` / `unset` make a new release
//! with the same artifact and the changed config and deploy it through the normal path;
//! `--secret` values live in Secrets Manager and never appear in clear in any published object,
//! in the local files, or in `gilliam env`'s output.

mod common;

use common::*;
use std::path::Path;

const SECRET: &str = "s3cr3t-V4lue-%&=123";

fn published(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_releases_keep_the_artifact_change_the_config_and_keep_secrets_secret() {
    let Session { moto, dir, stage, app } = session("env").await;
    let g = |args: &[&str]| gilliam(&moto, &stage, Some(&dir), args);
    let rel1 = dir.join("release-1.json").display().to_string();
    let o = g(&["-q", "deploy", "--app", &app, "--release", &rel1, "--out", "out-1", "--poll", "0.1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let o = g(&["-q", "env", "set", "MODE=fast", "LEVEL=3", "--poll", "0.1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("release 2: release 1's artifact with config MODE LEVEL")
            || text(&o).contains("release 2: release 1's artifact with config LEVEL MODE"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("deployed release 2 of shop; traffic 1=0 2=100"), "{}", text(&o));
    let o = g(&["-q", "env", "set", "--secret", &format!("API_KEY={SECRET}"), "--poll", "0.1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = g(&["-q", "env", "unset", "MODE", "--poll", "0.1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("deployed release 4 of shop"), "{}", text(&o));
    let o = g(&["env", "unset", "NOPE"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("NOPE is not set in release 4"), "{}", text(&o));

    // What each release holds, as published.
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(gilliam_materializer::sdk::http_client())
        .endpoint_url(&moto.url)
        .region(aws_config::Region::new(REGION))
        .load()
        .await;
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&conf).force_path_style(true).build());
    let get = |key: String| {
        let s3 = s3.clone();
        async move { s3.get_object().bucket("gilliam-cli-outputs").key(key).send().await.expect("get").body.collect().await.expect("body").into_bytes().to_vec() }
    };
    let r = |n: u32| get(format!("gilliam/shop/releases/{n}/inputs/release.json"));
    let (r1, r2, r3, r4) = (published(&r(1).await), published(&r(2).await), published(&r(3).await), published(&r(4).await));
    for (n, rel) in [(2, &r2), (3, &r3), (4, &r4)] {
        assert_eq!(rel["artifact"], r1["artifact"], "release {n} keeps the artifact");
        assert_eq!(rel["runtime_image"], r1["runtime_image"]);
    }
    assert_eq!(r2["config"], serde_json::json!({"MODE": "fast", "LEVEL": "3"}));
    assert_eq!(r3["config"]["API_KEY"], serde_json::json!({"secret": "gilliam/shop/config/r3"}));
    assert_eq!(r3["config"]["MODE"], "fast", "earlier config carries over");
    assert_eq!(r4["config"], serde_json::json!({"LEVEL": "3", "API_KEY": {"secret": "gilliam/shop/config/r3"}}));

    // The secret holds the value, for the agent (field named after the variable).
    let sm = aws_sdk_secretsmanager::Client::new(&conf);
    let v = sm.get_secret_value().secret_id("gilliam/shop/config/r3").send().await.expect("secret");
    let fields: serde_json::Value = serde_json::from_str(v.secret_string().expect("string")).expect("JSON");
    assert_eq!(fields["API_KEY"], SECRET);
    // And nowhere else: no published object, no local file, no output.
    let listed = s3.list_objects_v2().bucket("gilliam-cli-outputs").send().await.expect("list");
    let keys: Vec<String> = listed.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect();
    assert!(keys.len() > 20, "{keys:?}");
    for key in keys {
        let body = get(key.clone()).await;
        assert!(!String::from_utf8_lossy(&body).contains(SECRET), "the secret is in clear in s3://gilliam-cli-outputs/{key}");
    }
    fn walk(p: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push(e.path());
            }
        }
    }
    let mut files = Vec::new();
    walk(&dir, &mut files);
    for f in files {
        assert!(!String::from_utf8_lossy(&std::fs::read(&f).expect("read")).contains(SECRET), "the secret is in clear in {}", f.display());
    }
    let o = g(&["env"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("API_KEY=******** (secret, in gilliam/shop/config/r3)") && text(&o).contains("LEVEL=3"), "{}", text(&o));
    assert!(!text(&o).contains(SECRET));
    let o = g(&["env", "-r", "2"]);
    assert!(text(&o).contains("MODE=fast"), "{}", text(&o));
    let o = g(&["history"]);
    assert!(!text(&o).contains(SECRET), "{}", text(&o));
    let o = g(&["--output", "json", "env"]);
    assert!(!text(&o).contains(SECRET) && text(&o).contains("\"secret\": \"gilliam/shop/config/r3\""), "{}", text(&o));

    // A config secret lives as long as a live release uses it, whichever release made it.
    let o = g(&["-q", "env", "unset", "API_KEY", "--poll", "0.1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let live = |n: u32| {
        let st = gilliam(&moto, &stage, Some(&dir), &["--output", "json", "releases"]);
        let rows: serde_json::Value = serde_json::from_slice(&st.stdout).expect("releases");
        rows.as_array().expect("rows").iter().any(|r| r["release"] == n)
    };
    let secret_alive = || {
        let sm = sm.clone();
        async move { sm.describe_secret().secret_id("gilliam/shop/config/r3").send().await.expect("describe").deleted_date().is_none() }
    };
    if live(3) {
        let o = g(&["retire", "3"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    assert!(live(4) && secret_alive().await, "release 4 still uses release 3's secret");
    let o = g(&["retire", "4"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!secret_alive().await, "no live release uses it: scheduled for deletion");
    let o = g(&["retire", "4"]);
    assert_ne!(o.status.code(), Some(0), "retired already: {}", text(&o));
}
