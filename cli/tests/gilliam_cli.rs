//! `gilliam` and `gilliam-materialize` as an operator runs them, against moto on 127.0.0.1:
//! deploys, JSON read verbs, traffic, rollback, saved plans, and the documented exit codes.

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_session() {
    let Session { moto, dir, stage, app } = session("session").await;
    let g = |args: &[&str]| gilliam(&moto, &stage, None, args);

    // Nothing deployed yet: read verbs say so and fail as refused (4).
    let o = g(&["status"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("has no published release"), "{}", text(&o));

    for n in ["1", "2"] {
        let rel = dir.join(format!("release-{n}.json")).display().to_string();
        let out = dir.join(format!("out-{n}")).display().to_string();
        let o = g(&["deploy", "--app", &app, "--release", &rel, "--out", &out, "--poll", "0.1"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(text(&o).contains(&format!("deployed release {n} of shop")), "{}", text(&o));
    }
    let o = g(&["--output", "json", "releases"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let weights: Vec<(u64, u64)> =
        rows.as_array().expect("rows").iter().map(|r| (r["release"].as_u64().unwrap_or(0), r["weight"].as_u64().unwrap_or(0))).collect();
    assert_eq!(weights, vec![(1, 0), (2, 100)]);
    // Each release's load balancer metrics over the last minutes (none served here: zero, and
    // no rate or latency made up).
    for r in rows.as_array().expect("rows") {
        assert_eq!(r["metrics"]["requests"], 0.0, "{r}");
        assert!(r["metrics"].get("p99_ms").is_none(), "{r}");
    }
    let o = g(&["releases"]);
    assert!(text(&o).contains("requests    5xx     p99"), "{}", text(&o));

    let o = g(&["traffic", "1=90", "2=10"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = g(&["--output", "json", "status"]);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(s["traffic"], serde_json::json!({ "1": 90, "2": 10 }));
    let rewritten = s["routes"].as_array().expect("routes").iter().find(|r| r["route"] == "/v1/{rest}").expect("the rewriting route").clone();
    assert_eq!(rewritten["rewrite"], "/api/{rest}");
    assert_eq!(rewritten["weights"], serde_json::json!({ "1": 90, "2": 10 }), "its rule is weighted like the others");
    let o = g(&["status"]);
    assert!(text(&o).contains("/v1/{rest}") && text(&o).contains("as /api/{rest}"), "status shows the rewrite: {}", text(&o));
    let o = g(&["rollback"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("rolled back to release 1"), "{}", text(&o));
    let o = g(&["rollback"]);
    assert_eq!(o.status.code(), Some(4), "nothing older than release 1: {}", text(&o));
    assert!(text(&o).contains("nothing to roll back to"), "{}", text(&o));

    // Refusals (4), usage errors (2), invalid input (1).
    let o = g(&["warm", "1"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("release 1 is live, not cold: nothing to warm"), "{}", text(&o));
    assert_eq!(g(&["warm", "1", "--warm-timeout", "soon"]).status.code(), Some(2));
    assert_eq!(g(&["traffic", "7"]).status.code(), Some(4));
    assert_eq!(g(&["retire", "1"]).status.code(), Some(4), "release 1 carries traffic");
    assert_eq!(g(&["scale", "-r2", "api=99"]).status.code(), Some(4), "over api's max");
    assert_eq!(g(&["traffic", "1=x"]).status.code(), Some(2));
    assert_eq!(g(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(run(env!("CARGO_BIN_EXE_gilliam"), &moto.url, &["--stage", "/nonexistent.yml", "status"]).status.code(), Some(2));
    std::fs::write(dir.join("bad.yml"), "formation: Shop!\n").expect("write");
    let o = run(env!("CARGO_BIN_EXE_gilliam"), &moto.url, &["--stage", &dir.join("bad.yml").display().to_string(), "status"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("bad.yml:1:12: bad formation name"), "{}", text(&o));

    // gilliam-materialize: a saved plan applies, a stale one is refused; a no-op says so.
    let out2 = dir.join("out-2").display().to_string();
    let plan = dir.join("plan.json").display().to_string();
    let m = |args: &[&str]| run(env!("CARGO_BIN_EXE_gilliam-materialize"), &moto.url, args);
    let o = m(&["--from", &out2]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("no AWS call that changes anything"), "{}", text(&o));
    let o = m(&["--from", &out2, "--plan-only", "--out", &plan]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // `--output json`: stdout is the plan alone, the same JSON as the saved file.
    let o = m(&["--from", &out2, "--plan-only", "--output", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("stdout is JSON: {e}: {}", text(&o)));
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&plan).expect("saved plan")).expect("saved plan is JSON");
    assert_eq!(printed, saved);
    assert_eq!(g(&["traffic", "2"]).status.code(), Some(0));
    let o = m(&["--from", &out2, "--plan", &plan]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("the plan is stale: traffic weights changed"), "{}", text(&o));
    std::fs::write(&plan, "{\"plan_version\": 99}").expect("write");
    assert_eq!(m(&["--from", &out2, "--plan", &plan]).status.code(), Some(1));

    let o = g(&["history"]);
    let h = text(&o);
    assert!(h.contains("ci") && h.contains("deploy release 2") && h.contains("traffic 1=90 2=10"), "{h}");
}

/// The cold tier from the command line: with `keep_releases: 0` and `cold_releases: 1`, the
/// release before the serving one shows as cold, `traffic` to it is refused with the way out,
/// and `rollback` warms it first and says how long that took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_to_a_cold_release_warms_it_and_says_how_long_it_took() {
    let Session { moto, dir, stage, app } = session("cold").await;
    let text_of = std::fs::read_to_string(&stage).expect("stage");
    assert!(text_of.contains("keep_releases: "), "{text_of}");
    let cold: String =
        text_of.lines().map(|l| if l.starts_with("keep_releases:") { "keep_releases: 0\ncold_releases: 1" } else { l }).collect::<Vec<_>>().join("\n") + "\n";
    std::fs::write(&stage, cold).expect("stage");
    let g = |args: &[&str]| gilliam(&moto, &stage, None, args);
    for n in ["1", "2"] {
        let rel = dir.join(format!("release-{n}.json")).display().to_string();
        let out = dir.join(format!("out-{n}")).display().to_string();
        let o = g(&["deploy", "--app", &app, "--release", &rel, "--out", &out, "--poll", "0.1"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    let o = g(&["releases"]);
    let row = text(&o).lines().find(|l| l.trim_start().starts_with("1 ")).map(str::to_string).unwrap_or_default();
    assert!(row.contains("cold"), "release 1 is cold: {}", text(&o));
    let o = g(&["traffic", "1"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("release 1 is cold") && text(&o).contains("gilliam warm 1"), "{}", text(&o));
    let o = g(&["rollback", "--warm-poll", "0.1", "--warm-timeout", "2m"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.contains("release 1 was cold: warmed in ") && out.contains("rolled back to release 1"), "{}", text(&o));
    let o = g(&["--output", "json", "status"]);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(s["traffic"], serde_json::json!({ "1": 100, "2": 0 }));
    assert!(s["releases"].as_array().expect("rows").iter().all(|r| r["cold"] == false), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_names_its_holder_and_unlock_breaks_it() {
    use gilliam_materializer::aws::prelude::*;
    use gilliam_materializer::aws::PutCondition;
    use gilliam_materializer::sdk::{Endpoint, SdkAws};
    let Session { moto, dir, stage, app: _ } = session("lock").await;
    let g = |args: &[&str]| gilliam(&moto, &stage, None, args);
    let aws = SdkAws::connect(&Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) }).await;
    aws.create_secure_bucket("gilliam-cli-outputs", REGION).await.expect("bucket");
    let far = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() + 3600;
    let held = format!(
        r#"{{"format_version": 1, "formation": "shop", "owner": "alice", "host": "ci-runner-7", "pid": 4242, "operation": "deploy release 9", "token": "x", "acquired": "2026-11-22T10:00:00Z", "expires_unix": {far}, "released": false}}"#
    );
    aws.put_object("gilliam-cli-outputs", "gilliam/shop/lock.json", held.into_bytes(), PutCondition::Always).await.expect("lock");

    for verb in [&["traffic", "2"][..], &["rollback"], &["retire", "1"], &["scale", "-r1", "api=2"]] {
        let mut args = vec!["--lock-wait", "0"];
        args.extend_from_slice(verb);
        let o = g(&args);
        assert_eq!(o.status.code(), Some(4), "{verb:?}: {}", text(&o));
        assert!(text(&o).contains("locked by alice on ci-runner-7 (pid 4242), deploy release 9"), "{verb:?}: {}", text(&o));
    }
    // gilliam-materialize too: it plans without the lock, then refuses to apply, naming the holder.
    let app = std::fs::read_to_string(root().join("examples/quickstart/gilliam.yml")).expect("app");
    let rel = std::fs::read_to_string(dir.join("release-1.json")).expect("release");
    let out = dir.join("out");
    gilliam_tests::compile_into(&app, &rel, &std::fs::read_to_string(&stage).expect("stage"), &out);
    let o = run(env!("CARGO_BIN_EXE_gilliam-materialize"), &moto.url, &["--from", &out.display().to_string(), "--lock-wait", "0"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("locked by alice on ci-runner-7 (pid 4242), deploy release 9"), "{}", text(&o));
    assert!(aws.describe_stack("shop").await.expect("describe").is_none(), "nothing applied without the lock");
    let o = g(&["--lock-wait", "0.5", "rollback"]);
    assert!(text(&o).contains("waiting for the deploy lock, held by alice"), "waits, saying for whom: {}", text(&o));
    // Breaking it needs a confirmation: without a terminal, --yes.
    let o = g(&["unlock"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--yes") && text(&o).contains("alice"), "{}", text(&o));
    let o = g(&["unlock", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = g(&["--lock-wait", "0", "rollback"]);
    assert!(!text(&o).contains("locked by"), "free now: {}", text(&o));
    let o = g(&["history"]);
    assert!(text(&o).contains("unlock (broke the lock of alice on ci-runner-7"), "the history keeps the break: {}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_foreign_published_files_are_errors_never_panics_or_wrong_deploys() {
    use gilliam_materializer::aws::prelude::*;
    use gilliam_materializer::aws::PutCondition;
    use gilliam_materializer::sdk::{Endpoint, SdkAws};
    let Session { moto, dir, stage, app } = session("corrupt").await;
    let g = |args: &[&str]| gilliam(&moto, &stage, None, &[&["--lock-wait", "0"], args].concat());
    for n in ["1", "2"] {
        let rel = dir.join(format!("release-{n}.json")).display().to_string();
        let out = dir.join(format!("out-{n}")).display().to_string();
        assert_eq!(g(&["-q", "deploy", "--app", &app, "--release", &rel, "--out", &out, "--poll", "0.1"]).status.code(), Some(0));
    }
    let aws = SdkAws::connect(&Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) }).await;
    let bucket = "gilliam-cli-outputs";
    let put = |key: &'static str, body: Vec<u8>| {
        let aws = &aws;
        async move { aws.put_object(bucket, key, body, PutCondition::Always).await.expect("put") }
    };
    let state = aws.get_object(bucket, "gilliam/shop/state.json").await.expect("get").expect("state").body;
    let manifest = aws.get_object(bucket, "gilliam/shop/manifest.json").await.expect("get").expect("manifest").body;
    let no_panic = |o: &std::process::Output| assert!(!text(o).contains("panicked"), "{}", text(o));

    for (body, says) in [
        (b"\x00\x01 not json".to_vec(), "is not a gilliam state file"),
        (
            br#"{"format_version": 1, "formation": "other", "releases": {}, "traffic": {}, "history": []}"#.to_vec(),
            "of formation \"other\", expected format 1 of \"shop\"",
        ),
        (br#"{"format_version": 9, "formation": "shop", "releases": {}, "traffic": {}, "history": []}"#.to_vec(), "is state format 9"),
    ] {
        put("gilliam/shop/state.json", body).await;
        for verb in [&["history"][..], &["traffic", "1"], &["retire", "1"]] {
            let o = g(verb);
            no_panic(&o);
            assert_eq!(o.status.code(), Some(4), "{verb:?}: {}", text(&o));
            assert!(text(&o).contains(says), "{verb:?}: {}", text(&o));
        }
    }
    put("gilliam/shop/state.json", state).await;

    put("gilliam/shop/manifest.json", br#"{"format_version": 1}"#.to_vec()).await;
    let o = g(&["status"]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("is not a gilliam manifest"), "{}", text(&o));
    put("gilliam/shop/manifest.json", manifest).await;

    // A published template altered after the fact: retiring (which re-renders routing from the
    // published bundle) refuses, and release 1 is left as it was.
    put("gilliam/shop/releases/2/templates/shop-routing-1.json", b"{\"Resources\": {}}".to_vec()).await;
    let o = g(&["retire", "1"]);
    no_panic(&o);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("sha256"), "{}", text(&o));
    assert!(aws.describe_stack("shop-r1").await.expect("describe").is_some(), "nothing retired on a corrupt bundle");
}

#[test]
fn completions_and_man_pages_come_from_the_clap_definitions() {
    let gilliam = |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_gilliam")).args(args).output().expect("run gilliam");
    // No stage file is needed (none exists in the test's directory).
    let o = gilliam(&["completions", "bash"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let bash = String::from_utf8_lossy(&o.stdout);
    for word in ["deploy", "watch", "rollback", "--bake", "--strategy"] {
        assert!(bash.contains(word), "{word} in the bash completions");
    }
    let o = gilliam(&["completions", "fish", "--for", "gilliam-materialize"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("plan-only"), "gilliam-materialize's flags");
    assert_eq!(gilliam(&["completions", "tcsh"]).status.code(), Some(2), "an unknown shell is a usage error");

    let dir = gilliam_tests::scratch("man-pages");
    let o = gilliam(&["man", &dir.display().to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    for page in ["gilliam.1", "gilliam-deploy.1", "gilliam-watch.1", "gilliam-materialize.1", "gilliam-compile.1"] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page} is a man page");
    }
    assert!(std::fs::read_to_string(dir.join("gilliam-deploy.1")).expect("page").contains("bake"), "the deploy page documents --bake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_deploys_the_same_artifact_and_config_to_the_next_stage_and_refuses_another_artifact() {
    use gilliam_materializer::aws::prelude::*;
    use gilliam_materializer::aws::PutCondition;
    use gilliam_materializer::sdk::{Endpoint, SdkAws};
    let Session { moto, dir, stage, app } = session("promote").await;
    let staging = |args: &[&str]| gilliam(&moto, &stage, None, args);
    let rel = dir.join("release-1.json").display().to_string();
    let o = staging(&["deploy", "--app", &app, "--release", &rel, "--out", &dir.join("out-1").display().to_string(), "--poll", "0.1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // From the scratch directory: `env set` writes its files under .gilliam/ where it runs.
    let o = gilliam(&moto, &stage, Some(&dir), &["env", "set", "FEATURE=on", "--poll", "0.1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The next stage: another formation with a bucket of its own, in the same network.
    let prod = dir.join("prod.yml");
    let text_of = |p: &str| std::fs::read_to_string(p).expect("stage");
    std::fs::write(&prod, text_of(&stage).replace("formation: shop", "formation: shop-prod").replace("gilliam-cli-outputs", "gilliam-cli-prod"))
        .expect("prod stage");
    let prod = prod.display().to_string();
    let out = dir.join("promoted").display().to_string();
    let promote = |extra: &[&str]| {
        let mut args = vec!["promote", "--from", &stage, "--to", &prod, "--poll", "0.1", "--out", &out];
        args.extend_from_slice(extra);
        gilliam(&moto, "/nonexistent.yml", Some(&dir), &args)
    };
    let o = promote(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("release 1 of shop-prod: release 2 of shop (artifact "), "{}", text(&o));
    let aws = SdkAws::connect(&Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) }).await;
    let published = |bucket: &str, formation: &str| {
        let aws = &aws;
        let key = format!("gilliam/{formation}/manifest.json");
        let bucket = bucket.to_string();
        async move { serde_json::from_slice::<serde_json::Value>(&aws.get_object(&bucket, &key).await.expect("get").expect("published").body).expect("json") }
    };
    let (s, p) = (published("gilliam-cli-outputs", "shop").await, published("gilliam-cli-prod", "shop-prod").await);
    assert_eq!(p["release"]["artifact_sha256"], s["release"]["artifact_sha256"], "the same artifact, by digest");
    assert_eq!(p["release"]["config"], s["release"]["config"], "the same config");
    assert_eq!(p["release"]["config"]["FEATURE"], "on");
    assert!(
        p["release"]["artifact_url"].as_str().is_some_and(|u| u.starts_with("s3://gilliam-cli-prod/gilliam/shop-prod/artifacts/")),
        "copied into the target's bucket: {}",
        p["release"]
    );
    let o = gilliam(&moto, &prod, None, &["history"]);
    assert!(text(&o).contains("promote release 2 of shop as release 1 (artifact "), "{}", text(&o));

    // An artifact at the target's content address that is not the release's: refused.
    let key = p["release"]["artifact_url"].as_str().expect("url").trim_start_matches("s3://gilliam-cli-prod/").to_string();
    aws.put_object("gilliam-cli-prod", &key, b"something else".to_vec(), PutCondition::Always).await.expect("tamper");
    let o = promote(&["1"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("holds another artifact") && text(&o).contains("refused"), "{}", text(&o));
    let o = gilliam(&moto, &prod, None, &["--output", "json", "releases"]);
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "nothing deployed by the refused promotion");
    // The same stage twice is a usage error.
    let o = gilliam(&moto, "/nonexistent.yml", None, &["promote", "--from", &stage, "--to", &stage]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// First contact, as a new operator meets it: missing credentials, credentials AWS does not
/// recognise, an endpoint that cannot be reached, and access denied each give one line with
/// the cause and the fix, and the documented exit code (2: set up your credentials; 4: AWS
/// refused or cannot be reached), never the SDK's chain of causes. Access is enforced by
/// moto's IAM (switched on through its `reset-auth` API) for a user with no policy.
#[test]
fn first_contact_failures_are_one_line_with_the_cause_and_the_fix() {
    let moto = gilliam_tests::moto::Moto::start();
    let stage = root().join("examples/quickstart/stage.yml").display().to_string();
    let run = |endpoint: &str, env: &[(&str, &str)]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_gilliam"));
        c.args(["--stage", &stage, "traffic", "1=50", "2=50"])
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent/config")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env_remove("GILLIAM_FAULTS");
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().expect("run gilliam");
        let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(!err.contains("dispatch failure") && !err.contains("ServiceError"), "not the SDK's chain: {err}");
        (o.status.code(), err)
    };
    let keys = [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")];

    let (code, err) = run(&moto.url, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no usable AWS credentials") && err.contains("instance metadata service is off") && err.contains("AWS_PROFILE"), "{err}");

    // Retried (a refused connection may be an endpoint restarting), then one line.
    let quick = [keys[0], keys[1], ("GILLIAM_FAULTS", "retry_base_ms=1")];
    let (code, err) = run("http://127.0.0.1:1", &quick);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("cannot reach AWS") && err.contains("connection refused") && err.contains("region"), "{err}");

    // With IAM enforced: keys AWS has never issued, then a user allowed nothing.
    let (key, secret) = gilliam_tests::moto::account_keys(&moto.url, "123456789012");
    let addr = moto.url.trim_start_matches("http://");
    let reset = format!("POST /moto-api/reset-auth HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 1\r\n\r\n");
    assert_eq!(gilliam_tests::engine::http(addr, &reset, b"0").map(|(c, _)| c), Some(200));
    let (code, err) = run(&moto.url, &keys);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no usable AWS credentials") && err.contains("InvalidAccessKeyId"), "{err}");
    let (code, err) = run(&moto.url, &[("AWS_ACCESS_KEY_ID", &key), ("AWS_SECRET_ACCESS_KEY", &secret)]);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("access denied to read the deploy lock") && err.contains("allow that action"), "{err}");
}
