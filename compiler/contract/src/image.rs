//! Container image references: `REGISTRY/REPOSITORY@sha256:DIGEST`, as a release pins one, and
//! `REGISTRY/REPOSITORY:TAG`, as an operator names one for gilliam to resolve. One parser for
//! the compiler (which refuses a tag), the CLI (which resolves one) and the agent (which pulls
//! by digest and checks what it pulled).

use std::fmt;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `123456789012.dkr.ecr.eu-west-1.amazonaws.com`, `127.0.0.1:5000`.
    pub registry: String,
    /// `shop/api`.
    pub repository: String,
    /// A tag (`v3`), when the reference names one.
    pub tag: Option<String>,
    /// `sha256:` and 64 lowercase hex digits, when the reference pins one.
    pub digest: Option<String>,
}

/// An ECR registry's parts: `ACCOUNT.dkr.ecr.REGION.amazonaws.com[.cn]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ecr {
    pub account: String,
    pub region: String,
    /// `aws`, or `aws-cn` in the China regions.
    pub partition: &'static str,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadImage(pub String);

impl fmt::Display for BadImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_component(s: &str) -> bool {
    // Lowercase letters and digits, separated by one `.`, `_`, `__` or any number of `-`.
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'))
        && !s.contains("..")
        && !s.contains("___")
}

fn is_registry(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && (host.contains('.') || host == "localhost" || port.is_some())
        && host.split('.').all(|l| !l.is_empty() && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') && !l.starts_with('-'));
    host_ok && port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()))
}

/// Whether `d` is `sha256:` and 64 lowercase hex digits.
pub fn is_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && h.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)))
}

impl ImageRef {
    /// Parses `REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]`. The registry is required (no
    /// implicit Docker Hub: a release names where its image is).
    pub fn parse(s: &str) -> Result<ImageRef, BadImage> {
        let bad = |why: &str| Err(BadImage(format!("`{s}` is not an image reference: {why}")));
        let (name, digest) = match s.split_once('@') {
            Some((n, d)) if is_digest(d) => (n, Some(d.to_string())),
            Some((_, d)) => return bad(&format!("digest `{d}` is not `sha256:` and 64 lowercase hex digits")),
            None => (s, None),
        };
        let Some((registry, rest)) = name.split_once('/') else {
            return bad("give the registry, e.g. `123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/api`");
        };
        if !is_registry(registry) {
            return bad(&format!("`{registry}` is not a registry host"));
        }
        let (repository, tag) = match rest.rsplit_once(':') {
            Some((r, t)) => (r, Some(t.to_string())),
            None => (rest, None),
        };
        if repository.len() > 256 || !repository.split('/').all(is_component) {
            return bad(&format!("repository `{repository}`: lowercase letters, digits and `._-` between them, components separated by `/`"));
        }
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.as_bytes()[0] != b'.'
                && t.as_bytes()[0] != b'-'
                && t.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
            if !ok {
                return bad(&format!("tag `{t}`: at most 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`"));
            }
        }
        Ok(ImageRef { registry: registry.to_string(), repository: repository.to_string(), tag, digest })
    }

    /// The reference by digest alone (`REGISTRY/REPOSITORY@sha256:...`), when it pins one.
    pub fn pinned(&self) -> Option<String> {
        self.digest.as_ref().map(|d| format!("{}/{}@{d}", self.registry, self.repository))
    }

    /// The registry's ECR parts, when it is an ECR registry.
    pub fn ecr(&self) -> Option<Ecr> {
        let (host, partition) = match self.registry.strip_suffix(".amazonaws.com.cn") {
            Some(h) => (h, "aws-cn"),
            None => (self.registry.strip_suffix(".amazonaws.com")?, "aws"),
        };
        let mut parts = host.splitn(4, '.');
        let account = parts.next()?;
        let (dkr, ecr, region) = (parts.next()?, parts.next()?, parts.next()?);
        let ok = account.len() == 12 && account.bytes().all(|c| c.is_ascii_digit()) && dkr == "dkr" && ecr == "ecr" && !region.contains('.');
        ok.then(|| Ecr { account: account.to_string(), region: region.to_string(), partition })
    }

    /// The ECR repository's ARN, when it is an ECR image.
    pub fn repository_arn(&self) -> Option<String> {
        self.ecr().map(|e| format!("arn:{}:ecr:{}:{}:repository/{}", e.partition, e.region, e.account, self.repository))
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn references_by_digest_and_by_tag() {
        let r = ImageRef::parse(&format!("123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/api@{D}")).expect("digest");
        assert_eq!((r.repository.as_str(), r.tag.as_deref(), r.digest.as_deref()), ("shop/api", None, Some(D)));
        assert_eq!(r.repository_arn().as_deref(), Some("arn:aws:ecr:eu-west-1:123456789012:repository/shop/api"));
        assert_eq!(r.pinned().as_deref(), Some(format!("123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/api@{D}").as_str()));
        let t = ImageRef::parse("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/api:v3").expect("tag");
        assert_eq!((t.tag.as_deref(), t.digest.as_deref()), (Some("v3"), None));
        assert_eq!(t.ecr().map(|e| e.partition), Some("aws-cn"));
        let local = ImageRef::parse(&format!("127.0.0.1:5000/api@{D}")).expect("local registry");
        assert_eq!((local.registry.as_str(), local.ecr()), ("127.0.0.1:5000", None));
        assert_eq!(local.to_string(), format!("127.0.0.1:5000/api@{D}"));
    }

    #[test]
    fn what_is_not_a_reference_says_why() {
        for (s, why) in [
            ("api:latest", "give the registry"),
            ("registry.example.com/Shop/api@sha256:00", "digest"),
            ("registry.example.com/Shop/api", "repository"),
            ("registry.example.com/api:-x", "tag"),
            ("bad_host/api", "registry host"),
        ] {
            let e = ImageRef::parse(s).expect_err(s);
            assert!(e.0.contains(why), "{s}: {e}");
        }
    }
}
