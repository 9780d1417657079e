//! The compiled output directory, read back and verified: the manifest must parse and be of a
//! known format version, and every file it lists must be there with the size and sha256 it
//! records. A corrupt or foreign directory is an error, never a wrong deploy.

pub use crate::error::BundleError;
use gilliam_compiler::manifest::{Manifest, FORMAT_VERSION};
use gilliam_contract::keys;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Every file the manifest lists, and `manifest.json` itself, by relative path.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Bundle {
    pub fn load(dir: &Path) -> Result<Bundle, BundleError> {
        let mpath = dir.join("manifest.json");
        let text = std::fs::read(&mpath).map_err(|e| BundleError(format!("{}: {e} (is this a gilliam-compile output directory?)", mpath.display())))?;
        Self::verify(dir, &mpath.display().to_string(), text, |rel| std::fs::read(dir.join(rel)).map_err(|e| format!("{}: {e}", dir.join(rel).display())))
    }

    /// Checks a manifest and the files it lists, read through `read` (disk or S3).
    pub fn verify(dir: &Path, origin: &str, text: Vec<u8>, mut read: impl FnMut(&str) -> Result<Vec<u8>, String>) -> Result<Bundle, BundleError> {
        let mpath = origin;
        let version = serde_json::from_slice::<serde_json::Value>(&text).ok().and_then(|v| v.get("format_version").and_then(serde_json::Value::as_u64));
        if version != Some(u64::from(FORMAT_VERSION)) {
            return Err(BundleError(format!(
                "{}: manifest format_version {version:?}, this materializer reads {FORMAT_VERSION}: compile with the same gilliam version",
                mpath
            )));
        }
        let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| BundleError(format!("{}: not a gilliam manifest: {e}", mpath)))?;
        let mut files = BTreeMap::new();
        let mut want: Vec<(String, String, usize)> = manifest.stacks.iter().map(|s| (s.template.clone(), s.sha256.clone(), s.bytes)).collect();
        want.extend(manifest.uploads.iter().map(|u| (u.path.clone(), u.sha256.clone(), u.bytes)));
        let i = &manifest.inputs;
        want.extend([&i.app, &i.release, &i.stage].into_iter().map(|f| (f.path.clone(), f.sha256.clone(), f.bytes)));
        for (rel, sha, bytes) in want {
            if rel.contains("..") || rel.starts_with('/') {
                return Err(BundleError(format!("{mpath}: manifest names a file outside the directory: {rel}")));
            }
            let data = read(&rel).map_err(BundleError)?;
            if data.len() != bytes || crate::sha256_hex(&data) != sha {
                return Err(BundleError(format!("{rel}: does not match the manifest (size or sha256 differs): recompile")));
            }
            files.insert(rel, data);
        }
        files.insert("manifest.json".into(), text);
        Ok(Bundle { dir: dir.to_path_buf(), manifest, files })
    }

    /// The compiler's inputs, as copied into the bundle: (app, release, stage) texts.
    pub fn inputs(&self) -> Result<[String; 3], BundleError> {
        let i = &self.manifest.inputs;
        let text =
            |rel: &str| -> Result<String, BundleError> { String::from_utf8(self.file(rel)?.to_vec()).map_err(|_| BundleError(format!("{rel} is not UTF-8"))) };
        Ok([text(&i.app.path)?, text(&i.release.path)?, text(&i.stage.path)?])
    }

    pub fn file(&self, rel: &str) -> Result<&[u8], BundleError> {
        self.files.get(rel).map(Vec::as_slice).ok_or_else(|| BundleError(format!("{rel} is missing from the bundle")))
    }
}

/// Reads the bundle of a release back from the outputs bucket, verified like one on disk.
pub async fn from_s3<A: crate::aws::Aws>(aws: &A, bucket: &str, prefix: &str, release: u32) -> Result<Bundle, BundleError> {
    let manifest_key = keys::release_manifest(prefix, release);
    let get = |key: String| async move {
        match crate::retry::retry(&format!("s3://{bucket}/{key}"), || aws.get_object(bucket, &key)).await {
            Ok(Some(o)) => Ok(o.body),
            Ok(None) => Err(format!("s3://{bucket}/{key} is missing")),
            Err(e) => Err(e.to_string()),
        }
    };
    let text = get(manifest_key.clone()).await.map_err(BundleError)?;
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| BundleError(format!("s3://{bucket}/{manifest_key}: not a gilliam manifest: {e}")))?;
    // Fetch every listed file first, then verify them together.
    let mut fetched: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut wanted: Vec<(String, String)> = manifest.stacks.iter().map(|s| (s.template.clone(), s.s3_key.clone())).collect();
    wanted.extend(manifest.uploads.iter().map(|u| (u.path.clone(), u.s3_key.clone())));
    let i = &manifest.inputs;
    wanted.extend([&i.app, &i.release, &i.stage].into_iter().map(|f| (f.path.clone(), keys::release_file(prefix, release, &f.path))));
    for (rel, key) in wanted {
        fetched.insert(rel, get(key).await.map_err(BundleError)?);
    }
    Bundle::verify(Path::new(""), &format!("s3://{bucket}/{manifest_key}"), text, |rel| fetched.remove(rel).ok_or_else(|| format!("{rel} was not fetched")))
}
