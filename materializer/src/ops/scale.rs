//! `gilliam scale`: the desired count of one release's services, within their compiled range.

use super::base::Ops;
use crate::aws::{Aws, Group};
use crate::error::Error;
use crate::retry::retry;
use crate::state;
use std::collections::BTreeMap;

impl<A: Aws> Ops<'_, A> {
    /// Sets the desired count of services of one release, within each group's min and max.
    pub async fn scale(&self, release: u32, changes: &BTreeMap<String, u32>) -> Result<(), Error> {
        let st = self.state().await?;
        let r = st.releases.get(&release).ok_or_else(|| Error::NotFound(format!("release {release} is not recorded")))?;
        match r.status.as_str() {
            "live" => {}
            "cold" => return Err(Error::Refused(format!("release {release} is cold: warm it first with `gilliam warm {release}`"))),
            other => return Err(Error::Refused(format!("release {release} is {other}, not live"))),
        }
        let groups = self.groups(r).await?;
        // The service's range as compiled for this release (one read), else the group's own.
        let published = self.published_scales(release).await?;
        let names: Vec<String> = changes.keys().filter_map(|svc| groups.get(svc).cloned()).collect();
        let found: BTreeMap<String, Group> = if names.is_empty() {
            BTreeMap::new()
        } else {
            retry("describe groups", || self.t.aws.describe_groups(&names)).await?.into_iter().map(|g| (g.name.clone(), g)).collect()
        };
        let mut plan = Vec::new();
        for (svc, n) in changes {
            let g = groups.get(svc).ok_or_else(|| {
                Error::NotFound(format!("release {release} has no service {svc:?} (services: {})", groups.keys().cloned().collect::<Vec<_>>().join(", ")))
            })?;
            let g = found.get(g).ok_or_else(|| Error::NotFound(format!("the Auto Scaling group of {svc} in release {release} is gone")))?;
            let (min, max) = published.get(svc).map_or((g.min, g.max), |s| (s.min, s.max));
            if *n < min || *n > max {
                return Err(Error::Refused(format!(
                    "{svc}={n} is outside the service's scale, min {min} and max {max}; change `scale` in gilliam.yml for a wider range"
                )));
            }
            plan.push((g.name.clone(), g.min.min(*n), *n, g.max.max(*n)));
        }
        for (name, min, desired, max) in &plan {
            retry("set capacity", || self.t.aws.set_capacity(name, *min, *desired, *max)).await?;
        }
        let what: Vec<String> = changes.iter().map(|(s, n)| format!("{s}={n}")).collect();
        state::update(self.t.aws, &self.t.f.bucket, &self.t.f.prefix, &self.t.f.name, |st| {
            if let Some(r) = st.releases.get_mut(&release) {
                r.scale.extend(changes.iter().map(|(s, n)| (s.clone(), *n)));
            }
            st.history.push(state::event(format!("scale -r{release} {}", what.join(" "))));
        })
        .await?;
        Ok(())
    }
}
