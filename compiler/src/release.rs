//! Release metadata (`release.json`): the release number, its artifact, runtime image,
//! source revision, creation time and config, decoded and checked.

use crate::decode::{self, Fields};
use crate::diag::Sink;
use crate::node::{Node, Value};
use std::collections::BTreeMap;

/// What a release runs: a tarball in S3, or a container image pinned by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Artifact {
    Tarball { url: String, bucket: String, key: String, sha256: String },
    Image(gilliam_contract::image::ImageRef),
}

impl Artifact {
    /// Where it is: the tarball's `s3://` URL, or the image reference by digest.
    pub fn location(&self) -> String {
        match self {
            Artifact::Tarball { url, .. } => url.clone(),
            Artifact::Image(i) => i.pinned().unwrap_or_else(|| i.to_string()),
        }
    }
    /// Its digest's hex: the tarball's sha256, or the image manifest's.
    pub fn sha256(&self) -> &str {
        match self {
            Artifact::Tarball { sha256, .. } => sha256,
            Artifact::Image(i) => i.digest.as_deref().and_then(|d| d.strip_prefix("sha256:")).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub number: u32,
    pub artifact: Artifact,
    pub runtime_image: String,
    pub revision: String,
    pub created: String,
    pub config: BTreeMap<String, String>,
    /// Config kept secret: variable to the Secrets Manager secret (a JSON object with a field
    /// named after the variable) that holds its value, and where the release names it.
    pub secrets: BTreeMap<String, (String, crate::diag::Pos)>,
}

/// Secret config lives in secrets named `gilliam/FORMATION/config/...`, so that a release's
/// instance role can be granted exactly its own formation's.
pub fn config_secret_prefix(formation: &str) -> String {
    gilliam_contract::keys::config_secret_prefix(formation)
}

const KEYS: &[&str] = &["number", "artifact", "runtime_image", "revision", "created", "config"];
/// Largest release number accepted; it keeps stack and target group names short.
pub const MAX_RELEASE: i64 = 999_999;

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, checked for shape and ranges.
pub(crate) fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let d = |i: usize, n: usize| b.get(i..i + n).is_some_and(|x| x.iter().all(u8::is_ascii_digit));
    let num = |i: usize, n: usize| s[i..i + n].parse::<u32>().unwrap_or(99);
    if !(d(0, 4)
        && b[4] == b'-'
        && d(5, 2)
        && b[7] == b'-'
        && d(8, 2)
        && matches!(b[10], b'T' | b't')
        && d(11, 2)
        && b[13] == b':'
        && d(14, 2)
        && b[16] == b':'
        && d(17, 2))
    {
        return false;
    }
    if !((1..=12).contains(&num(5, 2)) && (1..=31).contains(&num(8, 2)) && num(11, 2) < 24 && num(14, 2) < 60 && num(17, 2) < 61) {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &s[i..] {
        "Z" | "z" => true,
        tz => tz.len() == 6 && matches!(tz.as_bytes()[0], b'+' | b'-') && d(i + 1, 2) && tz.as_bytes()[3] == b':' && d(i + 4, 2),
    }
}

pub(crate) fn parse_s3_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/')?;
    let key_ok = !key.is_empty()
        && key.len() <= 1024
        && !key.starts_with('/')
        && key.chars().all(|c| !c.is_control())
        && !key.split('/').any(|seg| seg == ".." || seg == ".");
    (crate::stage::is_bucket_name(bucket) && key_ok).then(|| (bucket.to_string(), key.to_string()))
}

pub(crate) fn decode(root: &Node, sink: &mut Sink<'_>) -> Option<Release> {
    let entries = decode::map(root, sink, "the release metadata")?;
    let mut f = Fields::new(entries);
    let missing = |k: &str, sink: &mut Sink<'_>| {
        sink.error_hint(root.pos, format!("the release metadata has no `{k}`"), format!("add `\"{k}\"` (see README: release metadata)"));
    };
    let number = match f.get("number") {
        Some(n) => match &n.value {
            Value::Int(i) if (1..=MAX_RELEASE).contains(i) => Some(*i as u32),
            _ => {
                sink.error_hint(
                    n.pos,
                    format!("release number must be a positive integer, found {}", n.describe()),
                    format!("write a whole number from 1 to {MAX_RELEASE}, unquoted, e.g. \"number\": 12"),
                );
                None
            }
        },
        None => {
            missing("number", sink);
            None
        }
    };
    let artifact = match f.get("artifact") {
        Some(n) => artifact(n, sink),
        None => {
            missing("artifact", sink);
            None
        }
    };
    let runtime_image = match f.get("runtime_image") {
        Some(n) => decode::string(n, sink, "`runtime_image`").filter(|s| {
            decode::check(
                sink,
                n.pos,
                crate::stage::is_aws_id(s, "ami-"),
                format!("bad runtime image id `{s}`"),
                "give the AMI id of the runtime image, e.g. `ami-0123456789abcdef0`",
            )
        }),
        None => {
            missing("runtime_image", sink);
            None
        }
    };
    let revision = match f.get("revision") {
        Some(n) => decode::string(n, sink, "`revision`").filter(|s| {
            decode::check(
                sink,
                n.pos,
                s.len() <= 128 && s.bytes().all(|c| c.is_ascii_graphic()),
                "bad source revision",
                "a revision is a commit id or tag: at most 128 printable characters, no spaces",
            )
        }),
        None => {
            missing("revision", sink);
            None
        }
    };
    let created = match f.get("created") {
        Some(n) => decode::string(n, sink, "`created`")
            .filter(|s| decode::check(sink, n.pos, is_rfc3339(s), format!("bad creation time `{s}`"), "write an RFC 3339 time such as `2026-11-22T10:00:00Z`")),
        None => {
            missing("created", sink);
            None
        }
    };
    let (config, secrets) = f.get("config").map(|n| config_map(n, sink)).unwrap_or_default();
    f.finish(sink, KEYS, "the release metadata");
    Some(Release { number: number?, artifact: artifact?, runtime_image: runtime_image?, revision: revision?, created: created?, config, secrets })
}

type SecretConfig = BTreeMap<String, (String, crate::diag::Pos)>;

/// `config`: variable to a value, or to `{"secret": NAME}` for a value kept in Secrets Manager.
fn config_map(n: &crate::node::Node, sink: &mut crate::diag::Sink<'_>) -> (BTreeMap<String, String>, SecretConfig) {
    let mut plain = BTreeMap::new();
    let mut secret = BTreeMap::new();
    let Some(entries) = decode::map(n, sink, "`config`") else { return (plain, secret) };
    let (mut strings, mut refs) = (Vec::new(), Vec::new());
    for (k, v) in entries {
        if matches!(v.value, crate::node::Value::Map(_)) {
            refs.push((k, v));
        } else {
            strings.push((k.clone(), v.clone()));
        }
    }
    if !strings.is_empty() {
        let node = crate::node::Node { pos: n.pos, value: crate::node::Value::Map(strings) };
        plain = crate::app::env_map(&node, sink, "`config`");
    }
    for (k, v) in refs {
        if !crate::app::is_env_name(&k.name) || k.name == "PORT" || k.name.starts_with("GILLIAM_") {
            sink.error_hint(k.pos, format!("bad config name `{}`", k.name), "use letters, digits and `_`; PORT and GILLIAM_* are reserved");
            continue;
        }
        let Some(m) = decode::map(v, sink, &format!("`{}`", k.name)) else { continue };
        let mut f = decode::Fields::new(m);
        if let Some(name) = f.get("secret").and_then(|s| decode::string(s, sink, "`secret`")) {
            if name.starts_with("gilliam/") && name.contains("/config/") && !name.ends_with('/') {
                secret.insert(k.name.clone(), (name, v.pos));
            } else {
                sink.error_hint(
                    v.pos,
                    format!("`{}`: secret `{name}` is not a gilliam config secret", k.name),
                    "config secrets are named gilliam/FORMATION/config/...; `gilliam env set --secret` makes them",
                );
            }
        } else {
            sink.error_hint(
                v.pos,
                format!("`{}`: a config value is a string or {{\"secret\": NAME}}", k.name),
                "write the value, or the name of the secret that holds it",
            );
        }
        f.finish(sink, &["secret"], &format!("`{}`", k.name));
    }
    (plain, secret)
}

fn artifact(n: &Node, sink: &mut Sink<'_>) -> Option<Artifact> {
    let entries = decode::map(n, sink, "`artifact`")?;
    let mut f = Fields::new(entries);
    if let Some(i) = f.get("image") {
        f.finish(sink, &["image"], "`artifact` (an image)");
        let s = decode::string(i, sink, "`artifact.image`")?;
        return match gilliam_contract::image::ImageRef::parse(&s) {
            Ok(r) if r.digest.is_some() => Some(Artifact::Image(gilliam_contract::image::ImageRef { tag: None, ..r })),
            Ok(r) => {
                sink.error_hint(
                    i.pos,
                    format!(
                        "image `{s}` is named by its tag `{}`: a release pins a digest, so that it runs the same bytes wherever and whenever it is deployed",
                        r.tag.as_deref().unwrap_or("latest")
                    ),
                    format!(
                        "resolve the tag to its digest: `gilliam build --image {s}` records `{}@sha256:...` in the release",
                        format_args!("{}/{}", r.registry, r.repository)
                    ),
                );
                None
            }
            Err(e) => {
                sink.error_hint(
                    i.pos,
                    e.to_string(),
                    "write REGISTRY/REPOSITORY@sha256:DIGEST, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/api@sha256:...",
                );
                None
            }
        };
    }
    let url = match f.get("url") {
        Some(u) => decode::string(u, sink, "`artifact.url`").and_then(|s| match parse_s3_url(&s) {
            Some(bk) => Some((s, bk)),
            None => {
                sink.error_hint(
                    u.pos,
                    format!("malformed artifact URL `{s}`"),
                    "write s3://BUCKET/KEY with a valid bucket name and a key without `.`/`..` segments",
                );
                None
            }
        }),
        None => {
            sink.error_hint(
                n.pos,
                "the artifact has no `url`",
                "add \"url\": \"s3://BUCKET/KEY.tar.gz\" (a tarball), or give {\"image\": \"REGISTRY/REPOSITORY@sha256:...\"} (a container image)",
            );
            None
        }
    };
    let sha256 = match f.get("sha256") {
        Some(h) => decode::string(h, sink, "`artifact.sha256`").filter(|s| {
            decode::check(
                sink,
                h.pos,
                s.len() == 64 && s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
                format!("malformed sha256 `{s}`"),
                "give 64 lowercase hexadecimal digits (`sha256sum FILE`)",
            )
        }),
        None => {
            sink.error_hint(n.pos, "the artifact has no `sha256`", "add \"sha256\": the artifact's 64-digit hex digest");
            None
        }
    };
    f.finish(sink, &["url", "sha256"], "`artifact`");
    let (url, (bucket, key)) = url?;
    Some(Artifact::Tarball { url, bucket, key, sha256: sha256? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_shapes() {
        assert!(is_rfc3339("2026-11-22T10:00:00Z"));
        assert!(is_rfc3339("2026-11-22T10:00:00.123+01:00"));
        assert!(!is_rfc3339("2026-13-22T10:00:00Z"));
        assert!(!is_rfc3339("2026-11-22 10:00:00"));
        assert!(!is_rfc3339("yesterday"));
    }

    #[test]
    fn s3_urls() {
        assert_eq!(parse_s3_url("s3://my-bucket/a/b.tgz"), Some(("my-bucket".into(), "a/b.tgz".into())));
        assert_eq!(parse_s3_url("s3://My_Bucket/a"), None);
        assert_eq!(parse_s3_url("https://x/a"), None);
        assert_eq!(parse_s3_url("s3://bucket/"), None);
        assert_eq!(parse_s3_url("s3://bucket/../x"), None);
    }
}
