//! Converge: make AWS hold the compiled formation. Bootstrap the bucket, verify the artifact,
//! upload what differs, converge the formation stack, create the release's stacks (at once,
//! they are independent), then render the routing stacks with the traffic weights observed in
//! ELBv2, so that a converge never undoes a traffic change; with automatic traffic, shift to
//! the new release once its target groups are healthy.

use crate::aws::{Aws, AwsError, AwsResult, PutCondition, StackRequest, TemplateSource};
use crate::bundle::{Bundle, BundleError};
use gilliam_compiler::manifest::{Manifest, StackEntry, StackRole};
use gilliam_compiler::TrafficShare;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

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
}

impl Default for Options {
    fn default() -> Self {
        Options { traffic_auto: true, poll: Duration::from_secs(5), stack_timeout: Duration::from_secs(3600), health_timeout: Duration::from_secs(900) }
    }
}

#[derive(Debug)]
pub enum Error {
    Bundle(BundleError),
    /// An AWS call failed (after retries, when it was retryable).
    Aws {
        what: String,
        err: AwsError,
    },
    Artifact(String),
    /// A stack ended in a failed state; `cause` names the failing resource and its reason.
    StackFailed {
        stack: String,
        status: String,
        cause: String,
    },
    Timeout(String),
    /// A release stack exists with other content: releases are immutable.
    Immutable(String),
    Compile(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Bundle(e) => write!(f, "{e}"),
            Error::Aws { what, err } => write!(f, "{what}: {err}"),
            Error::Artifact(m) | Error::Timeout(m) | Error::Compile(m) => f.write_str(m),
            Error::StackFailed { stack, status, cause } => write!(f, "stack {stack} ended {status}: {cause}"),
            Error::Immutable(stack) => {
                write!(f, "stack {stack} exists with a different template: a release is immutable, compile a new release number instead")
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<BundleError> for Error {
    fn from(e: BundleError) -> Self {
        Error::Bundle(e)
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

/// Retries throttling and transient failures with exponential backoff.
pub(crate) async fn retry<T, F, Fut>(what: &str, mut call: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = AwsResult<T>>,
{
    let mut delay = Duration::from_millis(200);
    let mut attempt = 0;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.retryable() && attempt < 8 => {
                attempt += 1;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(20));
            }
            Err(err) => return Err(Error::Aws { what: what.to_string(), err }),
        }
    }
}

pub struct Converger<'a, A: Aws> {
    aws: &'a A,
    bundle: &'a Bundle,
    opts: Options,
    say: &'a (dyn Fn(&str) + Sync),
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

fn template_url(m: &Manifest, key: &str) -> String {
    format!("https://{}.s3.{}.amazonaws.com/{key}", m.formation.outputs_bucket, m.formation.region)
}

const FAILED: &[&str] = &[
    "CREATE_FAILED",
    "ROLLBACK_COMPLETE",
    "ROLLBACK_FAILED",
    "DELETE_FAILED",
    "UPDATE_ROLLBACK_COMPLETE",
    "UPDATE_ROLLBACK_FAILED",
    "UPDATE_FAILED",
    "IMPORT_ROLLBACK_COMPLETE",
];

impl<'a, A: Aws> Converger<'a, A> {
    pub fn new(aws: &'a A, bundle: &'a Bundle, opts: Options, say: &'a (dyn Fn(&str) + Sync)) -> Self {
        Converger { aws, bundle, opts, say }
    }

    fn m(&self) -> &Manifest {
        &self.bundle.manifest
    }

    pub async fn run(&self) -> Result<Report, Error> {
        let mut report = Report::default();
        let m = self.m();
        let bucket = m.formation.outputs_bucket.clone();
        if !retry("look for the bucket", || self.aws.bucket_exists(&bucket)).await? {
            retry("create the bucket", || self.aws.create_secure_bucket(&bucket, &m.formation.region)).await?;
            report.changes.push(format!("+ bucket {bucket} (versioned, encrypted, public access blocked)"));
        }
        self.check_artifact().await?;
        self.upload(&mut report).await?;

        let formation: Vec<&StackEntry> = m.stacks.iter().filter(|s| s.role == StackRole::Formation).collect();
        for s in formation {
            self.converge_stack(s, self.request(s)?, false, &mut report).await?;
        }
        let releases: Vec<&StackEntry> = m.stacks.iter().filter(|s| s.role == StackRole::Release).collect();
        let mut futs = Vec::new();
        for s in &releases {
            futs.push(async move {
                let mut r = Report::default();
                self.converge_stack(s, self.request(s)?, true, &mut r).await.map(|()| r)
            });
        }
        for r in futures_util::future::join_all(futs).await {
            report.changes.extend(r?.changes);
        }

        // Traffic: what ELBv2 holds now, plus this release (at weight 0 until it is healthy).
        let observed = crate::observe::traffic(self.aws, m).await?;
        let number = m.release.number;
        let mut shares = observed.shares(m);
        let serving = shares.iter().any(|s| s.weight > 0 && s.release != number);
        if !shares.iter().any(|s| s.release == number) {
            shares.push(observed.share_for_new(m, 0));
        }
        if !serving {
            // Nothing serves yet: the new release takes the traffic from the start.
            for s in &mut shares {
                s.weight = u32::from(s.release == number) * 100;
            }
        }
        self.converge_routing(&shares, &mut report).await?;
        let current_new = shares.iter().find(|s| s.release == number).map_or(0, |s| s.weight);
        if self.opts.traffic_auto && serving && current_new == 0 {
            self.wait_healthy().await?;
            for s in &mut shares {
                s.weight = u32::from(s.release == number) * 100;
            }
            self.converge_routing(&shares, &mut report).await?;
            report.changes.push(format!("~ traffic: all to release {number}"));
        }
        report.traffic = shares.iter().map(|s| (s.release, s.weight)).collect();
        report.traffic.sort();

        // Published outputs: the manifest of this release, and the formation's latest.
        for key in [format!("{}releases/{number}/manifest.json", m.formation.s3_prefix), format!("{}manifest.json", m.formation.s3_prefix)] {
            let body = std::fs::read(self.bundle.dir.join("manifest.json")).map_err(|e| Error::Bundle(BundleError(format!("manifest.json: {e}"))))?;
            if self.put_if_changed(&bucket, &key, body).await? {
                report.changes.push(format!("~ published s3://{bucket}/{key}"));
            }
        }
        Ok(report)
    }

    async fn check_artifact(&self) -> Result<(), Error> {
        let m = self.m();
        let url = &m.release.artifact_url;
        let (bucket, key) =
            url.strip_prefix("s3://").and_then(|r| r.split_once('/')).ok_or_else(|| Error::Artifact(format!("artifact URL {url} is not s3://BUCKET/KEY")))?;
        let head = retry("look for the artifact", || self.aws.head_object(bucket, key)).await?;
        let Some(head) = head else {
            return Err(Error::Artifact(format!("artifact {url} does not exist: upload it before deploying release {}", m.release.number)));
        };
        if head.sha256.as_deref() == Some(m.release.artifact_sha256.as_str()) {
            return Ok(());
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
        Ok(())
    }

    /// Writes an object unless it is already there with the same sha256. Returns whether it wrote.
    async fn put_if_changed(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<bool, Error> {
        let sha = crate::sha256_hex(&body);
        let head = retry("look for an upload", || self.aws.head_object(bucket, key)).await?;
        if head.and_then(|h| h.sha256).as_deref() == Some(sha.as_str()) {
            return Ok(false);
        }
        retry("upload", || self.aws.put_object(bucket, key, body.clone(), PutCondition::Always)).await?;
        Ok(true)
    }

    async fn upload(&self, report: &mut Report) -> Result<(), Error> {
        let m = self.m();
        let bucket = &m.formation.outputs_bucket;
        let mut items: Vec<(&str, &str)> = m.stacks.iter().map(|s| (s.template.as_str(), s.s3_key.as_str())).collect();
        items.extend(m.uploads.iter().map(|u| (u.path.as_str(), u.s3_key.as_str())));
        for (path, key) in items {
            let body = self.bundle.file(path)?.to_vec();
            if self.put_if_changed(bucket, key, body).await? {
                report.changes.push(format!("+ s3://{bucket}/{key}"));
            }
        }
        Ok(())
    }

    fn request(&self, s: &StackEntry) -> Result<StackRequest, Error> {
        let body =
            String::from_utf8(self.bundle.file(&s.template)?.to_vec()).map_err(|_| Error::Bundle(BundleError(format!("{} is not UTF-8", s.template))))?;
        Ok(self.request_for(s, body))
    }

    fn request_for(&self, s: &StackEntry, body: String) -> StackRequest {
        let m = self.m();
        let template =
            if body.len() > gilliam_compiler::cfn::MAX_INLINE_BYTES { TemplateSource::Url(template_url(m, &s.s3_key)) } else { TemplateSource::Body(body) };
        let mut tags = vec![("gilliam:formation".to_string(), m.formation.name.clone())];
        if s.role == StackRole::Release {
            tags.push(("gilliam:release".into(), m.release.number.to_string()));
        }
        StackRequest { name: s.name.clone(), template, capabilities: s.capabilities.clone(), tags }
    }

    /// Creates the stack, or updates it when its template differs. An immutable stack (a
    /// release's) that differs is refused instead.
    async fn converge_stack(&self, s: &StackEntry, req: StackRequest, immutable: bool, report: &mut Report) -> Result<(), Error> {
        let name = &s.name;
        let mut current = retry("describe stack", || self.aws.describe_stack(name)).await?;
        if let Some(st) = &current {
            if st.status.ends_with("_IN_PROGRESS") {
                (self.say)(&format!("stack {name}: {} (waiting for it to settle)", st.status));
                let status = self.wait(name, false).await?;
                current = retry("describe stack", || self.aws.describe_stack(name)).await?.filter(|_| status != "DELETE_COMPLETE");
            }
        }
        match current.map(|s| s.status) {
            Some(status) if status == "ROLLBACK_COMPLETE" || status == "ROLLBACK_FAILED" => {
                // A create that failed: the stack holds nothing; delete it and create anew.
                (self.say)(&format!("stack {name}: {status} from an earlier failed create; deleting it"));
                retry("delete stack", || self.aws.delete_stack(name)).await?;
                self.wait(name, false).await?;
                self.create(&req, report).await
            }
            Some(status) if status == "UPDATE_ROLLBACK_FAILED" => {
                (self.say)(&format!("stack {name}: UPDATE_ROLLBACK_FAILED; continuing the rollback"));
                retry("continue update rollback", || self.aws.continue_update_rollback(name)).await?;
                self.wait(name, true).await?;
                self.update(s, &req, immutable, report).await
            }
            Some(_) => self.update(s, &req, immutable, report).await,
            None => self.create(&req, report).await,
        }
    }

    async fn create(&self, req: &StackRequest, report: &mut Report) -> Result<(), Error> {
        (self.say)(&format!("stack {}: creating", req.name));
        retry("create stack", || self.aws.create_stack(req)).await?;
        let status = self.wait(&req.name, true).await?;
        report.changes.push(format!("+ stack {} ({status})", req.name));
        Ok(())
    }

    async fn update(&self, s: &StackEntry, req: &StackRequest, immutable: bool, report: &mut Report) -> Result<(), Error> {
        let deployed = retry("read the deployed template", || self.aws.get_template(&s.name)).await?;
        let wanted = self.bundle.file(&s.template)?;
        if same_json(deployed.as_bytes(), wanted) {
            return Ok(());
        }
        if immutable {
            return Err(Error::Immutable(s.name.clone()));
        }
        (self.say)(&format!("stack {}: updating", s.name));
        match retry("update stack", || self.aws.update_stack(req)).await {
            Ok(()) => {}
            Err(Error::Aws { err: AwsError::NoUpdates, .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
        let status = self.wait(&s.name, true).await?;
        report.changes.push(format!("~ stack {} ({status})", s.name));
        Ok(())
    }

    /// Polls a stack until it settles, printing new events. Returns the final status; a failed
    /// one is an error naming the first failed resource and its reason.
    async fn wait(&self, name: &str, fail_on_rollback: bool) -> Result<String, Error> {
        let deadline = Instant::now() + self.opts.stack_timeout;
        let mut seen: BTreeSet<String> =
            retry("stack events", || self.aws.stack_events(name)).await.map(|e| e.into_iter().map(|e| e.id).collect()).unwrap_or_default();
        loop {
            let st = match retry("describe stack", || self.aws.describe_stack(name)).await? {
                Some(st) => st,
                None => return Ok("DELETE_COMPLETE".into()),
            };
            let events = retry("stack events", || self.aws.stack_events(name)).await.unwrap_or_default();
            for e in events.iter().rev().filter(|e| !seen.contains(&e.id)) {
                (self.say)(&format!(
                    "  {name} {} {} {}{}",
                    e.logical_id,
                    e.resource_type,
                    e.status,
                    e.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
                ));
            }
            seen.extend(events.iter().map(|e| e.id.clone()));
            if !st.status.ends_with("_IN_PROGRESS") {
                let failed = FAILED.contains(&st.status.as_str()) || st.status == "DELETE_FAILED";
                if failed && (fail_on_rollback || !st.status.starts_with("ROLLBACK")) {
                    let cause = events
                        .iter()
                        .rev()
                        .find(|e| e.status.ends_with("_FAILED"))
                        .map(|e| format!("{} ({}): {}", e.logical_id, e.resource_type, e.reason.clone().unwrap_or_default()))
                        .or(st.reason.clone())
                        .unwrap_or_else(|| "no reason given".into());
                    return Err(Error::StackFailed { stack: name.to_string(), status: st.status, cause });
                }
                return Ok(st.status);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!("stack {name} still {} after {:?}", st.status, self.opts.stack_timeout)));
            }
            tokio::time::sleep(self.opts.poll).await;
        }
    }

    /// Renders the routing stacks for `shares` with the compiler and converges them.
    async fn converge_routing(&self, shares: &[TrafficShare], report: &mut Report) -> Result<(), Error> {
        let [app, rel, stage] = self.bundle.inputs()?;
        let inputs = gilliam_compiler::Inputs {
            app: gilliam_compiler::Source { name: "gilliam.yml", text: &app },
            release: gilliam_compiler::Source { name: "release.json", text: &rel },
            stage: gilliam_compiler::Source { name: "stage.yml", text: &stage },
        };
        let compiled = gilliam_compiler::compile_with(&inputs, &gilliam_compiler::Options { traffic: Some(shares.to_vec()), workers: 2 })
            .map_err(|e| Error::Compile(format!("re-rendering routing for the observed traffic: {e}")))?;
        for s in compiled.manifest.stacks.iter().filter(|s| s.role == StackRole::Routing) {
            let body = compiled.files.get(&s.template).cloned().unwrap_or_default();
            if body.len() > gilliam_compiler::cfn::MAX_INLINE_BYTES {
                let key = format!("{}.traffic-{}", s.s3_key, crate::sha256_hex(&body));
                self.put_if_changed(&self.m().formation.outputs_bucket, &key, body.clone()).await?;
            }
            let body = String::from_utf8(body).map_err(|_| Error::Compile("routing template is not UTF-8".into()))?;
            let req = self.request_for(s, body.clone());
            let exists = retry("describe stack", || self.aws.describe_stack(&s.name)).await?.is_some();
            if exists {
                let deployed = retry("read the deployed template", || self.aws.get_template(&s.name)).await?;
                if same_json(deployed.as_bytes(), body.as_bytes()) {
                    continue;
                }
            }
            let entry = StackEntry { template: String::new(), ..s.clone() };
            if exists {
                (self.say)(&format!("stack {}: updating routes and weights", s.name));
                match retry("update stack", || self.aws.update_stack(&req)).await {
                    Ok(()) => {
                        let status = self.wait(&entry.name, true).await?;
                        report.changes.push(format!("~ stack {} ({status})", s.name));
                    }
                    Err(Error::Aws { err: AwsError::NoUpdates, .. }) => {}
                    Err(e) => return Err(e),
                }
            } else {
                self.create(&req, report).await?;
            }
        }
        Ok(())
    }

    /// Waits until every HTTP service of the new release has its desired count of healthy
    /// targets in each of its target groups.
    async fn wait_healthy(&self) -> Result<(), Error> {
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

/// Two template texts mean the same (CloudFormation may hand back other whitespace).
fn same_json(a: &[u8], b: &[u8]) -> bool {
    match (serde_json::from_slice::<serde_json::Value>(a), serde_json::from_slice::<serde_json::Value>(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}
