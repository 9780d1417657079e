//! The account's quotas, before the first write: what the formation holds at its peak (the
//! manifest's footprint) against what the account allows in the region (ELBv2's and
//! CloudFormation's DescribeAccountLimits) less what other stacks and formations already use
//! there. Target groups, load balancers and stacks are shared by everything in the account, so
//! a formation that fits its own stage file can still not fit the account.

use crate::aws::Aws;
use crate::error::Error;
use crate::preflight::Findings;
use crate::retry::retry;
use gilliam_compiler::manifest::{Footprint, Manifest, StackRole};
use std::collections::{BTreeMap, BTreeSet};

/// What the account allows and holds in the region, as read; `None` where it could not be read
/// (`unread` says why).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    /// ELBv2's quotas by name (`target-groups`, `application-load-balancers`, ...).
    pub elb_limits: Option<BTreeMap<String, u32>>,
    /// CloudFormation's `StackLimit`.
    pub stack_limit: Option<u32>,
    /// (in the region, this formation's own) for each resource.
    pub target_groups: Option<(u32, u32)>,
    pub load_balancers: Option<(u32, u32)>,
    pub stacks: Option<(u32, u32)>,
    pub unread: Vec<String>,
}

/// `r`'s value, or `None` with why noted in `unread`.
fn soft<T>(unread: &mut Vec<String>, what: &str, r: Result<T, Error>) -> Option<T> {
    r.map_err(|e| unread.push(format!("{what} ({e})"))).ok()
}

/// Reads the account's quotas and usage. A read AWS refuses (no permission, not offered) is
/// noted in `unread`, not an error: the check is then left to AWS.
pub async fn read<A: Aws>(aws: &A, m: &Manifest) -> Result<Account, Error> {
    let f = &m.formation.name;
    let mut a = Account::default();
    let mut unread = Vec::new();
    a.elb_limits = soft(&mut unread, "ELBv2's account limits", retry("read ELBv2's account limits", || aws.elb_limits()).await);
    a.stack_limit = soft(&mut unread, "CloudFormation's account limits", retry("read CloudFormation's account limits", || aws.stack_limit()).await).flatten();
    let own_groups = crate::observe::release_target_groups(aws, f).await?;
    if let Some(all) = soft(&mut unread, "the region's target groups", retry("describe target groups", || aws.target_group_arns()).await) {
        a.target_groups = Some((all.len() as u32, all.iter().filter(|t| own_groups.contains_key(*t)).count() as u32));
    }
    if let Some(all) = soft(&mut unread, "the region's load balancers", retry("describe load balancers", || aws.load_balancer_arns()).await) {
        let mut own: BTreeSet<String> = BTreeSet::new();
        for s in m.stacks.iter().filter(|s| s.role == StackRole::Routing) {
            if retry("describe stack", || aws.describe_stack(&s.name)).await?.is_some() {
                let res = retry("list stack resources", || aws.stack_resources(&s.name)).await?;
                own.extend(res.into_iter().filter(|(_, _, ty)| ty == "AWS::ElasticLoadBalancingV2::LoadBalancer").map(|(_, id, _)| id));
            }
        }
        a.load_balancers = Some((all.len() as u32, all.iter().filter(|l| own.contains(*l)).count() as u32));
    }
    if let Some(all) = soft(&mut unread, "the region's stacks", retry("list stacks", || aws.stack_names()).await) {
        let own = all.iter().filter(|s| gilliam_compiler::names::is_formation_stack(f, s)).count() as u32;
        a.stacks = Some((all.len() as u32, own));
    }
    a.unread = unread;
    Ok(a)
}

/// What does not fit: for each shared quota, what others hold plus this formation's peak
/// against the account's limit (refused), and what could not be checked (said).
pub fn findings(m: &Manifest, peak: &Footprint, a: &Account) -> Findings {
    let mut out = Findings::default();
    let region = &m.formation.region;
    let releases = format!("keep_releases {} + the serving and the deployed release + cold_releases {}", m.formation.keep_releases, m.formation.cold_releases);
    let elb = |name: &str| a.elb_limits.as_ref().and_then(|l| l.get(name).copied());
    let checks = [
        (
            "target groups",
            peak.target_groups,
            a.target_groups,
            elb("target-groups"),
            "ELBv2 `target-groups`",
            "Elastic Load Balancing, \"Target groups per Region\"",
        ),
        (
            "load balancers",
            peak.load_balancers,
            a.load_balancers,
            elb("application-load-balancers"),
            "ELBv2 `application-load-balancers`",
            "Elastic Load Balancing, \"Application Load Balancers per Region\"",
        ),
        ("stacks", peak.stacks, a.stacks, a.stack_limit, "CloudFormation `StackLimit`", "CloudFormation, \"Stack count\""),
    ];
    for (what, need, used, limit, quota, where_) in checks {
        let (Some((total, own)), Some(limit)) = (used, limit) else { continue };
        let others = total.saturating_sub(own);
        if others + need > limit {
            out.problems.push(format!(
                "{what}: {others} in {region} belong to other stacks and formations, and this formation holds up to {need} at its peak ({releases}): {} in all, over the account's quota of {limit} ({quota}): raise the quota in Service Quotas ({where_}) and set it under `quotas:` in the stage file, or lower `keep_releases` / `cold_releases`",
                others + need
            ));
        }
    }
    if let Some(limit) = elb("rules-per-application-load-balancer") {
        if limit < peak.rules_per_load_balancer {
            out.problems.push(format!(
                "rules per load balancer: the stage file's `quotas.rules_per_load_balancer` is {}, but the account allows {limit} (ELBv2 `rules-per-application-load-balancer`): set it to {limit}, or raise the quota first",
                peak.rules_per_load_balancer
            ));
        }
    }
    for why in &a.unread {
        out.warnings.push(format!("account quotas not checked: could not read {why}"));
    }
    out
}

/// Reads the account and checks the manifest's footprint against it; nothing to check for a
/// manifest without a footprint (compiled by an older gilliam).
pub async fn check<A: Aws>(aws: &A, m: &Manifest) -> Result<Findings, Error> {
    let Some(peak) = m.formation.footprint else { return Ok(Findings::default()) };
    Ok(findings(m, &peak, &read(aws, m).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        let text = include_str!("../../tests/fixtures/full/snapshots/manifest_json.snap");
        let json = &text[text.find("\n{").expect("manifest") + 1..];
        serde_json::from_str(json).expect("manifest")
    }

    fn account(tgs: (u32, u32)) -> Account {
        Account {
            elb_limits: Some(BTreeMap::from([
                ("target-groups".into(), 3000),
                ("application-load-balancers".into(), 50),
                ("rules-per-application-load-balancer".into(), 100),
            ])),
            stack_limit: Some(2000),
            target_groups: Some(tgs),
            load_balancers: Some((10, 2)),
            stacks: Some((100, 5)),
            unread: vec![],
        }
    }

    #[test]
    fn others_usage_plus_the_peak_must_fit_the_accounts_quota() {
        let m = manifest();
        let peak = Footprint { target_groups: 30, load_balancers: 2, stacks: 8, rules_per_load_balancer: 100 };
        // 2,970 of others + 30 = 3,000: fits. This formation's own 20 are part of its peak.
        assert_eq!(findings(&m, &peak, &account((2990, 20))), Findings::default());
        // 2,971 of others + 30: one over.
        let f = findings(&m, &peak, &account((2991, 20)));
        assert_eq!(f.problems.len(), 1, "{f:?}");
        let p = &f.problems[0];
        assert!(
            p.starts_with("target groups: 2971 in eu-west-1 belong to other stacks and formations") && p.contains("3001 in all") && p.contains("quota of 3000"),
            "{p}"
        );
        assert!(p.contains("Target groups per Region") && p.contains("keep_releases"), "{p}");
        // A stage quota above what the account allows.
        let f = findings(&m, &Footprint { rules_per_load_balancer: 200, ..peak }, &account((0, 0)));
        assert!(f.problems[0].contains("`quotas.rules_per_load_balancer` is 200, but the account allows 100"), "{f:?}");
        // What could not be read is said, not refused.
        let unread = Account { unread: vec!["ELBv2's account limits (access denied)".into()], elb_limits: None, ..account((2991, 20)) };
        let f = findings(&m, &peak, &unread);
        assert!(f.problems.is_empty() && f.warnings[0].contains("could not read ELBv2's account limits"), "{f:?}");
    }
}
