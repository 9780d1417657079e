//! The formation's published state (`{prefix}state.json` in the outputs bucket): its releases
//! and the history of what was done to it. Every change is a read-modify-write guarded by the
//! object's ETag (`If-Match`; `If-None-Match` for the first), retried on conflict, so that two
//! writers never lose each other's update.

use crate::aws::{Aws, AwsError, PutCondition};
use crate::clock::{actor, nonce, now};
use crate::error::Error;
use crate::retry::retry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub format_version: u32,
    pub formation: String,
    pub releases: BTreeMap<u32, ReleaseRecord>,
    /// Release to weight, as last set by gilliam.
    pub traffic: BTreeMap<u32, u32>,
    pub history: Vec<Event>,
    /// Release numbers handed out (`gilliam build`, `gilliam env`) and not yet deployed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reserved: BTreeMap<u32, Reservation>,
    /// A value unique to the write that made this version: how a writer whose answer was lost
    /// recognises its own write (two writers never write the same bytes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub write_id: String,
    /// A bake window being watched (`--bake`, `gilliam watch`): cleared when it ends, when
    /// the traffic is rolled back, or by the next traffic change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake: Option<Bake>,
}

/// After a shift, the release is watched until `until`; a breach puts `restore` back, provided
/// the weights are still `weights` (a later change by someone else voids the window).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bake {
    pub release: u32,
    /// The release it took traffic from, compared with while it still has traffic.
    pub baseline: Option<u32>,
    pub restore: BTreeMap<u32, u32>,
    pub weights: BTreeMap<u32, u32>,
    /// Seconds since the epoch.
    pub started: i64,
    pub until: i64,
    pub actor: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reservation {
    pub at: String,
    pub actor: String,
    /// What the number is for (`build of rev 0a1b2c3`, `env set FOO`).
    pub purpose: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRecord {
    pub revision: String,
    pub created: String,
    pub artifact_sha256: String,
    pub stacks: Vec<String>,
    /// Service name to its Auto Scaling group's logical ID and stack, for scaling.
    pub groups: BTreeMap<String, (String, String)>,
    /// Service name to its desired instance count (scale factor), as last set by gilliam.
    pub scale: BTreeMap<String, u32>,
    /// "live", "cold" (kept, scaled to zero, out of routing: `gilliam warm`) or "retired".
    pub status: String,
    /// It has carried all the traffic: a release known to work. Retention keeps such releases
    /// before others, and a rollback goes back to one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub served: bool,
    /// Traffic was taken away from it by a rollback, an aborted shift or a bake's breach: judged
    /// bad. The first to go, and never a rollback's target while another release is left.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rolled_back: bool,
    /// Since when (seconds since the epoch) gilliam has seen it carry no traffic: it is scaled
    /// down only once that is longer ago than its target groups' deregistration delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unrouted_since: Option<i64>,
    /// Its release phase failed: it never took traffic, and a converge of it runs the phase
    /// again before it does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub release_phase_failed: bool,
}

impl ReleaseRecord {
    /// Deployed through: live, its release phase (if any) passed. A converge of such a release
    /// moves no traffic on its own and runs no release phase again.
    pub fn deployed(&self) -> bool {
        self.status == "live" && !self.release_phase_failed
    }
}

impl State {
    /// Marks every release that carries all of `weights`' traffic as known to have served, and
    /// notes since when each release of `weights` has carried none.
    pub fn mark_served(&mut self, weights: &BTreeMap<u32, u32>) {
        let total: u32 = weights.values().sum();
        let now = crate::clock::epoch();
        for (n, w) in weights {
            if let Some(r) = self.releases.get_mut(n) {
                r.unrouted_since = if *w == 0 { r.unrouted_since.or(Some(now)) } else { None };
            }
        }
        for (n, w) in weights {
            if total > 0 && *w == total {
                if let Some(r) = self.releases.get_mut(n) {
                    r.served = true;
                    r.rolled_back = false;
                }
            }
        }
    }

    /// Marks a release as rolled back from (judged bad).
    pub fn mark_rolled_back(&mut self, release: u32) {
        if let Some(r) = self.releases.get_mut(&release) {
            r.rolled_back = true;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub at: String,
    pub actor: String,
    pub action: String,
}

pub fn key(prefix: &str) -> String {
    gilliam_contract::keys::state(prefix)
}

/// Reads the state; a missing one is empty, a corrupt or foreign one is an error.
pub async fn read<A: Aws>(aws: &A, bucket: &str, prefix: &str, formation: &str) -> Result<(State, Option<String>), Error> {
    let k = key(prefix);
    match retry("read the published state", || aws.get_object(bucket, &k)).await? {
        None => Ok((State { format_version: STATE_VERSION, formation: formation.to_string(), ..State::default() }, None)),
        Some(o) => Ok((parse(&o.body, &format!("s3://{bucket}/{k}"), formation)?, Some(o.etag))),
    }
}

/// Reads a state file's bytes (from `origin`), refusing corrupt or foreign ones.
pub fn parse(bytes: &[u8], origin: &str, formation: &str) -> Result<State, Error> {
    let s: State = serde_json::from_slice(bytes)
        .map_err(|e| Error::Corrupt(format!("{origin} is not a gilliam state file ({e}); it was not written by gilliam or is corrupt: fix or remove it")))?;
    if s.format_version != STATE_VERSION || s.formation != formation {
        return Err(Error::Corrupt(format!(
            "{origin} is state format {} of formation {:?}, expected format {STATE_VERSION} of {formation:?}",
            s.format_version, s.formation
        )));
    }
    Ok(s)
}

fn body(state: &State) -> Result<Vec<u8>, Error> {
    Ok([serde_json::to_vec_pretty(state).map_err(|e| Error::Compile(e.to_string()))?, b"\n".to_vec()].concat())
}

/// Applies `change` to the published state and writes it back conditionally, retrying on a
/// concurrent write, so that no update is lost. A write whose answer was lost (it went
/// through, the caller saw an error) is recognised on the next read and not applied twice.
pub async fn update<A: Aws>(aws: &A, bucket: &str, prefix: &str, formation: &str, mut change: impl FnMut(&mut State)) -> Result<State, Error> {
    let k = key(prefix);
    let mut attempted: Option<Vec<u8>> = None;
    for _ in 0..20 {
        let (mut state, etag) = read(aws, bucket, prefix, formation).await?;
        if attempted.as_ref().is_some_and(|b| etag.is_some() && body(&state).is_ok_and(|now| &now == b)) {
            return Ok(state);
        }
        change(&mut state);
        state.write_id = nonce();
        let bytes = body(&state)?;
        attempted = Some(bytes.clone());
        let cond = etag.map_or(PutCondition::Absent, PutCondition::Matches);
        match aws.put_object(bucket, &k, bytes, cond).await {
            Ok(_) => return Ok(state),
            Err(AwsError::PreconditionFailed) => continue,
            Err(e) if e.retryable() => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
            Err(err) => return Err(Error::Aws { what: "write the published state".into(), err }),
        }
    }
    Err(Error::Timeout(format!("s3://{bucket}/{k}: gave up after 20 conflicting concurrent writes")))
}

/// Hands out the next release number: one above every release recorded or reserved, reserved
/// in the published state by a conditional write, so that two builds at once never get the
/// same number (the loser of a race re-reads and takes the next).
pub async fn allocate_release<A: Aws>(aws: &A, bucket: &str, prefix: &str, formation: &str, purpose: &str) -> Result<u32, Error> {
    let mut number = 0;
    let reservation = Reservation { at: now(), actor: actor(), purpose: purpose.to_string() };
    update(aws, bucket, prefix, formation, |st| {
        number = st.releases.keys().chain(st.reserved.keys()).max().copied().unwrap_or(0) + 1;
        st.reserved.insert(number, reservation.clone());
    })
    .await?;
    Ok(number)
}

/// One line of the history, now, by whoever acts.
pub fn event(action: impl Into<String>) -> Event {
    Event { at: now(), actor: actor(), action: action.into() }
}
