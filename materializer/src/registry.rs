//! A registry's HTTP API (the OCI distribution API, which ECR serves): an image copied by its
//! digest from one repository to another, its manifest (an index's platforms' manifests too),
//! config and layers, each checked against its digest as it arrives; a blob the target holds is
//! not sent again, and the target must answer the manifest under the same digest.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The manifests a copy understands, as `Accept` names them.
const MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Where the registry of `host` is reached: `GILLIAM_REGISTRY_ENDPOINT` (`HOST:PORT`: a proxy,
/// or in tests the registry that stands in for ECR's) when set, else the host itself.
pub fn address(host: &str) -> String {
    std::env::var("GILLIAM_REGISTRY_ENDPOINT").ok().filter(|e| !e.is_empty()).unwrap_or_else(|| host.to_string())
}

/// One registry, as a client reaches it.
#[derive(Clone)]
pub struct Registry {
    /// `http://127.0.0.1:5000` (loopback only) or `https://HOST`.
    base: String,
    /// `Basic ...`, when it needs a login (ECR's: `AWS` and the token's password).
    auth: Option<String>,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("base", &self.base).field("auth", &self.auth.as_ref().map(|_| "<redacted>")).finish()
    }
}

/// What a copy did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Blobs sent, and their bytes.
    pub sent: usize,
    pub bytes: u64,
    /// Blobs the target held already.
    pub there: usize,
    /// Manifests put (an index's platforms' and the top one).
    pub manifests: usize,
}

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", crate::sha256_hex(b))
}

/// Whether `body` is what `digest` names.
pub fn matches(body: &[u8], digest: &str) -> bool {
    sha256(body) == digest
}

/// A manifest as read from a registry.
struct Manifest {
    body: Bytes,
    media: String,
    parsed: serde_json::Value,
}

struct Answer {
    status: u16,
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl Registry {
    /// The registry at `address` (`HOST[:PORT]`), logged in with `user`/`password` when given.
    /// Plain HTTP on loopback only, as Docker does; TLS everywhere else.
    pub fn new(address: &str, login: Option<(&str, &str)>) -> Result<Registry, String> {
        let loopback = address.starts_with("127.") || address.starts_with("localhost") || address.starts_with("[::1]");
        let base = format!("{}://{address}", if loopback { "http" } else { "https" });
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("no TLS root certificates on this machine for {address}: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let auth = login.map(|(u, p)| format!("Basic {}", aws_smithy_types::base64::encode(format!("{u}:{p}").as_bytes())));
        Ok(Registry { base, auth, client: Client::builder(TokioExecutor::new()).build(connector) })
    }

    async fn call(&self, method: hyper::Method, url: &str, headers: &[(&str, &str)], body: Bytes) -> Result<Answer, String> {
        let mut url = url.to_string();
        let mut method = method;
        // Redirects (ECR sends layer reads to S3) are followed without the registry's login.
        for hop in 0..5 {
            let mut req = hyper::Request::builder().method(method.clone()).uri(&url);
            if hop == 0 || url.starts_with(&self.base) {
                if let Some(a) = &self.auth {
                    req = req.header(hyper::header::AUTHORIZATION, a);
                }
            }
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let req = req.body(Full::new(body.clone())).map_err(|e| format!("{method} {url}: {e}"))?;
            let res = self.client.request(req).await.map_err(|e| format!("{method} {url}: {e}"))?;
            let status = res.status().as_u16();
            let headers = res.headers().clone();
            let body = res.into_body().collect().await.map_err(|e| format!("{method} {url}: {e}"))?.to_bytes();
            if (300..400).contains(&status) && status != 304 {
                let location =
                    headers.get(hyper::header::LOCATION).and_then(|l| l.to_str().ok()).ok_or_else(|| format!("{method} {url}: {status} without a Location"))?;
                url = self.absolute(location);
                if status == 303 {
                    method = hyper::Method::GET;
                }
                continue;
            }
            return Ok(Answer { status, headers, body });
        }
        Err(format!("{url}: more than 5 redirects"))
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", self.base)
        }
    }

    fn refused(what: &str, a: &Answer) -> String {
        let text = String::from_utf8_lossy(&a.body);
        let hint = match a.status {
            401 | 403 => " (the login lacks permission on the repository)",
            404 => " (no such repository or image)",
            _ => "",
        };
        format!("{what}: HTTP {}{hint}: {}", a.status, text.chars().take(300).collect::<String>())
    }

    /// The manifest `digest` of `repository`: its bytes (checked against the digest), its media
    /// type, and its JSON, read once.
    async fn manifest(&self, repository: &str, digest: &str) -> Result<Manifest, String> {
        let url = format!("{}/v2/{repository}/manifests/{digest}", self.base);
        let a = self.call(hyper::Method::GET, &url, &[("Accept", MANIFESTS)], Bytes::new()).await?;
        if a.status != 200 {
            return Err(Registry::refused(&format!("read manifest {repository}@{digest}"), &a));
        }
        if !matches(&a.body, digest) {
            return Err(format!("{repository}@{digest}: the registry served a manifest whose digest is {}: refused", sha256(&a.body)));
        }
        let from_header = a.headers.get(hyper::header::CONTENT_TYPE).and_then(|c| c.to_str().ok()).map(|c| c.split(';').next().unwrap_or(c).trim().to_string());
        let parsed: serde_json::Value = serde_json::from_slice(&a.body).map_err(|e| format!("{repository}@{digest}: the manifest is not JSON: {e}"))?;
        let media = parsed["mediaType"]
            .as_str()
            .map(str::to_string)
            .or(from_header)
            .ok_or_else(|| format!("{repository}@{digest}: the manifest names no media type"))?;
        Ok(Manifest { body: a.body, media, parsed })
    }

    async fn has_blob(&self, repository: &str, digest: &str) -> Result<bool, String> {
        let url = format!("{}/v2/{repository}/blobs/{digest}", self.base);
        let a = self.call(hyper::Method::HEAD, &url, &[], Bytes::new()).await?;
        match a.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(Registry::refused(&format!("look for blob {digest} in {repository}"), &a)),
        }
    }

    async fn blob(&self, repository: &str, digest: &str) -> Result<Bytes, String> {
        let url = format!("{}/v2/{repository}/blobs/{digest}", self.base);
        let a = self.call(hyper::Method::GET, &url, &[], Bytes::new()).await?;
        if a.status != 200 {
            return Err(Registry::refused(&format!("read blob {repository}@{digest}"), &a));
        }
        if !matches(&a.body, digest) {
            return Err(format!("blob {digest} of {repository} arrived with digest {}: refused", sha256(&a.body)));
        }
        Ok(a.body)
    }

    /// A monolithic upload: POST for the session, then PUT with the bytes and their digest.
    async fn put_blob(&self, repository: &str, digest: &str, body: Bytes) -> Result<(), String> {
        let start = format!("{}/v2/{repository}/blobs/uploads/", self.base);
        let a = self.call(hyper::Method::POST, &start, &[("Content-Length", "0")], Bytes::new()).await?;
        if a.status != 202 {
            return Err(Registry::refused(&format!("start the upload of {digest} to {repository}"), &a));
        }
        let location = a.headers.get(hyper::header::LOCATION).and_then(|l| l.to_str().ok()).ok_or_else(|| format!("upload to {repository}: no Location"))?;
        let location = self.absolute(location);
        let sep = if location.contains('?') { '&' } else { '?' };
        let len = body.len().to_string();
        let put = format!("{location}{sep}digest={digest}");
        let a = self.call(hyper::Method::PUT, &put, &[("Content-Type", "application/octet-stream"), ("Content-Length", &len)], body).await?;
        if a.status != 201 {
            return Err(Registry::refused(&format!("upload blob {digest} to {repository}"), &a));
        }
        Ok(())
    }

    /// Puts the manifest under `reference` (a tag, or its digest); returns the digest the
    /// registry gives it.
    async fn put_manifest(&self, repository: &str, reference: &str, body: Bytes, media: &str) -> Result<String, String> {
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base);
        let len = body.len().to_string();
        let a = self.call(hyper::Method::PUT, &url, &[("Content-Type", media), ("Content-Length", &len)], body.clone()).await?;
        if a.status != 201 && a.status != 200 {
            return Err(Registry::refused(&format!("put manifest {repository}:{reference}"), &a));
        }
        Ok(a.headers.get("docker-content-digest").and_then(|d| d.to_str().ok()).map(str::to_string).unwrap_or_else(|| sha256(&body)))
    }
}

/// Copies image `digest` from `from`'s `from_repo` to `to`'s `to_repo`, tagged `tag` there.
/// Refused when anything arrives under another digest than it was asked by, or when the
/// target answers the manifest with another digest.
pub async fn copy(from: &Registry, from_repo: &str, to: &Registry, to_repo: &str, digest: &str, tag: &str) -> Result<Copied, String> {
    let mut done = Copied::default();
    // Depth first: an index's platform manifests before the index, blobs before their manifest.
    let top = from.manifest(from_repo, digest).await?;
    let mut children = Vec::new();
    if let Some(list) = top.parsed["manifests"].as_array() {
        for m in list {
            let d = m["digest"].as_str().ok_or_else(|| format!("{from_repo}@{digest}: a platform manifest without a digest"))?;
            children.push(d.to_string());
        }
    }
    for child in &children {
        let m = from.manifest(from_repo, child).await?;
        copy_blobs(from, from_repo, to, to_repo, &m.parsed, &mut done).await?;
        let got = to.put_manifest(to_repo, child, m.body, &m.media).await?;
        if got != *child {
            return Err(format!("{to_repo}: the target gave platform manifest {child} the digest {got}: refused"));
        }
        done.manifests += 1;
    }
    copy_blobs(from, from_repo, to, to_repo, &top.parsed, &mut done).await?;
    let got = to.put_manifest(to_repo, tag, top.body, &top.media).await?;
    if got != digest {
        return Err(format!("{to_repo}:{tag}: the target gave the image the digest {got}, not {digest}: refused"));
    }
    done.manifests += 1;
    Ok(done)
}

async fn copy_blobs(from: &Registry, from_repo: &str, to: &Registry, to_repo: &str, parsed: &serde_json::Value, done: &mut Copied) -> Result<(), String> {
    let mut blobs: Vec<String> = parsed["config"]["digest"].as_str().map(str::to_string).into_iter().collect();
    blobs.extend(parsed["layers"].as_array().into_iter().flatten().filter_map(|l| l["digest"].as_str().map(str::to_string)));
    for b in blobs {
        if to.has_blob(to_repo, &b).await? {
            done.there += 1;
            continue;
        }
        // One blob in memory at a time: the largest layer bounds what a copy holds.
        let bytes = from.blob(from_repo, &b).await?;
        done.bytes += bytes.len() as u64;
        to.put_blob(to_repo, &b, bytes).await?;
        done.sent += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_body_matches_only_its_own_digest() {
        let d = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        assert!(super::matches(b"hello", d));
        assert!(!super::matches(b"hello!", d));
    }
}
