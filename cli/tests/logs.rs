//! `gilliam logs` against moto's CloudWatch Logs: the formation stack makes the log group with
//! the stage's retention; lines put by the agent's own logger and shipper (as instances of two
//! releases and two services would) are read back merged in time order, filtered by service
//! and release, as JSON for tools, and followed: a line shipped while `-f` runs is printed
//! once, and nothing twice. `gilliam ps` lists the instances moto launched, with the last
//! line each one's agent shipped.

mod common;

use common::*;
use gilliam_agent::logs::{Logger, INFO};
use gilliam_agent::ship::{CloudSink, Shipper, Spool};
use std::path::Path;
use std::time::Duration;

fn ship(dir: &Path, lines: &[(u32, &str, &str, &str)]) {
    let dir = dir.to_path_buf();
    let lines: Vec<(u32, String, String, String)> = lines.iter().map(|(r, s, i, m)| (*r, s.to_string(), i.to_string(), m.to_string())).collect();
    // The agent's client makes a runtime of its own: off the test's.
    std::thread::spawn(move || {
        let mut streams: std::collections::BTreeMap<(u32, String, String), Logger> = Default::default();
        for (r, svc, inst, message) in &lines {
            let log = streams.entry((*r, svc.clone(), inst.clone())).or_insert_with(|| {
                let base = Logger::new("gilliam-agent", &[], Path::new("/nonexistent/journal"));
                base.with(&[("GILLIAM_FORMATION", "shop"), ("GILLIAM_SERVICE", svc), ("GILLIAM_RELEASE", &r.to_string()), ("GILLIAM_INSTANCE", inst)])
            });
            match message.strip_prefix("agent: ") {
                Some(m) => log.info(m),
                None => log.line("stdout", INFO, message),
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for ((r, svc, inst), log) in streams {
            let cloud = gilliam_agent::sdk::SdkCloud::connect(REGION).expect("client");
            let stream = gilliam_contract::runtime::log_stream(r, &svc, &inst);
            let spool = Spool::open(&dir.join(format!("spool-{r}-{svc}-{inst}")), 1 << 20).expect("spool");
            let mut s = Shipper::new(CloudSink::new(Box::new(cloud), "/gilliam/shop", &stream), log.ship_queue().expect("queue"), spool);
            s.pump(Duration::ZERO);
            assert!(s.spool.is_empty() && s.stats.sent > 0, "shipped {stream}: {:?}", s.stats);
        }
    })
    .join()
    .expect("ship");
}

fn messages(o: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout).lines().map(|l| l.rsplit_once(": ").map_or(l, |(_, m)| m).to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_read_back_merged_filtered_and_followed() {
    let Session { moto, dir, stage, app } = session("logs").await;
    std::env::set_var("AWS_ENDPOINT_URL", &moto.url);
    let g = |args: &[&str]| gilliam(&moto, &stage, None, args);
    let o = g(&["logs"]);
    assert_eq!(o.status.code(), Some(4), "before the first deploy: {}", text(&o));
    assert!(text(&o).contains("log group /gilliam/shop does not exist"), "{}", text(&o));
    let rel = dir.join("release-1.json").display().to_string();
    let out = dir.join("out-1").display().to_string();
    let o = g(&["deploy", "--app", &app, "--release", &rel, "--out", &out, "--poll", "0.1"]);
    assert!(o.status.success(), "{}", text(&o));
    let conf = sdk_config(&moto).await;
    let groups = aws_sdk_cloudwatchlogs::Client::new(&conf).describe_log_groups().log_group_name_prefix("/gilliam/shop").send().await.expect("groups");
    assert_eq!(groups.log_groups()[0].retention_in_days(), Some(30), "the stage's retention (default 30 days)");

    ship(&dir, &[(1, "api", "i-a", "one"), (1, "worker", "i-b", "two"), (2, "api", "i-c", "three"), (1, "api", "i-a", "four")]);
    let o = g(&["logs"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(messages(&o), ["one", "two", "three", "four"], "merged in time order");
    let first = String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or_default().to_string();
    assert!(first.contains(" r1 api i-a stdout: one"), "{first}");
    assert_eq!(messages(&g(&["logs", "api"])), ["one", "three", "four"]);
    assert_eq!(messages(&g(&["logs", "-r", "1"])), ["one", "two", "four"]);
    let o = g(&["--output", "json", "logs", "api", "-r", "1"]);
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0]["release"].as_u64(), rows[0]["service"].as_str(), rows[0]["instance"].as_str()), (Some(1), Some("api"), Some("i-a")));
    assert_eq!((rows[0]["source"].as_str(), rows[0]["level"].as_str(), rows[0]["message"].as_str()), (Some("stdout"), Some("info"), Some("one")));
    assert!(rows[0]["time"].as_str().is_some_and(|t| t.ends_with('Z') && t.contains('.')), "{}", rows[0]);

    // Followed: what arrives meanwhile is printed, once; nothing is printed twice.
    let follow = std::process::Command::new(env!("CARGO_BIN_EXE_gilliam"))
        .args(["--stage", &stage, "logs", "-f", "--follow-for", "4s", "--poll", "300ms"])
        .env("AWS_ENDPOINT_URL", &moto.url)
        .envs(gilliam_tests::moto::SAFE_ENV.iter().copied())
        .env_remove("AWS_PROFILE")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("follow");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ship(&dir, &[(2, "api", "i-c", "five")]);
    let o = follow.wait_with_output().expect("follow output");
    assert!(o.status.success());
    assert_eq!(messages(&o), ["one", "two", "three", "four", "five"]);

    // `gilliam ps`: the instances moto's Auto Scaling launched, each once, with its zone,
    // lifecycle, launch time and, once its agent has shipped a line, that line.
    let asg = aws_sdk_autoscaling::Client::new(&conf);
    let groups = asg.describe_auto_scaling_groups().send().await.expect("groups");
    let mut moto_ids: Vec<String> =
        groups.auto_scaling_groups().iter().flat_map(|g| g.instances()).filter_map(|i| i.instance_id().map(str::to_string)).collect();
    moto_ids.sort();
    assert!(!moto_ids.is_empty());
    let api_instance = groups
        .auto_scaling_groups()
        .iter()
        .find(|g| g.auto_scaling_group_name().is_some_and(|n| n.contains("Api")))
        .and_then(|g| g.instances().first())
        .and_then(|i| i.instance_id())
        .expect("an api instance")
        .to_string();
    ship(&dir, &[(1, "api", &api_instance, "agent: agent line")]);
    let o = g(&["--output", "json", "ps"]);
    assert!(o.status.success(), "{}", text(&o));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).expect("JSON");
    let mut ids: Vec<String> = rows.iter().map(|r| r["instance"].as_str().expect("id").to_string()).collect();
    ids.sort();
    assert_eq!(ids, moto_ids, "every instance, once");
    let api = rows.iter().find(|r| r["instance"] == api_instance.as_str()).expect("the api instance");
    assert_eq!((api["release"].as_u64(), api["service"].as_str(), api["lifecycle"].as_str()), (Some(1), Some("api"), Some("InService")));
    assert!(api["zone"].as_str().is_some_and(|z| z.starts_with(REGION)), "{api}");
    assert!(api["uptime_seconds"].as_i64().is_some_and(|s| (0..3600).contains(&s)), "{api}");
    assert!(api["agent"].as_str().is_some_and(|l| l.ends_with(" agent line")), "{api}");
    let targets = api["targets"].as_array().expect("targets");
    assert!(!targets.is_empty() && targets.iter().all(|t| t == "healthy"), "each of its target groups: {api}");
    let o = g(&["ps", "-r", "1"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains(&api_instance), "{}", text(&o));
    let o = g(&["ps", "-r", "7"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("release 7 is not live or cold"), "{}", text(&o));
}
