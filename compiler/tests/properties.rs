//! Property tests: random valid formations compile, and what they compile to is internally
//! consistent and within every CloudFormation and ELBv2 limit.

use gilliam_compiler::{compile_with_traffic, Compiled, Inputs, Source, TrafficShare};
use proptest::prelude::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone)]
enum Kind {
    Web { routes: Vec<String>, internal: bool },
    Worker,
    Aux(&'static str),
}

#[derive(Debug, Clone)]
struct Svc {
    name: String,
    kind: Kind,
    scale: (u32, u32, u32),
}

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,6}([-_][a-z0-9]{1,5})?"
}

fn route() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z]{1,8}\\.example\\.com", "/[a-z]{1,8}/\\*", "[a-z]{1,8}\\.example\\.com/[a-z]{1,6}/\\*", "\\*\\.[a-z]{1,8}\\.example\\.com/[a-z]{1,6}",]
}

fn svc() -> impl Strategy<Value = Svc> {
    let kind = prop_oneof![
        6 => (prop::collection::vec(route(), 0..4), any::<bool>()).prop_map(|(routes, internal)| Kind::Web { internal: internal && routes.is_empty(), routes }),
        2 => Just(Kind::Worker),
        1 => prop_oneof![Just("postgres"), Just("redis"), Just("etcd")].prop_map(Kind::Aux),
    ];
    (name(), kind, 0u32..3, 0u32..3, 0u32..4).prop_map(|(name, kind, min, extra, more)| Svc { name, kind, scale: (min, min + extra, min + extra + more) })
}

fn formation() -> impl Strategy<Value = (Vec<Svc>, u32, bool)> {
    (prop::collection::vec(svc(), 1..40), 0u32..4, any::<bool>()).prop_map(|(svcs, keep, https)| {
        // Keep names that stay distinct as logical IDs and env prefixes, and routes unique.
        let (mut ids, mut envs, mut routes) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        let mut out = Vec::new();
        for mut s in svcs {
            let id = gilliam_compiler::names::logical(&s.name);
            let env = gilliam_compiler::names::env_prefix(&s.name);
            if !ids.insert(id) || !envs.insert(env) {
                continue;
            }
            if let Kind::Web { routes: rs, .. } = &mut s.kind {
                rs.retain(|r| {
                    let norm = r.to_ascii_lowercase();
                    let norm = norm.strip_suffix("/*").filter(|h| !h.is_empty() && !h.starts_with('/')).unwrap_or(&norm).to_string();
                    routes.insert(norm)
                });
            }
            out.push(s);
        }
        (out, keep, https)
    })
}

fn render(svcs: &[Svc], keep: u32, https: bool) -> (String, String) {
    let mut app = String::new();
    for s in svcs {
        app.push_str(&format!("{}:\n", s.name));
        match &s.kind {
            Kind::Web { routes, internal } => {
                app.push_str(&format!("  script: bin/{}\n  ports: [8080]\n  health: /health\n", s.name));
                if !routes.is_empty() {
                    app.push_str(&format!("  routes: [{}]\n", routes.iter().map(|r| format!("\"{r}\"")).collect::<Vec<_>>().join(", ")));
                }
                if *internal {
                    app.push_str("  internal: true\n");
                }
                app.push_str(&format!("  scale: {{min: {}, desired: {}, max: {}}}\n", s.scale.0, s.scale.1, s.scale.2));
            }
            Kind::Worker => app.push_str(&format!("  script: bin/{}\n  scale: {{min: {}, desired: {}, max: {}}}\n", s.name, s.scale.0, s.scale.1, s.scale.2)),
            Kind::Aux(t) => app.push_str(&format!("  type: {t}\n")),
        }
    }
    let mut stage = format!(
        "formation: prop\nregion: us-east-1\nvpc: vpc-0123456789abcdef0\npublic_subnets: [subnet-00000001, subnet-00000002]\nprivate_subnets:\n  - {{id: subnet-00000011, zone: us-east-1a}}\n  - {{id: subnet-00000012, zone: us-east-1b}}\noutputs_bucket: prop-bucket\nkeep_releases: {keep}\nauxiliary_image: ami-0123456789abcdef0\n"
    );
    if https {
        stage.push_str("certificate: arn:aws:acm:us-east-1:123456789012:certificate/abc-def\n");
    }
    (app, stage)
}

const RELEASE: &str = r#"{"number": 9, "artifact": {"url": "s3://prop-bucket/a.tgz", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}, "runtime_image": "ami-0123456789abcdef0", "revision": "r", "created": "2026-01-01T00:00:00Z"}"#;

/// Walks a template value and calls `f` for every intrinsic function found.
fn walk<'a>(v: &'a Value, f: &mut dyn FnMut(&'a str, &'a Value)) {
    match v {
        Value::Object(m) => {
            if m.len() == 1 {
                let (k, arg) = m.iter().next().expect("one entry");
                if k == "Ref" || k.starts_with("Fn::") {
                    f(k, arg);
                }
            }
            m.values().for_each(|x| walk(x, f));
        }
        Value::Array(a) => a.iter().for_each(|x| walk(x, f)),
        _ => {}
    }
}

fn sub_vars(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let Some(j) = after.find('}') else { break };
        if !after.starts_with('!') {
            out.push(&after[..j]);
        }
        rest = &after[j + 1..];
    }
    out
}

/// Checks everything a template set must satisfy; returns the first violation.
fn check(c: &Compiled) -> Result<(), String> {
    let mut exports = BTreeSet::new();
    let mut imports = BTreeSet::new();
    let mut elb_names = BTreeSet::new();
    for (path, bytes) in c.files.iter().filter(|(p, _)| p.starts_with("templates/")) {
        if bytes.len() > 1_000_000 {
            return Err(format!("{path}: {} bytes", bytes.len()));
        }
        let t: Value = serde_json::from_slice(bytes).map_err(|e| format!("{path}: {e}"))?;
        let res = t["Resources"].as_object().ok_or(format!("{path}: no Resources"))?;
        let outs = t["Outputs"].as_object().cloned().unwrap_or_default();
        if res.len() > 500 || outs.len() > 200 {
            return Err(format!("{path}: {} resources, {} outputs", res.len(), outs.len()));
        }
        for id in res.keys().chain(outs.keys()) {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!("{path}: logical ID {id:?}"));
            }
        }
        for o in outs.values() {
            if let Some(e) = o["Export"]["Name"].as_str() {
                if !exports.insert(e.to_string()) {
                    return Err(format!("export {e} defined twice"));
                }
            }
        }
        let mut problems = Vec::new();
        walk(&t, &mut |k, arg| match k {
            "Ref" => {
                let r = arg.as_str().unwrap_or("");
                if !r.starts_with("AWS::") && !res.contains_key(r) {
                    problems.push(format!("Ref {r}"));
                }
            }
            "Fn::GetAtt" => {
                let r = arg[0].as_str().unwrap_or("");
                if !res.contains_key(r) {
                    problems.push(format!("GetAtt {r}"));
                }
            }
            "Fn::Sub" => {
                for v in sub_vars(arg.as_str().unwrap_or("")) {
                    if !v.starts_with("AWS::") && !res.contains_key(v) {
                        problems.push(format!("Sub ${{{v}}}"));
                    }
                }
            }
            "Fn::ImportValue" => {
                imports.insert(arg.as_str().unwrap_or("").to_string());
            }
            _ => {}
        });
        if !problems.is_empty() {
            return Err(format!("{path}: unresolved {problems:?}"));
        }
        let mut tgs_per_lb: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for (id, r) in res {
            let p = &r["Properties"];
            if let Some(n) = p["Name"].as_str().filter(|_| r["Type"].as_str().is_some_and(|t| t.starts_with("AWS::ElasticLoadBalancingV2::"))) {
                if n.len() > 32 || !elb_names.insert(n.to_string()) {
                    return Err(format!("{path}: {id}: ELB name {n:?} too long or reused"));
                }
            }
            if r["Type"] == "AWS::ElasticLoadBalancingV2::ListenerRule" {
                let groups = p["Actions"][0]["ForwardConfig"]["TargetGroups"].as_array().cloned().unwrap_or_default();
                if groups.is_empty() || groups.len() > 5 {
                    return Err(format!("{path}: {id}: {} target groups in a forward", groups.len()));
                }
                let lb = if p["ListenerArn"]["Ref"] == "InternalListener" { "internal" } else { "public" };
                tgs_per_lb.entry(lb).or_default().extend(groups.iter().map(|g| g["TargetGroupArn"].to_string()));
            }
            if let Some(ud) = p["LaunchTemplateData"]["UserData"]["Fn::Base64"].as_str() {
                if ud.len() > 16 * 1024 {
                    return Err(format!("{path}: {id}: userdata {} bytes", ud.len()));
                }
            }
        }
        if let Some((lb, n)) = tgs_per_lb.iter().map(|(lb, s)| (lb, s.len())).find(|(_, n)| *n > 100) {
            return Err(format!("{path}: {lb} load balancer holds {n} target groups"));
        }
    }
    // Every userdata entry of the manifest is the script its launch template holds.
    let scripts = c.userdata()?;
    for s in &c.manifest.services {
        for (i, e) in s.userdata.iter().enumerate() {
            let name = if s.auxiliary_type.is_some() { format!("{}-{i}", s.name) } else { s.name.clone() };
            let script = scripts.get(&name).ok_or(format!("no userdata read back for {name}"))?;
            if script.len() != e.bytes || gilliam_compiler::names::sha256_hex(script.as_bytes()) != e.sha256 {
                return Err(format!("{name}: the manifest's userdata entry is not the script at {}", e.path));
            }
        }
    }
    for i in &imports {
        let formation_export = i.starts_with("prop-") && !i.starts_with("prop-r");
        let this_release = i.starts_with("prop-r9-");
        if (formation_export || this_release) && !exports.contains(i) {
            return Err(format!("ImportValue {i} is exported by no stack of this compile"));
        }
    }
    Ok(())
}

fn compile(app: &str, stage: &str, traffic: Option<&[TrafficShare]>) -> Result<Compiled, String> {
    let inputs = Inputs {
        app: Source { name: "gilliam.yml", text: app },
        release: Source { name: "release.json", text: RELEASE },
        stage: Source { name: "stage.yml", text: stage },
    };
    compile_with_traffic(&inputs, traffic).map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn userdata_is_escaped_as_serde_json_escapes(s in prop_oneof![any::<String>(), "[\\x00-\\x20\"\\\\a-z\u{7f}\u{e9}\u{2028}]{0,40}"]) {
        let mut out = String::new();
        gilliam_compiler::cfn::escape_json_into(&mut out, &s);
        prop_assert_eq!(format!("\"{out}\""), serde_json::to_string(&s).map_err(|e| TestCaseError::fail(e.to_string()))?);
    }

    #[test]
    fn random_valid_formations_compile_consistently((svcs, keep, https) in formation()) {
        let (app, stage) = render(&svcs, keep, https);
        let c = compile(&app, &stage, None).map_err(|e| TestCaseError::fail(format!("{e}\n---\n{app}")))?;
        check(&c).map_err(|e| TestCaseError::fail(format!("{e}\n---\n{app}")))?;
        let again = compile(&app, &stage, None).map_err(TestCaseError::fail)?;
        prop_assert_eq!(&c.files, &again.files);
    }

    #[test]
    fn traffic_over_several_releases_stays_within_forward_limits((svcs, keep, https) in formation(), weights in prop::collection::vec(0u32..1000, 1..4)) {
        let (app, stage) = render(&svcs, keep, https);
        let base = compile(&app, &stage, None).map_err(TestCaseError::fail)?;
        let web: BTreeSet<String> = base.manifest.services.iter().filter(|s| s.internal_target_group_export.is_some()).map(|s| s.name.clone()).collect();
        let public: BTreeSet<String> = base.manifest.services.iter().filter(|s| s.public_target_group_export.is_some()).map(|s| s.name.clone()).collect();
        let mut shares: Vec<TrafficShare> = weights.iter().take(keep as usize + 1).enumerate().map(|(i, w)| TrafficShare {
            release: 5 + i as u32, weight: *w, routing_groups: base.manifest.formation.routing_groups, internal: web.clone(), public: public.clone(), ports: BTreeMap::new(),
        }).collect();
        shares.push(TrafficShare { release: 9, weight: 0, routing_groups: 0, internal: BTreeSet::new(), public: BTreeSet::new(), ports: BTreeMap::new() });
        let c = compile(&app, &stage, Some(&shares)).map_err(TestCaseError::fail)?;
        check(&c).map_err(TestCaseError::fail)?;
        // Every routed service's rule names each live release, with the weight it was given.
        for (path, bytes) in c.files.iter().filter(|(p, _)| p.contains("-routing-")) {
            let t: Value = serde_json::from_slice(bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            for (id, r) in t["Resources"].as_object().into_iter().flat_map(|m| m.iter()).filter(|(_, r)| r["Type"] == "AWS::ElasticLoadBalancingV2::ListenerRule") {
                let groups = r["Properties"]["Actions"][0]["ForwardConfig"]["TargetGroups"].as_array().cloned().unwrap_or_default();
                if gilliam_compiler::names::is_test_rule(id) {
                    // The test-header rule reaches the compiled release (9) alone, whatever the weights.
                    prop_assert_eq!(groups.len(), 1, "{}: {}", path, id);
                    prop_assert!(groups[0]["TargetGroupArn"]["Fn::ImportValue"].as_str().is_some_and(|e| e.starts_with("prop-r9-")), "{}: {}", path, id);
                    let conditions = r["Properties"]["Conditions"].to_string();
                    prop_assert!(conditions.contains("X-Gilliam-Release") && conditions.contains("\"9\""), "{}: {}", path, conditions);
                    continue;
                }
                prop_assert_eq!(groups.len(), shares.len(), "{}", path);
                let got: Vec<u64> = groups.iter().map(|g| g["Weight"].as_u64().unwrap_or(0)).collect();
                let mut want: Vec<u64> = shares.iter().map(|s| u64::from(s.weight)).collect();
                if want.iter().all(|w| *w == 0) {
                    // No release carries traffic: the newest takes the rule, so that its
                    // target groups are in a rule (and health-checked) at all.
                    if let Some(last) = want.last_mut() {
                        *last = 1;
                    }
                }
                prop_assert_eq!(got, want);
            }
        }
    }
}

#[test]
fn the_checker_catches_a_dangling_ref() {
    let (app, stage) = render(&[Svc { name: "api".into(), kind: Kind::Web { routes: vec!["/x/*".into()], internal: false }, scale: (1, 1, 2) }], 2, false);
    let mut c = compile(&app, &stage, None).expect("compiles");
    assert_eq!(check(&c), Ok(()));
    let path = "templates/prop-r9.json".to_string();
    let mut t: Value = serde_json::from_slice(&c.files[&path]).expect("json");
    t["Resources"]["ApiAutoScalingGroup"]["Properties"]["LaunchTemplate"]["LaunchTemplateId"]["Ref"] = Value::String("Missing".into());
    c.files.insert(path, serde_json::to_vec(&t).expect("json"));
    assert!(check(&c).is_err_and(|e| e.contains("Ref Missing")));
}
