//! `gilliam build`: a source tree to a release. The build command of `gilliam.yml`
//! (`x-gilliam: {build: ...}`) runs first; then the tree is packed into a reproducible
//! tarball (sorted entries, fixed times, owners and modes, gzip without a timestamp; what
//! `.gitignore` and `.gilliamignore` exclude left out), uploaded to the outputs bucket under a
//! content-addressed key (skipped when already there), a release number is allocated from the
//! published state, and the release metadata file is written.

use gilliam_materializer::aws::{Aws, AwsError, PutCondition};
use gilliam_materializer::retry::retry;
use gilliam_materializer::Error;
use gilliam_materializer::{Formation, Ops};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Trees larger than this are refused (the agent unpacks at most 4 GiB).
pub const MAX_ARTIFACT_BYTES: u64 = 1024 * 1024 * 1024;

/// Directories never packed: version control and gilliam's own output.
const ALWAYS_LEFT_OUT: &[&str] = &[".git", ".gilliam", ".hg", ".svn"];

#[derive(Debug)]
pub struct Packed {
    pub gz: Vec<u8>,
    pub sha256: String,
    pub entries: usize,
}

/// The tree's entries, as packed: relative paths, sorted bytewise.
pub fn entries(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let walker = ignore::WalkBuilder::new(dir)
        .hidden(false)
        .parents(false)
        .git_ignore(true)
        .git_global(false)
        .git_exclude(false)
        .require_git(false)
        .ignore(false)
        .add_custom_ignore_filename(".gilliamignore")
        .follow_links(false)
        .filter_entry(|e| !(e.depth() == 1 && e.file_type().is_some_and(|t| t.is_dir()) && ALWAYS_LEFT_OUT.iter().any(|n| e.file_name() == *n)))
        .build();
    let mut out = Vec::new();
    for e in walker {
        let e = e.map_err(|e| format!("reading the tree {}: {e}", dir.display()))?;
        if e.depth() == 0 {
            continue;
        }
        let rel = e.path().strip_prefix(dir).map_err(|e| e.to_string())?.to_path_buf();
        out.push(rel);
    }
    out.sort_by(|a, b| a.as_os_str().as_encoded_bytes().cmp(b.as_os_str().as_encoded_bytes()));
    Ok(out)
}

/// Packs `dir` reproducibly: every entry owned by 0:0 with no names, mtime `epoch`, mode 0755
/// for directories and executables and 0644 otherwise; gzip with no name and no timestamp.
pub fn pack(dir: &Path, epoch: u64) -> Result<Packed, String> {
    use std::os::unix::fs::PermissionsExt;
    let list = entries(dir)?;
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    b.follow_symlinks(false);
    let mut total = 0u64;
    for rel in &list {
        let path = dir.join(rel);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut h = tar::Header::new_gnu();
        h.set_mtime(epoch);
        h.set_uid(0);
        h.set_gid(0);
        let ft = meta.file_type();
        let io = |e: std::io::Error| format!("packing {}: {e}", rel.display());
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, rel, std::io::empty()).map_err(io)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path).map_err(io)?;
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            b.append_link(&mut h, rel, &target).map_err(io)?;
        } else if ft.is_file() {
            total += meta.len();
            if total > MAX_ARTIFACT_BYTES {
                return Err(format!("the tree is over {} MiB: leave build outputs and data out with .gilliamignore", MAX_ARTIFACT_BYTES >> 20));
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(if meta.permissions().mode() & 0o111 != 0 { 0o755 } else { 0o644 });
            h.set_size(meta.len());
            let f = std::fs::File::open(&path).map_err(io)?;
            b.append_data(&mut h, rel, f).map_err(io)?;
        } else {
            return Err(format!("{} is not a file, directory or link (a socket or device?): leave it out with .gilliamignore", rel.display()));
        }
    }
    let tar = b.into_inner().map_err(|e| format!("packing: {e}"))?;
    let mut gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).map_err(|e| format!("compressing: {e}"))?;
    let gz = gz.finish().map_err(|e| format!("compressing: {e}"))?;
    Ok(Packed { sha256: gilliam_materializer::sha256_hex(&gz), gz, entries: list.len() })
}

/// The tree's revision: git's commit (with `-dirty` for uncommitted changes), else the
/// artifact's own digest.
pub fn revision(dir: &Path, sha256: &str) -> String {
    let git = |args: &[&str]| std::process::Command::new("git").arg("-C").arg(dir).args(args).output().ok().filter(|o| o.status.success());
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(o) => {
            let rev = String::from_utf8_lossy(&o.stdout).trim().to_string();
            let dirty = git(&["status", "--porcelain"]).is_some_and(|o| !o.stdout.is_empty());
            if dirty {
                format!("{rev}-dirty")
            } else {
                rev
            }
        }
        None => format!("tree-{}", &sha256[..12]),
    }
}

/// Runs the build command in the tree with `env` added, its output passed through.
pub fn run_build_command(dir: &Path, command: &str, env: &[(&str, &str)]) -> Result<(), String> {
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .envs(env.iter().copied())
        .status()
        .map_err(|e| format!("cannot run the build command {command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the build command {command:?} failed ({status}); nothing was uploaded"))
    }
}

/// The artifact's key: content-addressed, so that the same tree lands once.
/// The image `reference` pinned by its digest: as given when it names one; else its tag looked
/// up in ECR (a registry that is not ECR cannot be asked: give the digest).
pub async fn resolve_image<A: Aws>(aws: &A, reference: &str) -> Result<String, crate::failure::Failure> {
    use crate::failure::Failure;
    let r = gilliam_contract::image::ImageRef::parse(reference).map_err(|e| Failure::usage(format!("--image: {e}")))?;
    if let Some(pinned) = r.pinned() {
        return Ok(pinned);
    }
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let Some(ecr) = r.ecr() else {
        return Err(Failure::usage(format!(
            "--image {reference}: {} is not an ECR registry, whose tags gilliam can resolve: give the digest, REGISTRY/REPOSITORY@sha256:...",
            r.registry
        )));
    };
    let found =
        gilliam_materializer::retry::retry("resolve the image's tag", || aws.describe_image(&ecr.region, &r.repository, &tag)).await.map_err(Failure::from)?;
    let Some(found) = found else {
        return Err(Failure { code: 4, message: format!("--image {reference}: ECR repository {} ({}) has no image tagged {tag}", r.repository, ecr.region) });
    };
    Ok(format!("{}/{}@{}", r.registry, r.repository, found.digest))
}

pub fn artifact_key(f: &Formation, sha256: &str) -> String {
    format!("{}artifacts/{sha256}.tar.gz", f.prefix)
}

/// Creates the outputs bucket (versioned, encrypted, public access blocked) when missing: the
/// first build of a formation reserves its release number there.
pub async fn ensure_bucket<A: Aws>(aws: &A, f: &Formation) -> Result<(), Error> {
    if !retry("look for the outputs bucket", || aws.bucket_exists(&f.bucket)).await? {
        retry("create the outputs bucket", || aws.create_secure_bucket(&f.bucket, &f.region)).await?;
    }
    Ok(())
}

/// Uploads the artifact unless it is there already. Returns whether it was uploaded.
pub async fn upload<A: Aws>(aws: &A, f: &Formation, packed: &Packed) -> Result<bool, Error> {
    let key = artifact_key(f, &packed.sha256);
    let head = retry("look for the artifact", || aws.head_object(&f.bucket, &key)).await?;
    if head.is_some_and(|h| h.sha256.as_deref() == Some(packed.sha256.as_str())) {
        return Ok(false);
    }
    ensure_bucket(aws, f).await?;
    match retry(&format!("upload the artifact s3://{}/{key}", f.bucket), || aws.put_object(&f.bucket, &key, packed.gz.clone(), PutCondition::Absent)).await {
        Ok(_) => Ok(true),
        // Someone uploaded the same bytes meanwhile (or a retried upload of ours landed): the
        // key is the digest, so the object is ours too.
        Err(Error::Aws { err: AwsError::PreconditionFailed, .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// What the latest published release carries over into a new one: its runtime image and config.
pub async fn previous<A: Aws>(aws: &A, f: &Formation, say: &(dyn Fn(&str) + Sync)) -> Result<Option<serde_json::Value>, Error> {
    let ops = Ops::new(aws, f.clone(), say);
    let Ok((m, _)) = ops.outputs().await else { return Ok(None) };
    let key = gilliam_contract::keys::release_input(&f.prefix, m.release.number, "release.json");
    let o = retry("read the latest release's metadata", || aws.get_object(&f.bucket, &key)).await?;
    match o {
        None => Ok(None),
        Some(o) => serde_json::from_slice(&o.body).map(Some).map_err(|e| Error::Corrupt(format!("s3://{}/{key} is not release metadata: {e}", f.bucket))),
    }
}

/// Writes release metadata (as `gilliam-compile` reads it) to `path`.
pub fn write_release(path: &Path, release: &serde_json::Value) -> Result<(), String> {
    if let Some(p) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let mut text = serde_json::to_string_pretty(release).map_err(|e| e.to_string())?;
    text.push('\n');
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_is_reproducible_and_honours_ignore_files() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-scratch/build-unit");
        let _ = std::fs::remove_dir_all(&base);
        let mk = |name: &str| {
            let d = base.join(name);
            std::fs::create_dir_all(d.join("bin")).expect("dir");
            std::fs::create_dir_all(d.join("logs")).expect("dir");
            std::fs::create_dir_all(d.join(".git")).expect("dir");
            std::fs::write(d.join("bin/web"), "#!/bin/sh\necho hi\n").expect("file");
            std::fs::write(d.join(".gitignore"), "logs/\n*.tmp\n").expect("file");
            std::fs::write(d.join(".gilliamignore"), "secret.env\n").expect("file");
            std::fs::write(d.join("logs/x.log"), "noise").expect("file");
            std::fs::write(d.join("a.tmp"), "noise").expect("file");
            std::fs::write(d.join("secret.env"), "KEY=1").expect("file");
            std::fs::write(d.join(".git/HEAD"), "ref").expect("file");
            std::os::unix::fs::symlink("bin/web", d.join("start")).expect("link");
            d
        };
        let a = mk("a");
        let b = mk("b");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(a.join("bin/web"), std::fs::Permissions::from_mode(0o775)).expect("chmod");
        std::fs::set_permissions(b.join("bin/web"), std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let names: Vec<String> = entries(&a).expect("entries").iter().map(|p| p.display().to_string()).collect();
        assert_eq!(names, [".gilliamignore", ".gitignore", "bin", "bin/web", "start"]);
        assert_eq!(pack(&a, 0).expect("pack").sha256, pack(&b, 0).expect("pack").sha256, "modes normalised, times fixed");
        std::fs::write(b.join("bin/web"), "#!/bin/sh\necho changed\n").expect("file");
        assert_ne!(pack(&a, 0).expect("pack").sha256, pack(&b, 0).expect("pack").sha256, "content counts");
    }
}
