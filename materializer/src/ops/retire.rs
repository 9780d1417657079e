//! `gilliam retire`: a release without traffic taken out of the routing, scaled to zero, its
//! stacks and unused config secrets deleted.

use super::base::Ops;
use crate::aws::Aws;
use crate::bundle::Bundle;
use crate::error::Error;
use crate::retention;
use crate::routing::Router;
use crate::stacks::Stacks;
use crate::state;
use crate::traffic::weights;

impl<A: Aws> Ops<'_, A> {
    /// Removes a release that carries no traffic: routing without it, its groups to zero, its
    /// stacks deleted. The latest release is kept: deploy another before retiring it.
    pub async fn retire(&self, release: u32) -> Result<(), Error> {
        let (m, _) = self.outputs().await?;
        if release == m.release.number {
            return Err(Error::Refused(format!("release {release} is the latest deployed; deploy another release before retiring it")));
        }
        let st = self.state().await?;
        let record = st
            .releases
            .get(&release)
            .filter(|r| r.status == "live" || r.status == "cold")
            .ok_or_else(|| Error::NotFound(format!("release {release} is not live or cold")))?
            .clone();
        let weights = weights(&self.t.rules(&m).await?);
        if weights.get(&release).copied().unwrap_or(0) > 0 {
            return Err(Error::Refused(format!("release {release} carries traffic ({}%): move traffic away first (gilliam traffic)", weights[&release])));
        }
        let bundle: Bundle = self.routing_bundle(&st, m.release.number, Some(release)).await?;
        let stacks = Stacks::with_defaults(self.t.aws, self.t.say);
        Box::pin(retention::retire_release(&Router::new(self.t.aws, &bundle, stacks, self.t.say), release, &record.stacks)).await?;
        state::update(self.t.aws, &self.t.f.bucket, &self.t.f.prefix, &self.t.f.name, |st| {
            if let Some(r) = st.releases.get_mut(&release) {
                r.status = "retired".into();
            }
            st.traffic.remove(&release);
            st.history.push(state::event(format!("retire release {release}")));
        })
        .await?;
        Ok(())
    }
}
