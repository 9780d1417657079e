//! Observed traffic, read from AWS on every run (no local state): a release is live while its
//! target groups are exported by its stacks, and its weight is what the routing stacks' rules
//! forward to those target groups in ELBv2 right now.

use crate::aws::Aws;
use crate::converge::{retry, Error};
use gilliam_compiler::manifest::{Manifest, StackRole};
use gilliam_compiler::TrafficShare;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Live {
    /// The largest weight any rule gives this release; `None` when no rule names it.
    pub weight: Option<u32>,
    pub internal: BTreeSet<String>,
    pub public: BTreeSet<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedTraffic {
    pub releases: BTreeMap<u32, Live>,
}

/// Parses `{formation}-r{N}-{Logical}-{Public|Internal}TargetGroup`.
pub(crate) fn parse_export<'a>(formation: &str, name: &'a str) -> Option<(u32, &'a str, bool)> {
    let rest = name.strip_prefix(formation)?.strip_prefix("-r")?;
    let (n, rest) = rest.split_once('-')?;
    let number: u32 = n.parse().ok()?;
    let (logical, kind) = rest.rsplit_once('-')?;
    let public = match kind {
        "PublicTargetGroup" => true,
        "InternalTargetGroup" => false,
        _ => return None,
    };
    logical.bytes().all(|b| b.is_ascii_alphanumeric()).then_some((number, logical, public))
}

/// The listener rules of the formation's routing stacks, as ELBv2 holds them now, each with
/// its logical ID in its stack.
pub async fn routing_rules<A: Aws>(aws: &A, m: &Manifest) -> Result<Vec<(String, crate::aws::Rule)>, Error> {
    let mut out = Vec::new();
    for s in m.stacks.iter().filter(|s| s.role == StackRole::Routing) {
        if retry("describe stack", || aws.describe_stack(&s.name)).await?.is_none() {
            continue;
        }
        let logical: std::collections::BTreeMap<String, String> = retry("list stack resources", || aws.stack_resources(&s.name))
            .await?
            .into_iter()
            .filter(|(_, _, ty)| ty == "AWS::ElasticLoadBalancingV2::ListenerRule")
            .map(|(id, arn, _)| (arn, id))
            .collect();
        let arns: Vec<String> = logical.keys().cloned().collect();
        if !arns.is_empty() {
            for r in retry("describe rules", || aws.describe_rules(&arns)).await? {
                out.push((logical.get(&r.arn).cloned().unwrap_or_default(), r));
            }
        }
    }
    Ok(out)
}

pub async fn traffic<A: Aws>(aws: &A, m: &Manifest) -> Result<ObservedTraffic, Error> {
    let f = &m.formation.name;
    let names: BTreeMap<String, &str> = m.services.iter().map(|s| (gilliam_compiler::names::logical(&s.name), s.name.as_str())).collect();
    let mut by_arn: BTreeMap<String, u32> = BTreeMap::new();
    let mut out = ObservedTraffic::default();
    for (name, value) in retry("list exports", || aws.list_exports()).await? {
        let Some((n, logical, public)) = parse_export(f, &name) else { continue };
        let live = out.releases.entry(n).or_default();
        if let Some(svc) = names.get(logical) {
            if public {
                live.public.insert((*svc).to_string());
            } else {
                live.internal.insert((*svc).to_string());
            }
        }
        by_arn.insert(value, n);
    }
    for (_, rule) in routing_rules(aws, m).await? {
        for (tg, w) in rule.forward {
            if let Some(live) = by_arn.get(&tg).and_then(|n| out.releases.get_mut(n)) {
                live.weight = Some(live.weight.unwrap_or(0).max(w));
            }
        }
    }
    Ok(out)
}

impl ObservedTraffic {
    /// The live releases as traffic shares for the compiler (weight 0 where no rule names one).
    pub fn shares(&self, m: &Manifest) -> Vec<TrafficShare> {
        self.releases
            .iter()
            .map(|(n, l)| TrafficShare {
                release: *n,
                weight: l.weight.unwrap_or(0),
                routing_groups: m.formation.routing_groups,
                internal: l.internal.clone(),
                public: l.public.clone(),
            })
            .collect()
    }

    /// The share of the release being deployed (the compiler fills in its services).
    pub fn share_for_new(&self, m: &Manifest, weight: u32) -> TrafficShare {
        TrafficShare { release: m.release.number, weight, routing_groups: m.formation.routing_groups, internal: BTreeSet::new(), public: BTreeSet::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_export;

    #[test]
    fn export_names() {
        assert_eq!(parse_export("shop", "shop-r12-Api-PublicTargetGroup"), Some((12, "Api", true)));
        assert_eq!(parse_export("shop", "shop-r1-PricingV2-InternalTargetGroup"), Some((1, "PricingV2", false)));
        assert_eq!(parse_export("shop", "shop-InstanceSecurityGroup"), None);
        assert_eq!(parse_export("shop", "shop-r2-r5-Api-InternalTargetGroup"), None, "another formation named shop-r2");
        assert_eq!(parse_export("shop", "shopx-r1-Api-InternalTargetGroup"), None);
    }
}
