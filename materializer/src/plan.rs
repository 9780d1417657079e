//! The plan: what a converge will do, as data that can be printed for people, saved as
//! versioned JSON and applied later. It records a snapshot of everything it observed and the
//! snapshot's sha256; applying a saved plan re-observes and refuses when anything differs.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Bumped when an older gilliam would misread a plan.
pub const PLAN_VERSION: u32 = 5;

/// One live release's traffic share, as planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub release: u32,
    pub weight: u32,
    pub internal: BTreeSet<String>,
    pub public: BTreeSet<String>,
    /// The port of each HTTP service of the release (the formation keeps them open).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Create the outputs bucket: versioned, encrypted, public access blocked.
    CreateBucket { bucket: String },
    /// Upload a bundle file (template, runtime document) to the bucket.
    Upload { path: String, key: String, sha256: String },
    /// Delete a stack left by a failed create (ROLLBACK_COMPLETE), then create it.
    ReplaceFailedStack { stack: String, status: String },
    /// Finish a rollback that failed (UPDATE_ROLLBACK_FAILED) before updating.
    ContinueRollback { stack: String },
    /// Create a stack from the bundle's template, or (with `shares`: the formation stack) from
    /// the template rendered for the live releases these shares describe.
    CreateStack {
        stack: String,
        template_sha256: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shares: Option<Vec<Share>>,
    },
    UpdateStack {
        stack: String,
        template_sha256: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shares: Option<Vec<Share>>,
    },
    /// Make an auxiliary's secret: a user name and a password Secrets Manager generates.
    CreateSecret { name: String },
    /// Cancel the scheduled deletion of an auxiliary's secret (left by an earlier formation or
    /// auxiliary of the same name), which is then used as it is.
    RestoreSecret { name: String },
    /// Write a cache's endpoint (the formation stack's outputs) into its secret.
    SecretEndpoint { name: String },
    /// Delete a routing stack this compile no longer has (its routing group has no HTTP
    /// service left); it exports nothing, so nothing else depends on it.
    DeleteStack { stack: String },
    /// Create or update a routing stack rendered for these weights.
    Routing { stack: String, create: bool, shares: Vec<Share>, template_sha256: String },
    /// The release phase: `command` on a one-off instance of `service` of the release (its
    /// launch template), after its stacks exist and before any routing change; a failure (or
    /// its timeout) stops the deploy with every weight as it was.
    ReleasePhase { release: u32, service: String, command: Vec<String>, timeout_seconds: u32 },
    /// Once the release's target groups are healthy, render routing with these weights.
    ShiftWhenHealthy {
        release: u32,
        shares: Vec<Share>,
        /// A gradual strategy (`canary:10:300s`); none: all at once through the routing stacks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strategy: Option<String>,
    },
    /// Tag the release's image in the formation's repository `gilliam-rN`, which keeps it from
    /// the repository's lifecycle policy while the release is live or cold.
    HoldImage { release: u32, region: String, repository: String, digest: String },
    /// Publish the bundle's manifest at this key.
    Publish { key: String, sha256: String },
    /// Retention: scale an old release carrying no traffic to zero, then delete its stacks.
    Retire { release: u32, stacks: Vec<String> },
    /// Cold tier: an old release carrying no traffic, already out of routing (the plan's
    /// routing renders leave it out), has its Auto Scaling groups scaled to zero; its stacks,
    /// target groups and launch templates stay, so that a rollback only warms it.
    Cool { release: u32, stacks: Vec<String> },
    /// Record the release (and what was retired) in the published state and its history.
    Record {
        release: u32,
        retired: Vec<u32>,
        /// Releases moved to the cold tier.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        cooled: Vec<u32>,
        /// Whether this converge brings the release up (a deploy) or only converges it again.
        #[serde(default)]
        deploy: bool,
    },
}

/// What planning observed: the plan is valid while all of it still holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    pub bucket_exists: bool,
    /// Object key to the sha256 gilliam recorded on it (`None`: absent or not gilliam's).
    pub objects: BTreeMap<String, Option<String>>,
    /// Stack name to (status, sha256 of its canonical template); absent stacks are `None`.
    pub stacks: BTreeMap<String, Option<(String, String)>>,
    /// Release to the weight ELBv2's rules give it (`None`: no rule names it).
    pub weights: BTreeMap<u32, Option<u32>>,
    /// The listener rules of each deployed routing stack, with their priorities: new rules are
    /// numbered around them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rules: BTreeMap<String, gilliam_compiler::priority::DeployedRules>,
    /// The cold releases (stacks kept, in no rule): the formation keeps their ports open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standby: Vec<Share>,
    /// The auxiliaries' secrets: absent (`None`), scheduled for deletion (`true`), there.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, Option<bool>>,
}

impl Observed {
    pub fn sha256(&self) -> String {
        crate::sha256_hex(&serde_json::to_vec(self).unwrap_or_default())
    }

    /// The first difference between what a plan saw and what is there now, for the refusal.
    pub fn first_difference(&self, now: &Observed) -> Option<String> {
        // Most telling first: traffic, then stacks, then the bucket and objects.
        if self.weights != now.weights {
            return Some(format!("traffic weights changed (planned on {:?}, now {:?})", self.weights, now.weights));
        }
        for (k, v) in &self.stacks {
            match (v, now.stacks.get(k).cloned().flatten()) {
                (a, b) if a.as_ref() == b.as_ref() => {}
                (_, Some((status, _))) => return Some(format!("stack {k} changed (now {status})")),
                (_, None) => return Some(format!("stack {k} is gone")),
            }
        }
        if self.bucket_exists != now.bucket_exists {
            return Some(format!("the bucket {}", if now.bucket_exists { "now exists" } else { "is gone" }));
        }
        for (k, v) in &self.objects {
            if now.objects.get(k) != Some(v) {
                return Some(format!("object {k} changed"));
            }
        }
        (self != now).then(|| "the observed state changed".to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub plan_version: u32,
    pub formation: String,
    pub release: u32,
    /// The bundle this plan was made from; applying it with another bundle is refused.
    pub manifest_sha256: String,
    pub observed: Observed,
    pub observed_sha256: String,
    pub actions: Vec<Action>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Reads a saved plan, refusing other versions and anything malformed.
    pub fn from_json(bytes: &[u8]) -> Result<Plan, String> {
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("not a gilliam plan (JSON: {e})"))?;
        match v.get("plan_version").and_then(serde_json::Value::as_u64) {
            Some(n) if n == u64::from(PLAN_VERSION) => {}
            other => return Err(format!("plan_version {other:?}; this gilliam applies version {PLAN_VERSION}: plan again")),
        }
        let p: Plan = serde_json::from_value(v).map_err(|e| format!("not a gilliam plan: {e}"))?;
        if p.observed.sha256() != p.observed_sha256 {
            return Err("the plan's observed state does not match its digest: the file was edited; plan again".into());
        }
        Ok(p)
    }

    /// The plan for people: `+` create, `~` change, `-` delete.
    pub fn render(&self) -> String {
        let mut out = format!("plan for formation {}, release {}:\n", self.formation, self.release);
        if self.actions.is_empty() {
            out.push_str("  no changes: AWS already holds this release\n");
            return out;
        }
        let weights = |shares: &[Share]| shares.iter().map(|s| format!("{}={}", s.release, s.weight)).collect::<Vec<_>>().join(" ");
        for a in &self.actions {
            let _ = match a {
                Action::CreateBucket { bucket } => writeln!(out, "  + bucket {bucket} (versioned, encrypted, public access blocked)"),
                Action::Upload { key, .. } => writeln!(out, "  + upload {key}"),
                Action::ReplaceFailedStack { stack, status } => writeln!(out, "  - stack {stack} ({status} from a failed create), then + create it"),
                Action::ContinueRollback { stack } => writeln!(out, "  ~ stack {stack}: continue its failed rollback"),
                Action::CreateStack { stack, .. } => writeln!(out, "  + stack {stack}"),
                Action::UpdateStack { stack, .. } => writeln!(out, "  ~ stack {stack}"),
                Action::CreateSecret { name } => writeln!(out, "  + secret {name} (a generated password)"),
                Action::RestoreSecret { name } => writeln!(out, "  ~ secret {name}: cancel its scheduled deletion and use it"),
                Action::SecretEndpoint { name } => writeln!(out, "  ~ secret {name}: the cache's endpoint"),
                Action::DeleteStack { stack } => writeln!(out, "  - stack {stack} (no HTTP service left in its routing group)"),
                Action::Routing { stack, create, shares, .. } => {
                    writeln!(out, "  {} stack {stack}: weights {}", if *create { "+" } else { "~" }, weights(shares))
                }
                Action::ReleasePhase { release, service, command, timeout_seconds } => writeln!(
                    out,
                    "  ~ release phase: `{}` on a one-off instance of {service} of release {release} (within {timeout_seconds} s; a failure stops the deploy, traffic unchanged)",
                    command.join(" ")
                ),
                Action::ShiftWhenHealthy { release, shares, strategy: None } => {
                    writeln!(out, "  ~ traffic: to release {release} once healthy ({})", weights(shares))
                }
                Action::ShiftWhenHealthy { release, strategy: Some(s), .. } => {
                    writeln!(out, "  ~ traffic: to release {release} once healthy, by {s} (aborted, and put back, if it turns unhealthy)")
                }
                Action::HoldImage { release, repository, digest, .. } => writeln!(
                    out,
                    "  + tag image {repository}@{digest} `gilliam-r{release}` (kept from the repository's lifecycle policy while the release lives)"
                ),
                Action::Publish { key, .. } => writeln!(out, "  ~ publish {key}"),
                Action::Retire { release, stacks } => writeln!(out, "  - release {release}: scale to zero, then delete {}", stacks.join(", ")),
                Action::Cool { release, .. } => writeln!(out, "  ~ release {release}: cold (out of routing, scaled to zero; stacks and target groups kept)"),
                Action::Record { release, .. } => writeln!(out, "  ~ record release {release} in the published state and history"),
            };
        }
        out
    }
}
