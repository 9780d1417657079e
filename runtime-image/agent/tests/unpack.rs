//! Unpacking artifacts: a good one lands whole; a wrong sha256, `..`, absolute names, escaping
//! links (direct, through a chain of links, or by writing through a link), hard links, devices
//! and oversized archives are refused, and nothing is written outside the release directory.

use gilliam_agent::unpack::{sha256_hex, unpack, verify, Error, Limits};
use std::path::{Path, PathBuf};

mod common;
use common::{tarball, Kind};

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-scratch/unpack").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch");
    d
}

/// Unpacks into `scratch/root` and checks that nothing but `root` exists beside it afterwards.
fn try_unpack(name: &str, gz: &[u8], limits: Limits) -> (Result<gilliam_agent::unpack::Summary, Error>, PathBuf) {
    let dir = scratch(name);
    std::fs::write(dir.join("outside"), b"precious").expect("outside file");
    let root = dir.join("release").join("root");
    let r = unpack(gz, &root, limits);
    let beside: Vec<String> = std::fs::read_dir(&dir).expect("dir").map(|e| e.expect("entry").file_name().to_string_lossy().to_string()).collect();
    let mut beside = beside;
    beside.sort();
    assert_eq!(beside, ["outside", "release"], "{name}: something was written outside the release");
    assert_eq!(std::fs::read(dir.join("outside")).expect("outside"), b"precious");
    (r, root)
}

#[track_caller]
fn refused(name: &str, entries: &[(&str, Kind<'_>)], why: &str) {
    let (r, _) = try_unpack(name, &tarball(entries), Limits::default());
    match r {
        Err(e @ Error::Unsafe { .. }) => assert!(e.to_string().contains(why), "{name}: {e}"),
        other => panic!("{name}: expected refusal ({why}), got {other:?}"),
    }
}

#[test]
fn a_good_artifact_unpacks_whole() {
    let gz = tarball(&[
        ("./bin/", Kind::Dir),
        ("./bin/run.sh", Kind::File(b"#!/bin/sh\necho hi\n", 0o4755)),
        ("./lib/data.txt", Kind::File(b"data", 0o600)),
        ("./bin/data", Kind::Symlink("../lib/data.txt")),
        ("./docs", Kind::Symlink("lib")),
    ]);
    let (r, root) = try_unpack("good", &gz, Limits::default());
    let s = r.expect("unpacks");
    assert_eq!((s.files, s.bytes), (5, 22));
    assert_eq!(std::fs::read(root.join("bin/data")).expect("through the link"), b"data");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| std::fs::metadata(root.join(p)).expect("meta").permissions().mode() & 0o7777;
    assert_eq!(mode("bin/run.sh"), 0o755, "setuid dropped, executable kept");
    assert_eq!(mode("lib/data.txt"), 0o644);
}

#[test]
fn the_sha256_must_match() {
    let gz = tarball(&[("a", Kind::File(b"a", 0o644))]);
    assert!(verify(&gz, &sha256_hex(&gz)).is_ok());
    let e = verify(&gz, &"0".repeat(64)).expect_err("mismatch");
    assert!(e.to_string().contains("refusing to run it"), "{e}");
}

#[test]
fn parent_and_absolute_names_are_refused() {
    refused("dotdot", &[("../outside", Kind::File(b"x", 0o644))], "contains `..`");
    refused("dotdot-deep", &[("a/../../outside", Kind::File(b"x", 0o644))], "contains `..`");
    refused("absolute", &[("/tmp/gilliam-absolute-test", Kind::File(b"x", 0o644))], "absolute path");
}

#[test]
fn escaping_links_are_refused() {
    refused("link-up", &[("l", Kind::Symlink("../outside"))], "outside the release");
    refused("link-abs", &[("l", Kind::Symlink("/etc/passwd"))], "outside the release");
    // Lexically inside, but `d` is the root itself, so d/../.. leaves it: caught on the real files.
    refused("link-chain", &[("d", Kind::Symlink(".")), ("e", Kind::Symlink("d/../../outside"))], "outside the release");
    // By names a/e stays inside (a, d, .., .., outside), but a/d is the root, so it really
    // reaches the file beside the release: only the check on the real files sees it.
    refused("link-chain-physical", &[("a/", Kind::Dir), ("a/d", Kind::Symlink("..")), ("a/e", Kind::Symlink("d/../../outside"))], "through other links");
    // Writing through a link, even one that points inside, is refused.
    refused("through-link", &[("sub/", Kind::Dir), ("d", Kind::Symlink("sub")), ("d/x", Kind::File(b"x", 0o644))], "goes through a symbolic link");
    refused("hard", &[("h", Kind::Hardlink("/etc/passwd"))], "hard link");
    refused("fifo", &[("f", Kind::Fifo)], "only files, directories and symbolic links");
}

#[test]
fn size_and_count_are_bounded() {
    let gz = tarball(&[("big", Kind::File(&[0u8; 4096], 0o644))]);
    let (r, _) = try_unpack("too-big", &gz, Limits { max_bytes: 1000, max_entries: 10 });
    assert!(matches!(r, Err(Error::TooLarge(_))), "{r:?}");
    let many: Vec<(String, Kind<'_>)> = (0..20).map(|i| (format!("f{i}"), Kind::File(b"x", 0o644))).collect();
    let refs: Vec<(&str, Kind<'_>)> = many.into_iter().map(|(n, k)| (Box::leak(n.into_boxed_str()) as &str, k)).collect();
    let (r, _) = try_unpack("too-many", &tarball(&refs), Limits { max_bytes: 1000, max_entries: 10 });
    assert!(matches!(r, Err(Error::TooLarge(_))), "{r:?}");
}

#[test]
fn not_a_tarball_is_a_format_error() {
    let (r, _) = try_unpack("garbage", b"this is not gzip", Limits::default());
    assert!(matches!(r, Err(Error::Format(_))), "{r:?}");
}
