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
    pub(crate) secrets: BTreeMap<String, Secret>,
    pub(crate) urls: BTreeMap<String, String>,
}

/// A secret-bearing variable as a runtime config holds it (`runtime::SecretRef`), its fields
/// in the sorted order of the rendered config.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Secret {
    format: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    raw: bool,
    secret: String,
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
                d.secrets.insert(format!("{}_URL", a.env), Secret { secret: secret.clone(), format: url, raw: false });
                if count(AuxType::Postgres) == 1 {
                    aliases.push(("DATABASE_URL".into(), format!("{}_URL", a.env), true));
                }
            }
            AuxType::Redis => {
                // TLS: the cache's own endpoint (which its certificate covers), written into the
                // secret by the materializer; the private zone's CNAME is not on the certificate.
                let url = "rediss://:{password}@{host}:{port}".to_string();
                d.secrets.insert(format!("{}_HOST", a.env), Secret { secret: secret.clone(), format: "{host}".into(), raw: true });
                d.env.insert(format!("{}_PORT", a.env), port.to_string());
                d.secrets.insert(format!("{}_URL", a.env), Secret { secret: secret.clone(), format: url, raw: false });
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

/// The runtime config of one service (`runtime::ServiceConfig`), serialized. With `shared`,
/// discovery variables are not inlined: the agent reads them from the shared document first,
/// and `env` here overrides them. Built from borrowed parts straight into its text: a
/// thousand services are a thousand configs.
pub(crate) fn service_config(ctx: &Ctx<'_>, s: &Svc<'_>, d: &Discovery, shared: Option<&mf::UploadEntry>) -> Result<String, String> {
    use std::borrow::Cow;
    let p = s.s.process();
    let release = ctx.release.number.to_string();
    let mut env: BTreeMap<&str, Cow<'_, str>> = BTreeMap::new();
    env.insert("GILLIAM_FORMATION", ctx.f().into());
    env.insert("GILLIAM_RELEASE", release.as_str().into());
    env.insert("GILLIAM_SERVICE", s.s.name.as_str().into());
    if shared.is_none() {
        env.extend(d.urls.iter().chain(&d.env).map(|(k, v)| (k.as_str(), Cow::from(v.as_str()))));
    }
    if let Some(p) = p {
        env.extend(p.env.iter().map(|(k, v)| (k.as_str(), Cow::from(v.as_str()))));
    }
    env.extend(ctx.release.config.iter().map(|(k, v)| (k.as_str(), Cow::from(v.as_str()))));
    if let Some(port) = p.and_then(|p| p.port) {
        env.insert("PORT", port.to_string().into());
    }
    let mut secrets: BTreeMap<&str, Cow<'_, Secret>> =
        d.secrets.iter().filter(|(k, _)| !env.contains_key(k.as_str())).map(|(k, v)| (k.as_str(), Cow::Borrowed(v))).collect();
    // Secret config: the secret holds a field named after the variable, taken as it is.
    for (var, (name, _)) in &ctx.release.secrets {
        env.remove(var.as_str());
        secrets.insert(var, Cow::Owned(Secret { secret: name.clone(), format: format!("{{{var}}}"), raw: true }));
    }
    let discovery_url = shared.map(|u| format!("s3://{}/{}", ctx.stage.outputs_bucket, u.s3_key));
    let (artifact, image) = match &ctx.release.artifact {
        crate::release::Artifact::Tarball { url, sha256, .. } => (Some(Pinned { sha256, url }), None),
        crate::release::Artifact::Image(i) => (None, Some((ctx.release.artifact.location(), i.digest.clone().unwrap_or_default()))),
    };
    let config = ServiceConfig {
        artifact,
        discovery: shared.zip(discovery_url.as_deref()).map(|(u, url)| Pinned { sha256: &u.sha256, url }),
        drain_seconds: ctx.stage.deregistration_delay,
        env,
        format_version: RUNTIME_CONFIG_VERSION,
        formation: ctx.f(),
        health_path: p.filter(|p| p.port.is_some()).map(|p| p.health.as_str()),
        image: image.as_ref().map(|(reference, digest)| ImageRef { digest, reference }),
        limits: s.limits.map(|l| LimitsOut { cpu_millis: l.cpu_millis, memory_mib: l.memory_mib }),
        logs: Logs { group: names::log_group(ctx.f()) },
        port: p.and_then(|p| p.port),
        region: &ctx.stage.region,
        release: ctx.release.number,
        role: "service",
        script: p.and_then(|p| p.script.as_deref()).unwrap_or_default(),
        secrets,
        service: &s.s.name,
        signal: Signal { resource: format!("{}AutoScalingGroup", s.id), stack: STACK_PLACEHOLDER, timeout_seconds: SIGNAL_TIMEOUT_SECONDS },
    };
    serde_json::to_string(&config).map_err(|e| format!("internal error: {e}"))
}

// A service's runtime config as it is rendered: `runtime::ServiceConfig`'s fields in sorted
// order, top-level fields that do not apply left out (the contract test parses every config
// emitted with the agent's types).

#[derive(serde::Serialize)]
struct ServiceConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact: Option<Pinned<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    discovery: Option<Pinned<'a>>,
    drain_seconds: u32,
    env: BTreeMap<&'a str, std::borrow::Cow<'a, str>>,
    format_version: u32,
    formation: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<ImageRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limits: Option<LimitsOut>,
    logs: Logs,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    region: &'a str,
    release: u32,
    role: &'a str,
    script: &'a str,
    secrets: BTreeMap<&'a str, std::borrow::Cow<'a, Secret>>,
    service: &'a str,
    signal: Signal<'a>,
}

#[derive(serde::Serialize)]
struct Pinned<'a> {
    sha256: &'a str,
    url: &'a str,
}

#[derive(serde::Serialize)]
struct ImageRef<'a> {
    digest: &'a str,
    reference: &'a str,
}

#[derive(serde::Serialize)]
struct LimitsOut {
    cpu_millis: u32,
    memory_mib: u32,
}

#[derive(serde::Serialize)]
struct Logs {
    group: String,
}

#[derive(serde::Serialize)]
struct Signal<'a> {
    resource: String,
    stack: &'a str,
    timeout_seconds: u32,
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

/// The emitted template cut at its placeholders (`{{name}}`): literal text, as it is and
/// JSON-escaped (once for every service), between the values filled in. A placeholder of no
/// known name stays as it is.
struct Pieces {
    parts: Vec<Piece>,
    literal_bytes: usize,
}

enum Piece {
    Text { raw: &'static str, json: String },
    Value(Slot),
}

/// What a placeholder stands for: an index into [`Fill::values`].
#[derive(Clone, Copy)]
enum Slot {
    Formation,
    Release,
    Role,
    Service,
    ConfigVersion,
    Image,
    Region,
    SignalStack,
    SignalResource,
    RuntimeConfig,
}

fn pieces() -> &'static Pieces {
    static PIECES: std::sync::OnceLock<Pieces> = std::sync::OnceLock::new();
    PIECES.get_or_init(|| {
        let mut texts: Vec<(&'static str, Option<Slot>)> = Vec::new();
        let mut rest = emitted_template();
        let mut from = 0;
        while let Some(i) = rest[from..].find("{{").map(|i| from + i) {
            let after = &rest[i + 2..];
            let slot = after.find("}}").and_then(|j| {
                let slot = match &after[..j] {
                    "formation" => Slot::Formation,
                    "release" => Slot::Release,
                    "role" => Slot::Role,
                    "service" => Slot::Service,
                    "config_version" => Slot::ConfigVersion,
                    "image" => Slot::Image,
                    "region" => Slot::Region,
                    "signal_stack" => Slot::SignalStack,
                    "signal_resource" => Slot::SignalResource,
                    "runtime_config" => Slot::RuntimeConfig,
                    _ => return None,
                };
                Some((j, slot))
            });
            match slot {
                Some((j, slot)) => {
                    texts.push((&rest[..i], Some(slot)));
                    rest = &after[j + 2..];
                    from = 0;
                }
                None => from = i + 2,
            }
        }
        texts.push((rest, None));
        let mut parts = Vec::new();
        for (raw, slot) in texts {
            let mut json = String::with_capacity(raw.len() + raw.len() / 8);
            cfn::escape_json_into(&mut json, raw);
            parts.push(Piece::Text { raw, json });
            parts.extend(slot.map(Piece::Value));
        }
        let literal_bytes = parts.iter().map(|p| if let Piece::Text { raw, .. } = p { raw.len() } else { 0 }).sum();
        Pieces { parts, literal_bytes }
    })
}

/// The values one instance role's userdata fills the template with: `cfg` its runtime config,
/// `signal` the stack and resource the instance signals (userdata signals FAILURE itself when
/// the image has no agent).
pub(crate) struct Fill<'a> {
    values: [&'a str; 10],
}

impl<'a> Fill<'a> {
    pub(crate) fn new(ctx: &'a Ctx<'_>, release: &'a str, role: &'a str, name: &'a str, cfg: &'a str, image: &'a str, signal: (&'a str, &'a str)) -> Self {
        let mut values = [""; 10];
        for (slot, v) in [
            (Slot::Formation, ctx.f()),
            (Slot::Release, release),
            (Slot::Role, role),
            (Slot::Service, name),
            (Slot::ConfigVersion, CONFIG_VERSION),
            (Slot::Image, image),
            (Slot::Region, ctx.stage.region.as_str()),
            (Slot::SignalStack, signal.0),
            (Slot::SignalResource, signal.1),
            (Slot::RuntimeConfig, cfg),
        ] {
            values[slot as usize] = v;
        }
        Fill { values }
    }

    fn with_config(&self, cfg: &'a str) -> Self {
        let mut values = self.values;
        values[Slot::RuntimeConfig as usize] = cfg;
        Fill { values }
    }

    /// The length of the script, without writing it.
    pub(crate) fn len(&self) -> usize {
        let p = pieces();
        p.literal_bytes + p.parts.iter().map(|x| if let Piece::Value(s) = x { self.values[*s as usize].len() } else { 0 }).sum::<usize>()
    }

    /// The script.
    fn script(&self) -> String {
        let mut out = String::with_capacity(self.len());
        for part in &pieces().parts {
            out.push_str(match part {
                Piece::Text { raw, .. } => raw,
                Piece::Value(s) => self.values[*s as usize],
            });
        }
        out
    }

    /// The script as a JSON string (quotes included) and its sha256, never laid out as it is:
    /// the template's text is escaped once for all, only the values here.
    fn json_and_sha256(&self) -> (String, String) {
        let mut out = String::with_capacity(self.len() + self.len() / 8 + 2);
        let mut sha = gilliam_contract::digest::Sha256Hex::default();
        out.push('"');
        for part in &pieces().parts {
            match part {
                Piece::Text { raw, json } => {
                    sha.update(raw.as_bytes());
                    out.push_str(json);
                }
                Piece::Value(s) => {
                    let v = self.values[*s as usize];
                    sha.update(v.as_bytes());
                    cfn::escape_json_into(&mut out, v);
                }
            }
        }
        out.push('"');
        (out, sha.finish())
    }
}

const CONFIG_VERSION: &str = "1";
const _: () = assert!(RUNTIME_CONFIG_VERSION == 1, "CONFIG_VERSION spells RUNTIME_CONFIG_VERSION");

/// Which form a rendered script takes: as it is (a template built as a JSON tree escapes
/// it), or as a JSON string ready to splice into a typed resource (`cfn::RAW_SLOT`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    Text,
    Json,
}

/// One instance role's userdata, rendered and hashed. When the script would not fit EC2's
/// limit with room to spare, the runtime config goes to its own file (uploaded next to the
/// templates) and userdata carries its S3 URL and sha256 instead.
pub(crate) struct Userdata {
    /// The script, in the form asked for.
    script: String,
    sha256: String,
    bytes: usize,
    /// The runtime config moved out of userdata: (path, bytes, sha256).
    external: Option<(String, Vec<u8>, String)>,
}

pub(crate) fn userdata_script(ctx: &Ctx<'_>, fill: &Fill<'_>, form: Form, external_path: &str) -> Result<Userdata, String> {
    let render = |fill: &Fill<'_>| match form {
        Form::Json => fill.json_and_sha256(),
        Form::Text => {
            let script = fill.script();
            let sha = sha256_hex(script.as_bytes());
            (script, sha)
        }
    };
    let bytes = fill.len();
    if bytes <= INLINE_USERDATA_BUDGET {
        let (script, sha256) = render(fill);
        return Ok(Userdata { script, sha256, bytes, external: None });
    }
    let text = fill.values[Slot::RuntimeConfig as usize];
    let name = fill.values[Slot::Service as usize];
    let mut config = text.as_bytes().to_vec();
    config.push(b'\n');
    let sha = sha256_hex(&config);
    let pointer = obj! {
        "format_version": RUNTIME_CONFIG_VERSION,
        "config_url": format!("s3://{}/{}", ctx.stage.outputs_bucket, upload_key(ctx, external_path)),
        "config_sha256": sha.as_str(),
        "region": ctx.stage.region.as_str(),
    };
    let pointer = serde_json::to_string(&pointer).map_err(|e| format!("internal error: {e}"))?;
    let fill = fill.with_config(&pointer);
    let bytes = fill.len();
    if bytes > cfn::MAX_USERDATA_BYTES {
        return Err(format!("internal error: userdata for {name} is {bytes} bytes, over EC2's {} bytes", cfn::MAX_USERDATA_BYTES));
    }
    let (script, sha256) = render(&fill);
    Ok(Userdata { script, sha256, bytes, external: Some((external_path.to_string(), config, sha)) })
}

/// Where a rendered userdata script goes: the script itself into the launch template of
/// `stack`'s resource `launch_template` (written once, there, where the manifest's entry
/// points); its runtime config, when moved out, to an upload.
pub(crate) fn place(stack: &str, launch_template: &str, u: Userdata) -> (String, Placed) {
    let entry = mf::FileEntry { path: crate::names::userdata_location(stack, launch_template), sha256: u.sha256, bytes: u.bytes };
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
        crate::par::map(svcs, ctx.workers, |s| Ok((s.s.name.clone(), service_config(ctx, s, &disc, shared)?))).into_iter().collect()
    };
    let discovery_bytes = serde_json::to_string(&disc.all_env()).map_or(0, |t| t.len());
    let (release, stack) = (ctx.release.number.to_string(), ctx.release_stack(1));
    let overhead = Fill::new(ctx, &release, "service", "", "", &ctx.release.runtime_image, (&stack, "AutoScalingGroup")).len();
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
/// script as a JSON string (for `cfn::RAW_SLOT`), and what the script leaves behind.
pub(crate) fn part_scripts(ctx: &Ctx<'_>, configs: &Configs, part: u32) -> Result<Vec<(String, String, Placed)>, String> {
    let (stack, release) = (ctx.release_stack(part), ctx.release.number.to_string());
    ctx.processes()
        .filter(|s| s.part == part)
        .map(|s| {
            let text = configs.texts.get(&s.s.name).ok_or("internal error: runtime config missing")?.replace(STACK_PLACEHOLDER, &stack);
            let (resource, template) = (format!("{}AutoScalingGroup", s.id), format!("{}LaunchTemplate", s.id));
            let fill = Fill::new(ctx, &release, "service", &s.s.name, &text, &ctx.release.runtime_image, (&stack, &resource));
            let u = userdata_script(ctx, &fill, Form::Json, &format!("runtime/{}.json", s.s.name))?;
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
    let release = ctx.release.number.to_string();
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
            let fill = Fill::new(ctx, &release, "auxiliary", &name, &config, &image, (&signal.0, &signal.1));
            let u = userdata_script(ctx, &fill, Form::Text, &format!("runtime/{name}.json"))?;
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
