//! Retiring a release: out of the routing first (at the weights ELBv2 holds), then its Auto
//! Scaling groups to zero and its stacks deleted, then the config secrets no live release
//! uses any more (with Secrets Manager's recovery window).

use crate::aws::Aws;
use crate::error::Error;
use crate::retry::retry;
use crate::routing::Router;
use gilliam_compiler::manifest::Manifest;
use std::collections::BTreeSet;

/// Removes one release: routing re-rendered with the observed weights but without it, then
/// its Auto Scaling groups to zero and its stacks deleted.
pub async fn retire_release<A: Aws>(router: &Router<'_, A>, release: u32, stacks: &[String]) -> Result<Vec<String>, Error> {
    let mut changes = router.route_without(release).await?;
    router.stacks.retire(stacks).await?;
    retire_secrets(router.aws(), router.manifest(), release, router.say()).await?;
    changes.push(format!("- release {release}"));
    Ok(changes)
}

/// The config secrets a release's manifest names (none when it was not published).
async fn config_secrets<A: Aws>(aws: &A, m: &Manifest, release: u32) -> Result<BTreeSet<String>, Error> {
    let key = gilliam_contract::keys::release_manifest(&m.formation.s3_prefix, release);
    let Some(o) = retry("read a release's manifest", || aws.get_object(&m.formation.outputs_bucket, &key)).await? else {
        return Ok(BTreeSet::new());
    };
    let published: Manifest =
        serde_json::from_slice(&o.body).map_err(|e| Error::Corrupt(format!("s3://{}/{key} is not a gilliam manifest: {e}", m.formation.outputs_bucket)))?;
    Ok(published.release.secret_config.into_values().collect())
}

/// After a release is retired: deletes (with Secrets Manager's 7-day recovery window) the
/// config secrets it used that no live release uses any more. A secret stays as long as any
/// live release names it, whichever release made it.
pub async fn retire_secrets<A: Aws>(aws: &A, m: &Manifest, retired: u32, say: &(dyn Fn(&str) + Sync)) -> Result<(), Error> {
    let mut unused = config_secrets(aws, m, retired).await?;
    if unused.is_empty() {
        return Ok(());
    }
    let (state, _) = crate::state::read(aws, &m.formation.outputs_bucket, &m.formation.s3_prefix, &m.formation.name).await?;
    unused.retain(|s| !m.release.secret_config.values().any(|x| x == s));
    for n in state.releases.iter().filter(|(n, r)| **n != retired && **n != m.release.number && r.status == "live").map(|(n, _)| *n) {
        let used = config_secrets(aws, m, n).await?;
        unused.retain(|s| !used.contains(s));
    }
    for name in unused {
        say(&format!("secret {name}: no live release uses it; scheduled for deletion"));
        retry("delete a config secret", || aws.delete_secret(&name)).await?;
    }
    Ok(())
}
