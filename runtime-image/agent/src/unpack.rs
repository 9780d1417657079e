//! A release's artifact, verified and unpacked so that nothing lands outside the release
//! directory: the sha256 must match; entries must be relative paths without `..`; links may not
//! lead outside (checked on the names while unpacking, and on the real files afterwards, since
//! a chain of links can defeat a check on names); nothing is written through a link; only
//! files, directories and symlinks are accepted; size and entry count are bounded.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest total of unpacked file sizes.
    pub max_bytes: u64,
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bytes: 4 * 1024 * 1024 * 1024, max_entries: 200_000 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Sha256 {
        expected: String,
        found: String,
    },
    /// An entry that would escape the release directory or is of a refused kind.
    Unsafe {
        entry: String,
        why: String,
    },
    TooLarge(String),
    Format(String),
    Io(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Sha256 { expected, found } => write!(f, "artifact sha256 is {found}, the release states {expected}: refusing to run it"),
            Error::Unsafe { entry, why } => write!(f, "artifact entry {entry:?} {why}: refusing to unpack it"),
            Error::TooLarge(m) | Error::Format(m) | Error::Io(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

pub fn sha256_hex(bytes: &[u8]) -> String {
    gilliam_contract::digest::sha256_hex(bytes)
}

pub fn verify(bytes: &[u8], expected: &str) -> Result<(), Error> {
    let found = sha256_hex(bytes);
    if found == expected {
        Ok(())
    } else {
        Err(Error::Sha256 { expected: expected.into(), found })
    }
}

/// What was unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub files: usize,
    pub bytes: u64,
}

fn unsafe_entry(entry: &str, why: &str) -> Error {
    Error::Unsafe { entry: entry.into(), why: why.into() }
}

/// The entry's path as plain relative components, or why not.
fn relative(path: &Path, name: &str) -> Result<PathBuf, Error> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_entry(name, "contains `..`")),
            Component::RootDir | Component::Prefix(_) => return Err(unsafe_entry(name, "is an absolute path")),
        }
    }
    Ok(out)
}

/// Where a link at `at` (relative to the root) with `target` points, lexically, or `None` when
/// that is outside the root.
fn lexical_target(at: &Path, target: &Path) -> Option<PathBuf> {
    if target.is_absolute() {
        return None;
    }
    let mut parts: Vec<&std::ffi::OsStr> =
        at.parent().map(|p| p.components().filter_map(|c| if let Component::Normal(n) = c { Some(n) } else { None }).collect()).unwrap_or_default();
    for c in target.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

/// Unpacks a gzipped tarball into `root` (created if missing, which should be empty).
pub fn unpack(gz: impl Read, root: &Path, limits: Limits) -> Result<Summary, Error> {
    let io = |e: std::io::Error| Error::Io(format!("unpacking into {}: {e}", root.display()));
    std::fs::create_dir_all(root).map_err(io)?;
    let root = root.canonicalize().map_err(io)?;
    let decoder = flate2::read::GzDecoder::new(gz).take(limits.max_bytes.saturating_mul(2).saturating_add(1 << 20));
    let mut archive = tar::Archive::new(decoder);
    let mut summary = Summary::default();
    let mut links: Vec<PathBuf> = Vec::new();
    let entries = archive.entries().map_err(|e| Error::Format(format!("artifact is not a gzipped tarball: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::Format(format!("artifact is not a gzipped tarball: {e}")))?;
        summary.files += 1;
        if summary.files > limits.max_entries {
            return Err(Error::TooLarge(format!("artifact has more than {} entries", limits.max_entries)));
        }
        let raw = entry.path().map_err(|e| Error::Format(format!("bad entry name: {e}")))?.into_owned();
        let name = raw.display().to_string();
        let rel = relative(&raw, &name)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        // Never write through a link: every existing ancestor must be a real directory.
        let mut ancestor = root.clone();
        for c in rel.parent().map(|p| p.components().collect::<Vec<_>>()).unwrap_or_default() {
            ancestor.push(c);
            if std::fs::symlink_metadata(&ancestor).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(unsafe_entry(&name, "goes through a symbolic link"));
            }
        }
        let dest = root.join(&rel);
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory => std::fs::create_dir_all(&dest).map_err(io)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.header().size().map_err(|e| Error::Format(format!("{name}: {e}")))?;
                summary.bytes = summary.bytes.saturating_add(size);
                if summary.bytes > limits.max_bytes {
                    return Err(Error::TooLarge(format!("artifact unpacks to more than {} bytes", limits.max_bytes)));
                }
                if let Some(p) = dest.parent() {
                    std::fs::create_dir_all(p).map_err(io)?;
                }
                if std::fs::symlink_metadata(&dest).is_ok() {
                    return Err(unsafe_entry(&name, "is in the archive twice"));
                }
                let mut out = std::fs::File::create(&dest).map_err(io)?;
                let copied = std::io::copy(&mut (&mut entry).take(size), &mut out).map_err(io)?;
                if copied != size {
                    return Err(Error::Format(format!("{name}: archive ends inside the file")));
                }
                // Keep the owner's execute bit; never setuid, setgid or sticky; no ownership.
                let mode = entry.header().mode().unwrap_or(0o644);
                set_mode(&dest, if mode & 0o100 != 0 { 0o755 } else { 0o644 }).map_err(io)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| Error::Format(format!("{name}: {e}")))?
                    .ok_or_else(|| unsafe_entry(&name, "is a link without a target"))?
                    .into_owned();
                if lexical_target(&rel, &target).is_none() {
                    return Err(unsafe_entry(&name, &format!("links to {} outside the release", target.display())));
                }
                if let Some(p) = dest.parent() {
                    std::fs::create_dir_all(p).map_err(io)?;
                }
                symlink(&target, &dest).map_err(io)?;
                links.push(rel);
            }
            tar::EntryType::Link => return Err(unsafe_entry(&name, "is a hard link (not accepted)")),
            other => return Err(unsafe_entry(&name, &format!("is a {other:?} entry (only files, directories and symbolic links are accepted)"))),
        }
    }
    // Now that everything is there, where do the links really lead?
    for rel in links {
        let path = root.join(&rel);
        match path.canonicalize() {
            Ok(real) if real.starts_with(&root) => {}
            Ok(real) => {
                let _ = std::fs::remove_file(&path);
                return Err(unsafe_entry(&rel.display().to_string(), &format!("leads to {} outside the release through other links", real.display())));
            }
            // Dangling: only accepted when its target has no `..` at all.
            Err(_) => {
                let target = std::fs::read_link(&path).map_err(io)?;
                if target.components().any(|c| matches!(c, Component::ParentDir)) {
                    let _ = std::fs::remove_file(&path);
                    return Err(unsafe_entry(&rel.display().to_string(), "is a dangling link with `..` in its target"));
                }
            }
        }
    }
    Ok(summary)
}

#[cfg(unix)]
fn set_mode(p: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

#[cfg(unix)]
fn symlink(target: &Path, at: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, at)
}
