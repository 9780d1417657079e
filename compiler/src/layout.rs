//! The layout: HTTP services into routing groups by a stable hash of their name (the fewest
//! that fit ELBv2's quotas, or the stage's pinned `routing_groups`), and processes into
//! release stacks by resources, outputs and template bytes.

use crate::cfn;
use crate::diag::Sink;
use crate::model::{Svc, TARGET_GROUPS_PER_LB};
use crate::stage::Stage;
use std::collections::BTreeMap;

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Rules left free on every load balancer: a routing update creates a replaced rule and its
/// twin before it deletes the old pair, so both count against the quota for a while.
pub(crate) const RULE_HEADROOM: u32 = 2;

/// Why a layout over `k` routing groups breaks a limit, or `None` when it fits.
fn overflow(svcs: &[Svc<'_>], k: u32, stage: &Stage, live: u32) -> Option<String> {
    let mut http = vec![0u32; k as usize];
    let mut routed = vec![0u32; k as usize];
    let mut routes = vec![0u32; k as usize];
    for s in svcs.iter().filter(|s| s.s.is_http()) {
        let g = (fnv1a(&s.s.name) % u64::from(k)) as usize;
        http[g] += 1;
        if s.routed() {
            routed[g] += 1;
            routes[g] += s.s.process().map_or(0, |p| p.routes.len() as u32);
        }
    }
    let rules = stage.quotas.rules_per_load_balancer;
    for g in 0..k as usize {
        let n = g + 1;
        if http[g] * live > TARGET_GROUPS_PER_LB {
            return Some(format!("routing group {n}'s internal load balancer would hold {} target groups ({} HTTP services x {live} live releases), over ELBv2's limit of {TARGET_GROUPS_PER_LB} per load balancer", http[g] * live, http[g]));
        }
        if routed[g] * live > TARGET_GROUPS_PER_LB {
            return Some(format!("routing group {n}'s public load balancer would hold {} target groups ({} routed services x {live} live releases), over ELBv2's limit of {TARGET_GROUPS_PER_LB} per load balancer", routed[g] * live, routed[g]));
        }
        // Each rule has a twin for the test header (`X-Gilliam-Release`) just before it; and
        // room is left for one more pair, which an update creates before it deletes the pair
        // it replaces (a renamed route, a service moving in).
        if 2 * http[g] + RULE_HEADROOM > rules {
            return Some(format!(
                "routing group {n}'s internal load balancer would need {} rules ({} services, each with its test-header rule, and {RULE_HEADROOM} free for an update), over the quota of {rules} rules per load balancer",
                2 * http[g] + RULE_HEADROOM,
                http[g]
            ));
        }
        if 2 * routes[g] + RULE_HEADROOM > rules {
            return Some(format!(
                "routing group {n}'s public load balancer would need {} rules ({} routes, each with its test-header rule, and {RULE_HEADROOM} free for an update), over the quota of {rules} rules per load balancer",
                2 * routes[g] + RULE_HEADROOM,
                routes[g]
            ));
        }
    }
    let lbs: u32 = (0..k as usize).map(|g| u32::from(http[g] > 0) + u32::from(routed[g] > 0)).sum();
    if lbs > stage.quotas.load_balancers {
        return Some(format!("the formation would need {lbs} load balancers, over the quota of {} per region", stage.quotas.load_balancers));
    }
    None
}

/// Target groups one release has: an internal one per HTTP service, a public one per routed.
fn target_groups_per_release(svcs: &[Svc<'_>]) -> u32 {
    svcs.iter().filter(|s| !s.carried).map(|s| u32::from(s.s.is_http()) + u32::from(s.routed())).sum()
}

/// What the formation holds in the region at its peak: `live` releases (keep_releases + 2)
/// and the cold ones, each with its target groups and release stacks; the load balancers of
/// its routing groups; the routing stacks and the formation stack.
pub(crate) fn footprint(svcs: &[Svc<'_>], stage: &Stage, groups: u32, parts: u32, live: u32) -> gilliam_contract::manifest::Footprint {
    let releases = live + stage.cold_releases;
    let internal: std::collections::BTreeSet<Option<u32>> = svcs.iter().filter(|s| s.s.is_http()).map(|s| s.group).collect();
    let public: std::collections::BTreeSet<Option<u32>> = svcs.iter().filter(|s| s.routed()).map(|s| s.group).collect();
    gilliam_contract::manifest::Footprint {
        target_groups: target_groups_per_release(svcs) * releases,
        load_balancers: (internal.len() + public.len()) as u32,
        stacks: parts * releases + groups + 1,
        rules_per_load_balancer: stage.quotas.rules_per_load_balancer,
    }
}

/// Places every HTTP service in a routing group (one public and one internal load balancer,
/// with their rules, in one stack) by a stable hash of its name.
pub(crate) fn groups(svcs: &mut [Svc<'_>], stage: &Stage, live: u32, sink: &mut Sink<'_>) -> Option<u32> {
    let limit_hint = "raise the quota with AWS and set it under `quotas:` in the stage file, lower `keep_releases`, or split the formation";
    // Target groups are counted per region, across every formation of the account: at its
    // peak this one holds every live and cold release's.
    let per_release = target_groups_per_release(svcs);
    let releases = live + stage.cold_releases;
    if per_release * releases > stage.quotas.target_groups {
        sink.error_hint(
            stage.root_pos,
            format!(
                "the formation would hold {} target groups at its peak ({per_release} per release x {releases} releases: keep_releases {} + the serving and the deployed one + cold_releases {}), over the quota of {} target groups per region",
                per_release * releases,
                stage.keep_releases,
                stage.cold_releases,
                stage.quotas.target_groups
            ),
            "raise the quota with AWS (Elastic Load Balancing: Target groups per Region) and set `quotas.target_groups` in the stage file, lower `keep_releases` or `cold_releases`, or split the formation",
        );
        return None;
    }
    for s in svcs.iter().filter(|s| s.routed()) {
        let n = s.s.process().map_or(0, |p| p.routes.len() as u32);
        if 2 * n + RULE_HEADROOM > stage.quotas.rules_per_load_balancer {
            sink.error_hint(
                s.s.pos,
                format!(
                    "service `{}` has {n} routes, which need {} rules with their test-header rules and {RULE_HEADROOM} free for an update, over the quota of {} rules per load balancer",
                    s.s.name,
                    2 * n + RULE_HEADROOM,
                    stage.quotas.rules_per_load_balancer
                ),
                limit_hint,
            );
            return None;
        }
    }
    let k = match stage.routing_groups {
        Some(k) => {
            if let Some(why) = overflow(svcs, k, stage, live) {
                let fit = (k..=k.saturating_mul(4).max(64)).find(|k| overflow(svcs, *k, stage, live).is_none());
                let hint = match fit {
                    Some(f) => format!("set `routing_groups: {f}` (changing it re-homes services: do it with one live release), or {limit_hint}"),
                    None => limit_hint.to_string(),
                };
                sink.error_hint(stage.root_pos, format!("with `routing_groups: {k}`, {why}"), hint);
                return None;
            }
            k
        }
        None => {
            let http = svcs.iter().filter(|s| s.s.is_http()).count() as u32;
            let max_k = http.max(1);
            match (1..=max_k).find(|k| overflow(svcs, *k, stage, live).is_none()) {
                Some(k) => k,
                None => {
                    let why = overflow(svcs, max_k, stage, live).unwrap_or_default();
                    sink.error_hint(stage.root_pos, format!("the formation does not fit: {why}"), limit_hint);
                    return None;
                }
            }
        }
    };
    for s in svcs.iter_mut().filter(|s| s.s.is_http()) {
        s.group = Some((fnv1a(&s.s.name) % u64::from(k)) as u32 + 1);
    }
    Some(k)
}

/// What one service adds to a release stack: (resources, outputs).
pub(crate) fn release_cost(s: &Svc<'_>) -> (usize, usize) {
    let tgs = usize::from(s.s.is_http()) + usize::from(s.routed());
    (2 + usize::from(s.scale.max > s.scale.min) + tgs, 1 + tgs)
}

/// Release-wide resources in every release stack (role, instance profile) and outputs.
pub(crate) const RELEASE_SHARED: (usize, usize) = (2, 1);
/// Headroom left in every stack for resources added by later features.
const HEADROOM: usize = 20;

/// Bytes a service adds to its release stack besides its userdata (measured on the fixtures
/// at about 7 KB for a routed service, rounded up).
pub(crate) const RELEASE_BYTES_PER_SERVICE: usize = 8_500;
/// Template bytes a release stack is packed to, below CloudFormation's 1,000,000.
pub(crate) const RELEASE_BYTES_BUDGET: usize = 900_000;

/// Splits the release's services into as few stacks as fit CloudFormation's limits on
/// resources, outputs and template size; `userdata_bytes` is each service's userdata as it
/// appears in the template (JSON-escaped).
pub(crate) fn parts(svcs: &mut [Svc<'_>], userdata_bytes: &BTreeMap<String, usize>) -> u32 {
    let (mut res, mut outs, mut bytes, mut part) = (RELEASE_SHARED.0, RELEASE_SHARED.1, 0usize, 1u32);
    for s in svcs.iter_mut().filter(|s| s.s.process().is_some() && !s.carried) {
        let (r, o) = release_cost(s);
        let b = RELEASE_BYTES_PER_SERVICE + userdata_bytes.get(&s.s.name).copied().unwrap_or(0);
        if res + r > cfn::MAX_RESOURCES - HEADROOM || outs + o > cfn::MAX_OUTPUTS - HEADROOM || bytes + b > RELEASE_BYTES_BUDGET {
            part += 1;
            res = RELEASE_SHARED.0;
            outs = RELEASE_SHARED.1;
            bytes = 0;
        }
        res += r;
        outs += o;
        bytes += b;
        s.part = part;
    }
    part
}
