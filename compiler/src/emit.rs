//! Emission: the formation, routing and release templates, userdata and runtime configs, and
//! the manifest that describes them, from a checked and laid-out [`Ctx`].

use crate::app::AuxType;
use crate::cfn::{self, get_att, import, r#ref, tags, Template};
use crate::compile::{template_limits, Compiled, Ctx, Inputs, Svc};
use crate::manifest::{self as mf, Manifest, StackRole};
use crate::names::{self, sha256_hex, shorten, ELB_NAME_MAX};
use crate::obj;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Version of the runtime config that userdata hands to the agent.
pub const RUNTIME_CONFIG_VERSION: u32 = 1;
/// Userdata above this size moves its runtime config to S3 (the hard limit is 16 KiB).
pub const INLINE_USERDATA_BUDGET: usize = 12 * 1024;
/// Stands for the release stack's name in a runtime config until services are packed.
const STACK_PLACEHOLDER: &str = "@@gilliam-release-stack@@";
/// Discovery variables above this size go to one shared document instead of every userdata.
pub const INLINE_DISCOVERY_BUDGET: usize = 4 * 1024;
/// How long an Auto Scaling group waits for its instances' success signals.
pub const SIGNAL_TIMEOUT_SECONDS: u32 = 900;
/// Load balancer deregistration delay, which the agent also waits out when draining.
pub const DRAIN_SECONDS: u32 = 30;
const USERDATA_TEMPLATE: &str = include_str!("../../templates/userdata.sh");
const TLS_POLICY: &str = "ELBSecurityPolicy-TLS13-1-2-2021-06";

struct Out {
    files: BTreeMap<String, Vec<u8>>,
    stacks: Vec<mf::StackEntry>,
    warnings: Vec<String>,
    uploads: Vec<mf::UploadEntry>,
}

impl Out {
    fn file(&mut self, path: String, bytes: Vec<u8>) -> mf::FileEntry {
        let e = mf::FileEntry { path: path.clone(), sha256: sha256_hex(&bytes), bytes: bytes.len() };
        self.files.insert(path, bytes);
        e
    }

    /// A file the materializer uploads next to the templates before creating the release.
    fn upload(&mut self, ctx: &Ctx<'_>, path: &str, bytes: Vec<u8>) -> mf::UploadEntry {
        let sha = sha256_hex(&bytes);
        self.upload_hashed(ctx, path, bytes, sha)
    }

    fn upload_hashed(&mut self, ctx: &Ctx<'_>, path: &str, bytes: Vec<u8>, sha256: String) -> mf::UploadEntry {
        let u = mf::UploadEntry { s3_key: upload_key(ctx, path), path: path.to_string(), sha256, bytes: bytes.len() };
        self.files.insert(path.to_string(), bytes);
        self.uploads.push(u.clone());
        u
    }

    /// Records a rendered userdata script (and its runtime config, when moved out).
    fn userdata(&mut self, ctx: &Ctx<'_>, name: &str, u: Userdata) -> mf::FileEntry {
        if let Some((path, bytes, sha)) = u.external {
            self.upload_hashed(ctx, &path, bytes, sha);
        }
        let path = format!("userdata/{name}.sh");
        let e = mf::FileEntry { path: path.clone(), sha256: u.sha256, bytes: u.script.len() };
        self.files.insert(path, u.script.into_bytes());
        e
    }

    fn push_stack(&mut self, ctx: &Ctx<'_>, r: RenderedStack) {
        let path = format!("templates/{}.json", r.name);
        self.stacks.push(mf::StackEntry {
            s3_key: format!("{}releases/{}/{path}", ctx.prefix(), ctx.release.number),
            name: r.name,
            role: r.role,
            template: path.clone(),
            sha256: r.sha256,
            bytes: r.bytes.len(),
            resources: r.resources,
            upload_required: r.bytes.len() > cfn::MAX_INLINE_BYTES,
            depends_on: r.depends_on,
            capabilities: if r.iam { vec!["CAPABILITY_IAM".into()] } else { Vec::new() },
            routing_group: r.group,
        });
        self.files.insert(path, r.bytes);
    }
}

/// A stack's template, rendered, checked against CloudFormation's limits and hashed.
struct RenderedStack {
    name: String,
    role: StackRole,
    bytes: Vec<u8>,
    sha256: String,
    resources: usize,
    iam: bool,
    depends_on: Vec<String>,
    group: Option<u32>,
}

fn render_stack(name: String, role: StackRole, t: &Template, depends_on: Vec<String>, group: Option<u32>) -> Result<RenderedStack, String> {
    let bytes = t.render();
    template_limits(t, &name, bytes.len())?;
    let iam = t.resources.values().any(|r| r["Type"].as_str().is_some_and(|ty| ty.starts_with("AWS::IAM::")));
    Ok(RenderedStack { sha256: sha256_hex(&bytes), name, role, bytes, resources: t.resources.len(), iam, depends_on, group })
}

/// A service's (or auxiliary's) name in the private zone: `api.shop.internal`.
fn host(ctx: &Ctx<'_>, name: &str) -> String {
    format!("{}.{}", names::dns_label(name), ctx.domain())
}

/// An etcd member's name (and DNS label): `coord-0`.
fn member_label(aux: &str, i: u32) -> String {
    names::dns_label(&format!("{aux}-{i}"))
}

fn lb_name(ctx: &Ctx<'_>, scheme: &str, g: u32) -> String {
    shorten(&format!("{}-{scheme}-{g}", ctx.f()), ELB_NAME_MAX)
}

pub(crate) fn emit(ctx: &mut Ctx<'_>, inputs: &Inputs<'_>) -> Result<Compiled, String> {
    let mut out = Out { files: BTreeMap::new(), stacks: Vec::new(), warnings: Vec::new(), uploads: Vec::new() };
    let disc = discovery(ctx, &mut out.warnings);
    // Each service's runtime config is serialized once, with a placeholder for its release
    // stack: which stack a service lands in depends on how large its userdata is.
    let configs = |shared: Option<&mf::UploadEntry>| -> Result<BTreeMap<String, String>, String> {
        let svcs: Vec<&Svc<'_>> = ctx.processes().collect();
        crate::par::map(svcs, ctx.workers, |s| {
            Ok((s.s.name.clone(), serde_json::to_string_pretty(&service_config(ctx, s, &disc, shared)).map_err(|e| format!("internal error: {e}"))?))
        })
        .into_iter()
        .collect()
    };
    // Discovery is inlined in every service's userdata while that fits; past that it would grow
    // with the square of the service count, so it moves to one shared document per release.
    let discovery_bytes = serde_json::to_string(&disc.all_env()).map_or(0, |t| t.len());
    let overhead = fill_template(ctx, "service", "", "", &ctx.release.runtime_image, (&ctx.release_stack(1), "AutoScalingGroup")).len();
    let inline = if discovery_bytes <= INLINE_DISCOVERY_BUDGET { Some(configs(None)?) } else { None };
    let (texts, shared) = match inline {
        Some(t) if t.iter().all(|(n, c)| overhead + n.len() + c.len() <= INLINE_USERDATA_BUDGET) => (t, None),
        _ => {
            let doc = json!({ "format_version": RUNTIME_CONFIG_VERSION, "env": disc.all_env() });
            let mut bytes = serde_json::to_vec_pretty(&doc).map_err(|e| format!("internal error: {e}"))?;
            bytes.push(b'\n');
            let u = out.upload(ctx, "runtime/discovery.json", bytes);
            (configs(Some(&u))?, Some(u))
        }
    };
    let sizes: BTreeMap<String, usize> = texts
        .iter()
        .map(|(n, c)| {
            let len = overhead + n.len() + c.len();
            // As a JSON string in the template: quotes, backslashes and newlines are escaped.
            let escapes = c.bytes().filter(|b| matches!(b, b'"' | b'\\' | b'\n')).count() + 40;
            (n.clone(), if len <= INLINE_USERDATA_BUDGET { len + escapes } else { 2_000 })
        })
        .collect();
    ctx.parts = crate::compile::layout_parts(&mut ctx.svcs, &sizes);
    let ctx: &Ctx<'_> = ctx;
    let f = ctx.f().to_string();
    if ctx.stage.routing_groups.is_none() && ctx.groups > 1 {
        out.warnings.push(format!(
            "the formation was split over {} routing groups chosen automatically; pin `routing_groups: {}` in the stage file so that adding services never re-homes existing ones",
            ctx.groups, ctx.groups
        ));
    }

    let mut userdata: BTreeMap<String, Vec<mf::FileEntry>> = BTreeMap::new();
    let mut scripts: BTreeMap<String, String> = BTreeMap::new();
    let mut reads_runtime: BTreeSet<u32> = BTreeSet::new();
    let svcs: Vec<&Svc<'_>> = ctx.processes().collect();
    let rendered = crate::par::map(svcs, ctx.workers, |s| -> Result<(&Svc<'_>, Userdata), String> {
        let text = texts.get(&s.s.name).ok_or("internal error: runtime config missing")?.replace(STACK_PLACEHOLDER, &ctx.release_stack(s.part));
        let signal = (ctx.release_stack(s.part), format!("{}AutoScalingGroup", s.id));
        Ok((s, userdata_script(ctx, "service", &s.s.name, &text, &ctx.release.runtime_image, (&signal.0, &signal.1), &format!("runtime/{}.json", s.s.name))?))
    });
    for r in rendered {
        let (s, u) = r?;
        if u.external.is_some() || shared.is_some() {
            reads_runtime.insert(s.part);
        }
        let script = u.script.clone();
        let e = out.userdata(ctx, &s.s.name, u);
        userdata.entry(s.s.name.clone()).or_default().push(e);
        scripts.insert(s.s.name.clone(), script);
    }
    let mut aux_scripts: BTreeMap<(String, u32), String> = BTreeMap::new();
    for a in ctx.auxiliaries() {
        let aux = a.s.auxiliary().ok_or("internal error: not an auxiliary")?;
        if aux.kind != AuxType::Etcd {
            continue;
        }
        let image = ctx.stage.auxiliary_image.clone().unwrap_or_default();
        for i in 0..aux.size {
            let config = serde_json::to_string_pretty(&etcd_config(ctx, a, i)).map_err(|e| format!("internal error: {e}"))?;
            let name = format!("{}-{i}", a.s.name);
            let signal = (names::formation_stack(ctx.f()), format!("Aux{}Member{i}Group", a.id));
            let u = userdata_script(ctx, "auxiliary", &name, &config, &image, (&signal.0, &signal.1), &format!("runtime/{name}.json"))?;
            if u.external.is_some() {
                return Err(format!("internal error: etcd member {name}'s runtime config does not fit in userdata"));
            }
            let script = u.script.clone();
            let e = out.userdata(ctx, &name, u);
            userdata.entry(a.s.name.clone()).or_default().push(e);
            aux_scripts.insert((a.s.name.clone(), i), script);
        }
    }

    let formation = formation_template(ctx, &aux_scripts)?;
    out.push_stack(ctx, render_stack(names::formation_stack(&f), StackRole::Formation, &formation, Vec::new(), None)?);
    let release_stacks: Vec<String> = (1..=ctx.parts).map(|p| ctx.release_stack(p)).collect();
    let mut lb_names = BTreeSet::new();
    for g in 1..=ctx.groups {
        for n in [lb_name(ctx, "public", g), lb_name(ctx, "internal", g)] {
            if !lb_names.insert(n.clone()) {
                return Err(format!("internal error: load balancer name {n} used twice"));
            }
        }
    }
    // Release parts and routing groups are independent: build, render and hash them on the
    // workers allowed, in a fixed order.
    let jobs: Vec<(StackRole, u32)> = (1..=ctx.parts).map(|p| (StackRole::Release, p)).chain((1..=ctx.groups).map(|g| (StackRole::Routing, g))).collect();
    let rendered = crate::par::map(jobs, ctx.workers, |(role, k)| match role {
        StackRole::Release => release_template(ctx, k, &scripts, reads_runtime.contains(&k))
            .and_then(|t| render_stack(ctx.release_stack(k), role, &t, vec![names::formation_stack(&f)], None))
            .map(Some),
        // CloudFormation refuses a template without resources: a routing group with no HTTP
        // service (a worker-only formation) has no stack; the materializer deletes one that
        // becomes empty.
        _ => routing_template(ctx, k).and_then(|t| {
            if t.resources.is_empty() {
                return Ok(None);
            }
            let mut deps = vec![names::formation_stack(&f)];
            deps.extend(release_stacks.iter().cloned());
            render_stack(names::routing_stack(&f, k), role, &t, deps, Some(k)).map(Some)
        }),
    });
    for r in rendered {
        if let Some(r) = r? {
            out.push_stack(ctx, r);
        }
    }

    let manifest = manifest(ctx, inputs, &mut out, &disc, userdata)?;
    let mut m = serde_json::to_vec_pretty(&manifest).map_err(|e| format!("internal error: {e}"))?;
    m.push(b'\n');
    out.files.insert("manifest.json".into(), m);
    Ok(Compiled { files: out.files, manifest })
}

/// Non-secret and secret environment every service of the formation receives.
struct Discovery {
    env: BTreeMap<String, String>,
    secrets: BTreeMap<String, Value>,
    urls: BTreeMap<String, String>,
}

impl Discovery {
    /// Service URLs and auxiliary settings: the environment shared by every service.
    fn all_env(&self) -> BTreeMap<String, String> {
        let mut e = self.urls.clone();
        e.extend(self.env.clone());
        e
    }
}

fn discovery(ctx: &Ctx<'_>, warnings: &mut Vec<String>) -> Discovery {
    let domain = ctx.domain();
    let mut d = Discovery { env: BTreeMap::new(), secrets: BTreeMap::new(), urls: BTreeMap::new() };
    for s in ctx.http() {
        let url = format!("http://{}", host(ctx, &s.s.name));
        d.urls.insert(format!("{}_URL", s.env), url);
    }
    let count = |k: AuxType| ctx.auxiliaries().filter(|a| a.s.auxiliary().is_some_and(|x| x.kind == k)).count();
    let mut aliases: Vec<(String, String, bool)> = Vec::new();
    for a in ctx.auxiliaries() {
        let Some(aux) = a.s.auxiliary() else { continue };
        let secret = names::secret_name(ctx.f(), &a.s.name);
        let port = aux.kind.port();
        match aux.kind {
            AuxType::Postgres => {
                // The database's own endpoint, which CloudFormation writes into the secret
                // (host, port): the name its certificate covers, for clients that verify it.
                let url = format!("postgres://{{username}}:{{password}}@{{host}}:{{port}}/{}", aux.database);
                d.env.insert(format!("{}_HOST", a.env), host(ctx, &a.s.name));
                d.env.insert(format!("{}_PORT", a.env), port.to_string());
                d.env.insert(format!("{}_DATABASE", a.env), aux.database.clone());
                d.secrets.insert(format!("{}_URL", a.env), json!({ "secret": secret, "format": url }));
                if count(AuxType::Postgres) == 1 {
                    aliases.push(("DATABASE_URL".into(), format!("{}_URL", a.env), true));
                }
            }
            AuxType::Redis => {
                // TLS: the cache's own endpoint (which its certificate covers), written into the
                // secret by the materializer; the private zone's CNAME is not on the certificate.
                let url = "rediss://:{password}@{host}:{port}".to_string();
                d.secrets.insert(format!("{}_HOST", a.env), json!({ "secret": secret, "format": "{host}", "raw": true }));
                d.env.insert(format!("{}_PORT", a.env), port.to_string());
                d.secrets.insert(format!("{}_URL", a.env), json!({ "secret": secret, "format": url }));
                if count(AuxType::Redis) == 1 {
                    aliases.push(("REDIS_URL".into(), format!("{}_URL", a.env), true));
                }
            }
            AuxType::Etcd => {
                let eps: Vec<String> = (0..aux.size).map(|i| format!("http://{}.{domain}:{port}", member_label(&a.s.name, i))).collect();
                d.env.insert(format!("{}_ENDPOINTS", a.env), eps.join(","));
                if count(AuxType::Etcd) == 1 {
                    aliases.push(("ETCD_ENDPOINTS".into(), format!("{}_ENDPOINTS", a.env), false));
                }
            }
        }
    }
    for (alias, from, secret) in aliases {
        if alias == from {
            continue;
        }
        if d.urls.contains_key(&alias) || d.env.contains_key(&alias) || d.secrets.contains_key(&alias) {
            warnings.push(format!("`{alias}` is already taken by a service; use `{from}` instead"));
            continue;
        }
        if secret {
            if let Some(v) = d.secrets.get(&from).cloned() {
                d.secrets.insert(alias, v);
            }
        } else if let Some(v) = d.env.get(&from).cloned() {
            d.env.insert(alias, v);
        }
    }
    d
}

/// The runtime config of one service. With `shared`, discovery variables are not inlined:
/// the agent reads them from the shared document first, and `env` here overrides them.
fn service_config(ctx: &Ctx<'_>, s: &Svc<'_>, d: &Discovery, shared: Option<&mf::UploadEntry>) -> Value {
    let p = s.s.process();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("GILLIAM_FORMATION".into(), ctx.f().into());
    env.insert("GILLIAM_RELEASE".into(), ctx.release.number.to_string());
    env.insert("GILLIAM_SERVICE".into(), s.s.name.clone());
    if shared.is_none() {
        env.extend(d.all_env());
    }
    if let Some(p) = p {
        env.extend(p.env.clone());
    }
    env.extend(ctx.release.config.clone());
    if let Some(port) = p.and_then(|p| p.port) {
        env.insert("PORT".into(), port.to_string());
    }
    let mut secrets: BTreeMap<&String, Value> = d.secrets.iter().filter(|(k, _)| !env.contains_key(*k)).map(|(k, v)| (k, v.clone())).collect();
    // Secret config: the secret holds a field named after the variable, taken as it is.
    for (var, (name, _)) in &ctx.release.secrets {
        env.remove(var);
        secrets.insert(var, json!({ "secret": name, "format": format!("{{{var}}}"), "raw": true }));
    }
    let discovery = shared.map(|u| obj! { "url": format!("s3://{}/{}", ctx.stage.outputs_bucket, u.s3_key), "sha256": u.sha256.as_str() });
    let env: serde_json::Map<String, Value> = env.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
    let secrets: serde_json::Map<String, Value> = secrets.into_iter().map(|(k, v)| (k.clone(), v)).collect();
    without_nulls(obj! {
        "discovery": discovery,
        "format_version": RUNTIME_CONFIG_VERSION,
        "role": "service",
        "formation": ctx.f(),
        "release": ctx.release.number,
        "service": s.s.name.as_str(),
        "region": ctx.stage.region.as_str(),
        "signal": obj! { "stack": STACK_PLACEHOLDER, "resource": format!("{}AutoScalingGroup", s.id), "timeout_seconds": SIGNAL_TIMEOUT_SECONDS },
        "artifact": obj! { "url": ctx.release.artifact.url.as_str(), "sha256": ctx.release.artifact.sha256.as_str() },
        "script": p.map(|p| p.script.clone()),
        "port": p.and_then(|p| p.port),
        "health_path": p.filter(|p| p.port.is_some()).map(|p| p.health.clone()),
        "drain_seconds": DRAIN_SECONDS,
        "env": env,
        "secrets": secrets,
    })
}

/// Drops top-level keys whose value is null, so that a worker's config has no `port: null`.
fn without_nulls(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.retain(|_, x| !x.is_null());
    }
    v
}

fn etcd_config(ctx: &Ctx<'_>, a: &Svc<'_>, i: u32) -> Value {
    let size = a.s.auxiliary().map_or(1, |x| x.size);
    let domain = ctx.domain();
    let member = member_label(&a.s.name, i);
    let cluster: Vec<String> = (0..size).map(|j| format!("{m}=http://{m}.{domain}:2380", m = member_label(&a.s.name, j))).collect();
    without_nulls(json!({
        "format_version": RUNTIME_CONFIG_VERSION,
        "role": "etcd",
        "formation": ctx.f(),
        "service": a.s.name,
        "member": member,
        "region": ctx.stage.region,
        "signal": { "stack": names::formation_stack(ctx.f()), "resource": format!("Aux{}Member{i}Group", a.id), "timeout_seconds": SIGNAL_TIMEOUT_SECONDS },
        "version": a.s.auxiliary().and_then(|x| x.version.clone()),
        "attach": { "tag_key": "gilliam:member", "tag_value": format!("{}/{member}", ctx.f()) },
        "advertise_client_url": format!("http://{member}.{domain}:2379"),
        "advertise_peer_url": format!("http://{member}.{domain}:2380"),
        "initial_cluster": cluster.join(","),
        "drain_seconds": DRAIN_SECONDS,
    }))
}

/// The userdata template filled in for one instance role, with `cfg` as its runtime config.
/// `signal` is the stack and resource the instance signals: userdata signals FAILURE itself
/// when the image has no agent.
fn fill_template(ctx: &Ctx<'_>, role: &str, name: &str, cfg: &str, image: &str, signal: (&str, &str)) -> String {
    USERDATA_TEMPLATE
        .replace("{{formation}}", ctx.f())
        .replace("{{release}}", &ctx.release.number.to_string())
        .replace("{{role}}", role)
        .replace("{{service}}", name)
        .replace("{{config_version}}", &RUNTIME_CONFIG_VERSION.to_string())
        .replace("{{image}}", image)
        .replace("{{region}}", &ctx.stage.region)
        .replace("{{signal_stack}}", signal.0)
        .replace("{{signal_resource}}", signal.1)
        .replace("{{runtime_config}}", cfg)
}

/// One instance role's userdata, rendered and hashed. When the script would not fit EC2's
/// limit with room to spare, the runtime config goes to its own file (uploaded next to the
/// templates) and userdata carries its S3 URL and sha256 instead.
struct Userdata {
    script: String,
    sha256: String,
    /// The runtime config moved out of userdata: (path, bytes, sha256).
    external: Option<(String, Vec<u8>, String)>,
}

fn userdata_script(ctx: &Ctx<'_>, role: &str, name: &str, text: &str, image: &str, signal: (&str, &str), external_path: &str) -> Result<Userdata, String> {
    let render = |cfg: &str| fill_template(ctx, role, name, cfg, image, signal);
    let script = render(text);
    if script.len() <= INLINE_USERDATA_BUDGET {
        return Ok(Userdata { sha256: sha256_hex(script.as_bytes()), script, external: None });
    }
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(b'\n');
    let sha = sha256_hex(&bytes);
    let pointer = obj! {
        "format_version": RUNTIME_CONFIG_VERSION,
        "config_url": format!("s3://{}/{}", ctx.stage.outputs_bucket, upload_key(ctx, external_path)),
        "config_sha256": sha.as_str(),
        "region": ctx.stage.region.as_str(),
    };
    let script = render(&serde_json::to_string_pretty(&pointer).map_err(|e| format!("internal error: {e}"))?);
    if script.len() > cfn::MAX_USERDATA_BYTES {
        return Err(format!("internal error: userdata for {name} is {} bytes, over EC2's {} bytes", script.len(), cfn::MAX_USERDATA_BYTES));
    }
    Ok(Userdata { sha256: sha256_hex(script.as_bytes()), script, external: Some((external_path.to_string(), bytes, sha)) })
}

fn upload_key(ctx: &Ctx<'_>, path: &str) -> String {
    format!("{}releases/{}/{path}", ctx.prefix(), ctx.release.number)
}

fn sg_rule(port: u16, source: Value, description: &str) -> Value {
    json!({ "IpProtocol": "tcp", "FromPort": port, "ToPort": port, "SourceSecurityGroupId": source, "Description": description })
}

fn metadata_and_disk(ctx: &Ctx<'_>) -> (Value, Value) {
    (
        obj! { "HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 1 },
        Value::Array(vec![obj! {
            "DeviceName": "/dev/xvda",
            "Ebs": obj! { "VolumeSize": ctx.stage.defaults.root_volume_gb, "VolumeType": "gp3", "Encrypted": true, "DeleteOnTermination": true },
        }]),
    )
}

fn assume_ec2() -> Value {
    json!({ "Version": "2012-10-17", "Statement": [{ "Effect": "Allow", "Principal": { "Service": "ec2.amazonaws.com" }, "Action": "sts:AssumeRole" }] })
}

/// An ARN pattern through Fn::Sub: `${AWS::...}` pseudo parameters resolve, literal text is
/// escaped so that a `${` in a user value can never become a substitution.
fn arn(pattern: &str, literal: &str) -> Value {
    cfn::sub(&pattern.replace("{}", &literal.replace("${", "${!")))
}

fn formation_template(ctx: &Ctx<'_>, aux_scripts: &BTreeMap<(String, u32), String>) -> Result<Template, String> {
    let f = ctx.f();
    let mut t = Template::new(format!("gilliam formation {f}: security groups, private zone, auxiliary services"));
    let vpc = &ctx.stage.vpc;
    // Every release that can be live is counted, cold ones too: the ports and listeners of the
    // releases still running (or kept cold) stay open until the last of them is retired (the formation stack is updated
    // before the new release exists, so a port only the new release uses opens first).
    let mut ports: BTreeSet<u16> = BTreeSet::new();
    let mut public_ports: BTreeSet<u16> = BTreeSet::new();
    for share in ctx.traffic.iter().chain(&ctx.standby) {
        for (svc, port) in &share.ports {
            ports.insert(*port);
            if share.public.contains(svc) {
                public_ports.insert(*port);
            }
        }
    }
    let any_routed = !public_ports.is_empty();
    let tg = |k: &str, v: &str| json!([{ "Key": "gilliam:formation", "Value": f }, { "Key": k, "Value": v }]);

    t.add("InstanceSecurityGroup", "AWS::EC2::SecurityGroup", json!({ "GroupDescription": format!("gilliam {f}: service instances, reachable only from the formation load balancers"), "VpcId": vpc, "Tags": tg("Name", &format!("{f}-instances")) }))?;
    t.output(
        "InstanceSecurityGroup",
        get_att("InstanceSecurityGroup", "GroupId"),
        Some(&names::formation_export(f, "InstanceSecurityGroup")),
        "Security group of service instances",
    );
    // The load balancers' security groups and their exports exist whatever the services: a
    // routing stack may import them until its own update drops its load balancers, and
    // CloudFormation refuses to remove an export in use (or a group in use).
    {
        let mut ingress = Vec::new();
        if any_routed {
            ingress.push(json!({ "IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "CidrIp": "0.0.0.0/0", "Description": "HTTP from anywhere" }));
            if ctx.https() {
                ingress.push(json!({ "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIp": "0.0.0.0/0", "Description": "HTTPS from anywhere" }));
            }
        }
        let mut props = json!({ "GroupDescription": format!("gilliam {f}: public load balancers, open on their listener ports"), "VpcId": vpc, "Tags": tg("Name", &format!("{f}-public-lb")) });
        if !ingress.is_empty() {
            props["SecurityGroupIngress"] = Value::Array(ingress);
        }
        t.add("PublicLbSecurityGroup", "AWS::EC2::SecurityGroup", props)?;
        t.output(
            "PublicLbSecurityGroup",
            get_att("PublicLbSecurityGroup", "GroupId"),
            Some(&names::formation_export(f, "PublicLbSecurityGroup")),
            "Security group of public load balancers",
        );
        t.add(
            "InternalLbSecurityGroup",
            "AWS::EC2::SecurityGroup",
            json!({
                "GroupDescription": format!("gilliam {f}: internal load balancers, reachable from service instances"), "VpcId": vpc,
                "SecurityGroupIngress": [sg_rule(80, get_att("InstanceSecurityGroup", "GroupId"), "HTTP from service instances")],
                "Tags": tg("Name", &format!("{f}-internal-lb")),
            }),
        )?;
        t.output(
            "InternalLbSecurityGroup",
            get_att("InternalLbSecurityGroup", "GroupId"),
            Some(&names::formation_export(f, "InternalLbSecurityGroup")),
            "Security group of internal load balancers",
        );
    }
    for p in &ports {
        t.add(format!("InstanceIngressInternal{p}"), "AWS::EC2::SecurityGroupIngress", {
            let mut r = sg_rule(*p, get_att("InternalLbSecurityGroup", "GroupId"), "service port from internal load balancers");
            r["GroupId"] = get_att("InstanceSecurityGroup", "GroupId");
            r
        })?;
    }
    for p in &public_ports {
        t.add(format!("InstanceIngressPublic{p}"), "AWS::EC2::SecurityGroupIngress", {
            let mut r = sg_rule(*p, get_att("PublicLbSecurityGroup", "GroupId"), "service port from public load balancers");
            r["GroupId"] = get_att("InstanceSecurityGroup", "GroupId");
            r
        })?;
    }

    t.add(
        "PrivateZone",
        "AWS::Route53::HostedZone",
        json!({
            "Name": ctx.domain(),
            "HostedZoneConfig": { "Comment": format!("gilliam {f}: names of services and auxiliaries") },
            "VPCs": [{ "VPCId": vpc, "VPCRegion": ctx.stage.region }],
        }),
    )?;
    t.output("PrivateZoneId", r#ref("PrivateZone"), Some(&names::formation_export(f, "PrivateZoneId")), "Private hosted zone of the formation");

    let auxes: Vec<&Svc<'_>> = ctx.auxiliaries().collect();
    if auxes.is_empty() {
        return Ok(t);
    }
    let aux_ports: BTreeSet<u16> = auxes.iter().filter_map(|a| a.s.auxiliary()).map(|a| a.kind.port()).collect();
    t.add("AuxiliarySecurityGroup", "AWS::EC2::SecurityGroup", json!({
        "GroupDescription": format!("gilliam {f}: auxiliary services, reachable from the formation instances only"), "VpcId": vpc,
        "SecurityGroupIngress": aux_ports.iter().map(|p| sg_rule(*p, get_att("InstanceSecurityGroup", "GroupId"), "from service instances")).collect::<Vec<_>>(),
        "Tags": tg("Name", &format!("{f}-auxiliaries")),
    }))?;
    let private: Vec<&str> = ctx.stage.private_subnets.iter().map(|s| s.id.as_str()).collect();
    let kinds: BTreeSet<AuxType> = auxes.iter().filter_map(|a| a.s.auxiliary()).map(|a| a.kind).collect();
    if kinds.contains(&AuxType::Postgres) {
        t.add(
            "DatabaseSubnetGroup",
            "AWS::RDS::DBSubnetGroup",
            json!({ "DBSubnetGroupDescription": format!("gilliam {f}: databases"), "SubnetIds": private }),
        )?;
    }
    if kinds.contains(&AuxType::Redis) {
        t.add("CacheSubnetGroup", "AWS::ElastiCache::SubnetGroup", json!({ "Description": format!("gilliam {f}: caches"), "SubnetIds": private }))?;
    }
    if kinds.contains(&AuxType::Etcd) {
        t.add(
            "AuxiliaryIngressEtcdPeers",
            "AWS::EC2::SecurityGroupIngress",
            json!({
                "GroupId": get_att("AuxiliarySecurityGroup", "GroupId"), "IpProtocol": "tcp", "FromPort": 2379, "ToPort": 2380,
                "SourceSecurityGroupId": get_att("AuxiliarySecurityGroup", "GroupId"), "Description": "etcd peers",
            }),
        )?;
    }
    for a in auxes {
        let aux = a.s.auxiliary().ok_or("internal error: not an auxiliary")?;
        let id = format!("Aux{}", a.id);
        let host = format!("{}.", host(ctx, &a.s.name));
        let keep = |t: &mut Template, rid: &str, policy: &str| {
            if let Some(Value::Object(m)) = t.resources.get_mut(rid) {
                m.insert("DeletionPolicy".into(), json!(policy));
                m.insert("UpdateReplacePolicy".into(), json!(policy));
            }
        };
        let cname = |target: Value| json!({ "HostedZoneId": r#ref("PrivateZone"), "Name": host, "Type": "CNAME", "TTL": "60", "ResourceRecords": [target] });
        // The credentials live in a secret the materializer keeps (not a stack's resource: a
        // secret outlives its formation, and CloudFormation cannot make one whose name an
        // earlier formation left behind); templates read it by name.
        let secret = names::secret_name(f, &a.s.name);
        let resolve = |what: &str| json!(format!("{{{{resolve:secretsmanager:{secret}:SecretString:{what}}}}}"));
        match aux.kind {
            AuxType::Postgres => {
                let mut db = json!({
                    "Engine": "postgres", "DBInstanceClass": a.instance_type, "AllocatedStorage": aux.storage_gb.unwrap_or(20).to_string(),
                    "StorageType": "gp3", "StorageEncrypted": true, "DBName": aux.database,
                    "MasterUsername": resolve("username"), "MasterUserPassword": resolve("password"),
                    "VPCSecurityGroups": [get_att("AuxiliarySecurityGroup", "GroupId")], "DBSubnetGroupName": r#ref("DatabaseSubnetGroup"),
                    "PubliclyAccessible": false, "BackupRetentionPeriod": 7, "CopyTagsToSnapshot": true,
                    "EnableIAMDatabaseAuthentication": true, "DeletionProtection": true,
                    // A new major version in gilliam.yml is an in-place upgrade RDS performs
                    // only when allowed; without it the formation's update fails.
                    "AllowMajorVersionUpgrade": true,
                    "Tags": tg("gilliam:auxiliary", &a.s.name),
                });
                // An exact minor version pinned together with automatic minor upgrades breaks
                // the next update: RDS moves to a newer minor, the template still names the
                // older one, and RDS refuses to go back. A major version alone (`"17"`)
                // follows minor upgrades; an exact one (`"17.5"`) stays where it is.
                let pinned = aux.version.as_deref().is_some_and(|v| v.contains('.'));
                db["AutoMinorVersionUpgrade"] = json!(!pinned);
                if let Some(v) = &aux.version {
                    db["EngineVersion"] = json!(v);
                }
                t.add(format!("{id}Database"), "AWS::RDS::DBInstance", db)?;
                keep(&mut t, &format!("{id}Database"), "Snapshot");
                t.add(
                    format!("{id}SecretAttachment"),
                    "AWS::SecretsManager::SecretTargetAttachment",
                    json!({ "SecretId": secret, "TargetId": r#ref(&format!("{id}Database")), "TargetType": "AWS::RDS::DBInstance" }),
                )?;
                t.add(format!("{id}Record"), "AWS::Route53::RecordSet", cname(get_att(&format!("{id}Database"), "Endpoint.Address")))?;
            }
            AuxType::Redis => {
                let mut rg = json!({
                    "ReplicationGroupDescription": format!("gilliam {f}: {}", a.s.name), "Engine": "redis", "CacheNodeType": a.instance_type,
                    "NumCacheClusters": 1, "AutomaticFailoverEnabled": false, "AtRestEncryptionEnabled": true, "TransitEncryptionEnabled": true,
                    "AuthToken": resolve("password"), "CacheSubnetGroupName": r#ref("CacheSubnetGroup"),
                    "SecurityGroupIds": [get_att("AuxiliarySecurityGroup", "GroupId")], "SnapshotRetentionLimit": 7,
                    "Tags": tg("gilliam:auxiliary", &a.s.name),
                });
                if let Some(v) = &aux.version {
                    rg["EngineVersion"] = json!(v);
                }
                t.add(format!("{id}Cache"), "AWS::ElastiCache::ReplicationGroup", rg)?;
                keep(&mut t, &format!("{id}Cache"), "Snapshot");
                t.add(format!("{id}Record"), "AWS::Route53::RecordSet", cname(get_att(&format!("{id}Cache"), "PrimaryEndPoint.Address")))?;
                // The endpoint the cache's certificate names: the materializer copies it into
                // the secret, from which the agent builds the TLS URL.
                t.output(
                    &format!("{id}Address"),
                    get_att(&format!("{id}Cache"), "PrimaryEndPoint.Address"),
                    None,
                    &format!("Primary endpoint of {}", a.s.name),
                );
                t.output(&format!("{id}Port"), get_att(&format!("{id}Cache"), "PrimaryEndPoint.Port"), None, &format!("Port of {}", a.s.name));
            }
            AuxType::Etcd => etcd(ctx, &mut t, a, aux, &id, aux_scripts)?,
        }
    }
    Ok(t)
}

fn etcd(ctx: &Ctx<'_>, t: &mut Template, a: &Svc<'_>, aux: &crate::app::Auxiliary, id: &str, scripts: &BTreeMap<(String, u32), String>) -> Result<(), String> {
    let f = ctx.f();
    let subnets = &ctx.stage.private_subnets;
    let mut volumes = Vec::new();
    let mut interfaces = Vec::new();
    for i in 0..aux.size {
        volumes.push(arn("arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:volume/${{}}", &format!("{id}Member{i}Volume")));
        interfaces.push(arn("arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:network-interface/${{}}", &format!("{id}Member{i}Interface")));
    }
    let instances = arn("arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*", "");
    t.add(format!("{id}Role"), "AWS::IAM::Role", json!({
        "AssumeRolePolicyDocument": assume_ec2(),
        "Policies": [{ "PolicyName": "gilliam-etcd", "PolicyDocument": { "Version": "2012-10-17", "Statement": [
            { "Sid": "AttachOwnVolume", "Effect": "Allow", "Action": "ec2:AttachVolume", "Resource": volumes.iter().cloned().chain([instances.clone()]).collect::<Vec<_>>() },
            { "Sid": "AttachOwnInterface", "Effect": "Allow", "Action": "ec2:AttachNetworkInterface", "Resource": interfaces.iter().cloned().chain([instances]).collect::<Vec<_>>() },
            { "Sid": "FindOwnVolumeAndInterface", "Effect": "Allow", "Action": ["ec2:DescribeVolumes", "ec2:DescribeNetworkInterfaces"], "Resource": "*" },
            { "Sid": "SignalOwnStack", "Effect": "Allow", "Action": "cloudformation:SignalResource", "Resource": arn("arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:stack/{}/*", f) },
        ] } }],
    }))?;
    t.add(format!("{id}Profile"), "AWS::IAM::InstanceProfile", json!({ "Roles": [r#ref(&format!("{id}Role"))] }))?;
    let (meta, disk) = metadata_and_disk(ctx);
    for i in 0..aux.size {
        let subnet = &subnets[i as usize % subnets.len()];
        let member = member_label(&a.s.name, i);
        let mtags = tags(&[("gilliam:formation", f), ("gilliam:member", &format!("{f}/{member}")), ("Name", &format!("{f}-{member}"))]);
        t.add(format!("{id}Member{i}Interface"), "AWS::EC2::NetworkInterface", json!({ "SubnetId": subnet.id, "GroupSet": [get_att("AuxiliarySecurityGroup", "GroupId")], "Description": format!("gilliam {f}: stable address of etcd member {member}"), "Tags": mtags }))?;
        t.add(format!("{id}Member{i}Volume"), "AWS::EC2::Volume", json!({ "AvailabilityZone": subnet.zone.clone().unwrap_or_default(), "Size": aux.storage_gb.unwrap_or(20), "VolumeType": "gp3", "Encrypted": true, "Tags": mtags }))?;
        if let Some(Value::Object(m)) = t.resources.get_mut(&format!("{id}Member{i}Volume")) {
            m.insert("DeletionPolicy".into(), json!("Snapshot"));
            m.insert("UpdateReplacePolicy".into(), json!("Snapshot"));
            // A volume must sit in its member's subnet's zone: the zone is named on purpose.
            m.insert("Metadata".into(), json!({ "cfn-lint": { "config": { "ignore_checks": ["W3010"] } } }));
        }
        let script = scripts.get(&(a.s.name.clone(), i)).ok_or("internal error: etcd userdata missing")?;
        t.add(
            format!("{id}Member{i}LaunchTemplate"),
            "AWS::EC2::LaunchTemplate",
            json!({ "LaunchTemplateData": {
            "ImageId": ctx.stage.auxiliary_image, "InstanceType": a.instance_type,
            "IamInstanceProfile": { "Arn": get_att(&format!("{id}Profile"), "Arn") },
            "SecurityGroupIds": [get_att("AuxiliarySecurityGroup", "GroupId")],
            "MetadataOptions": meta, "BlockDeviceMappings": disk, "UserData": { "Fn::Base64": script },
            "TagSpecifications": [{ "ResourceType": "instance", "Tags": mtags }],
        } }),
        )?;
        t.add(format!("{id}Member{i}Group"), "AWS::AutoScaling::AutoScalingGroup", json!({
            "MinSize": "1", "MaxSize": "1", "DesiredCapacity": "1",
            "LaunchTemplate": { "LaunchTemplateId": r#ref(&format!("{id}Member{i}LaunchTemplate")), "Version": get_att(&format!("{id}Member{i}LaunchTemplate"), "LatestVersionNumber") },
            "VPCZoneIdentifier": [subnet.id], "HealthCheckType": "EC2", "HealthCheckGracePeriod": 300,
        }))?;
        if let Some(Value::Object(m)) = t.resources.get_mut(&format!("{id}Member{i}Group")) {
            m.insert("CreationPolicy".into(), json!({ "ResourceSignal": { "Count": 1, "Timeout": format!("PT{}M", SIGNAL_TIMEOUT_SECONDS / 60) } }));
        }
        t.add(format!("{id}Member{i}Record"), "AWS::Route53::RecordSet", json!({ "HostedZoneId": r#ref("PrivateZone"), "Name": format!("{member}.{}.", ctx.domain()), "Type": "A", "TTL": "60", "ResourceRecords": [get_att(&format!("{id}Member{i}Interface"), "PrimaryPrivateIpAddress")] }))?;
    }
    Ok(())
}

fn target_group_name(ctx: &Ctx<'_>, svc: &str, public: bool) -> String {
    shorten(&format!("{}-r{}-{}-{}", ctx.f(), ctx.release.number, names::dns_label(svc), if public { "p" } else { "i" }), ELB_NAME_MAX)
}

fn release_template(ctx: &Ctx<'_>, part: u32, scripts: &BTreeMap<String, String>, external: bool) -> Result<Template, String> {
    let f = ctx.f();
    let n = ctx.release.number;
    let mut t = Template::new(format!(
        "gilliam formation {f}, release {n}{}: launch templates, Auto Scaling groups, target groups",
        if ctx.parts > 1 { format!(" (part {part} of {})", ctx.parts) } else { String::new() }
    ));
    let art = &ctx.release.artifact;
    let mut statements = vec![
        json!({ "Sid": "ReadOwnArtifact", "Effect": "Allow", "Action": "s3:GetObject", "Resource": arn("arn:${AWS::Partition}:s3:::{}", &format!("{}/{}", art.bucket, art.key)) }),
        json!({ "Sid": "SignalOwnStack", "Effect": "Allow", "Action": "cloudformation:SignalResource", "Resource": cfn::sub("arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:stack/${AWS::StackName}/*") }),
    ];
    if external {
        statements.push(json!({ "Sid": "ReadOwnRuntimeConfig", "Effect": "Allow", "Action": "s3:GetObject", "Resource": arn("arn:${AWS::Partition}:s3:::{}", &format!("{}/{}releases/{n}/runtime/*", ctx.stage.outputs_bucket, ctx.prefix())) }));
    }
    let mut secrets: Vec<Value> = ctx
        .auxiliaries()
        .filter(|a| a.s.auxiliary().is_some_and(|x| x.kind != AuxType::Etcd))
        .map(|a| arn("arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:{}-??????", &names::secret_name(f, &a.s.name)))
        .collect();
    // The release's own secret config, by exact name (the compiler checked they are this formation's).
    let config_secrets: std::collections::BTreeSet<&String> = ctx.release.secrets.values().map(|(name, _)| name).collect();
    secrets.extend(config_secrets.into_iter().map(|name| arn("arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:{}-??????", name)));
    if !secrets.is_empty() {
        statements.push(json!({ "Sid": "ReadFormationSecrets", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": secrets }));
    }
    t.add(
        "InstanceRole",
        "AWS::IAM::Role",
        json!({
            "AssumeRolePolicyDocument": assume_ec2(),
            "Policies": [{ "PolicyName": "gilliam-release", "PolicyDocument": { "Version": "2012-10-17", "Statement": statements } }],
            "Tags": tags(&[("gilliam:formation", f), ("gilliam:release", &n.to_string())]),
        }),
    )?;
    t.add("InstanceProfile", "AWS::IAM::InstanceProfile", json!({ "Roles": [r#ref("InstanceRole")] }))?;
    t.output("Release", json!(n.to_string()), None, "Release number");
    let private: Vec<&str> = ctx.stage.private_subnets.iter().map(|s| s.id.as_str()).collect();
    for s in ctx.processes().filter(|s| s.part == part) {
        let p = s.s.process().ok_or("internal error: not a process")?;
        let id = &s.id;
        let name = format!("{f}-r{n}-{}", s.s.name);
        let rel = n.to_string();
        let itags = || tags(&[("Name", &name), ("gilliam:formation", f), ("gilliam:release", &rel), ("gilliam:service", &s.s.name)]);
        let script = scripts.get(&s.s.name).ok_or("internal error: userdata missing")?;
        let (meta, disk) = metadata_and_disk(ctx);
        t.add(
            format!("{id}LaunchTemplate"),
            "AWS::EC2::LaunchTemplate",
            obj! { "LaunchTemplateData": obj! {
                "ImageId": ctx.release.runtime_image.as_str(), "InstanceType": s.instance_type.as_str(),
                "IamInstanceProfile": obj! { "Arn": get_att("InstanceProfile", "Arn") },
                "SecurityGroupIds": vec![import(&names::formation_export(f, "InstanceSecurityGroup"))],
                "MetadataOptions": meta, "BlockDeviceMappings": disk, "UserData": obj! { "Fn::Base64": script.as_str() },
                "TagSpecifications": vec![obj! { "ResourceType": "instance", "Tags": itags() }, obj! { "ResourceType": "volume", "Tags": itags() }],
            } },
        )?;
        let mut tgs = Vec::new();
        if let Some(port) = p.port {
            for public in [false, true] {
                if public && !s.routed() {
                    continue;
                }
                let which = if public { "PublicTargetGroup" } else { "InternalTargetGroup" };
                t.add(
                    format!("{id}{which}"),
                    "AWS::ElasticLoadBalancingV2::TargetGroup",
                    obj! {
                        "Name": target_group_name(ctx, &s.s.name, public), "Port": port, "Protocol": "HTTP", "VpcId": ctx.stage.vpc.as_str(), "TargetType": "instance",
                        "HealthCheckEnabled": true, "HealthCheckProtocol": "HTTP", "HealthCheckPath": p.health.as_str(), "HealthCheckIntervalSeconds": 10,
                        "HealthCheckTimeoutSeconds": 5, "HealthyThresholdCount": 2, "UnhealthyThresholdCount": 3, "Matcher": obj! { "HttpCode": "200-399" },
                        "TargetGroupAttributes": vec![obj! { "Key": "deregistration_delay.timeout_seconds", "Value": DRAIN_SECONDS.to_string() }],
                        "Tags": tags(&[("gilliam:formation", f), ("gilliam:release", &rel), ("gilliam:service", &s.s.name)]),
                    },
                )?;
                t.output(
                    &format!("{id}{which}"),
                    r#ref(&format!("{id}{which}")),
                    Some(&names::target_group_export(f, n, &s.s.name, public)),
                    &format!("{} target group of {}", if public { "Public" } else { "Internal" }, s.s.name),
                );
                tgs.push(r#ref(&format!("{id}{which}")));
            }
        }
        let prop = |k: &str, v: &str| obj! { "Key": k, "Value": v, "PropagateAtLaunch": true };
        let mut asg = obj! {
            "MinSize": s.scale.min.to_string(), "MaxSize": s.scale.max.to_string(), "DesiredCapacity": s.scale.desired.to_string(),
            "LaunchTemplate": obj! { "LaunchTemplateId": r#ref(&format!("{id}LaunchTemplate")), "Version": get_att(&format!("{id}LaunchTemplate"), "LatestVersionNumber") },
            "VPCZoneIdentifier": private.clone(), "HealthCheckType": if tgs.is_empty() { "EC2" } else { "ELB" }, "HealthCheckGracePeriod": 300,
            "Tags": vec![prop("Name", &name), prop("gilliam:formation", f), prop("gilliam:release", &rel), prop("gilliam:service", &s.s.name)],
        };
        if !tgs.is_empty() {
            asg["TargetGroupARNs"] = Value::Array(tgs);
        }
        let asg_id = format!("{id}AutoScalingGroup");
        let r = t.add(asg_id.clone(), "AWS::AutoScaling::AutoScalingGroup", asg)?;
        if s.scale.desired > 0 {
            r.insert(
                "CreationPolicy".into(),
                obj! { "ResourceSignal": obj! { "Count": s.scale.desired, "Timeout": format!("PT{}M", SIGNAL_TIMEOUT_SECONDS / 60) }, "AutoScalingCreationPolicy": obj! { "MinSuccessfulInstancesPercent": 100 } },
            );
        }
        t.output(&asg_id, r#ref(&asg_id), None, &format!("Auto Scaling group of {}", s.s.name));
        if s.scale.max > s.scale.min {
            t.add(
                format!("{id}CpuScalingPolicy"),
                "AWS::AutoScaling::ScalingPolicy",
                obj! {
                    "AutoScalingGroupName": r#ref(&asg_id), "PolicyType": "TargetTrackingScaling",
                    "TargetTrackingConfiguration": obj! { "PredefinedMetricSpecification": obj! { "PredefinedMetricType": "ASGAverageCPUUtilization" }, "TargetValue": s.scale.cpu },
                },
            )?;
        }
    }
    Ok(t)
}

/// Orders routes so that the most specific one is evaluated first (lowest priority number):
/// an exact host before a wildcard host before no host; then, on the same host rank, an exact
/// path before a wildcard path before no path (all paths), and a longer literal prefix first.
pub(crate) fn route_order(r: &crate::app::Route) -> impl Ord {
    let host_rank = match &r.host {
        Some(h) if !h.contains(['*', '?']) => 0,
        Some(_) => 1,
        None => 2,
    };
    let (path_rank, literal) = match &r.path {
        Some(p) if !p.contains(['*', '?']) => (0, p.len()),
        Some(p) => (1, p.find(['*', '?']).unwrap_or(p.len())),
        None => (2, 0),
    };
    (host_rank, path_rank, std::cmp::Reverse(literal), r.host.clone(), r.path.clone())
}

/// The weighted forward of a service's rule: each live release that has the service, with the
/// weight `rule_weights` gives it. `None` only when no live release has the service.
fn forward(ctx: &Ctx<'_>, svc: &str, public: bool) -> Option<Value> {
    let mut shares: Vec<(u32, u32)> =
        ctx.traffic.iter().filter(|t| if public { t.public.contains(svc) } else { t.internal.contains(svc) }).map(|t| (t.release, t.weight)).collect();
    shares.sort_unstable();
    let weights = crate::compile::rule_weights(&shares)?;
    let groups: Vec<Value> = shares
        .iter()
        .zip(weights)
        .map(|((n, _), w)| json!({ "TargetGroupArn": import(&names::target_group_export(ctx.f(), *n, svc, public)), "Weight": w }))
        .collect();
    let mut config = json!({ "TargetGroups": groups });
    if let Some(secs) = ctx.delivery.stickiness_seconds {
        config["TargetGroupStickinessConfig"] = json!({ "Enabled": true, "DurationSeconds": secs });
    }
    Some(json!([{ "Type": "forward", "ForwardConfig": config }]))
}

/// The forward of a test-header rule: the compiled release's target group alone.
fn test_forward(ctx: &Ctx<'_>, svc: &str, public: bool) -> Value {
    let tg = import(&names::target_group_export(ctx.f(), ctx.release.number, svc, public));
    json!([{ "Type": "forward", "ForwardConfig": { "TargetGroups": [{ "TargetGroupArn": tg, "Weight": 1 }] } }])
}

/// The condition that picks the compiled release out: `X-Gilliam-Release: N`.
fn test_condition(ctx: &Ctx<'_>) -> Value {
    obj! { "Field": "http-header", "HttpHeaderConfig": obj! { "HttpHeaderName": crate::delivery::TEST_HEADER, "Values": vec![ctx.release.number.to_string()] } }
}

fn not_found() -> Value {
    json!([{ "Type": "fixed-response", "FixedResponseConfig": { "StatusCode": "404", "ContentType": "text/plain", "MessageBody": "no route" } }])
}

/// The public routes of routing group `g`, most specific first (the order of evaluation).
pub(crate) fn public_routes<'c>(ctx: &'c Ctx<'_>, g: u32) -> Vec<(&'c Svc<'c>, &'c crate::app::Route)> {
    let mut routes: Vec<(&Svc<'_>, &crate::app::Route)> =
        ctx.http().filter(|s| s.group == Some(g)).flat_map(|s| s.s.process().into_iter().flat_map(|p| p.routes.iter()).map(move |r| (s, r))).collect();
    routes.sort_by_cached_key(|(s, r)| (route_order(r), s.s.name.clone()));
    routes
}

/// The public (internet-facing, in the public subnets) or internal load balancer of group `g`.
fn load_balancer(ctx: &Ctx<'_>, t: &mut Template, g: u32, public: bool) -> Result<(), String> {
    let f = ctx.f();
    let (id, scheme, subnets, sg) = if public {
        ("PublicLoadBalancer", "internet-facing", &ctx.stage.public_subnets, "PublicLbSecurityGroup")
    } else {
        ("InternalLoadBalancer", "internal", &ctx.stage.private_subnets, "InternalLbSecurityGroup")
    };
    t.add(
        id,
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        obj! {
            "Name": lb_name(ctx, if public { "public" } else { "internal" }, g), "Type": "application", "Scheme": scheme,
            "Subnets": subnets.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            "SecurityGroups": vec![import(&names::formation_export(f, sg))],
            "LoadBalancerAttributes": vec![obj! { "Key": "routing.http.drop_invalid_header_fields.enabled", "Value": "true" }],
            "Tags": tags(&[("gilliam:formation", f)]),
        },
    )?;
    Ok(())
}

fn routing_template(ctx: &Ctx<'_>, g: u32) -> Result<Template, String> {
    let f = ctx.f();
    let mut t = Template::new(format!("gilliam formation {f}, routing group {g} of {}: load balancers, listeners, routes, service names", ctx.groups));
    let members: Vec<&Svc<'_>> = ctx.http().filter(|s| s.group == Some(g)).collect();
    let routes = public_routes(ctx, g);
    // The priorities the deployed stack's rules hold (none on a first deploy).
    let none = crate::priority::DeployedRules::default();
    let deployed = ctx.deployed_rules.get(&names::routing_stack(f, g)).unwrap_or(&none);
    if !routes.is_empty() {
        load_balancer(ctx, &mut t, g, true)?;
        let listener = if let Some(cert) = &ctx.stage.certificate {
            t.add(
                "PublicHttpsListener",
                "AWS::ElasticLoadBalancingV2::Listener",
                json!({
                    "LoadBalancerArn": r#ref("PublicLoadBalancer"), "Port": 443, "Protocol": "HTTPS", "SslPolicy": TLS_POLICY,
                    "Certificates": [{ "CertificateArn": cert }], "DefaultActions": not_found(),
                }),
            )?;
            t.add(
                "PublicHttpListener",
                "AWS::ElasticLoadBalancingV2::Listener",
                json!({
                    "LoadBalancerArn": r#ref("PublicLoadBalancer"), "Port": 80, "Protocol": "HTTP",
                    "DefaultActions": [{ "Type": "redirect", "RedirectConfig": { "Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301" } }],
                }),
            )?;
            "PublicHttpsListener"
        } else {
            t.add(
                "PublicHttpListener",
                "AWS::ElasticLoadBalancingV2::Listener",
                json!({ "LoadBalancerArn": r#ref("PublicLoadBalancer"), "Port": 80, "Protocol": "HTTP", "DefaultActions": not_found() }),
            )?;
            "PublicHttpListener"
        };
        // Each route's rule comes just after its test-header twin, which sends a request
        // carrying `X-Gilliam-Release: N` to the compiled release whatever the weights.
        let ids: Vec<String> = routes
            .iter()
            .flat_map(|(_, r)| {
                let id = names::route_rule_id(r.host.as_deref(), r.path.as_deref());
                [names::test_rule_id(&id), id]
            })
            .collect();
        let keys: Vec<&str> = ids.iter().map(String::as_str).collect();
        let priorities = crate::priority::allocate(&keys, &deployed.on(listener), true).map_err(|e| format!("routing group {g}'s public listener: {e}"))?;
        let pairs = routes.iter().flat_map(|sr| [(sr, true), (sr, false)]);
        for ((((s, r), test), id), prio) in pairs.zip(&ids).zip(priorities) {
            let actions = if test {
                test_forward(ctx, &s.s.name, true)
            } else {
                let Some(actions) = forward(ctx, &s.s.name, true) else {
                    continue;
                };
                actions
            };
            let mut conditions = Vec::new();
            if let Some(h) = &r.host {
                conditions.push(obj! { "Field": "host-header", "HostHeaderConfig": obj! { "Values": vec![h.as_str()] } });
            }
            if let Some(p) = &r.path {
                conditions.push(obj! { "Field": "path-pattern", "PathPatternConfig": obj! { "Values": vec![p.as_str()] } });
            }
            if test {
                conditions.push(test_condition(ctx));
            }
            let mut rule = obj! { "ListenerArn": r#ref(listener), "Priority": prio, "Conditions": conditions, "Actions": actions };
            if let Some(rw) = &r.rewrite {
                let mut transforms = Vec::new();
                if let Some((regex, replace)) = &rw.host {
                    let rewrites = vec![obj! { "Regex": regex.as_str(), "Replace": replace.as_str() }];
                    transforms.push(obj! { "Type": "host-header-rewrite", "HostHeaderRewriteConfig": obj! { "Rewrites": rewrites } });
                }
                if let Some((regex, replace)) = &rw.path {
                    let rewrites = vec![obj! { "Regex": regex.as_str(), "Replace": replace.as_str() }];
                    transforms.push(obj! { "Type": "url-rewrite", "UrlRewriteConfig": obj! { "Rewrites": rewrites } });
                }
                if let Value::Object(m) = &mut rule {
                    m.insert("Transforms".into(), Value::Array(transforms));
                }
            }
            t.add(id.clone(), "AWS::ElasticLoadBalancingV2::ListenerRule", rule)?;
        }
        t.output("PublicLoadBalancerDns", get_att("PublicLoadBalancer", "DNSName"), None, "DNS name of the public load balancer");
    }
    if !members.is_empty() {
        load_balancer(ctx, &mut t, g, false)?;
        t.add(
            "InternalListener",
            "AWS::ElasticLoadBalancingV2::Listener",
            json!({ "LoadBalancerArn": r#ref("InternalLoadBalancer"), "Port": 80, "Protocol": "HTTP", "DefaultActions": not_found() }),
        )?;
        // Internal rules match one exact host each, so services may come in any order; but a
        // service's test-header rule must come before its own rule.
        let ids: Vec<String> = members
            .iter()
            .flat_map(|s| {
                let id = format!("{}InternalRule", s.id);
                [names::test_rule_id(&id), id]
            })
            .collect();
        let keys: Vec<&str> = ids.iter().map(String::as_str).collect();
        let priorities =
            crate::priority::allocate(&keys, &deployed.on("InternalListener"), true).map_err(|e| format!("routing group {g}'s internal listener: {e}"))?;
        for (s, (pair, prio)) in members.iter().zip(ids.chunks(2).zip(priorities.chunks(2))) {
            let host = host(ctx, &s.s.name);
            let host_condition = obj! { "Field": "host-header", "HostHeaderConfig": obj! { "Values": vec![host.as_str()] } };
            t.add(
                pair[0].clone(),
                "AWS::ElasticLoadBalancingV2::ListenerRule",
                obj! {
                    "ListenerArn": r#ref("InternalListener"), "Priority": prio[0],
                    "Conditions": vec![host_condition.clone(), test_condition(ctx)], "Actions": test_forward(ctx, &s.s.name, false),
                },
            )?;
            if let Some(actions) = forward(ctx, &s.s.name, false) {
                t.add(
                    pair[1].clone(),
                    "AWS::ElasticLoadBalancingV2::ListenerRule",
                    obj! { "ListenerArn": r#ref("InternalListener"), "Priority": prio[1], "Conditions": vec![host_condition], "Actions": actions },
                )?;
            }
            t.add(
                format!("{}DnsRecord", s.id),
                "AWS::Route53::RecordSet",
                obj! {
                    "HostedZoneId": import(&names::formation_export(f, "PrivateZoneId")), "Name": format!("{host}."), "Type": "A",
                    "AliasTarget": obj! { "DNSName": get_att("InternalLoadBalancer", "DNSName"), "HostedZoneId": get_att("InternalLoadBalancer", "CanonicalHostedZoneID"), "EvaluateTargetHealth": false },
                },
            )?;
        }
        t.output("InternalLoadBalancerDns", get_att("InternalLoadBalancer", "DNSName"), None, "DNS name of the internal load balancer");
    }
    Ok(t)
}

fn manifest(ctx: &Ctx<'_>, inputs: &Inputs<'_>, out: &mut Out, d: &Discovery, mut userdata: BTreeMap<String, Vec<mf::FileEntry>>) -> Result<Manifest, String> {
    let f = ctx.f();
    let n = ctx.release.number;
    let app = out.file("inputs/gilliam.yml".into(), inputs.app.text.as_bytes().to_vec());
    let release = out.file("inputs/release.json".into(), inputs.release.text.as_bytes().to_vec());
    let stage = out.file("inputs/stage.yml".into(), inputs.stage.text.as_bytes().to_vec());
    let mut tg_names = BTreeSet::new();
    let mut services = Vec::new();
    for s in &ctx.svcs {
        let p = s.s.process();
        let aux = s.s.auxiliary();
        let http = s.s.is_http();
        for public in [false, true] {
            if http && (!public || s.routed()) && !tg_names.insert(target_group_name(ctx, &s.s.name, public)) {
                return Err(format!("internal error: target group name for {} used twice", s.s.name));
            }
        }
        services.push(mf::ServiceEntry {
            name: s.s.name.clone(),
            kind: match (p, http) {
                (Some(_), true) => mf::ServiceKind::Web,
                (Some(_), false) => mf::ServiceKind::Worker,
                (None, _) => mf::ServiceKind::Auxiliary,
            },
            auxiliary_type: aux.map(|a| a.kind.name().to_string()),
            script: p.map(|p| p.script.clone()),
            port: p.and_then(|p| p.port).or(aux.map(|a| a.kind.port())),
            health_path: p.filter(|p| p.port.is_some()).map(|p| p.health.clone()),
            scale: p.map(|_| s.scale.clone()),
            instance_type: s.instance_type.clone(),
            internal: p.is_some_and(|p| p.internal || p.routes.is_empty()) || aux.is_some(),
            stack: if p.is_some() { ctx.release_stack(s.part) } else { names::formation_stack(f) },
            auto_scaling_group: p.map(|_| format!("{}AutoScalingGroup", s.id)),
            routing_group: s.group,
            internal_target_group_export: http.then(|| names::target_group_export(f, n, &s.s.name, false)),
            public_target_group_export: s.routed().then(|| names::target_group_export(f, n, &s.s.name, true)),
            url_variable: if http {
                Some(format!("{}_URL", s.env))
            } else {
                aux.map(|a| format!("{}_{}", s.env, if a.kind == AuxType::Etcd { "ENDPOINTS" } else { "URL" }))
            },
            internal_url: http.then(|| format!("http://{}", host(ctx, &s.s.name))),
            userdata: userdata.remove(&s.s.name).unwrap_or_default(),
        });
    }
    let mut routes = Vec::new();
    for g in 1..=ctx.groups {
        for (prio, (s, r)) in public_routes(ctx, g).into_iter().enumerate() {
            routes.push(mf::RouteEntry {
                service: s.s.name.clone(),
                route: r.raw.clone(),
                host: r.host.clone(),
                path: r.path.clone(),
                rewrite: r.rewrite.as_ref().map(|rw| rw.to.clone()),
                routing_group: g,
                priority: prio as u32 + 1,
            });
        }
    }
    let mut traffic: Vec<mf::TrafficEntry> = ctx.traffic.iter().map(|t| mf::TrafficEntry { release: t.release, weight: t.weight }).collect();
    traffic.sort_by_key(|t| t.release);
    Ok(Manifest {
        format_version: mf::FORMAT_VERSION,
        formation: mf::FormationInfo {
            name: f.to_string(),
            region: ctx.stage.region.clone(),
            vpc: ctx.stage.vpc.clone(),
            outputs_bucket: ctx.stage.outputs_bucket.clone(),
            s3_prefix: ctx.prefix(),
            internal_domain: ctx.domain(),
            keep_releases: ctx.stage.keep_releases,
            cold_releases: ctx.stage.cold_releases,
            max_live_releases: ctx.live,
            routing_groups: ctx.groups,
            https: ctx.https(),
            public_url: ctx.stage.domain.as_ref().map(|d| format!("{}://{d}", if ctx.https() { "https" } else { "http" })),
        },
        release: mf::ReleaseInfo {
            number: n,
            revision: ctx.release.revision.clone(),
            created: ctx.release.created.clone(),
            artifact_url: ctx.release.artifact.url.clone(),
            artifact_sha256: ctx.release.artifact.sha256.clone(),
            runtime_image: ctx.release.runtime_image.clone(),
            config: ctx.release.config.clone(),
            secret_config: ctx.release.secrets.iter().map(|(k, (name, _))| (k.clone(), name.clone())).collect(),
        },
        stacks: std::mem::take(&mut out.stacks),
        services,
        routes,
        internal_urls: d.urls.clone(),
        traffic,
        uploads: std::mem::take(&mut out.uploads),
        inputs: mf::InputFiles { app, release, stage },
        warnings: std::mem::take(&mut out.warnings),
        secrets: ctx
            .auxiliaries()
            .filter_map(|a| {
                let aux = a.s.auxiliary()?;
                let (username, endpoint) = match aux.kind {
                    AuxType::Postgres => ("gilliam", None),
                    AuxType::Redis => ("default", Some((format!("Aux{}Address", a.id), format!("Aux{}Port", a.id)))),
                    AuxType::Etcd => return None,
                };
                Some(mf::SecretEntry {
                    name: names::secret_name(f, &a.s.name),
                    auxiliary: a.s.name.clone(),
                    username: username.into(),
                    endpoint_outputs: endpoint,
                })
            })
            .collect(),
        test_route: ctx.http().next().is_some().then(|| mf::TestRoute { header: crate::delivery::TEST_HEADER.into(), value: n.to_string() }),
        delivery: ctx.delivery.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::route_order;
    use crate::app::Route;
    use crate::diag::Pos;

    fn route(raw: &str) -> Route {
        let mut out = Vec::new();
        crate::app::parse_route(raw, Pos::new(1, 1), &mut crate::diag::Sink { file: "t", out: &mut out }).expect("valid route")
    }

    #[test]
    fn specific_routes_come_first() {
        let mut rs: Vec<Route> =
            ["/*", "shop.example.com", "/api/*", "shop.example.com/api/*", "shop.example.com/api/v2/*", "shop.example.com/health", "*.example.com/x/*"]
                .map(route)
                .to_vec();
        rs.sort_by_key(route_order);
        let order: Vec<&str> = rs.iter().map(|r| r.raw.as_str()).collect();
        assert_eq!(
            order,
            ["shop.example.com/health", "shop.example.com/api/v2/*", "shop.example.com/api/*", "shop.example.com", "*.example.com/x/*", "/api/*", "/*"]
        );
    }

    #[test]
    fn catch_all_keeps_a_condition() {
        assert_eq!(route("/*").path.as_deref(), Some("/*"));
        assert_eq!(route("shop.example.com/*").path, None);
    }
}
