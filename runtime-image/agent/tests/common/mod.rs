//! Test helpers shared by the agent's tests: gzipped tarballs crafted at the header level,
//! so that entries an honest archiver would refuse to write (`..`, escaping links) can be made.

#![allow(dead_code)]

use std::io::Write;

pub mod world;

pub enum Kind<'a> {
    File(&'a [u8], u32),
    Dir,
    Symlink(&'a str),
    Hardlink(&'a str),
    Fifo,
}

/// A gzipped tarball with the entries as given, names written raw (no sanitizing).
pub fn tarball(entries: &[(&str, Kind<'_>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind) in entries {
        let mut h = tar::Header::new_gnu();
        let (ty, data, mode, link): (tar::EntryType, &[u8], u32, Option<&str>) = match kind {
            Kind::File(d, m) => (tar::EntryType::Regular, d, *m, None),
            Kind::Dir => (tar::EntryType::Directory, &[], 0o755, None),
            Kind::Symlink(t) => (tar::EntryType::Symlink, &[], 0o777, Some(*t)),
            Kind::Hardlink(t) => (tar::EntryType::Link, &[], 0o644, Some(*t)),
            Kind::Fifo => (tar::EntryType::Fifo, &[], 0o644, None),
        };
        h.set_entry_type(ty);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        let gnu = h.as_gnu_mut().expect("gnu header");
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        b.append(&h, data).expect("append");
    }
    let tar = b.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).expect("gzip");
    gz.finish().expect("gzip")
}
