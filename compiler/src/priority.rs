//! Listener rule priorities that survive a change between releases on real ELBv2.
//!
//! ELBv2 wants every rule of a listener to have its own priority, and CloudFormation updates
//! the rules of a stack in parallel (creations and modifications first, deletions last, and
//! the reverse on rollback). Renumbering rules by position makes a new rule take a number an
//! old one still holds, and the update fails with `PriorityInUse`, then its rollback too.
//!
//! The rule kept here: every rule that is created or whose priority changes gets a number no
//! deployed rule of its listener holds. Then no order of the parallel operations can collide,
//! and neither can the rollback (the numbers it goes back to are free again by the same rule).
//! Unchanged rules keep their numbers where the evaluation order allows it; new ones go in the
//! gaps between them (numbers are handed out [`STEP`] apart to leave such gaps); only when no
//! gap is left is the whole listener renumbered, onto numbers that are free.

use std::collections::{BTreeMap, BTreeSet};

/// Distance between fresh priorities: room for nine later inserts between two rules.
pub const STEP: u32 = 10;
/// ELBv2's largest rule priority.
pub const MAX_PRIORITY: u32 = 50_000;

/// The listener rules of a deployed routing template: logical ID to (listener logical ID,
/// priority). Read from the template CloudFormation holds, which is what its next update
/// is compared against.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeployedRules(pub BTreeMap<String, (String, u32)>);

impl DeployedRules {
    /// Reads the listener rules out of a template body; anything unreadable is left out (a
    /// rule whose priority cannot be read cannot be kept, so it is treated as taken-over).
    pub fn from_template(body: &[u8]) -> Self {
        let mut out = BTreeMap::new();
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(body) else { return DeployedRules(out) };
        let Some(resources) = doc.get("Resources").and_then(|r| r.as_object()) else { return DeployedRules(out) };
        for (id, r) in resources {
            if r.get("Type").and_then(|t| t.as_str()) != Some("AWS::ElasticLoadBalancingV2::ListenerRule") {
                continue;
            }
            let props = &r["Properties"];
            let listener = props["ListenerArn"]["Ref"].as_str().unwrap_or_default().to_string();
            let priority = match &props["Priority"] {
                serde_json::Value::Number(n) => n.as_u64(),
                serde_json::Value::String(s) => s.parse().ok(),
                _ => None,
            };
            if let Some(p) = priority.and_then(|p| u32::try_from(p).ok()) {
                out.insert(id.clone(), (listener, p));
            }
        }
        DeployedRules(out)
    }

    /// The deployed priorities of one listener's rules.
    pub fn on(&self, listener: &str) -> BTreeMap<&str, u32> {
        self.0.iter().filter(|(_, (l, _))| l == listener).map(|(id, (_, p))| (id.as_str(), *p)).collect()
    }
}

/// Priorities for the rules `keys` of one listener. With `ordered`, they increase in the order
/// given (the order of evaluation); without, any order will do (rules whose conditions never
/// overlap). `deployed` holds the priorities the listener's rules have now. Every key whose
/// priority is new or changed gets a number no deployed rule holds.
pub fn allocate(keys: &[&str], deployed: &BTreeMap<&str, u32>, ordered: bool) -> Result<Vec<u32>, String> {
    let used: BTreeSet<u32> = deployed.values().copied().collect();
    let n = keys.len();
    if !ordered {
        let mut taken = used.clone();
        let mut out = Vec::with_capacity(n);
        let mut next = 0;
        for k in keys {
            if let Some(p) = deployed.get(k) {
                out.push(*p);
                continue;
            }
            // The lowest free multiple of STEP: unordered rules never need a gap.
            next += STEP;
            while taken.contains(&next) {
                next += STEP;
            }
            if next > MAX_PRIORITY {
                return renumber(n, &used);
            }
            taken.insert(next);
            out.push(next);
        }
        return Ok(out);
    }
    // Keep the longest run of deployed rules whose priorities already increase in this order.
    let present: Vec<(usize, u32)> = keys.iter().enumerate().filter_map(|(i, k)| deployed.get(k).map(|p| (i, *p))).collect();
    let kept = longest_increasing(&present);
    let mut out: Vec<Option<u32>> = vec![None; n];
    for &(i, p) in &kept {
        out[i] = Some(p);
    }
    let mut i = 0;
    while i < n {
        if out[i].is_some() {
            i += 1;
            continue;
        }
        let start = i;
        while i < n && out[i].is_none() {
            i += 1;
        }
        let lo = if start == 0 { 0 } else { out[start - 1].unwrap_or(0) };
        let hi = out.get(i).copied().flatten();
        let Some(fill) = between(lo, hi, i - start, &used) else { return renumber(n, &used) };
        for (j, p) in fill.into_iter().enumerate() {
            out[start + j] = Some(p);
        }
    }
    Ok(out.into_iter().map(|p| p.unwrap_or(0)).collect())
}

/// The next multiple-of-`STEP`-ish free number after `after`: `after + STEP`, moved up past
/// numbers that are taken.
fn free_after(after: u32, taken: &BTreeSet<u32>) -> Result<u32, String> {
    let mut p = after + STEP;
    while taken.contains(&p) {
        p += 1;
    }
    if p > MAX_PRIORITY {
        return Err(format!("no free listener rule priority up to ELBv2's maximum of {MAX_PRIORITY}"));
    }
    Ok(p)
}

/// `count` increasing free numbers strictly between `lo` and `hi` (none: up to the maximum),
/// spread out so that later inserts find room; `None` when there are not enough.
fn between(lo: u32, hi: Option<u32>, count: usize, used: &BTreeSet<u32>) -> Option<Vec<u32>> {
    match hi {
        None => {
            let mut out = Vec::with_capacity(count);
            let mut p = lo;
            for _ in 0..count {
                p = free_after(p, used).ok()?;
                out.push(p);
            }
            Some(out)
        }
        Some(hi) => {
            let free: Vec<u32> = (lo + 1..hi).filter(|p| !used.contains(p)).collect();
            if free.len() < count {
                return None;
            }
            Some((0..count).map(|j| free[(j + 1) * free.len() / (count + 1)]).collect())
        }
    }
}

/// Every rule on a fresh number, in order, skipping the numbers deployed rules hold.
fn renumber(n: usize, used: &BTreeSet<u32>) -> Result<Vec<u32>, String> {
    let mut out = Vec::with_capacity(n);
    let mut p = 0;
    for _ in 0..n {
        p = free_after(p, used)?;
        out.push(p);
    }
    Ok(out)
}

/// The longest subsequence of `(index, priority)` (in index order) whose priorities strictly
/// increase; ties go to the earliest rules. Quadratic: a listener holds at most a few hundred.
fn longest_increasing(items: &[(usize, u32)]) -> Vec<(usize, u32)> {
    let n = items.len();
    let mut len = vec![1usize; n];
    let mut prev = vec![usize::MAX; n];
    for i in 0..n {
        for j in 0..i {
            if items[j].1 < items[i].1 && len[j] + 1 > len[i] {
                len[i] = len[j] + 1;
                prev[i] = j;
            }
        }
    }
    let Some(mut at) = (0..n).max_by_key(|&i| (len[i], std::cmp::Reverse(i))) else { return Vec::new() };
    let mut out = Vec::with_capacity(len[at]);
    loop {
        out.push(items[at]);
        if prev[at] == usize::MAX {
            break;
        }
        at = prev[at];
    }
    out.reverse();
    out
}

/// Why an update from `before` to `after` (logical ID to priority, one listener) would fail on
/// ELBv2 with its operations in any order, or `None` when it cannot: duplicates in `after`,
/// numbers out of range, or a created or changed rule taking a number a deployed rule holds.
pub fn transition_conflict(before: &BTreeMap<&str, u32>, after: &BTreeMap<&str, u32>) -> Option<String> {
    let mut seen: BTreeMap<u32, &str> = BTreeMap::new();
    for (id, p) in after {
        if !(1..=MAX_PRIORITY).contains(p) {
            return Some(format!("rule {id}: priority {p} is outside 1..{MAX_PRIORITY}"));
        }
        if let Some(other) = seen.insert(*p, id) {
            return Some(format!("rules {other} and {id} both have priority {p}"));
        }
    }
    let held: BTreeMap<u32, &str> = before.iter().map(|(id, p)| (*p, *id)).collect();
    for (id, p) in after {
        if before.get(id) == Some(p) {
            continue;
        }
        if let Some(holder) = held.get(p) {
            return Some(format!("PriorityInUse: rule {id} takes priority {p}, which deployed rule {holder} still holds while the update runs"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map<'a>(pairs: &[(&'a str, u32)]) -> BTreeMap<&'a str, u32> {
        pairs.iter().copied().collect()
    }

    fn check(keys: &[&str], deployed: &BTreeMap<&str, u32>, ordered: bool) -> Vec<u32> {
        let got = allocate(keys, deployed, ordered).expect("allocates");
        if ordered {
            assert!(got.windows(2).all(|w| w[0] < w[1]), "increasing: {got:?}");
        }
        let after: BTreeMap<&str, u32> = keys.iter().copied().zip(got.iter().copied()).collect();
        assert_eq!(transition_conflict(deployed, &after), None, "{keys:?} {deployed:?} -> {got:?}");
        got
    }

    #[test]
    fn fresh_rules_are_spaced() {
        assert_eq!(check(&["a", "b", "c"], &BTreeMap::new(), true), vec![10, 20, 30]);
    }

    #[test]
    fn unchanged_rules_keep_their_numbers_and_new_ones_fill_gaps() {
        let d = map(&[("a", 10), ("b", 20), ("c", 30)]);
        assert_eq!(check(&["a", "x", "b", "c"], &d, true), vec![10, 15, 20, 30]);
        assert_eq!(check(&["x", "a", "b", "c"], &d, true), vec![5, 10, 20, 30]);
        assert_eq!(check(&["a", "b", "c", "x"], &d, true), vec![10, 20, 30, 40]);
        // A removed rule's number is not reused in the same update.
        assert_eq!(check(&["a", "x", "c"], &d, true), vec![10, 21, 30]);
        let d2 = map(&[("a", 10), ("b", 11), ("c", 30)]);
        assert_eq!(check(&["a", "x", "c"], &d2, true), vec![10, 21, 30]);
    }

    #[test]
    fn reordering_moves_as_few_rules_as_possible() {
        let d = map(&[("a", 10), ("b", 20), ("c", 30), ("d", 40)]);
        let got = check(&["b", "c", "d", "a"], &d, true);
        assert_eq!(&got[..3], &[20, 30, 40]);
        assert!(got[3] > 40);
    }

    #[test]
    fn no_gap_left_renumbers_onto_free_numbers() {
        let d = map(&[("a", 1), ("b", 2)]);
        let got = check(&["a", "x", "b"], &d, true);
        assert_eq!(got, vec![10, 20, 30]);
    }

    #[test]
    fn unordered_rules_keep_numbers_and_take_the_lowest_free() {
        let d = map(&[("a", 10), ("c", 20)]);
        assert_eq!(check(&["a", "b", "c"], &d, false), vec![10, 30, 20]);
    }

    #[test]
    fn the_conflict_check_catches_positional_renumbering() {
        // What positional numbering did: insert before "a" and shift everyone down by one.
        let d = map(&[("a", 1), ("b", 2)]);
        let after = map(&[("x", 1), ("a", 2), ("b", 3)]);
        let why = transition_conflict(&d, &after).expect("conflict");
        assert!(why.contains("PriorityInUse"), "{why}");
    }

    #[test]
    fn reads_priorities_from_a_template() {
        let body = br#"{"Resources": {
            "R1": {"Type": "AWS::ElasticLoadBalancingV2::ListenerRule", "Properties": {"ListenerArn": {"Ref": "L"}, "Priority": 10}},
            "R2": {"Type": "AWS::ElasticLoadBalancingV2::ListenerRule", "Properties": {"ListenerArn": {"Ref": "M"}, "Priority": "7"}},
            "X": {"Type": "AWS::EC2::SecurityGroup", "Properties": {}}}}"#;
        let d = DeployedRules::from_template(body);
        assert_eq!(d.on("L"), map(&[("R1", 10)]));
        assert_eq!(d.on("M"), map(&[("R2", 7)]));
        assert_eq!(DeployedRules::from_template(b"not json"), DeployedRules::default());
    }
}
