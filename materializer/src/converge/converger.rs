//! The `Converger` (a compiled bundle, its options, the router), its options and report,
//! and what planning and applying share: the artifact check, the secrets' endpoints, the
//! release's record, the wait for healthy targets.

use crate::aws::{Aws, StackRequest};
use crate::bundle::{Bundle, BundleError};
use crate::error::Error;
use crate::plan::{Action, Plan};
use crate::retry::retry;
use crate::routing::Router;
use crate::stacks::Stacks;
use crate::strategy::Strategy;
use gilliam_compiler::manifest::{Manifest, StackEntry, StackRole};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Options {
    /// Shift traffic to the new release once healthy (otherwise weights are the operator's).
    pub traffic_auto: bool,
    /// How often stack status and target health are polled.
    pub poll: Duration,
    /// Longest wait for one stack operation.
    pub stack_timeout: Duration,
    /// Longest wait for the new release's targets to be healthy.
    pub health_timeout: Duration,
    /// How traffic moves to a new release (with `traffic_auto`).
    pub strategy: Strategy,
    /// Judge the new release by the manifest's metric analysis (`--no-analysis` turns it off).
    pub judge: bool,
    /// Run the manifest's hooks around the shift (`--no-hooks` turns them off).
    pub hooks: bool,
    /// Check the network before the first write (`--skip-preflight` turns it off).
    pub preflight: bool,
    /// Run the release phase before traffic moves (`--no-release-phase` turns it off).
    pub release_phase: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            traffic_auto: true,
            poll: Duration::from_secs(5),
            stack_timeout: Duration::from_secs(3600),
            health_timeout: Duration::from_secs(900),
            strategy: Strategy::AllAtOnce,
            judge: true,
            hooks: true,
            preflight: true,
            release_phase: true,
        }
    }
}

/// What a converge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// One line per change made; empty when nothing had to change.
    pub changes: Vec<String>,
    /// Weights per release after the converge.
    pub traffic: Vec<(u32, u32)>,
}

impl Report {
    /// The weights the plan leaves, for the history: `1=0 2=100`.
    pub(super) fn traffic_line(&self, plan: &Plan) -> String {
        let parts: Vec<String> = self.final_weights(plan).iter().map(|(n, w)| format!("{n}={w}")).collect();
        format!("traffic {}", parts.join(" "))
    }

    /// The weights a plan leaves: its last routing change, or what it observed.
    pub(super) fn final_weights(&self, plan: &Plan) -> Vec<(u32, u32)> {
        let last = plan.actions.iter().rev().find_map(|a| match a {
            Action::Routing { shares, .. } | Action::ShiftWhenHealthy { shares, .. } => Some(shares.iter().map(|s| (s.release, s.weight)).collect::<Vec<_>>()),
            _ => None,
        });
        last.unwrap_or_else(|| plan.observed.weights.iter().map(|(n, w)| (*n, w.unwrap_or(0))).collect())
    }
}

pub struct Converger<'a, A: Aws> {
    pub(super) aws: &'a A,
    pub(super) bundle: &'a Bundle,
    pub(super) opts: Options,
    pub(super) say: &'a (dyn Fn(&str) + Sync),
    /// Renders and applies the routing, and performs the stack operations.
    pub(super) router: Router<'a, A>,
}

impl<A: Aws> std::fmt::Debug for Converger<'_, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Converger")
            .field("formation", &self.bundle.manifest.formation.name)
            .field("release", &self.bundle.manifest.release.number)
            .field("opts", &self.opts)
            .finish()
    }
}

impl<'a, A: Aws> Converger<'a, A> {
    pub fn new(aws: &'a A, bundle: &'a Bundle, opts: Options, say: &'a (dyn Fn(&str) + Sync)) -> Self {
        let stacks = Stacks::new(aws, say, opts.poll, opts.stack_timeout);
        Converger { aws, bundle, opts, say, router: Router::new(aws, bundle, stacks, say) }
    }
    pub(super) fn m(&self) -> &Manifest {
        &self.bundle.manifest
    }
    pub(super) fn manifest_bytes(&self) -> Result<Vec<u8>, Error> {
        Ok(self.bundle.file("manifest.json")?.to_vec())
    }
    /// Plans, then applies at once. (Both futures are large; they live on the heap so that
    /// callers' stacks stay small.)
    pub async fn run(&self) -> Result<Report, Error> {
        let plan = Box::pin(self.plan()).await?;
        Box::pin(self.apply_unchecked(&plan)).await
    }
    /// Applies a saved plan after checking that AWS still looks as it did when it was made.
    pub async fn apply(&self, plan: &Plan) -> Result<Report, Error> {
        let ours = crate::sha256_hex(&self.manifest_bytes()?);
        if plan.manifest_sha256 != ours || plan.formation != self.m().formation.name || plan.release != self.m().release.number {
            return Err(Error::Stale(format!("it was made from another compile (formation {}, release {})", plan.formation, plan.release)));
        }
        let fresh = Box::pin(self.plan()).await?;
        if fresh.observed_sha256 != plan.observed_sha256 {
            return Err(Error::Stale(plan.observed.first_difference(&fresh.observed).unwrap_or_else(|| "the observed state changed".into())));
        }
        Box::pin(self.apply_unchecked(plan)).await
    }
    pub(super) async fn object_sha(&self, bucket: &str, key: &str, bucket_exists: bool) -> Result<Option<String>, Error> {
        if !bucket_exists {
            return Ok(None);
        }
        Ok(retry("look for an object", || self.aws.head_object(bucket, key)).await?.and_then(|h| h.sha256))
    }
    /// A cache's endpoint as the formation stack's outputs give it: (host, port).
    pub(super) async fn endpoint_outputs(&self, sec: &gilliam_compiler::manifest::SecretEntry, stack: &str) -> Result<Option<(String, String)>, Error> {
        let Some((address, port)) = &sec.endpoint_outputs else { return Ok(None) };
        let Some(st) = retry("describe stack", || self.aws.describe_stack(stack)).await? else { return Ok(None) };
        let get = |k: &str| st.outputs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        Ok(get(address).zip(get(port)))
    }
    /// Whether the secret holds the endpoint the formation stack gives (true when there is
    /// none to give yet). Reads the secret's value, which never leaves this process.
    pub(super) async fn endpoint_current(&self, sec: &gilliam_compiler::manifest::SecretEntry, stack: &str) -> Result<bool, Error> {
        let Some((host, port)) = self.endpoint_outputs(sec, stack).await? else { return Ok(true) };
        let Some(value) = retry("read a secret", || self.aws.secret_value(&sec.name)).await? else { return Ok(false) };
        let v: serde_json::Value = serde_json::from_str(&value).unwrap_or_default();
        Ok(v["host"].as_str() == Some(host.as_str()) && v["port"].as_str() == Some(port.as_str()))
    }
    /// Writes the cache's endpoint into its secret, keeping every other field.
    pub(super) async fn write_endpoint(&self, sec: &gilliam_compiler::manifest::SecretEntry, stack: &str) -> Result<(), Error> {
        let Some((host, port)) = self.endpoint_outputs(sec, stack).await? else {
            return Err(Error::Corrupt(format!("stack {stack} gives no endpoint for {} (outputs {:?})", sec.auxiliary, sec.endpoint_outputs)));
        };
        let name = &sec.name;
        let value = retry("read a secret", || self.aws.secret_value(name)).await?.ok_or_else(|| Error::NotFound(format!("secret {name} is gone")))?;
        let mut v: serde_json::Value =
            serde_json::from_str(&value).map_err(|_| Error::Corrupt(format!("secret {name} does not hold a JSON object; it is not gilliam's")))?;
        let Some(fields) = v.as_object_mut() else { return Err(Error::Corrupt(format!("secret {name} does not hold a JSON object; it is not gilliam's"))) };
        fields.insert("host".into(), serde_json::Value::String(host));
        fields.insert("port".into(), serde_json::Value::String(port));
        let value = v.to_string();
        retry("write a secret", || self.aws.put_secret_value(name, &value)).await
    }
    /// This release as the published state records it.
    pub(super) fn record(&self) -> crate::state::ReleaseRecord {
        let m = self.m();
        crate::state::ReleaseRecord {
            revision: m.release.revision.clone(),
            created: m.release.created.clone(),
            artifact_sha256: m.release.artifact_sha256.clone(),
            stacks: m.stacks.iter().filter(|s| s.role == StackRole::Release).map(|s| s.name.clone()).collect(),
            groups: m.services.iter().filter_map(|s| s.auto_scaling_group.clone().map(|g| (s.name.clone(), (g, s.stack.clone())))).collect(),
            scale: m.services.iter().filter_map(|s| s.scale.as_ref().map(|x| (s.name.clone(), x.desired))).collect(),
            status: "live".into(),
            served: false,
            rolled_back: false,
            unrouted_since: None,
            release_phase_failed: false,
        }
    }
    pub(super) fn secret_entry(&self, name: &str) -> Result<&gilliam_compiler::manifest::SecretEntry, Error> {
        self.m().secrets.iter().find(|x| x.name == name).ok_or_else(|| Error::Stale(format!("the plan names secret {name}, which this compile does not have")))
    }
    pub(super) fn request(&self, s: &StackEntry) -> Result<StackRequest, Error> {
        let body =
            String::from_utf8(self.bundle.file(&s.template)?.to_vec()).map_err(|_| Error::Bundle(BundleError(format!("{} is not UTF-8", s.template))))?;
        Ok(crate::stacks::request(self.m(), s, body))
    }
    /// Refuses an artifact that is not there by its digest. Returns the release's image when
    /// it is in the formation's repository and not yet held by its release's tag.
    pub(super) async fn check_artifact(&self) -> Result<Option<crate::images::InEcr>, Error> {
        let m = self.m();
        let url = &m.release.artifact_url;
        if !url.starts_with("s3://") {
            return crate::images::check(self.aws, m, self.say).await;
        }
        let (bucket, key) =
            url.strip_prefix("s3://").and_then(|r| r.split_once('/')).ok_or_else(|| Error::Artifact(format!("artifact URL {url} is not s3://BUCKET/KEY")))?;
        let head = retry("look for the artifact", || self.aws.head_object(bucket, key)).await?;
        let Some(head) = head else {
            return Err(Error::Artifact(format!("artifact {url} does not exist: upload it before deploying release {}", m.release.number)));
        };
        if head.sha256.as_deref() == Some(m.release.artifact_sha256.as_str()) {
            return Ok(None);
        }
        let obj = retry("read the artifact", || self.aws.get_object(bucket, key))
            .await?
            .ok_or_else(|| Error::Artifact(format!("artifact {url} vanished while being read")))?;
        let found = crate::sha256_hex(&obj.body);
        if found != m.release.artifact_sha256 {
            return Err(Error::Artifact(format!(
                "artifact {url} has sha256 {found}, the release states {}: refusing to create release {}",
                m.release.artifact_sha256, m.release.number
            )));
        }
        Ok(None)
    }
    /// Whether the release's shift has hooks to run or people to tell: then even an
    /// all-at-once shift goes through the operator's path.
    pub(super) fn delivery_active(&self) -> bool {
        let d = &self.m().delivery;
        (self.opts.hooks && d.hooks.any()) || !d.notifications.is_empty()
    }
    /// Waits until every HTTP service of the new release has its desired count of healthy
    /// targets in each of its target groups.
    pub(super) async fn wait_healthy(&self) -> Result<(), Error> {
        let m = self.m();
        let exports: BTreeMap<String, String> = retry("list exports", || self.aws.list_exports()).await?.into_iter().collect();
        let deadline = Instant::now() + self.opts.health_timeout;
        loop {
            let mut waiting = Vec::new();
            for s in &m.services {
                let desired = s.scale.as_ref().map_or(0, |x| x.desired) as usize;
                for export in [&s.internal_target_group_export, &s.public_target_group_export].into_iter().flatten() {
                    let Some(arn) = exports.get(export) else { continue };
                    let states = retry("target health", || self.aws.target_health(arn)).await?;
                    let healthy = states.iter().filter(|h| *h == "healthy").count();
                    if healthy < desired {
                        waiting.push(format!("{} {healthy}/{desired}", s.name));
                    }
                }
            }
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "release {} not healthy after {:?}: {}; traffic stays where it was",
                    m.release.number,
                    self.opts.health_timeout,
                    waiting.join(", ")
                )));
            }
            (self.say)(&format!("waiting for healthy targets: {}", waiting.join(", ")));
            tokio::time::sleep(self.opts.poll).await;
        }
    }
}
