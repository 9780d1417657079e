//! Where the published documents live: S3 keys under a formation's prefix in its outputs
//! bucket, and the names of its secrets. The one place these are spelled.

/// The compiled directory's manifest, and a release's published one, are this file.
pub const MANIFEST: &str = "manifest.json";

/// Every key of a formation starts with this: `gilliam/FORMATION/`.
pub fn prefix(formation: &str) -> String {
    format!("gilliam/{formation}/")
}

/// The latest published manifest: the formation's outputs.
pub fn latest_manifest(prefix: &str) -> String {
    format!("{prefix}{MANIFEST}")
}

/// A file of release `release`'s compiled directory (`templates/...`, `inputs/...`).
pub fn release_file(prefix: &str, release: u32, path: &str) -> String {
    format!("{prefix}releases/{release}/{path}")
}

/// Release `release`'s own published manifest.
pub fn release_manifest(prefix: &str, release: u32) -> String {
    release_file(prefix, release, MANIFEST)
}

/// One of release `release`'s published inputs (`gilliam.yml`, `release.json`, `stage.yml`).
pub fn release_input(prefix: &str, release: u32, name: &str) -> String {
    release_file(prefix, release, &format!("inputs/{name}"))
}

/// The published state: releases and history.
pub fn state(prefix: &str) -> String {
    format!("{prefix}state.json")
}

/// The deploy lock.
pub fn lock(prefix: &str) -> String {
    format!("{prefix}lock.json")
}

/// An auxiliary's secret: `gilliam/FORMATION/AUXILIARY`.
pub fn auxiliary_secret(formation: &str, auxiliary: &str) -> String {
    format!("gilliam/{formation}/{auxiliary}")
}

/// Secret config lives in secrets named `gilliam/FORMATION/config/...`, so that a release's
/// instance role can be granted exactly its own formation's.
pub fn config_secret_prefix(formation: &str) -> String {
    format!("gilliam/{formation}/config/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_as_published() {
        let p = prefix("shop");
        assert_eq!(latest_manifest(&p), "gilliam/shop/manifest.json");
        assert_eq!(release_manifest(&p, 12), "gilliam/shop/releases/12/manifest.json");
        assert_eq!(release_input(&p, 12, "release.json"), "gilliam/shop/releases/12/inputs/release.json");
        assert_eq!(state(&p), "gilliam/shop/state.json");
        assert_eq!(lock(&p), "gilliam/shop/lock.json");
        assert_eq!(auxiliary_secret("shop", "db"), "gilliam/shop/db");
        assert!(config_secret_prefix("shop").starts_with(&p));
    }
}
