//! The weights of ELBv2 forwards: the maximum, and the rule every weighted listener rule
//! follows, both in the templates the compiler renders and in the operator's ELBv2 writes.

/// Largest ELBv2 forward weight.
pub const MAX_WEIGHT: u32 = 999;

/// The weights one listener rule gives the releases that have its service, from the
/// formation's weights (`(release, weight)` pairs): each release's own weight, except that when
/// none of them has any (a service new in a release without traffic yet), the newest takes the
/// rule with weight 1: nothing else can answer it, and a target group in no weighted rule is
/// never health-checked by ELBv2. The one definition both the rendered templates and the
/// operator's ELBv2 writes follow; `None` when there is no release.
pub fn rule_weights(releases: &[(u32, u32)]) -> Option<Vec<u32>> {
    let mut w: Vec<u32> = releases.iter().map(|(_, w)| *w).collect();
    if w.iter().all(|w| *w == 0) {
        let newest = releases.iter().enumerate().max_by_key(|(_, (n, _))| *n)?.0;
        w[newest] = 1;
    }
    Some(w)
}
