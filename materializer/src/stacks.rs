//! Stack operations as CloudFormation performs them: create, update and delete, each waited for
//! (new events said, a deadline kept, a failure named by its first failed resource); a failed
//! rollback continued; a release's Auto Scaling groups scaled to zero and its stacks deleted;
//! the request for a compiled stack. Every call goes through the retry policy.

use crate::aws::{Aws, AwsError, StackRequest, TemplateSource};
use crate::error::Error;
use crate::retry::retry;
use gilliam_compiler::manifest::{Manifest, StackEntry, StackRole};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::time::Instant;

/// A stack as deployed: its status and template (not read while busy), or `None`: no stack.
pub type Deployed = Option<(String, Option<Vec<u8>>)>;

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

/// Where a template too large to pass inline is uploaded for CloudFormation to read.
pub fn template_url(m: &Manifest, key: &str) -> String {
    format!("https://{}.s3.{}.amazonaws.com/{key}", m.formation.outputs_bucket, m.formation.region)
}

/// sha256 of a template's canonical form (parsed and re-serialized with sorted keys), so that
/// CloudFormation's whitespace never reads as a change.
pub fn canonical_sha(bytes: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(v) => crate::sha256_hex(&serde_json::to_vec(&v).unwrap_or_default()),
        Err(_) => crate::sha256_hex(bytes),
    }
}

/// The request that creates or updates a compiled stack with this template body: inline, or by
/// URL past CloudFormation's inline limit; tagged with its formation (and release).
pub fn request(m: &Manifest, s: &StackEntry, body: String) -> StackRequest {
    let template =
        if body.len() > gilliam_compiler::cfn::MAX_INLINE_BYTES { TemplateSource::Url(template_url(m, &s.s3_key)) } else { TemplateSource::Body(body) };
    let mut tags = vec![("gilliam:formation".to_string(), m.formation.name.clone())];
    if s.role == StackRole::Release {
        tags.push(("gilliam:release".into(), m.release.number.to_string()));
    }
    StackRequest { name: s.name.clone(), template, capabilities: s.capabilities.clone(), tags }
}

/// CloudFormation stack operations for one formation, waited for with `poll` and `timeout`.
pub struct Stacks<'a, A: Aws> {
    aws: &'a A,
    say: &'a (dyn Fn(&str) + Sync),
    poll: Duration,
    timeout: Duration,
}

impl<A: Aws> Clone for Stacks<'_, A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A: Aws> Copy for Stacks<'_, A> {}

impl<A: Aws> std::fmt::Debug for Stacks<'_, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stacks").field("poll", &self.poll).field("timeout", &self.timeout).finish()
    }
}

impl<'a, A: Aws> Stacks<'a, A> {
    pub fn new(aws: &'a A, say: &'a (dyn Fn(&str) + Sync), poll: Duration, timeout: Duration) -> Self {
        Stacks { aws, say, poll, timeout }
    }

    /// Polled every 5 s for up to an hour, as a converge does by default.
    pub fn with_defaults(aws: &'a A, say: &'a (dyn Fn(&str) + Sync)) -> Self {
        Stacks::new(aws, say, Duration::from_secs(5), Duration::from_secs(3600))
    }

    /// How often stacks (and the rules read back) are polled.
    pub fn poll(&self) -> Duration {
        self.poll
    }

    /// Deletes a stack and waits until it is gone.
    pub async fn delete(&self, stack: &str) -> Result<(), Error> {
        retry("delete stack", || self.aws.delete_stack(stack)).await?;
        self.wait(stack, false).await.map(|_| ())
    }

    /// Retention of one release: every Auto Scaling group to zero (instances drain from their
    /// target groups), then its stacks deleted.
    pub async fn retire(&self, stacks: &[String]) -> Result<(), Error> {
        for stack in self.scale_to_zero(stacks).await? {
            (self.say)(&format!("stack {stack}: deleting"));
            retry("delete stack", || self.aws.delete_stack(stack)).await?;
            self.wait(stack, false).await?;
        }
        Ok(())
    }

    /// Scales every Auto Scaling group of `stacks` to zero (min, desired and max, so that no
    /// scaling policy brings one back); returns the stacks that exist.
    pub async fn scale_to_zero<'s>(&self, stacks: &'s [String]) -> Result<Vec<&'s String>, Error> {
        let mut present = Vec::new();
        for stack in stacks {
            if retry("describe stack", || self.aws.describe_stack(stack)).await?.is_none() {
                continue;
            }
            let groups: Vec<String> = retry("list stack resources", || self.aws.stack_resources(stack))
                .await?
                .into_iter()
                .filter(|(_, _, ty)| ty == "AWS::AutoScaling::AutoScalingGroup")
                .map(|(_, id, _)| id)
                .collect();
            for g in &groups {
                (self.say)(&format!("stack {stack}: scaling {g} to zero"));
                retry("scale to zero", || self.aws.set_capacity(g, 0, 0, 0)).await?;
            }
            present.push(stack);
        }
        Ok(present)
    }

    /// Finishes a rollback that failed (UPDATE_ROLLBACK_FAILED), then waits for it to settle.
    pub async fn continue_rollback(&self, stack: &str) -> Result<(), Error> {
        (self.say)(&format!("stack {stack}: continuing its failed rollback"));
        match retry("continue update rollback", || self.aws.continue_update_rollback(stack)).await {
            Ok(()) | Err(Error::Aws { err: AwsError::InProgress(_), .. }) => {}
            Err(e) => return Err(e),
        }
        self.wait(stack, false).await.map(|_| ())
    }

    /// A stack's status and the digest of its deployed template, for the plan's snapshot.
    pub async fn stack_snapshot(&self, name: &str) -> Result<Option<(String, String)>, Error> {
        Ok(self.stack_with_template(name).await?.map(|(status, body)| (status, body.map_or_else(String::new, |b| canonical_sha(&b)))))
    }

    /// A stack's status and its deployed template (not read while the stack is busy or empty).
    pub async fn stack_with_template(&self, name: &str) -> Result<Deployed, Error> {
        let status = retry("describe stack", || self.aws.describe_stack(name)).await?.map(|st| st.status);
        self.template_of(name, status).await
    }

    /// [`Self::stack_with_template`] for a stack whose status was read already in this run
    /// (`None`: no such stack).
    pub async fn template_of(&self, name: &str, status: Option<String>) -> Result<Deployed, Error> {
        let Some(status) = status else { return Ok(None) };
        let body = if status.ends_with("_IN_PROGRESS") || status == "ROLLBACK_COMPLETE" {
            None
        } else {
            Some(retry("read the deployed template", || self.aws.get_template(name)).await?.into_bytes())
        };
        Ok(Some((status, body)))
    }

    pub async fn create(&self, req: &StackRequest, changes: &mut Vec<String>) -> Result<(), Error> {
        (self.say)(&format!("stack {}: creating", req.name));
        match retry("create stack", || self.aws.create_stack(req)).await {
            Ok(_) => {}
            // An earlier attempt went through and its answer was lost (the plan saw no stack).
            Err(Error::Aws { err: AwsError::AlreadyExists(_), .. }) => (self.say)(&format!("stack {}: already created by an earlier attempt", req.name)),
            Err(e) => return Err(e),
        }
        let status = self.wait(&req.name, true).await?;
        changes.push(format!("+ stack {} ({status})", req.name));
        Ok(())
    }

    pub async fn update(&self, req: &StackRequest, changes: &mut Vec<String>) -> Result<(), Error> {
        (self.say)(&format!("stack {}: updating", req.name));
        match retry("update stack", || self.aws.update_stack(req)).await {
            Ok(()) => {}
            Err(Error::Aws { err: AwsError::NoUpdates, .. }) => return Ok(()),
            // An earlier attempt went through and its answer was lost: wait for that update.
            Err(Error::Aws { err: AwsError::InProgress(_), .. }) => {}
            Err(e) => return Err(e),
        }
        let status = self.wait(&req.name, true).await?;
        changes.push(format!("~ stack {} ({status})", req.name));
        Ok(())
    }

    /// Polls a stack until it settles, printing new events. Returns the final status; a failed
    /// one is an error naming the first failed resource and its reason.
    pub async fn wait(&self, name: &str, fail_on_rollback: bool) -> Result<String, Error> {
        let deadline = Instant::now() + self.timeout;
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
                // Waiting on our own create or update, a rollback is a failure; waiting for a
                // rollback or a delete to settle, only a *_FAILED state is.
                let failed = if fail_on_rollback { FAILED.contains(&st.status.as_str()) } else { st.status.ends_with("_FAILED") };
                if failed {
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
                return Err(Error::Timeout(format!("stack {name} still {} after {:?}", st.status, self.timeout)));
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}
