//! Traffic strategies: how weights move from where they are to where they should be.
//! `all-at-once` in one step; `canary:PERCENT:WAIT` sends PERCENT to the new distribution,
//! watches it for WAIT, then the rest; `linear:STEP:WAIT` moves STEP percent at a time with
//! WAIT between steps. Between steps the releases gaining traffic are watched: one unhealthy
//! target aborts the shift and puts the weights back (`ops::Ops::shift`).

use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    AllAtOnce,
    Canary { percent: u32, wait: Duration },
    Linear { step: u32, wait: Duration },
}

/// `90`, `90s`, `5m`, `1h`, `1.5s`, `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (90, 90s, 500ms, 5m, 1h)");
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{s:?}: a wait between 0 and 24 hours"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Strategy, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let pct = |p: &str, what: &str| -> Result<u32, String> {
            p.trim_end_matches('%')
                .parse::<u32>()
                .ok()
                .filter(|v| (1..=99).contains(v))
                .ok_or_else(|| format!("{what} {p:?} must be a whole percent from 1 to 99"))
        };
        match parts.as_slice() {
            ["all-at-once"] => Ok(Strategy::AllAtOnce),
            ["canary", p, w] => Ok(Strategy::Canary { percent: pct(p, "canary percent")?, wait: parse_duration(w)? }),
            ["linear", p, w] => Ok(Strategy::Linear { step: pct(p, "linear step")?, wait: parse_duration(w)? }),
            _ => Err(format!("strategy {s:?}: use all-at-once, canary:PERCENT:WAIT (canary:10:5m) or linear:STEP:WAIT (linear:25:2m)")),
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Strategy::AllAtOnce => f.write_str("all-at-once"),
            Strategy::Canary { percent, wait } => write!(f, "canary:{percent}:{}s", wait.as_secs_f64()),
            Strategy::Linear { step, wait } => write!(f, "linear:{step}:{}s", wait.as_secs_f64()),
        }
    }
}

impl Strategy {
    /// How long to watch after each step but the last.
    pub fn wait(&self) -> Duration {
        match self {
            Strategy::AllAtOnce => Duration::ZERO,
            Strategy::Canary { wait, .. } | Strategy::Linear { wait, .. } => *wait,
        }
    }

    /// Fractions (in percent) of the way from `before` to `target` after each step.
    pub fn fractions(&self) -> Vec<u32> {
        match self {
            Strategy::AllAtOnce => vec![100],
            Strategy::Canary { percent, .. } => vec![*percent, 100],
            Strategy::Linear { step, .. } => {
                let mut v: Vec<u32> = (1..).map(|k| k * step).take_while(|p| *p < 100).collect();
                v.push(100);
                v
            }
        }
    }

    /// The weights after each step, every release in `before` or `target` named; the last step
    /// is `target` itself. Weights are shares of 100 (the load balancer's weights are relative).
    pub fn steps(&self, before: &BTreeMap<u32, u32>, target: &BTreeMap<u32, u32>) -> Vec<BTreeMap<u32, u32>> {
        let share = |m: &BTreeMap<u32, u32>, n: u32| -> f64 {
            let sum: u32 = m.values().sum();
            if sum == 0 {
                0.0
            } else {
                f64::from(m.get(&n).copied().unwrap_or(0)) * 100.0 / f64::from(sum)
            }
        };
        let releases: Vec<u32> = before.keys().chain(target.keys()).copied().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        self.fractions()
            .into_iter()
            .map(|p| {
                if p == 100 {
                    return releases.iter().map(|n| (*n, target.get(n).copied().unwrap_or(0))).collect();
                }
                let f = f64::from(p) / 100.0;
                releases.iter().map(|n| (*n, ((1.0 - f) * share(before, *n) + f * share(target, *n)).round() as u32)).collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_parse() {
        assert_eq!("all-at-once".parse(), Ok(Strategy::AllAtOnce));
        assert_eq!("canary:10:5m".parse(), Ok(Strategy::Canary { percent: 10, wait: Duration::from_secs(300) }));
        assert_eq!("linear:25:90".parse(), Ok(Strategy::Linear { step: 25, wait: Duration::from_secs(90) }));
        assert_eq!("canary:5%:500ms".parse(), Ok(Strategy::Canary { percent: 5, wait: Duration::from_millis(500) }));
        for bad in ["canary", "canary:0:1m", "canary:100:1m", "linear:20:soon", "blue-green", "linear:20:2d", "canary:10:-1s"] {
            assert!(bad.parse::<Strategy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn steps_move_from_before_to_target() {
        let before = BTreeMap::from([(1, 100), (2, 0)]);
        let target = BTreeMap::from([(2, 100)]);
        let canary = Strategy::Canary { percent: 10, wait: Duration::ZERO }.steps(&before, &target);
        assert_eq!(canary, vec![BTreeMap::from([(1, 90), (2, 10)]), BTreeMap::from([(1, 0), (2, 100)])]);
        let linear = Strategy::Linear { step: 40, wait: Duration::ZERO }.steps(&before, &target);
        assert_eq!(linear, vec![BTreeMap::from([(1, 60), (2, 40)]), BTreeMap::from([(1, 20), (2, 80)]), BTreeMap::from([(1, 0), (2, 100)])]);
        // From a split: shares, not raw weights, are interpolated.
        let split = Strategy::Canary { percent: 50, wait: Duration::ZERO }.steps(&BTreeMap::from([(1, 1), (2, 3)]), &BTreeMap::from([(3, 100)]));
        assert_eq!(split[0], BTreeMap::from([(1, 13), (2, 38), (3, 50)]));
        assert_eq!(Strategy::AllAtOnce.steps(&before, &target), vec![BTreeMap::from([(1, 0), (2, 100)])]);
    }
}
