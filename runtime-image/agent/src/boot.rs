//! Getting a release ready to run: the runtime config read (and fetched when userdata holds
//! only a pointer), the discovery document and artifact fetched and checked against their
//! sha256, the artifact unpacked safely into the release directory, secrets resolved, and the
//! process's environment put together.

use crate::cloud::Cloud;
use crate::unpack::{self, Limits};
use gilliam_contract::runtime::{self, Discovery, RuntimeConfig, ServiceConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Runtime configs and discovery documents are small; anything bigger is not one.
const MAX_DOCUMENT_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootError {
    /// The runtime config cannot be read or is not one this agent understands.
    Config(String),
    /// Something the config names cannot be fetched or does not match its sha256.
    Fetch(String),
    /// The artifact is unsafe, corrupt or too large.
    Artifact(String),
    Secret(String),
    /// The machine is not set up for services (user, directories).
    Host(String),
    /// The service did not turn healthy in time.
    Unhealthy(String),
}

impl std::fmt::Display for BootError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootError::Config(m) | BootError::Fetch(m) | BootError::Artifact(m) | BootError::Secret(m) | BootError::Host(m) | BootError::Unhealthy(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for BootError {}

/// Where the agent keeps things: `root` is `/` on an instance (`$GILLIAM_ROOT` in tests).
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
}

impl Paths {
    pub fn state(&self) -> PathBuf {
        self.root.join("var/lib/gilliam")
    }

    pub fn journal_socket(&self) -> PathBuf {
        self.root.join("run/systemd/journal/socket")
    }

    /// The unpacked release of one service.
    pub fn release_dir(&self, formation: &str, release: u32, service: &str) -> PathBuf {
        self.state().join("releases").join(formation).join(release.to_string()).join(service)
    }
}

fn fetch_document(cloud: &dyn Cloud, paths: &Paths, what: &str, url: &str, sha256: &str) -> Result<Vec<u8>, BootError> {
    let dir = paths.state().join("downloads");
    std::fs::create_dir_all(&dir).map_err(|e| BootError::Host(format!("cannot create {}: {e}", dir.display())))?;
    let tmp = dir.join(format!("{sha256}.json.part"));
    let got = cloud.fetch(url, &tmp, MAX_DOCUMENT_BYTES).map_err(|e| BootError::Fetch(format!("cannot fetch the {what} {url}: {e}")));
    let bytes = got.and_then(|f| {
        if f.sha256 == sha256 {
            std::fs::read(&tmp).map_err(|e| BootError::Host(format!("cannot read {}: {e}", tmp.display())))
        } else {
            Err(BootError::Fetch(format!("the {what} {url} has sha256 {}, userdata states {sha256}: refusing it", f.sha256)))
        }
    });
    let _ = std::fs::remove_file(&tmp);
    bytes
}

/// Opens the AWS clients for a region (the region is only known once the config is read).
pub type Connect<'a> = &'a dyn Fn(&str) -> Result<Box<dyn Cloud>, String>;

/// Reads the runtime config at `path`, following a pointer to the config it names.
pub fn load_config(path: &Path, cloud: Connect<'_>, paths: &Paths) -> Result<RuntimeConfig, BootError> {
    let bytes = std::fs::read(path).map_err(|e| BootError::Config(format!("cannot read the runtime config {}: {e}", path.display())))?;
    resolve(runtime::parse(&bytes).map_err(|e| BootError::Config(format!("{}: {e}", path.display())))?, cloud, paths)
}

/// A runtime config, with a pointer followed to the config it names.
pub fn resolve(config: RuntimeConfig, cloud: Connect<'_>, paths: &Paths) -> Result<RuntimeConfig, BootError> {
    match config {
        RuntimeConfig::Pointer(p) => {
            let c = cloud(&p.region).map_err(BootError::Host)?;
            let bytes = fetch_document(c.as_ref(), paths, "runtime config", &p.config_url, &p.config_sha256)?;
            match runtime::parse(&bytes).map_err(|e| BootError::Config(format!("{}: {e}", p.config_url)))? {
                RuntimeConfig::Pointer(_) => Err(BootError::Config(format!("{} points at another pointer", p.config_url))),
                other => Ok(other),
            }
        }
        other => Ok(other),
    }
}

/// A service ready to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub dir: PathBuf,
    pub env: BTreeMap<String, String>,
    /// Whether the artifact was unpacked now (false: an earlier boot's verified copy).
    pub unpacked: bool,
}

/// Percent-encodes everything but the unreserved characters: secret fields go into URLs.
fn percent_encode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// Substitutes the secret's fields into `format` (`{field}`), percent-encoded unless `raw`.
pub fn fill_secret(format: &str, secret: &str, var: &str, name: &str, raw: bool) -> Result<String, BootError> {
    let fields: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(secret).map_err(|_| BootError::Secret(format!("secret {name} (for {var}) is not a JSON object")))?;
    let mut out = String::new();
    let mut rest = format;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').ok_or_else(|| BootError::Secret(format!("{var}: unclosed `{{` in its format")))? + open;
        let field = &rest[open + 1..close];
        let value = match fields.get(field) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => return Err(BootError::Secret(format!("secret {name} has no field {field:?}, which {var} needs"))),
        };
        out.push_str(&if raw { value } else { percent_encode(&value) });
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The service's environment: the discovery document's variables, then the config's `env`,
/// then its secrets resolved; `PATH` and `HOME` defaulted when the config does not set them.
pub fn service_env(cfg: &ServiceConfig, cloud: &dyn Cloud, paths: &Paths, home: &str) -> Result<BTreeMap<String, String>, BootError> {
    let mut env = BTreeMap::new();
    if let Some(d) = &cfg.discovery {
        let bytes = fetch_document(cloud, paths, "discovery document", &d.url, &d.sha256)?;
        let doc: Discovery = serde_json::from_slice(&bytes).map_err(|e| BootError::Config(format!("discovery document {}: {e}", d.url)))?;
        env.extend(doc.env);
    }
    env.extend(cfg.env.clone());
    for (var, s) in &cfg.secrets {
        let value = cloud.secret(&s.secret).map_err(|e| BootError::Secret(format!("cannot read secret {} for {var}: {e}", s.secret)))?;
        env.insert(var.clone(), fill_secret(&s.format, &value, var, &s.secret, s.raw)?);
    }
    env.entry("PATH".into()).or_insert_with(|| "/usr/local/bin:/usr/bin:/bin".into());
    env.entry("HOME".into()).or_insert_with(|| home.into());
    Ok(env)
}

/// Fetches, verifies and unpacks the artifact (reusing a copy an earlier boot verified), with
/// the environment of `service_env`.
pub fn prepare_service(cfg: &ServiceConfig, cloud: &dyn Cloud, paths: &Paths, home: &str, limits: Limits) -> Result<Prepared, BootError> {
    let host = |p: &Path, e: std::io::Error| BootError::Host(format!("{}: {e}", p.display()));
    let env = service_env(cfg, cloud, paths, home)?;
    let Some(artifact) = &cfg.artifact else {
        return Err(BootError::Config(format!(
            "release {} of {} is a container image ({}); this agent runs tarball releases only: build the runtime image with a container engine",
            cfg.release,
            cfg.service,
            cfg.image.as_ref().map_or("no artifact", |i| i.reference.as_str())
        )));
    };
    let dir = paths.release_dir(&cfg.formation, cfg.release, &cfg.service);
    let parent = dir.parent().ok_or_else(|| BootError::Host("release directory has no parent".into()))?.to_path_buf();
    std::fs::create_dir_all(&parent).map_err(|e| host(&parent, e))?;
    let marker = parent.join(format!("{}.sha256", cfg.service));
    let want = artifact.sha256.to_ascii_lowercase();
    if dir.is_dir() && std::fs::read_to_string(&marker).is_ok_and(|s| s.trim() == want) {
        return Ok(Prepared { dir, env, unpacked: false });
    }
    let downloads = paths.state().join("downloads");
    std::fs::create_dir_all(&downloads).map_err(|e| host(&downloads, e))?;
    let tarball = downloads.join(format!("{want}.tar.gz.part"));
    let fetched =
        cloud.fetch(&artifact.url, &tarball, limits.max_bytes).map_err(|e| BootError::Fetch(format!("cannot fetch the artifact {}: {e}", artifact.url)));
    let result = fetched.and_then(|f| {
        if f.sha256 != want {
            return Err(BootError::Artifact(unpack::Error::Sha256 { expected: want.clone(), found: f.sha256 }.to_string()));
        }
        let staging = parent.join(format!(".{}.unpacking", cfg.service));
        let _ = std::fs::remove_dir_all(&staging);
        let file = std::fs::File::open(&tarball).map_err(|e| host(&tarball, e))?;
        if let Err(e) = unpack::unpack(std::io::BufReader::new(file), &staging, limits) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(BootError::Artifact(e.to_string()));
        }
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&marker);
        std::fs::rename(&staging, &dir).map_err(|e| host(&dir, e))?;
        std::fs::write(&marker, format!("{want}\n")).map_err(|e| host(&marker, e))?;
        Ok(())
    });
    let _ = std::fs::remove_file(&tarball);
    result.map(|()| Prepared { dir, env, unpacked: true })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_fields_fill_the_format_percent_encoded() {
        let s = r#"{"username": "app", "password": "p@ss w/rd", "port": 5432}"#;
        assert_eq!(
            fill_secret("postgres://{username}:{password}@db:{port}/x", s, "DATABASE_URL", "f/db", false).as_deref(),
            Ok("postgres://app:p%40ss%20w%2Frd@db:5432/x")
        );
        assert_eq!(fill_secret("{password}", s, "API_KEY", "f/config/r2", true).as_deref(), Ok("p@ss w/rd"), "config secrets as they are");
        let e = fill_secret("redis://:{token}@r", s, "REDIS_URL", "f/r", false).expect_err("missing field");
        assert!(e.to_string().contains("no field \"token\"") && e.to_string().contains("REDIS_URL"), "{e}");
        assert!(!e.to_string().contains("p@ss"), "never a secret value in an error");
        assert!(fill_secret("x", "not json", "V", "n", false).is_err());
    }
}
