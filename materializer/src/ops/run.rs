//! `gilliam run`: a one-off process (an admin task, a migration run by hand) in a release's
//! own artifact, environment, network and role, on an instance launched for it from the
//! service's launch template (`crate::task`); its output streamed back, its exit status
//! returned.

use super::base::Ops;
use crate::aws::Aws;
use crate::error::Error;
use crate::task::{TaskOutcome, TaskSpec};
use std::time::Duration;

impl<A: Aws> Ops<'_, A> {
    /// The release a task runs in when none is named: the newest carrying traffic, else the
    /// newest live one of `st`.
    async fn task_release(&self, st: &crate::state::State) -> Result<u32, Error> {
        let weights = self.weights_now().await?;
        if let Some(n) = weights.iter().filter(|(_, w)| **w > 0).map(|(n, _)| *n).max() {
            return Ok(n);
        }
        st.releases
            .iter()
            .filter(|(_, r)| r.status == "live")
            .map(|(n, _)| *n)
            .max()
            .ok_or_else(|| Error::NotFound(format!("formation {} has no live release to run in: deploy one first", self.t.f.name)))
    }

    /// Runs `command` as `service` of `release` (default: `task_release`) on a one-off
    /// instance; every line of its output goes to `out`.
    pub async fn run_task(
        &self,
        release: Option<u32>,
        service: &str,
        command: &[String],
        timeout: Duration,
        poll: Duration,
        out: crate::task::Output<'_>,
    ) -> Result<TaskOutcome, Error> {
        let st = self.state().await?;
        let n = match release {
            Some(n) => n,
            None => self.task_release(&st).await?,
        };
        match st.releases.get(&n).map(|r| r.status.as_str()) {
            Some("live" | "cold") => {}
            Some(other) => return Err(Error::Refused(format!("release {n} is {other}: its stacks are gone; run in a live or cold release"))),
            None => return Err(Error::NotFound(format!("release {n} was never deployed to {} (`gilliam releases` lists them)", self.t.f.name))),
        }
        let bundle = crate::bundle::from_s3(self.t.aws, &self.t.f.bucket, &self.t.f.prefix, n).await.map_err(Error::Bundle)?;
        let spec = TaskSpec {
            release: n,
            service: service.to_string(),
            command: command.to_vec(),
            timeout,
            purpose: format!("gilliam run by {}", crate::clock::actor()),
        };
        crate::task::run(self.t.aws, &bundle, &spec, poll, self.t.say, out).await
    }
}
