//! Observed traffic, read from AWS on every run (no local state): a release is live while its
//! target groups are exported by its stacks, and its weight is what the routing stacks' rules
//! forward to those target groups in ELBv2 right now.
//!
//! A release's weight is the smallest any rule gives it. Every rule holds the formation's
//! weights restricted to the releases that have its service, except a rule whose releases all
//! have weight 0 (a service new in a release without traffic yet): there the newest takes the
//! rule with weight 1, since nothing else can answer it. The smallest weight reads past that.

use crate::aws::Aws;
use crate::error::Error;
use crate::retry::retry;
use gilliam_compiler::manifest::{Manifest, StackRole};
use gilliam_compiler::TrafficShare;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Live {
    /// The largest weight any rule gives this release; `None` when no rule names it.
    pub weight: Option<u32>,
    pub internal: BTreeSet<String>,
    pub public: BTreeSet<String>,
    /// Ports of its HTTP services, from its published manifest (empty when it has none).
    pub ports: BTreeMap<String, u16>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedTraffic {
    pub releases: BTreeMap<u32, Live>,
    /// The manifest's routing stacks as described while reading their rules: status, or
    /// `None` for a stack that is not there. What a converge reads next of them (their
    /// templates) goes by this rather than describing each stack a second time.
    pub routing_stacks: BTreeMap<String, Option<String>>,
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

/// Every target group of the formation's releases, by its ARN, with its release: read from
/// the exports of the release stacks (`{formation}-r{N}-...TargetGroup`).
pub async fn release_target_groups<A: Aws>(aws: &A, formation: &str) -> Result<BTreeMap<String, u32>, Error> {
    let exports = retry("list exports", || aws.list_exports()).await?;
    Ok(exports.into_iter().filter_map(|(name, arn)| parse_export(formation, &name).map(|(n, _, _)| (arn, n))).collect())
}

/// The weighted listener rules of the formation's routing stacks (test-header rules left
/// out), as ELBv2 holds them now, each with its logical ID in its stack.
pub async fn routing_rules<A: Aws>(aws: &A, m: &Manifest) -> Result<Vec<(String, crate::aws::Rule)>, Error> {
    Ok(routing_rules_seen(aws, m).await?.0)
}

/// [`routing_rules`], and each routing stack's status as described on the way (`None`: no
/// such stack).
async fn routing_rules_seen<A: Aws>(aws: &A, m: &Manifest) -> Result<RulesSeen, Error> {
    let (mut out, mut seen) = (Vec::new(), BTreeMap::new());
    for s in m.stacks.iter().filter(|s| s.role == StackRole::Routing) {
        let status = retry("describe stack", || aws.describe_stack(&s.name)).await?.map(|st| st.status);
        if seen.entry(s.name.clone()).or_insert(status).is_none() {
            continue;
        }
        let logical: std::collections::BTreeMap<String, String> = retry("list stack resources", || aws.stack_resources(&s.name))
            .await?
            .into_iter()
            .filter(|(_, _, ty)| ty == "AWS::ElasticLoadBalancingV2::ListenerRule")
            // A test-header rule forwards to the newest release whatever the weights.
            .filter(|(id, _, _)| !gilliam_compiler::names::is_test_rule(id))
            .map(|(id, arn, _)| (arn, id))
            .collect();
        let arns: Vec<String> = logical.keys().cloned().collect();
        if !arns.is_empty() {
            for r in retry("describe rules", || aws.describe_rules(&arns)).await? {
                out.push((logical.get(&r.arn).cloned().unwrap_or_default(), r));
            }
        }
    }
    Ok((out, seen))
}

type RulesSeen = (Vec<(String, crate::aws::Rule)>, BTreeMap<String, Option<String>>);

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
    let (rules, seen) = routing_rules_seen(aws, m).await?;
    out.routing_stacks = seen;
    let weights = release_weights(rules.iter().flat_map(|(_, r)| r.forward.iter().filter_map(|(tg, w)| by_arn.get(tg).map(|n| (*n, *w)))));
    for (n, w) in weights {
        if let Some(live) = out.releases.get_mut(&n) {
            live.weight = Some(w);
        }
    }
    // The ports each live release listens on, from its published manifest: the formation's
    // security group stays open on them while the release runs.
    for (n, live) in out.releases.iter_mut() {
        if *n == m.release.number {
            continue;
        }
        let published = match crate::published::release(aws, &m.formation.outputs_bucket, &m.formation.s3_prefix, *n).await {
            Ok(p) => p,
            // Not gilliam's: no ports to keep open for it.
            Err(Error::Corrupt(_)) => None,
            Err(e) => return Err(e),
        };
        if let Some(published) = published {
            // Its services as it was compiled: one this release dropped is still its own.
            live.internal.extend(published.services.iter().filter(|s| s.internal_target_group_export.is_some()).map(|s| s.name.clone()));
            live.public.extend(published.services.iter().filter(|s| s.public_target_group_export.is_some()).map(|s| s.name.clone()));
            live.ports =
                published.services.iter().filter(|s| s.internal_target_group_export.is_some()).filter_map(|s| s.port.map(|p| (s.name.clone(), p))).collect();
        }
    }
    Ok(out)
}

/// Each release's weight from (release, weight) pairs read off the rules: the smallest.
pub(crate) fn release_weights(pairs: impl Iterator<Item = (u32, u32)>) -> BTreeMap<u32, u32> {
    let mut out: BTreeMap<u32, u32> = BTreeMap::new();
    for (n, w) in pairs {
        let e = out.entry(n).or_insert(w);
        *e = (*e).min(w);
    }
    out
}

/// The weights of one rule's target groups (by their release, `None` for a target group of no
/// live release) for the formation's weights `target`, by `gilliam_compiler::rule_weights`.
/// `None` when the rule names no known release.
pub(crate) fn rule_weights(releases: &[Option<u32>], target: &BTreeMap<u32, u32>) -> Option<Vec<u32>> {
    // The compiler's rule over the target groups of known releases; any other gets nothing.
    let known: Vec<(usize, (u32, u32))> = releases.iter().enumerate().filter_map(|(i, n)| n.map(|n| (i, (n, target.get(&n).copied().unwrap_or(0))))).collect();
    let pairs: Vec<(u32, u32)> = known.iter().map(|(_, p)| *p).collect();
    let mut w = vec![0; releases.len()];
    for ((i, _), weight) in known.iter().zip(gilliam_compiler::rule_weights(&pairs)?) {
        w[*i] = weight;
    }
    Some(w)
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
                ports: l.ports.clone(),
            })
            .collect()
    }

    /// The share of the release being deployed (the compiler fills in its services).
    pub fn share_for_new(&self, m: &Manifest, weight: u32) -> TrafficShare {
        TrafficShare {
            release: m.release.number,
            weight,
            routing_groups: m.formation.routing_groups,
            internal: BTreeSet::new(),
            public: BTreeSet::new(),
            ports: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_export, release_weights, rule_weights};
    use std::collections::BTreeMap;

    #[test]
    fn a_rule_whose_releases_have_no_weight_goes_to_the_newest_and_reads_as_zero() {
        let target = BTreeMap::from([(1, 100), (2, 0), (3, 0)]);
        assert_eq!(rule_weights(&[Some(1), Some(2)], &target), Some(vec![100, 0]));
        assert_eq!(rule_weights(&[Some(2), Some(3)], &target), Some(vec![0, 1]));
        assert_eq!(rule_weights(&[None], &target), None);
        // Rules of an old service [1: 100, 2: 0, 3: 0] and of one new in 3 [3: 1].
        let w = release_weights([(1, 100), (2, 0), (3, 0), (3, 1)].into_iter());
        assert_eq!(w, BTreeMap::from([(1, 100), (2, 0), (3, 0)]));
    }

    #[test]
    fn export_names() {
        assert_eq!(parse_export("shop", "shop-r12-Api-PublicTargetGroup"), Some((12, "Api", true)));
        assert_eq!(parse_export("shop", "shop-r1-PricingV2-InternalTargetGroup"), Some((1, "PricingV2", false)));
        assert_eq!(parse_export("shop", "shop-InstanceSecurityGroup"), None);
        assert_eq!(parse_export("shop", "shop-r2-r5-Api-InternalTargetGroup"), None, "another formation named shop-r2");
        assert_eq!(parse_export("shop", "shopx-r1-Api-InternalTargetGroup"), None);
    }
}
