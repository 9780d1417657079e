//! One test per class of input error: each asserts the file, line, column and message that the
//! user sees, and that all problems are reported in one run.

use gilliam_compiler::{compile, Error, Inputs, Source};

const APP: &str = "api:\n  script: bin/api\n  ports: [80]\n  routes: [/api/*]\nworker:\n  script: bin/worker\n";
const RELEASE: &str = r#"{
  "number": 3,
  "artifact": {"url": "s3://bucket-a/app.tgz", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
  "runtime_image": "ami-0123456789abcdef0",
  "revision": "abc123",
  "created": "2026-11-22T10:00:00Z"
}"#;
const STAGE: &str = "formation: shop\nregion: eu-west-1\nvpc: vpc-0123456789abcdef0\npublic_subnets: [subnet-00000001, subnet-00000002]\nprivate_subnets: [subnet-00000011, subnet-00000012]\noutputs_bucket: bucket-a\n";

/// Compiles and returns the diagnostics as `file:line:col: message` lines (hints separate).
fn errors(app: &str, release: &str, stage: &str) -> Vec<(String, String)> {
    let inputs = Inputs {
        app: Source { name: "gilliam.yml", text: app },
        release: Source { name: "release.json", text: release },
        stage: Source { name: "stage.yml", text: stage },
    };
    match compile(&inputs) {
        Ok(_) => Vec::new(),
        Err(Error::Invalid(d)) => {
            d.iter().map(|d| (format!("{}:{}:{}: {}", d.file, d.pos.line, d.pos.col, d.message), d.hint.clone().unwrap_or_default())).collect()
        }
        Err(Error::Internal(m)) => panic!("internal error: {m}"),
    }
}

#[track_caller]
fn expect(found: &[(String, String)], line: &str, hint: &str) {
    assert!(
        found.iter().any(|(l, h)| l.starts_with(line) && h.contains(hint)),
        "expected `{line}` (hint containing `{hint}`) in:\n{}",
        found.iter().map(|(l, h)| format!("{l}\n  hint: {h}")).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn the_base_inputs_are_valid() {
    assert_eq!(errors(APP, RELEASE, STAGE), Vec::<(String, String)>::new());
}

#[test]
fn yaml_syntax() {
    let e = errors("api:\n  script: [bin/api\n  ports: [80]\n", RELEASE, STAGE);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].0.starts_with("gilliam.yml:3:"), "{e:?}");
    assert!(e[0].0.contains("YAML syntax"), "{e:?}");
}

#[test]
fn json_syntax() {
    let e = errors(APP, "{\n  \"number\": 3,\n}\n", STAGE);
    expect(&e, "release.json:3:1: JSON syntax: expected a quoted key, found `}`", "fix the JSON syntax");
}

#[test]
fn duplicate_keys() {
    let e = errors("api:\n  script: a\n  script: b\n", RELEASE, STAGE);
    expect(&e, "gilliam.yml:3:3: duplicate key `script` (first defined at line 2, column 3)", "remove one");
    let e = errors(APP, "{\"number\": 3, \"number\": 4}", STAGE);
    expect(&e, "release.json:1:15: duplicate key `number`", "remove one");
}

#[test]
fn unknown_keys_suggest_the_closest() {
    let e = errors("api:\n  script: a\n  helth: /up\n  ports: [80]\n", RELEASE, STAGE);
    expect(&e, "gilliam.yml:3:3: unknown key `helth` in service `api`", "did you mean `health`?");
    let e = errors(APP, RELEASE, &format!("{STAGE}keep_release: 3\n"));
    expect(&e, "stage.yml:7:1: unknown key `keep_release` in the stage file", "did you mean `keep_releases`?");
    let e = errors("db:\n  type: postgres\n  script: bin/db\n", RELEASE, STAGE);
    expect(&e, "gilliam.yml:3:3: `script` does not apply to auxiliary service `db` (type postgres)", "remove the key");
}

#[test]
fn wrong_types() {
    let e = errors("api:\n  script: a\n  ports: 80\n", RELEASE, STAGE);
    expect(&e, "gilliam.yml:3:10: `ports` must be a list, found integer 80", "");
    let e = errors("api:\n  script: a\n  internal: yes\n", RELEASE, STAGE);
    expect(&e, "gilliam.yml:3:13: `internal` must be true or false, found string \"yes\"", "YAML 1.2");
    let e = errors("- api\n", RELEASE, STAGE);
    expect(&e, "gilliam.yml:1:1: gilliam.yml must be a mapping of service names to services, found a list", "");
}

#[test]
fn bad_service_names() {
    let e = errors("Api:\n  script: a\napi-:\n  script: c\n", RELEASE, STAGE);
    expect(&e, "gilliam.yml:1:1: bad service name `Api`", "lowercase");
    expect(&e, "gilliam.yml:3:1: bad service name `api-`", "does not end");
    // A DNS label's 63 characters are accepted; one more is not.
    let ok = format!("{}:\n  script: a\n", "a".repeat(63));
    assert_eq!(errors(&ok, RELEASE, STAGE), Vec::<(String, String)>::new());
    let long = format!("{}:\n  script: a\n", "a".repeat(64));
    expect(&errors(&long, RELEASE, STAGE), "gilliam.yml:1:1: bad service name", "at most 63 characters");
}

#[test]
fn ports_out_of_range() {
    let e = errors("api:\n  script: a\n  ports: [0]\nweb:\n  script: b\n  ports: [65536]\n", RELEASE, STAGE);
    expect(&e, "gilliam.yml:3:11: a port must be between 1 and 65535, found 0", "");
    expect(&e, "gilliam.yml:6:11: a port must be between 1 and 65535, found 65536", "");
}

#[test]
fn scale_order() {
    let e = errors("api:\n  script: a\n  scale: {min: 3, desired: 2, max: 5}\n", RELEASE, STAGE);
    expect(&e, "gilliam.yml:3:10: service `api`: scale must satisfy min <= desired <= max, found min 3, desired 2, max 5", "defaults.scale");
}

#[test]
fn colliding_routes() {
    let app =
        "api:\n  script: a\n  ports: [80]\n  routes: [shop.example.com/api/*]\nweb:\n  script: b\n  ports: [80]\n  routes:\n    - Shop.example.com/api/*\n";
    let e = errors(app, RELEASE, STAGE);
    expect(&e, "gilliam.yml:9:7: route `Shop.example.com/api/*` collides with the route of service `api` at line 4, column 12", "change one");
}

#[test]
fn names_that_collide_as_logical_ids() {
    let e = errors("api-v2:\n  script: a\napi_v2:\n  script: b\n", RELEASE, STAGE);
    expect(&e, "gilliam.yml:3:1: services `api-v2` (line 1) and `api_v2` both become the CloudFormation logical ID `ApiV2`", "rename");
}

#[test]
fn release_numbers() {
    for (number, found) in [
        ("0", "integer 0"),
        ("-4", "integer -4"),
        ("\"12\"", "string \"12\""),
        ("1.5", "number 1.5"),
        ("null", "nothing (null)"),
        ("1000000", "integer 1000000"),
    ] {
        let e = errors(APP, &RELEASE.replace("\"number\": 3", &format!("\"number\": {number}")), STAGE);
        expect(&e, &format!("release.json:2:13: release number must be a positive integer, found {found}"), "whole number");
    }
}

#[test]
fn artifact_url_and_sha256() {
    let bad = RELEASE.replace("s3://bucket-a/app.tgz", "https://bucket-a/app.tgz").replace("9f86d0", "XYZ");
    let e = errors(APP, &bad, STAGE);
    expect(&e, "release.json:3:23: malformed artifact URL `https://bucket-a/app.tgz`", "s3://BUCKET/KEY");
    expect(&e, "release.json:3:61: malformed sha256", "64 lowercase hexadecimal");
}

#[test]
fn unknown_auxiliary_type_lists_the_supported_ones() {
    let e = errors("db:\n  type: mysql\ncache:\n  type: rediss\n", RELEASE, STAGE);
    expect(&e, "gilliam.yml:2:9: unknown auxiliary service type `mysql`", "supported types: postgres, redis, etcd");
    expect(&e, "gilliam.yml:4:9: unknown auxiliary service type `rediss`", "did you mean `redis`?");
}

#[test]
fn stage_problems() {
    let stage = STAGE.replace("eu-west-1", "Europe").replace("vpc-0123456789abcdef0", "vpc-xyz").replace("bucket-a", "Bucket_A");
    let e = errors(APP, RELEASE, &stage);
    expect(&e, "stage.yml:2:9: bad region `Europe`", "eu-west-1");
    expect(&e, "stage.yml:3:6: bad VPC id `vpc-xyz`", "");
    expect(&e, "stage.yml:6:17: bad bucket name `Bucket_A`", "");
    let e = errors(APP, RELEASE, &format!("{STAGE}keep_releases: 4\n"));
    expect(&e, "stage.yml:7:16: `keep_releases` must be between 0 and 3, found 4", "");
    let e = errors(APP, RELEASE, &format!("{STAGE}cold_releases: 13\n"));
    expect(&e, "stage.yml:7:16: `cold_releases` must be between 0 and 12, found 13", "");
    let e = errors(APP, RELEASE, &format!("{STAGE}cold_releases: many\n"));
    assert!(e.iter().any(|(msg, _)| msg.starts_with("stage.yml:7:16: `cold_releases`")), "{e:?}");
    let e = errors(APP, RELEASE, &STAGE.replace("public_subnets: [subnet-00000001, subnet-00000002]", "public_subnets: [subnet-00000001]"));
    expect(&e, "stage.yml:4:17: services with routes need a public load balancer, which needs at least 2 `public_subnets`", "two or more");
}

#[test]
fn etcd_needs_an_image_and_zones() {
    let e = errors("coord:\n  type: etcd\n  size: 2\n", RELEASE, STAGE);
    expect(&e, "gilliam.yml:3:9: etcd `size` must be odd, found 2", "quorum");
    expect(&e, "stage.yml:1:1: auxiliary `coord` (etcd) runs on instances, and the stage file has no `auxiliary_image`", "auxiliary_image");
    expect(&e, "stage.yml:5:18: auxiliary `coord` (etcd) keeps its data on volumes that live in one zone", "zone");
}

#[test]
fn every_problem_is_reported_at_once() {
    let app = "api:\n  scirpt: a\n  ports: [99999]\nBad:\n  script: b\n";
    let e = errors(app, &RELEASE.replace("\"number\": 3", "\"number\": 0"), &STAGE.replace("eu-west-1", "mars"));
    for want in [
        "gilliam.yml:2:3: unknown key `scirpt`",
        "gilliam.yml:3:11: a port must be",
        "gilliam.yml:4:1: bad service name",
        "release.json:2:13: release number",
        "stage.yml:2:9: bad region",
    ] {
        expect(&e, want, "");
    }
}

#[test]
fn too_large_for_one_routing_group_is_refused_naming_the_limit() {
    let mut app = String::new();
    for i in 0..30 {
        app.push_str(&format!("s{i}:\n  script: x\n  ports: [80]\n"));
    }
    let e = errors(&app, RELEASE, &format!("{STAGE}routing_groups: 1\n"));
    expect(
        &e,
        "stage.yml:1:1: with `routing_groups: 1`, routing group 1's internal load balancer would hold 120 target groups (30 HTTP services x 4 live releases), over ELBv2's limit of 100 per load balancer",
        "routing_groups: ",
    );
    // Left to itself, the compiler splits the same formation instead.
    assert!(errors(&app, RELEASE, STAGE).is_empty());
}

#[test]
fn load_balancer_quota_is_enforced() {
    let mut app = String::new();
    for i in 0..60 {
        app.push_str(&format!("s{i}:\n  script: x\n  ports: [80]\n  routes: [/s{i}/*]\n"));
    }
    let e = errors(&app, RELEASE, &format!("{STAGE}quotas: {{load_balancers: 4}}\n"));
    expect(&e, "stage.yml:1:1: the formation does not fit", "raise the quota");
}

#[test]
fn hostile_yaml_is_bounded() {
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..12 {
        let p = if i == 0 { "a".to_string() } else { format!("b{}", i - 1) };
        bomb.push_str(&format!("b{i}: &b{i} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"));
    }
    let e = errors(&bomb, RELEASE, STAGE);
    assert!(e.iter().any(|(l, _)| l.contains("aliases expand the document")), "{e:?}");
    let e = errors(&"[".repeat(5000), RELEASE, STAGE);
    assert!(e.iter().any(|(l, _)| l.contains("nesting deeper")), "{e:?}");
    let e = errors(&"x".repeat(5 * 1024 * 1024), RELEASE, STAGE);
    expect(&e, "gilliam.yml:1:1: file is 5242880 bytes, larger than the 4194304 bytes accepted", "");
}

#[test]
fn diagnostic_format_is_file_line_column_message_then_hint() {
    let inputs = Inputs {
        app: Source { name: "app/gilliam.yml", text: "api:\n  scirpt: a\n" },
        release: Source { name: "r.json", text: RELEASE },
        stage: Source { name: "s.yml", text: STAGE },
    };
    let Err(Error::Invalid(d)) = compile(&inputs) else { panic!("must fail") };
    let text = d.to_string();
    assert!(text.starts_with("app/gilliam.yml:1:1: service `api` has no `script`: a tarball release runs a script of its own\n  hint: "), "{text}");
    assert!(text.contains("app/gilliam.yml:2:3: unknown key `scirpt` in service `api`\n  hint: did you mean `script`?"), "{text}");
    assert!(text.ends_with("2 problems found"), "{text}");
}

#[test]
fn secret_config_is_a_reference_to_this_formations_secret_and_reaches_only_the_agent() {
    let with =
        |config: &str| RELEASE.replace("\"created\": \"2026-11-22T10:00:00Z\"", &format!("\"created\": \"2026-11-22T10:00:00Z\",\n  \"config\": {config}"));
    let found = errors(APP, &with(r#"{"API_KEY": {"secret": "gilliam/other/config/r3"}, "TOKEN": {"value": "x"}, "DB": {"secret": "prod/db"}}"#), STAGE);
    expect(&found, "release.json:7:25: `API_KEY`: secret `gilliam/other/config/r3` belongs to another formation", "gilliam/shop/config/");
    expect(&found, "release.json:7:73: `TOKEN`: a config value is a string or {\"secret\": NAME}", "name of the secret");
    expect(&found, "release.json:7:95: `DB`: secret `prod/db` is not a gilliam config secret", "gilliam env set --secret");

    let good = with(r#"{"API_KEY": {"secret": "gilliam/shop/config/r3"}, "MODE": "fast"}"#);
    let c = compile(&Inputs {
        app: Source { name: "gilliam.yml", text: APP },
        release: Source { name: "release.json", text: &good },
        stage: Source { name: "stage.yml", text: STAGE },
    })
    .expect("compiles");
    let userdata = c.userdata().expect("userdata").remove("api").expect("api's userdata");
    let cfg = gilliam_compiler::runtime::from_userdata(&userdata).expect("config");
    let gilliam_compiler::runtime::RuntimeConfig::Service(cfg) = gilliam_compiler::runtime::parse(cfg.as_bytes()).expect("parses") else { panic!("service") };
    assert_eq!(cfg.env.get("MODE").map(String::as_str), Some("fast"));
    assert!(!cfg.env.contains_key("API_KEY"), "a secret is never a literal in userdata");
    let r = &cfg.secrets["API_KEY"];
    assert_eq!((r.secret.as_str(), r.format.as_str(), r.raw), ("gilliam/shop/config/r3", "{API_KEY}", true));
    assert_eq!(c.manifest.release.secret_config.get("API_KEY").map(String::as_str), Some("gilliam/shop/config/r3"));
    let release_stack = String::from_utf8(c.files["templates/shop-r3.json"].clone()).expect("template");
    assert!(release_stack.contains("secret:gilliam/shop/config/r3-??????"), "the instance role may read exactly that secret");
}

#[test]
fn route_rewrites_bind_their_variables_on_the_side_they_rewrite() {
    let app = |routes: &str| format!("api:\n  script: bin/api\n  ports: [80]\n  routes:\n{routes}");
    let found = errors(
        &app("    - api.example.com/users/{rest}: /api/{id}\n    - \"{t}.example.com/x/{rest}\": /y/{t}\n    - /plain/{rest}\n    - /dup/{a}/{a}: /z/{a}\n"),
        RELEASE,
        STAGE,
    );
    expect(&found, "gilliam.yml:5:42: route `api.example.com/users/{rest}`: `{id}` is used in the rewrite but not bound in the route", "bind it");
    expect(&found, "gilliam.yml:6:38: route `{t}.example.com/x/{rest}`: `{t}` is bound in the route's host", "bind it in the route's path");
    expect(&found, "gilliam.yml:7:7: route `/plain/{rest}` binds variables but rewrites nothing", "give the target");
    expect(&found, "gilliam.yml:8:7: variable `{a}` is bound twice", "");
    assert_eq!(found.len(), 4, "{found:?}");
    assert!(errors(&app("    - /v1/{rest}: /api/{rest}\n"), RELEASE, STAGE).is_empty());
}

#[test]
fn delivery_settings_are_checked_where_they_are_written() {
    let app = format!("{APP}x-gilliam:\n  analysis: {{max_error_rate: 1.5, max_p99_ms: fast, interval: 2d, min_requests: -1}}\n  hooks: {{pre_traffic: '', post_trafic: x, timeout: 3h}}\n  stickiness: 8d\n");
    let stage =
        format!("{STAGE}analysis: {{max_ratio_vs_baseline: 0.5, alarms: [ok, '']}}\nnotifications: {{webhook: ftp://x, sns_topic: topic, event_bus: 'a b'}}\n");
    let e = errors(&app, RELEASE, &stage);
    expect(&e, "gilliam.yml:8:63: `analysis.interval` `2d` is out of range", "between 1 and 3600 seconds");
    expect(&e, "gilliam.yml:8:47: `analysis.max_p99_ms` must be a whole number", "");
    expect(&e, "gilliam.yml:8:81: `analysis.min_requests` must be between 0 and", "");
    expect(&e, "gilliam.yml:9:24: `hooks.pre_traffic` must not be empty", "");
    expect(&e, "gilliam.yml:9:28: unknown key `post_trafic` in `hooks`", "did you mean `post_traffic`?");
    expect(&e, "gilliam.yml:9:53: `hooks.timeout` `3h` is out of range", "between 1 and 7200 seconds");
    expect(&e, "gilliam.yml:10:15: `stickiness` `8d` is out of range", "between 1 and 604800 seconds");
    expect(&e, "stage.yml:7:35: `analysis.max_ratio_vs_baseline` must be a number from 1 to 1000", "");
    expect(&e, "stage.yml:7:53: an alarm name must not be empty", "");
    expect(&e, "stage.yml:8:26: bad webhook URL `ftp://x`", "http:// or https://");
    expect(&e, "stage.yml:8:46: bad SNS topic `topic`", "arn:aws:sns:REGION:ACCOUNT:NAME");
    expect(&e, "stage.yml:8:64: bad event bus `a b`", "EventBridge bus name");
    // `notifications` belong to the stage file: where the account's endpoints are.
    let e = errors(&format!("{APP}x-gilliam: {{notifications: {{webhook: http://x}}}}\n"), RELEASE, STAGE);
    expect(&e, "gilliam.yml:7:13: unknown key `notifications` in `x-gilliam`", "allowed keys: build, image, analysis, hooks, stickiness, release");
}

#[test]
fn delivery_settings_merge_with_the_stage_file_winning_key_by_key() {
    let app = format!(
        "{APP}x-gilliam:\n  analysis: {{max_error_rate: 2%, max_p99_ms: 300}}\n  hooks: {{pre_traffic: ./smoke, on_abort: ./page}}\n  stickiness: 10m\n"
    );
    let stage = format!("{STAGE}analysis: {{max_p99_ms: 900, alarms: [shop-5xx]}}\nhooks: {{on_abort: ./page-ops, timeout: 1m}}\nnotifications: {{webhook: 'https://hooks.example.com/x'}}\n");
    let inputs = Inputs {
        app: Source { name: "gilliam.yml", text: &app },
        release: Source { name: "release.json", text: RELEASE },
        stage: Source { name: "stage.yml", text: &stage },
    };
    let m = compile(&inputs).expect("compiles").manifest;
    let a = m.delivery.analysis.expect("analysis on");
    assert_eq!((a.max_error_rate_percent, a.max_p99_ms, a.max_ratio_vs_baseline, a.min_requests, a.interval_seconds), (2.0, Some(900), 1.5, 50, 60));
    assert_eq!(a.alarms, ["shop-5xx"]);
    assert_eq!(a.lag_seconds, 180, "CloudWatch's delay unless said otherwise");
    assert_eq!(m.delivery.hooks.pre_traffic.as_deref(), Some("./smoke"));
    assert_eq!(m.delivery.hooks.on_abort.as_deref(), Some("./page-ops"));
    assert_eq!(m.delivery.hooks.timeout_seconds, 60);
    assert_eq!(m.delivery.stickiness_seconds, Some(600));
    assert_eq!(m.delivery.notifications.webhook.as_deref(), Some("https://hooks.example.com/x"));
    let t = m.test_route.expect("a formation with HTTP services has a test route");
    // A local AWS has no delay: `lag: 0s` in the stage file, winning over gilliam.yml's.
    let app = format!("{APP}x-gilliam:\n  analysis: {{lag: 5m}}\n");
    let stage = format!("{STAGE}analysis: {{lag: 0s}}\n");
    let inputs = Inputs {
        app: Source { name: "gilliam.yml", text: &app },
        release: Source { name: "release.json", text: RELEASE },
        stage: Source { name: "stage.yml", text: &stage },
    };
    assert_eq!(compile(&inputs).expect("compiles").manifest.delivery.analysis.expect("on").lag_seconds, 0);
    assert_eq!((t.header.as_str(), t.value.as_str()), ("X-Gilliam-Release", "3"));
    // Without any of it: nothing in the manifest, and only health judges a shift.
    let plain = Inputs {
        app: Source { name: "gilliam.yml", text: APP },
        release: Source { name: "release.json", text: RELEASE },
        stage: Source { name: "stage.yml", text: STAGE },
    };
    assert!(compile(&plain).expect("compiles").manifest.delivery.is_default());
}

/// `deregistration_delay`: ELBv2 takes 0 to 3600 seconds; the value reaches the target groups
/// (which CloudFormation sets) and the agent's drain on shutdown.
#[test]
fn deregistration_delay_is_checked_and_compiled_into_target_groups_and_the_drain() {
    let e = errors(APP, RELEASE, &format!("{STAGE}deregistration_delay: 2h\n"));
    expect(&e, "stage.yml:7:23: `deregistration_delay` `2h` is out of range", "between 0 and 3600 seconds");
    let stage = format!("{STAGE}deregistration_delay: 5s\n");
    let inputs = Inputs {
        app: Source { name: "gilliam.yml", text: APP },
        release: Source { name: "release.json", text: RELEASE },
        stage: Source { name: "stage.yml", text: &stage },
    };
    let c = compile(&inputs).unwrap_or_else(|e| panic!("{e:?}"));
    let template: serde_json::Value = serde_json::from_slice(&c.files["templates/shop-r3.json"]).expect("template");
    let groups: Vec<&serde_json::Value> =
        template["Resources"].as_object().expect("resources").values().filter(|r| r["Type"] == "AWS::ElasticLoadBalancingV2::TargetGroup").collect();
    assert!(!groups.is_empty());
    for g in groups {
        assert_eq!(g["Properties"]["TargetGroupAttributes"], serde_json::json!([{ "Key": "deregistration_delay.timeout_seconds", "Value": "5" }]));
    }
    let userdata = c.userdata().expect("userdata").remove("api").expect("api's userdata");
    let cfg = gilliam_compiler::runtime::from_userdata(&userdata).expect("config");
    let gilliam_compiler::runtime::RuntimeConfig::Service(cfg) = gilliam_compiler::runtime::parse(cfg.as_bytes()).expect("parses") else { panic!("service") };
    assert_eq!(cfg.drain_seconds, 5);
}

/// Target groups are a per-region quota shared by the whole account: at its peak (every live
/// and cold release) the formation must fit the stage's `quotas.target_groups`; the manifest
/// records what it holds at its peak for the preflight to count against the account.
#[test]
fn the_target_groups_of_every_live_and_cold_release_must_fit_the_regions_quota() {
    // api: an internal and a public target group per release; keep 2 + 2 + cold 3 = 7 releases.
    let stage = format!("{STAGE}cold_releases: 3\nquotas: {{target_groups: 13}}\n");
    let e = errors(APP, RELEASE, &stage);
    expect(&e, "stage.yml:1:1: the formation would hold 14 target groups at its peak (2 per release x 7 releases", "quotas.target_groups");
    let stage = format!("{STAGE}cold_releases: 3\nquotas: {{target_groups: 14}}\n");
    let c = compile(&Inputs {
        app: Source { name: "gilliam.yml", text: APP },
        release: Source { name: "release.json", text: RELEASE },
        stage: Source { name: "stage.yml", text: &stage },
    })
    .unwrap_or_else(|e| panic!("{e:?}"));
    let f = c.manifest.formation.footprint.expect("footprint");
    assert_eq!((f.target_groups, f.load_balancers, f.stacks, f.rules_per_load_balancer), (14, 2, 7 + 1 + 1, 100));
}

/// A release from a container image pins a digest: a tag is refused where it is written, with
/// the command that resolves it. A service of an image release may leave `script` out (the
/// image's own command); its limits may not exceed its instance.
#[test]
fn an_image_release_pins_a_digest_and_limits_fit_the_instance() {
    let image = |reference: &str| {
        RELEASE.replace(
            r#""artifact": {"url": "s3://bucket-a/app.tgz", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}"#,
            &format!(r#""artifact": {{"image": "{reference}"}}"#),
        )
    };
    let e = errors(APP, &image("123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/api:v3"), STAGE);
    expect(
        &e,
        "release.json:3:25: image `123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/api:v3` is named by its tag `v3`",
        "gilliam build --image 123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/api:v3",
    );
    let e = errors(APP, &image("shop/api@sha256:00"), STAGE);
    expect(&e, "release.json:3:25: `shop/api@sha256:00` is not an image reference", "REGISTRY/REPOSITORY@sha256:DIGEST");
    let pinned = image("123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/api@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
    // No script: fine for an image, refused for a tarball.
    let app = "api:\n  ports: [80]\n  memory: 4G\n  cpus: 3\n";
    let e = errors(app, &pinned, STAGE);
    expect(&e, "gilliam.yml:3:11: service `api`: `memory` 4096M is more than t3.small leaves it (1664M of 2048M", "larger `instance_type`");
    expect(&e, "gilliam.yml:4:9: service `api`: `cpus` 3 is more than the 2 vCPUs of t3.small", "lower `cpus`");
    assert!(!e.iter().any(|(l, _)| l.contains("no `script`")), "{e:?}");
    let e = errors("api:\n  ports: [80]\n", RELEASE, STAGE);
    expect(&e, "gilliam.yml:1:1: service `api` has no `script`", "an image release may leave it out");
    let e = errors("api:\n  script: a\n  memory: lots\n  cpus: many\n", RELEASE, STAGE);
    expect(&e, "gilliam.yml:3:11: `memory` `lots` is not an amount of memory", "`512M`");
    expect(&e, "gilliam.yml:4:9: `cpus` must be a number of CPUs", "cpus: 0.5");
    // The instance role may pull exactly the image's repository.
    let c = compile(&Inputs {
        app: Source { name: "gilliam.yml", text: "api:\n  ports: [80]\n  memory: 512M\n  cpus: 0.5\n" },
        release: Source { name: "release.json", text: &pinned },
        stage: Source { name: "stage.yml", text: STAGE },
    })
    .unwrap_or_else(|e| panic!("{e:?}"));
    let t: serde_json::Value = serde_json::from_slice(&c.files["templates/shop-r3.json"]).expect("template");
    let statements = &t["Resources"]["InstanceRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"];
    let pull = statements.as_array().expect("statements").iter().find(|s| s["Sid"] == "PullOwnImage").expect("pull");
    assert_eq!(pull["Resource"], "arn:aws:ecr:eu-west-1:123456789012:repository/shop/api");
    assert!(!statements.to_string().contains("s3:GetObject"), "no artifact to read: {statements}");
    // And may ship its lines to its formation's log group, in streams of its own release only.
    let sid = |id: &str| statements.as_array().expect("statements").iter().find(|s| s["Sid"] == id).cloned().expect(id);
    assert_eq!(sid("ShipOwnLogs")["Action"], "logs:PutLogEvents");
    assert_eq!(
        sid("ShipOwnLogs")["Resource"]["Fn::Sub"],
        "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/gilliam/shop:log-stream:r3/*"
    );
    assert_eq!(sid("MakeOwnLogStreams")["Resource"]["Fn::Sub"], "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/gilliam/shop:*");
    let userdata = c.userdata().expect("userdata").remove("api").expect("api's userdata");
    let cfg = gilliam_compiler::runtime::from_userdata(&userdata).expect("config");
    let gilliam_compiler::runtime::RuntimeConfig::Service(cfg) = gilliam_compiler::runtime::parse(cfg.as_bytes()).expect("parses") else { panic!("service") };
    assert_eq!(cfg.limits, Some(gilliam_compiler::runtime::Limits { memory_mib: 512, cpu_millis: 500 }));
    assert_eq!(cfg.logs.map(|l| l.group), Some("/gilliam/shop".to_string()));
    assert_eq!(
        (cfg.artifact, cfg.image.map(|i| i.digest)),
        (None, Some("sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".to_string()))
    );
}

#[test]
fn a_build_is_a_command_or_an_image_command_and_says_where_it_is_wrong() {
    let parse = |x: &str| gilliam_compiler::parse_app(gilliam_compiler::Source { name: "gilliam.yml", text: &format!("{APP}x-gilliam:\n{x}") });
    use gilliam_compiler::app::Build;
    assert_eq!(parse("  build: make dist\n").expect("tree").build, Some(Build::Tree("make dist".into())));
    let image = parse("  build:\n    image: docker build -t \"$GILLIAM_IMAGE\" .\n").expect("image");
    assert_eq!(image.build, Some(Build::Image("docker build -t \"$GILLIAM_IMAGE\" .".into())));
    let e = errors(&format!("{APP}x-gilliam:\n  build: {{imag: make}}\n"), RELEASE, STAGE);
    expect(&e, "gilliam.yml:8:11: unknown key `imag` in `build`", "did you mean `image`?");
    expect(&e, "gilliam.yml:8:10: `build` as a map needs `image`", "build: {image: docker build");
    let e = errors(&format!("{APP}x-gilliam:\n  build: {{image: ' '}}\n"), RELEASE, STAGE);
    expect(&e, "gilliam.yml:8:18: `build` is empty", "leave `build` out");
    let both = format!("{APP}x-gilliam:\n  image: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/api:main\n  build: {{image: make image}}\n");
    let e = errors(&both, RELEASE, STAGE);
    expect(&e, "gilliam.yml:8:3: `build: {image: ...}` and `image` both say", "keep `build.image`");
}

#[test]
fn log_retention_is_one_cloudwatch_offers() {
    let e = errors(APP, RELEASE, &format!("{STAGE}log_retention_days: 45\n"));
    expect(&e, "stage.yml:", "one of 1, 3, 5, 7, 14, 30, 60, 90");
    assert!(e.iter().any(|(l, _)| l.contains("`log_retention_days` 45 is not a retention CloudWatch Logs offers")), "{e:?}");
    assert!(errors(APP, RELEASE, &format!("{STAGE}log_retention_days: 90\n")).is_empty());
}

#[test]
fn the_release_phase_is_checked_where_it_is_written_and_the_stage_file_wins() {
    let compiled = |app: &str, stage: &str| {
        let inputs = Inputs {
            app: Source { name: "gilliam.yml", text: app },
            release: Source { name: "release.json", text: RELEASE },
            stage: Source { name: "stage.yml", text: stage },
        };
        compile(&inputs).expect("compiles").manifest.delivery.release_phase
    };
    // No `web` here: the service must be named.
    let e = errors(&format!("{APP}x-gilliam:\n  release: bin/migrate\n"), RELEASE, STAGE);
    expect(&e, "gilliam.yml:8:12: the release phase runs as one of the formation's services", "one of: api, worker");
    let e = errors(&format!("{APP}x-gilliam:\n  release: {{command: [], service: db, timeout: 5s, retries: 2}}\n"), RELEASE, STAGE);
    expect(&e, "gilliam.yml:8:22: `release.command` is empty", "[bin/rails, db:migrate]");
    expect(&e, "gilliam.yml:8:48: `release.timeout` `5s` is out of range", "between 60 and 43200 seconds");
    expect(&e, "gilliam.yml:8:52: unknown key `retries` in `release`", "");
    assert_eq!(e.len(), 3, "{e:?}");
    let e = errors(&format!("{APP}x-gilliam:\n  release: {{command: bin/migrate, service: db}}\n"), RELEASE, STAGE);
    expect(&e, "gilliam.yml:8:44: `release.service` names `db`", "one of: api, worker");
    let e = errors(APP, RELEASE, &format!("{STAGE}release: {{timeout: 10m}}\n"));
    expect(&e, "stage.yml:7:10: `release` has no `command`", "");
    let e = errors(APP, RELEASE, &format!("{STAGE}release: true\n"));
    expect(&e, "stage.yml:7:10: `release: true` names no command", "release: false");

    let r = compiled(&format!("{APP}x-gilliam:\n  release: {{command: bin/migrate --all, service: worker}}\n"), STAGE).expect("a release phase");
    assert_eq!((r.service.as_str(), r.command.as_slice(), r.timeout_seconds), ("worker", &["bin/migrate".to_string(), "--all".to_string()][..], 1800));
    // The stage file wins key by key, and can turn it off.
    let app = format!("{APP}x-gilliam:\n  release: {{command: bin/migrate, service: worker}}\n");
    let r = compiled(&app, &format!("{STAGE}release: {{command: [bin/rails, 'db:migrate VERBOSE'], timeout: 1h}}\n")).expect("a release phase");
    assert_eq!(
        (r.service.as_str(), r.command.as_slice(), r.timeout_seconds),
        ("worker", &["bin/rails".to_string(), "db:migrate VERBOSE".to_string()][..], 3600)
    );
    assert_eq!(compiled(&app, &format!("{STAGE}release: false\n")), None);
    // `web`, when there is one, is the default.
    let r = compiled("web:\n  script: bin/web\n  ports: [80]\nworker:\n  script: bin/w\nx-gilliam:\n  release: bin/migrate\n", STAGE).expect("a release phase");
    assert_eq!(r.service, "web");
}
