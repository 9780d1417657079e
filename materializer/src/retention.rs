//! Retiring a release: out of the routing first (at the weights ELBv2 holds), then its Auto
//! Scaling groups to zero and its stacks deleted, then the config secrets no live release
//! uses any more (with Secrets Manager's recovery window).

use crate::aws::Aws;
use crate::error::Error;
use crate::retry::retry;
use crate::routing::Router;
use crate::state::State;
use gilliam_compiler::manifest::Manifest;
use std::cmp::Reverse;
use std::collections::BTreeSet;

/// Removes one release: routing re-rendered with the observed weights but without it, then
/// (once it has drained) its Auto Scaling groups to zero and its stacks deleted.
pub async fn retire_release<A: Aws>(router: &Router<'_, A>, release: u32, stacks: &[String]) -> Result<Vec<String>, Error> {
    let mut changes = router.route_without(release).await?;
    crate::drain::wait_drained(router.aws(), router.manifest(), &[release], router.stacks.poll(), router.say()).await?;
    router.stacks.retire(stacks).await?;
    retire_secrets(router.aws(), router.manifest(), release, router.say()).await?;
    crate::images::let_go(router.aws(), router.manifest(), release).await?;
    changes.push(format!("- release {release}"));
    Ok(changes)
}

/// The config secrets a release's manifest names (none when it was not published).
async fn config_secrets<A: Aws>(aws: &A, m: &Manifest, release: u32) -> Result<BTreeSet<String>, Error> {
    let published = crate::published::release(aws, &m.formation.outputs_bucket, &m.formation.s3_prefix, release).await?;
    Ok(published.map(|p| p.release.secret_config.into_values().collect()).unwrap_or_default())
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

/// The order in which a deploy keeps the releases older than the one it brings up: the first
/// `keep_releases` stay live, the next `cold_releases` go cold, the rest are retired. What
/// served before the deploy comes first (the known good release), then releases known to have
/// carried all the traffic, then the others, and last those judged bad (rolled back from);
/// newest first within each.
pub fn keep_order(older: &[u32], serving_before: &BTreeSet<u32>, state: &State) -> Vec<u32> {
    let rank = |n: u32| {
        let r = state.releases.get(&n);
        let class = if serving_before.contains(&n) {
            0
        } else if r.is_some_and(|r| r.rolled_back) {
            3
        } else if r.is_some_and(|r| r.served) {
            1
        } else {
            2
        };
        (class, Reverse(n))
    };
    let mut out = older.to_vec();
    out.sort_by_key(|n| rank(*n));
    out
}

/// Where a rollback from `serving` goes, among the older `candidates` (routed or cold): the
/// newest that carries traffic now (during a split, the other side of it), else the newest
/// known to have served and not judged bad, else the newest not judged bad, else the newest.
pub fn rollback_target(serving: u32, candidates: impl IntoIterator<Item = u32>, carrying: &BTreeSet<u32>, state: &State) -> Option<u32> {
    let older: Vec<u32> = candidates.into_iter().filter(|n| *n < serving).collect();
    let r = |n: &u32| state.releases.get(n);
    let good = |n: &&u32| !r(n).is_some_and(|r| r.rolled_back);
    older
        .iter()
        .filter(|n| carrying.contains(n))
        .max()
        .or_else(|| older.iter().filter(good).filter(|n| r(n).is_some_and(|r| r.served)).max())
        .or_else(|| older.iter().filter(good).max())
        .or_else(|| older.iter().max())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ReleaseRecord;

    fn state(releases: &[(u32, bool, bool)]) -> State {
        let mut st = State::default();
        for (n, served, rolled_back) in releases {
            let r = ReleaseRecord {
                revision: String::new(),
                created: String::new(),
                artifact_sha256: String::new(),
                stacks: Vec::new(),
                groups: Default::default(),
                scale: Default::default(),
                status: "live".into(),
                served: *served,
                rolled_back: *rolled_back,
                unrouted_since: None,
                release_phase_failed: false,
            };
            st.releases.insert(*n, r);
        }
        st
    }

    #[test]
    fn the_release_that_served_is_kept_and_the_one_rolled_back_from_goes_first() {
        // 1 served, 2 was rolled back from (1 serves again), 3 is being deployed.
        let st = state(&[(1, true, false), (2, true, true)]);
        assert_eq!(keep_order(&[2, 1], &BTreeSet::from([1]), &st), vec![1, 2]);
        // An aborted canary: 2 aborted (judged bad), 1 serves; then 3, then 4 is deployed.
        let st = state(&[(1, true, false), (2, false, true), (3, true, false)]);
        assert_eq!(keep_order(&[3, 2, 1], &BTreeSet::from([3]), &st), vec![3, 1, 2]);
        // No history (an older state file): newest first, what serves before all.
        let st = state(&[(1, false, false), (2, false, false), (3, false, false)]);
        assert_eq!(keep_order(&[3, 2, 1], &BTreeSet::from([2]), &st), vec![2, 3, 1]);
    }

    #[test]
    fn a_rollback_returns_to_the_release_known_good() {
        let none = BTreeSet::new();
        let st = state(&[(1, true, false), (2, false, true), (3, true, false)]);
        assert_eq!(rollback_target(3, [1, 2], &none, &st), Some(1), "2 was judged bad");
        let st = state(&[(1, true, false), (2, false, false), (3, true, false)]);
        assert_eq!(rollback_target(3, [1, 2], &none, &st), Some(1), "2 never carried the traffic; 1 did");
        assert_eq!(rollback_target(3, [1, 2], &BTreeSet::from([2, 3]), &st), Some(2), "during a 90/10 split of 2 and 3, back to 2");
        let st = state(&[(1, false, false), (2, false, false)]);
        assert_eq!(rollback_target(3, [1, 2], &none, &st), Some(2), "no history: the newest older");
        let st = state(&[(2, false, true)]);
        assert_eq!(rollback_target(3, [2], &none, &st), Some(2), "the only one left, judged bad or not");
        assert_eq!(rollback_target(1, [2], &none, &st), None);
    }
}
