//! What real CloudFormation and ELBv2 require of a change between releases, checked on the
//! compiler's output with the strict layer's rules (`gilliam_doubles::strict`): every
//! template on its own (names, rule conditions, at least one resource), and every step of a
//! formation changing the way teams change them (routes added, removed, reordered; HTTP
//! services added and removed; a port changed; a service made internal), each compiled against
//! the templates the previous step deployed, with traffic split across live releases.

use gilliam_compiler::manifest::StackRole;
use gilliam_compiler::priority::DeployedRules;
use gilliam_compiler::{compile_with, Compiled, Inputs, Options, Source, TrafficShare};
use gilliam_doubles::strict::{change_problems, template_problems};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const STAGE: &str = "formation: shop\nregion: eu-west-1\nvpc: vpc-0123456789abcdef0\npublic_subnets: [subnet-00000001, subnet-00000002]\nprivate_subnets: [subnet-00000011, subnet-00000012]\noutputs_bucket: bucket-a\nkeep_releases: 2\n";

fn release(n: u32) -> String {
    format!(
        r#"{{"number": {n}, "artifact": {{"url": "s3://bucket-a/app.tgz", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}}, "runtime_image": "ami-0123456789abcdef0", "revision": "r{n}", "created": "2026-11-22T10:00:00Z"}}"#
    )
}

fn compile(app: &str, n: u32, stage: &str, traffic: Option<Vec<TrafficShare>>, deployed: BTreeMap<String, DeployedRules>) -> Compiled {
    let rel = release(n);
    let inputs = Inputs {
        app: Source { name: "gilliam.yml", text: app },
        release: Source { name: "release.json", text: &rel },
        stage: Source { name: "stage.yml", text: stage },
    };
    compile_with(&inputs, &Options { traffic, workers: 1, deployed_rules: deployed, ..Options::default() }).unwrap_or_else(|e| panic!("{e}\n---\n{app}"))
}

fn templates(c: &Compiled) -> BTreeMap<String, (StackRole, Value)> {
    c.manifest.stacks.iter().map(|s| (s.name.clone(), (s.role, serde_json::from_slice(&c.files[&s.template]).expect("json")))).collect()
}

/// The share a compiled release holds once live, as the materializer observes it.
fn share(c: &Compiled, weight: u32) -> TrafficShare {
    TrafficShare {
        release: c.manifest.release.number,
        weight,
        routing_groups: c.manifest.formation.routing_groups,
        internal: c.manifest.services.iter().filter(|s| s.internal_target_group_export.is_some()).map(|s| s.name.clone()).collect(),
        public: c.manifest.services.iter().filter(|s| s.public_target_group_export.is_some()).map(|s| s.name.clone()).collect(),
        ports: c.manifest.services.iter().filter(|s| s.internal_target_group_export.is_some()).filter_map(|s| s.port.map(|p| (s.name.clone(), p))).collect(),
    }
}

/// The formation as each step leaves it: stack name to template, as CloudFormation holds them.
#[derive(Default)]
struct World {
    stacks: BTreeMap<String, Value>,
    live: Vec<TrafficShare>,
}

impl World {
    /// Deploys `app` as release `n` the way the materializer orders it (formation stack,
    /// release stack, routing stacks, then empty routing stacks deleted), each change checked
    /// against real AWS's rules; then the operator's weights are applied.
    fn step(&mut self, app: &str, n: u32, weights: &[(u32, u32)]) -> Compiled {
        // Retention: the newest keep_releases (2) stay beside the new one; an older one leaves
        // the rules with this converge and its stack goes after.
        let mut retired = Vec::new();
        while self.live.len() > 2 {
            let old = self.live.remove(0);
            assert_eq!(old.weight, 0, "the test retires only releases without traffic");
            retired.push(old.release);
        }
        let mut traffic = self.live.clone();
        traffic.push(TrafficShare { release: n, weight: 0, routing_groups: 0, internal: BTreeSet::new(), public: BTreeSet::new(), ports: BTreeMap::new() });
        let deployed: BTreeMap<String, DeployedRules> = self
            .stacks
            .iter()
            .filter(|(name, _)| name.contains("-routing-"))
            .map(|(name, t)| (name.clone(), DeployedRules::from_template(&serde_json::to_vec(t).expect("json"))))
            .collect();
        let c = compile(app, n, STAGE, Some(traffic), deployed);
        let new = templates(&c);
        for role in [StackRole::Formation, StackRole::Release, StackRole::Routing] {
            for (name, (_, t)) in new.iter().filter(|(_, (r, _))| *r == role) {
                let others: BTreeMap<String, Value> = self.stacks.iter().filter(|(k, _)| *k != name).map(|(k, v)| (k.clone(), v.clone())).collect();
                let problems = change_problems(name, self.stacks.get(name), t, &others);
                assert!(problems.is_empty(), "release {n}, stack {name}:\n{}", problems.join("\n"));
                if role == StackRole::Routing {
                    test_rules_come_first(n, t);
                }
                self.stacks.insert(name.clone(), t.clone());
            }
        }
        let gone: Vec<String> = self.stacks.keys().filter(|k| k.contains("-routing-") && !new.contains_key(*k)).cloned().collect();
        gone.iter().chain(&retired.iter().map(|r| format!("shop-r{r}")).collect::<Vec<_>>()).for_each(|name| {
            let others: BTreeMap<String, Value> = self.stacks.iter().filter(|(k, _)| *k != name).map(|(k, v)| (k.clone(), v.clone())).collect();
            let problems = gilliam_doubles::strict::delete_problems(&self.stacks[name], &others);
            assert!(problems.is_empty(), "release {n}, deleting {name}:\n{}", problems.join("\n"));
            self.stacks.remove(name);
        });
        self.live.push(share(&c, 0));
        for s in &mut self.live {
            s.weight = weights.iter().find(|(r, _)| *r == s.release).map_or(0, |(_, w)| *w);
        }
        c
    }
}

/// Every weighted rule has its test-header twin on the same listener, with the same other
/// conditions plus `X-Gilliam-Release: n`, forwarding to release `n` alone, and evaluated just
/// before it: no other rule's priority lies between the two.
fn test_rules_come_first(n: u32, t: &Value) {
    let rules: BTreeMap<&String, &Value> =
        t["Resources"].as_object().into_iter().flatten().filter(|(_, r)| r["Type"] == "AWS::ElasticLoadBalancingV2::ListenerRule").collect();
    for (id, r) in rules.iter().filter(|(id, _)| !gilliam_compiler::names::is_test_rule(id)) {
        let twin_id = gilliam_compiler::names::test_rule_id(id);
        let twin = rules.get(&twin_id).unwrap_or_else(|| panic!("release {n}: {id} has no test-header twin"));
        let (p, tp) = (&r["Properties"], &twin["Properties"]);
        assert_eq!(p["ListenerArn"], tp["ListenerArn"], "{id}");
        let mut want = p["Conditions"].as_array().cloned().unwrap_or_default();
        want.push(serde_json::json!({ "Field": "http-header", "HttpHeaderConfig": { "HttpHeaderName": "X-Gilliam-Release", "Values": [n.to_string()] } }));
        assert_eq!(tp["Conditions"], Value::Array(want), "{twin_id}");
        let forward = tp["Actions"][0]["ForwardConfig"]["TargetGroups"].as_array().cloned().unwrap_or_default();
        assert!(
            forward.len() == 1 && forward[0]["TargetGroupArn"]["Fn::ImportValue"].as_str().is_some_and(|e| e.starts_with(&format!("shop-r{n}-"))),
            "{twin_id}: {forward:?}"
        );
        let (hi, lo) = (p["Priority"].as_u64().unwrap_or(0), tp["Priority"].as_u64().unwrap_or(0));
        let between = rules
            .values()
            .filter(|o| o["Properties"]["ListenerArn"] == p["ListenerArn"])
            .filter_map(|o| o["Properties"]["Priority"].as_u64())
            .filter(|q| lo < *q && *q < hi)
            .count();
        assert!(lo < hi && between == 0, "release {n}: {twin_id} ({lo}) just before {id} ({hi})");
    }
}

/// Weighted public rules of a routing template (test-header twins left out): (priority, host,
/// path) sorted by priority.
fn public_rules(t: &Value) -> Vec<(u64, String, String)> {
    let mut out: Vec<(u64, String, String)> = t["Resources"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(id, r)| {
            r["Type"] == "AWS::ElasticLoadBalancingV2::ListenerRule"
                && r["Properties"]["ListenerArn"]["Ref"] != "InternalListener"
                && !gilliam_compiler::names::is_test_rule(id)
        })
        .map(|(_, r)| {
            let cond = |field: &str, key: &str| {
                r["Properties"]["Conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["Field"] == field)
                    .map_or(String::new(), |c| c[key]["Values"][0].as_str().unwrap_or("").to_string())
            };
            (r["Properties"]["Priority"].as_u64().unwrap_or(0), cond("host-header", "HostHeaderConfig"), cond("path-pattern", "PathPatternConfig"))
        })
        .collect();
    out.sort();
    out
}

const V1: &str = "api:\n  script: bin/api\n  ports: [8080]\n  routes: [api.example.com, example.com/api/*]\nweb:\n  script: bin/web\n  ports: [8080]\n  routes: [example.com]\nworker:\n  script: bin/worker\n";

#[test]
fn a_formation_changed_between_releases_the_way_teams_do_converges_on_real_aws_rules() {
    let mut w = World::default();
    w.step(V1, 1, &[(1, 100)]);
    // Add a route, more specific than the existing ones: it goes first, nobody else moves.
    let v2 = V1.replace("routes: [api.example.com, example.com/api/*]", "routes: [api.example.com, example.com/api/*, example.com/api/v2/*]");
    let before = public_rules(&w.stacks["shop-routing-1"]);
    let c2 = w.step(&v2, 2, &[(1, 50), (2, 50)]);
    let after = public_rules(&w.stacks["shop-routing-1"]);
    for r in &before {
        assert!(after.contains(r), "{r:?} kept its priority: {after:?}");
    }
    // The manifest's route order is the template's order of priorities.
    let order: Vec<(String, String)> = {
        let mut routes = c2.manifest.routes.clone();
        routes.sort_by_key(|r| r.priority);
        routes.iter().map(|r| (r.host.clone().unwrap_or_default(), r.path.clone().unwrap_or_default())).collect()
    };
    assert_eq!(order, after.iter().map(|(_, h, p)| (h.clone(), p.clone())).collect::<Vec<_>>());
    assert_eq!(order[0], ("example.com".into(), "/api/v2/*".into()), "the most specific route first");
    // Remove a route and reorder what is left; add an HTTP service (new in release 3, which has
    // no traffic yet): its rules forward to its own target groups from the start.
    let v3 = v2.replace("routes: [api.example.com, example.com/api/*, example.com/api/v2/*]", "routes: [example.com/api/v2/*, example.com/api/*]")
        + "search:\n  script: bin/search\n  ports: [9000]\n  routes: [example.com/search/*]\n";
    w.step(&v3, 3, &[(2, 90), (3, 10)]);
    let routing = &w.stacks["shop-routing-1"];
    let search_rule = routing["Resources"].as_object().expect("resources").values().find(|r| r.to_string().contains("/search/*")).expect("search rule");
    let groups = search_rule["Properties"]["Actions"][0]["ForwardConfig"]["TargetGroups"].as_array().expect("forward");
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["TargetGroupArn"]["Fn::ImportValue"], "shop-r3-Search-PublicTargetGroup");
    assert_eq!(groups[0]["Weight"], 1, "weight 0 everywhere else, so the only release that has it takes it");
    // Remove an HTTP service, change a port, make a service internal.
    let v4 = v3
        .replace("web:\n  script: bin/web\n  ports: [8080]\n  routes: [example.com]\n", "")
        .replace("ports: [9000]\n  routes: [example.com/search/*]", "ports: [9100]\n  internal: true");
    w.step(&v4, 4, &[(3, 50), (4, 50)]);
    // The serving releases' ports stay open while they run: 8080 (api, web), 9000 (search in 3),
    // 9100 (search in 4).
    let formation = &w.stacks["shop"];
    for p in [8080, 9000, 9100] {
        assert!(formation["Resources"].get(format!("InstanceIngressInternal{p}")).is_some(), "port {p} open to the internal load balancers");
    }
    assert!(formation["Resources"].get("InstanceIngressPublic9000").is_some(), "search is public in release 3, which still serves");
    assert!(formation["Resources"].get("InstanceIngressPublic9100").is_none(), "search is internal in release 4");
    // Every public route in a rule, none twice.
    let rules = public_rules(&w.stacks["shop-routing-1"]);
    let prios: BTreeSet<u64> = rules.iter().map(|r| r.0).collect();
    assert_eq!(prios.len(), rules.len());
    // Then the last routed service goes: the routing stack keeps only internal names, the
    // public load balancer and its rules go, and the formation keeps the exports still imported.
    let v5 = "api:\n  script: bin/api\n  ports: [8080]\n  internal: true\nworker:\n  script: bin/worker\n";
    w.step(v5, 5, &[(5, 100)]);
    assert!(public_rules(&w.stacks["shop-routing-1"]).is_empty());
    // And a worker-only formation: no routing stack at all, which is deleted (it exports nothing).
    w.step("worker:\n  script: bin/worker\n", 6, &[(6, 100)]);
    assert!(!w.stacks.keys().any(|k| k.contains("-routing-")), "{:?}", w.stacks.keys().collect::<Vec<_>>());
}

#[test]
fn positional_priorities_are_what_real_elbv2_refuses() {
    // The control: renumbering by position, as gilliam did, is caught by the same check.
    let c1 = compile(V1, 1, STAGE, None, BTreeMap::new());
    let mut before = templates(&c1)["shop-routing-1"].1.clone();
    let mut after = before.clone();
    // Shift every public rule down by one and add a rule at the top, as positions would.
    let rules = after["Resources"].as_object_mut().expect("resources");
    let ids: Vec<String> = rules.iter().filter(|(_, r)| r["Properties"]["ListenerArn"]["Ref"] == "PublicHttpListener").map(|(k, _)| k.clone()).collect();
    let mut prios: Vec<(u64, String)> = ids.iter().map(|id| (rules[id]["Properties"]["Priority"].as_u64().expect("priority"), id.clone())).collect();
    prios.sort();
    for (i, (_, id)) in prios.iter().enumerate() {
        rules[id]["Properties"]["Priority"] = Value::from(i as u64 + 2);
        before["Resources"][id]["Properties"]["Priority"] = Value::from(i as u64 + 1);
    }
    let mut top = rules[&prios[0].1].clone();
    top["Properties"]["Priority"] = Value::from(1);
    rules.insert("RouteNew".into(), top);
    let p = change_problems("shop-routing-1", Some(&before), &after, &BTreeMap::new()).join("\n");
    assert!(p.contains("PriorityInUse"), "{p}");
}

#[test]
fn a_worker_only_formation_has_no_empty_template() {
    let c = compile("worker:\n  script: bin/worker\n", 1, STAGE, None, BTreeMap::new());
    assert!(c.manifest.stacks.iter().all(|s| s.role != StackRole::Routing), "{:?}", c.manifest.stacks.iter().map(|s| &s.name).collect::<Vec<_>>());
    for (name, (_, t)) in templates(&c) {
        assert_eq!(template_problems(&t), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn names_real_aws_accepts_from_names_teams_write() {
    let a = "recommendation-engine-feature-store-gateway-for-the-storefront1";
    let b = "recommendation-engine-feature-store-gateway-for-the-storefront2";
    assert_eq!(a.len(), 63);
    let app = format!(
        "{a}:\n  script: bin/a\n  ports: [8080]\n  routes: [a.example.com]\n{b}:\n  script: bin/b\n  ports: [8080]\n  routes: [b.example.com]\nmy_api:\n  script: bin/api\n  ports: [8080]\n  routes: [/api/*]\n"
    );
    let c = compile(&app, 1, STAGE, None, BTreeMap::new());
    let mut names = BTreeSet::new();
    for (name, (_, t)) in templates(&c) {
        assert_eq!(template_problems(&t), Vec::<String>::new(), "{name}");
        for r in t["Resources"].as_object().into_iter().flatten().map(|(_, r)| r) {
            if let Some(n) = r["Properties"]["Name"].as_str().filter(|_| r["Type"] == "AWS::ElasticLoadBalancingV2::TargetGroup") {
                assert!(names.insert(n.to_string()), "target group name {n} twice");
            }
            if r["Type"] == "AWS::Route53::RecordSet" {
                let host = r["Properties"]["Name"].as_str().unwrap_or_default();
                assert!(host.split('.').all(|l| l.len() <= 63 && !l.contains('_')), "{host}");
            }
        }
    }
    assert_eq!(names.len(), 6, "two target groups for each of three services: {names:?}");
    let urls: Vec<&str> = c.manifest.services.iter().filter_map(|s| s.internal_url.as_deref()).collect();
    assert!(urls.contains(&"http://my-api.shop.internal"), "{urls:?}");
    assert!(urls.contains(&format!("http://{a}.shop.internal").as_str()), "{urls:?}");
}

#[test]
fn a_formation_named_internal_is_refused_at_its_position() {
    let stage = STAGE.replace("formation: shop", "formation: internal-tools");
    let rel = release(1);
    let inputs = Inputs {
        app: Source { name: "gilliam.yml", text: V1 },
        release: Source { name: "release.json", text: &rel },
        stage: Source { name: "stage.yml", text: &stage },
    };
    let err = gilliam_compiler::compile(&inputs).expect_err("refused").to_string();
    assert!(err.contains("stage.yml:1:12: bad formation name `internal-tools`"), "{err}");
    assert!(err.contains("internal-"), "{err}");
}

#[test]
fn an_exact_postgres_version_is_not_upgraded_behind_the_templates_back() {
    let db = |version: &str| {
        let app = format!("db:\n  type: postgres\n  version: \"{version}\"\n");
        let c = compile(&app, 1, STAGE, None, BTreeMap::new());
        templates(&c)["shop"].1["Resources"]["AuxDbDatabase"]["Properties"].clone()
    };
    // RDS moves a database to newer minors on its own; a template that names an exact minor
    // would then ask for a downgrade, which RDS refuses: an exact pin turns that off.
    let pinned = db("17.5");
    assert_eq!((pinned["EngineVersion"].as_str(), pinned["AutoMinorVersionUpgrade"].as_bool()), (Some("17.5"), Some(false)));
    let major = db("17");
    assert_eq!((major["EngineVersion"].as_str(), major["AutoMinorVersionUpgrade"].as_bool()), (Some("17"), Some(true)));
    // Changing the major version in gilliam.yml is an upgrade RDS makes only when allowed.
    assert_eq!(major["AllowMajorVersionUpgrade"].as_bool(), Some(true));
}

/// A cold release is in no routing rule, yet the instances stay open on its ports: warming it
/// then needs no formation stack update, and its targets can pass their health checks (real
/// EC2 enforces the security group; the local emulator does not).
#[test]
fn a_cold_release_holds_no_rule_and_keeps_its_ports_open() {
    let v1 = "api:\n  script: bin/api\n  ports: [7000]\n  routes: [example.com]\n";
    let v2 = v1.replace("ports: [7000]", "ports: [7100]");
    let c1 = compile(v1, 1, STAGE, None, BTreeMap::new());
    let c2 = compile(&v2, 2, STAGE, None, BTreeMap::new());
    let rel = release(2);
    let inputs = Inputs {
        app: Source { name: "gilliam.yml", text: &v2 },
        release: Source { name: "release.json", text: &rel },
        stage: Source { name: "stage.yml", text: STAGE },
    };
    let with = |standby: Vec<TrafficShare>| {
        let o = Options { traffic: Some(vec![share(&c2, 100)]), workers: 1, standby, ..Options::default() };
        templates(&compile_with(&inputs, &o).unwrap_or_else(|e| panic!("{e}")))
    };
    let open = |t: &BTreeMap<String, (StackRole, Value)>, p: u16| t["shop"].1["Resources"].get(format!("InstanceIngressPublic{p}")).is_some();
    let alone = with(vec![]);
    assert!(open(&alone, 7100) && !open(&alone, 7000), "without release 1, only release 2's port");
    let cold = with(vec![share(&c1, 0)]);
    assert!(open(&cold, 7100) && open(&cold, 7000), "release 1 is cold: its port stays open");
    assert!(cold["shop"].1["Resources"].get("InstanceIngressInternal7000").is_some());
    let routing = cold["shop-routing-1"].1.to_string();
    assert!(!routing.contains("shop-r1-"), "a cold release is in no rule: {routing}");
    assert_eq!(cold["shop-routing-1"].1, alone["shop-routing-1"].1, "routing is the same as without it");
}
