//! Userdata and runtime configs: each service's config (discovery inline or in one shared
//! document), etcd members' configs, and the userdata script that hands a config to the agent
//! (inline, or a pointer to an uploaded file past EC2's limit).

use super::common::*;
use super::out::{upload_key, Out};
use crate::app::AuxType;
use crate::cfn::{self};
use crate::manifest::{self as mf};
use crate::model::{Ctx, Svc};
use crate::names::{self, sha256_hex};
use crate::obj;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Version of the runtime config that userdata hands to the agent.
pub const RUNTIME_CONFIG_VERSION: u32 = 1;
/// Userdata above this size moves its runtime config to S3 (the hard limit is 16 KiB).
pub const INLINE_USERDATA_BUDGET: usize = 12 * 1024;
/// Stands for the release stack's name in a runtime config until services are packed.
pub(crate) const STACK_PLACEHOLDER: &str = "@@gilliam-release-stack@@";
/// Discovery variables above this size go to one shared document instead of every userdata.
pub const INLINE_DISCOVERY_BUDGET: usize = 4 * 1024;
pub(crate) const USERDATA_TEMPLATE: &str = include_str!("../../../templates/userdata.sh");

/// The template as it is emitted: its explanatory comments stay in `templates/userdata.sh`
/// (read there), only the header that says what the script is and where its contract is goes
/// to every instance. A thousand services carry the rest a thousand times twice (the file and
/// the launch template) for no reader: 11% of the userdata bytes.
fn emitted_template() -> &'static str {
    static STRIPPED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    STRIPPED.get_or_init(|| {
        let mut out = String::with_capacity(USERDATA_TEMPLATE.len());
        for (i, line) in USERDATA_TEMPLATE.lines().enumerate() {
            let comment = line.trim_start().starts_with('#') && !line.starts_with("#!");
            let header = i < 8 && (line.starts_with("# gilliam userdata:") || line.starts_with("# Contract"));
            if !comment || header {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    })
}

/// Non-secret and secret environment every service of the formation receives.
#[derive(Debug)]
pub(crate) struct Discovery {
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) secrets: BTreeMap<String, Value>,
    pub(crate) urls: BTreeMap<String, String>,
}

impl Discovery {
    /// Service URLs and auxiliary settings: the environment shared by every service.
    pub(crate) fn all_env(&self) -> BTreeMap<String, String> {
        let mut e = self.urls.clone();
        e.extend(self.env.clone());
        e
    }
}

pub(crate) fn discovery(ctx: &Ctx<'_>, warnings: &mut Vec<String>) -> Discovery {
    let domain = ctx.domain();
    let mut d = Discovery { env: BTreeMap::new(), secrets: BTreeMap::new(), urls: BTreeMap::new() };
    for s in ctx.own_http() {
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
pub(crate) fn service_config(ctx: &Ctx<'_>, s: &Svc<'_>, d: &Discovery, shared: Option<&mf::UploadEntry>) -> Value {
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
        "artifact": match &ctx.release.artifact {
            crate::release::Artifact::Tarball { url, sha256, .. } => obj! { "url": url.as_str(), "sha256": sha256.as_str() },
            crate::release::Artifact::Image(_) => Value::Null,
        },
        "image": match &ctx.release.artifact {
            crate::release::Artifact::Image(i) => obj! { "reference": ctx.release.artifact.location(), "digest": i.digest.clone().unwrap_or_default() },
            crate::release::Artifact::Tarball { .. } => Value::Null,
        },
        "script": p.map(|p| p.script.clone().unwrap_or_default()),
        "limits": s.limits.map(|l| obj! { "memory_mib": l.memory_mib, "cpu_millis": l.cpu_millis }),
        "logs": obj! { "group": names::log_group(ctx.f()) },
        "port": p.and_then(|p| p.port),
        "health_path": p.filter(|p| p.port.is_some()).map(|p| p.health.clone()),
        "drain_seconds": ctx.stage.deregistration_delay,
        "env": env,
        "secrets": secrets,
    })
}

/// Drops top-level keys whose value is null, so that a worker's config has no `port: null`.
pub(crate) fn without_nulls(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.retain(|_, x| !x.is_null());
    }
    v
}

pub(crate) fn etcd_config(ctx: &Ctx<'_>, a: &Svc<'_>, i: u32) -> Value {
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
/// when the image has no agent. One pass over the template, into a string of the right size:
/// a thousand services fill it a thousand times.
pub(crate) fn fill_template(ctx: &Ctx<'_>, role: &str, name: &str, cfg: &str, image: &str, signal: (&str, &str)) -> String {
    let (release, version) = (ctx.release.number.to_string(), RUNTIME_CONFIG_VERSION.to_string());
    let value = |key: &str| -> Option<&str> {
        Some(match key {
            "formation" => ctx.f(),
            "release" => &release,
            "role" => role,
            "service" => name,
            "config_version" => &version,
            "image" => image,
            "region" => &ctx.stage.region,
            "signal_stack" => signal.0,
            "signal_resource" => signal.1,
            "runtime_config" => cfg,
            _ => return None,
        })
    };
    let template = emitted_template();
    let mut out = String::with_capacity(template.len() + cfg.len() + 256);
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find("}}").and_then(|j| value(&after[..j]).map(|v| (j, v))) {
            Some((j, v)) => {
                out.push_str(v);
                rest = &after[j + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// One instance role's userdata, rendered and hashed. When the script would not fit EC2's
/// limit with room to spare, the runtime config goes to its own file (uploaded next to the
/// templates) and userdata carries its S3 URL and sha256 instead.
pub(crate) struct Userdata {
    script: String,
    sha256: String,
    /// The runtime config moved out of userdata: (path, bytes, sha256).
    external: Option<(String, Vec<u8>, String)>,
}

pub(crate) fn userdata_script(
    ctx: &Ctx<'_>,
    role: &str,
    name: &str,
    text: &str,
    image: &str,
    signal: (&str, &str),
    external_path: &str,
) -> Result<Userdata, String> {
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
    let script = render(&serde_json::to_string(&pointer).map_err(|e| format!("internal error: {e}"))?);
    if script.len() > cfn::MAX_USERDATA_BYTES {
        return Err(format!("internal error: userdata for {name} is {} bytes, over EC2's {} bytes", script.len(), cfn::MAX_USERDATA_BYTES));
    }
    Ok(Userdata { sha256: sha256_hex(script.as_bytes()), script, external: Some((external_path.to_string(), bytes, sha)) })
}

/// Where a rendered userdata script goes: the script itself into the launch template of
/// `stack`'s resource `launch_template` (written once, there, where the manifest's entry
/// points); its runtime config, when moved out, to an upload.
pub(crate) fn place(stack: &str, launch_template: &str, u: Userdata) -> (String, Placed) {
    let entry = mf::FileEntry { path: crate::names::userdata_location(stack, launch_template), sha256: u.sha256, bytes: u.script.len() };
    (u.script, Placed { entry, upload: u.external })
}

/// What a userdata script leaves behind once it is in its template: its manifest entry and the
/// runtime config it moved out (path, bytes, sha256), if any.
pub(crate) struct Placed {
    pub(crate) entry: mf::FileEntry,
    pub(crate) upload: Option<(String, Vec<u8>, String)>,
}

impl Placed {
    /// Records the manifest entry (under `owner`) and the upload.
    pub(crate) fn record(self, out: &mut Out, ctx: &Ctx<'_>, entries: &mut BTreeMap<String, Vec<mf::FileEntry>>, owner: &str) {
        if let Some((path, bytes, sha)) = self.upload {
            out.upload_hashed(ctx, &path, bytes, sha);
        }
        entries.entry(owner.to_string()).or_default().push(self.entry);
    }
}
/// Each service's runtime config, serialized once (with a placeholder for its release stack,
/// which depends on how large its userdata is), and the discovery they carry.
#[derive(Debug)]
pub(crate) struct Configs {
    pub(crate) texts: BTreeMap<String, String>,
    /// The shared discovery document, when discovery is not inlined.
    pub(crate) shared: Option<mf::UploadEntry>,
    /// Each service's userdata as it will appear in its template (JSON-escaped): what the
    /// layout of release stacks packs by.
    pub(crate) sizes: BTreeMap<String, usize>,
    pub(crate) discovery: Discovery,
}

/// The runtime configs of the services. Discovery is inlined in every service's userdata while
/// that fits; past that it would grow with the square of the service count, so it moves to one
/// shared document per release (uploaded).
pub(crate) fn configs(ctx: &Ctx<'_>, out: &mut Out) -> Result<Configs, String> {
    let disc = discovery(ctx, &mut out.warnings);
    let configs = |shared: Option<&mf::UploadEntry>| -> Result<BTreeMap<String, String>, String> {
        let svcs: Vec<&Svc<'_>> = ctx.processes().collect();
        crate::par::map(svcs, ctx.workers, |s| {
            Ok((s.s.name.clone(), serde_json::to_string(&service_config(ctx, s, &disc, shared)).map_err(|e| format!("internal error: {e}"))?))
        })
        .into_iter()
        .collect()
    };
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
    Ok(Configs { texts, shared, sizes, discovery: disc })
}

/// The userdata of one release stack's services, rendered on the worker that builds its
/// template (the signal names the stack), in the order of the services: each script is moved
/// into its launch template and never held for the whole formation. Each service's name, its
/// script, and what the script leaves behind.
pub(crate) fn part_scripts(ctx: &Ctx<'_>, configs: &Configs, part: u32) -> Result<Vec<(String, String, Placed)>, String> {
    let stack = ctx.release_stack(part);
    ctx.processes()
        .filter(|s| s.part == part)
        .map(|s| {
            let text = configs.texts.get(&s.s.name).ok_or("internal error: runtime config missing")?.replace(STACK_PLACEHOLDER, &stack);
            let (resource, template) = (format!("{}AutoScalingGroup", s.id), format!("{}LaunchTemplate", s.id));
            let u = userdata_script(ctx, "service", &s.s.name, &text, &ctx.release.runtime_image, (&stack, &resource), &format!("runtime/{}.json", s.s.name))?;
            let (script, placed) = place(&stack, &template, u);
            Ok((s.s.name.clone(), script, placed))
        })
        .collect()
}

/// Each etcd member's userdata, by (auxiliary, member), for the formation template; their
/// manifest entries go to `entries`.
pub(crate) fn member_scripts(
    ctx: &Ctx<'_>,
    out: &mut Out,
    entries: &mut BTreeMap<String, Vec<mf::FileEntry>>,
) -> Result<BTreeMap<(String, u32), String>, String> {
    let mut members = BTreeMap::new();
    for a in ctx.auxiliaries() {
        let aux = a.s.auxiliary().ok_or("internal error: not an auxiliary")?;
        if aux.kind != AuxType::Etcd {
            continue;
        }
        let image = ctx.stage.auxiliary_image.clone().unwrap_or_default();
        for i in 0..aux.size {
            let config = serde_json::to_string(&etcd_config(ctx, a, i)).map_err(|e| format!("internal error: {e}"))?;
            let name = format!("{}-{i}", a.s.name);
            let signal = (names::formation_stack(ctx.f()), format!("Aux{}Member{i}Group", a.id));
            let u = userdata_script(ctx, "auxiliary", &name, &config, &image, (&signal.0, &signal.1), &format!("runtime/{name}.json"))?;
            if u.external.is_some() {
                return Err(format!("internal error: etcd member {name}'s runtime config does not fit in userdata"));
            }
            let (script, placed) = place(&signal.0, &format!("Aux{}Member{i}LaunchTemplate", a.id), u);
            placed.record(out, ctx, entries, &a.s.name);
            members.insert((a.s.name.clone(), i), script);
        }
    }
    Ok(members)
}
