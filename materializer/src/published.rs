//! The documents a formation publishes in its outputs bucket, read back: the latest manifest
//! (the formation's outputs, what operator commands work from) and each release's own.

use crate::aws::Aws;
use crate::error::Error;
use crate::formation::Formation;
use crate::retry::retry;
use gilliam_compiler::manifest::Manifest;

pub fn nothing_deployed(f: &Formation) -> Error {
    Error::NotFound(format!("formation {} has no published release in s3://{}/{}: deploy one first", f.name, f.bucket, f.prefix))
}

/// The latest published manifest (the formation's outputs) and its bytes.
pub async fn latest<A: Aws>(aws: &A, f: &Formation) -> Result<(Manifest, Vec<u8>), Error> {
    let key = gilliam_contract::keys::latest_manifest(&f.prefix);
    let o = retry("read the published manifest", || aws.get_object(&f.bucket, &key)).await?.ok_or_else(|| nothing_deployed(f))?;
    let m: Manifest = serde_json::from_slice(&o.body).map_err(|e| Error::Corrupt(format!("s3://{}/{key} is not a gilliam manifest: {e}", f.bucket)))?;
    if m.formation.name != f.name {
        return Err(Error::Corrupt(format!("s3://{}/{key} belongs to formation {:?}, not {:?}", f.bucket, m.formation.name, f.name)));
    }
    Ok((m, o.body))
}

/// A release's own published manifest (`releases/N/manifest.json`): `None` when it was not
/// published, `Error::Corrupt` when it is not a gilliam manifest.
pub async fn release<A: Aws>(aws: &A, bucket: &str, prefix: &str, release: u32) -> Result<Option<Manifest>, Error> {
    let key = gilliam_contract::keys::release_manifest(prefix, release);
    let Some(o) = retry("read a release's manifest", || aws.get_object(bucket, &key)).await? else { return Ok(None) };
    serde_json::from_slice(&o.body).map(Some).map_err(|e| Error::Corrupt(format!("s3://{bucket}/{key} is not a gilliam manifest: {e}")))
}
