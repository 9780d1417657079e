//! `gilliam traffic`: set the weights of releases, all at once or by a judged strategy, under the lock; then bake.

use super::common::*;
use crate::failure::Failure;
use crate::judging::Judging;
use gilliam_materializer::lock::{self};
use gilliam_materializer::strategy::Strategy;
use gilliam_materializer::Options;
use gilliam_materializer::ShiftOptions;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(required = true, value_name = "RELEASE[=WEIGHT]")]
    pub weights: Vec<String>,
    /// all-at-once, canary:PERCENT:WAIT or linear:STEP:WAIT (health-watched, aborts on failure).
    #[arg(long, default_value = "all-at-once", value_parser = parse_strategy)]
    pub strategy: Strategy,
    /// Seconds between health polls during a gradual shift.
    #[arg(long, default_value = "5")]
    pub poll: f64,
    #[command(flatten)]
    pub judging: Judging,
}

pub async fn exec(s: &Session<'_>, a: &Args) -> Result<(), Failure> {
    let Args { weights, strategy, poll, judging } = a;
    let target = parse_weights(weights)?;
    let w: Vec<String> = target.iter().map(|(n, w)| format!("{n}={w}")).collect();
    let poll = Duration::from_secs_f64(poll.max(0.05));
    let shift =
        ShiftOptions { strategy: *strategy, poll, health_timeout: Options::default().health_timeout, judge: !judging.no_analysis, hooks: !judging.no_hooks };
    let work = async {
        let (m, _) = s.ops.outputs().await?;
        s.ops.shift_on(&m, &target, &shift).await
    };
    let c = lock::with_lock(s.aws, s.formation, &format!("traffic {}", w.join(" ")), s.lock_opts, s.say, work).await.map_err(Failure::from)?;
    let a: Vec<String> = c.after.iter().map(|(n, w)| format!("{n}={w}")).collect();
    println!("traffic {} ({} rule{} changed)", a.join(" "), c.writes, if c.writes == 1 { "" } else { "s" });
    // The release baked: the newest one that gained traffic.
    let gained = c.after.iter().filter(|(n, w)| **w > c.before.get(n).copied().unwrap_or(0)).map(|(n, _)| *n).max();
    if let Some(release) = gained {
        if let Some(line) = crate::judging::bake_after(&s.ops, judging, release, &c.before, poll, s.lock_opts).await.map_err(Failure::from)? {
            println!("{line}");
        }
    } else if judging.bake.is_some() {
        println!("no release gained traffic: nothing to bake");
    }
    Ok(())
}

/// `12` is all traffic to 12; `11=90 12=10` a split.
pub fn parse_weights(args: &[String]) -> Result<BTreeMap<u32, u32>, Failure> {
    let mut out = BTreeMap::new();
    for a in args {
        let (n, w) = match a.split_once('=') {
            Some((n, w)) => (n, w.parse::<u32>().map_err(|_| Failure::usage(format!("bad weight in {a:?}: write RELEASE=WEIGHT with a whole number")))?),
            None if args.len() == 1 => (a.as_str(), 100),
            None => return Err(Failure::usage(format!("{a:?}: with several releases give each a weight, e.g. 11=90 12=10"))),
        };
        let n: u32 = n.parse().map_err(|_| Failure::usage(format!("bad release number in {a:?}")))?;
        if out.insert(n, w).is_some() {
            return Err(Failure::usage(format!("release {n} named twice")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn weights_parse() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_weights(&s(&["12"])).expect("ok"), BTreeMap::from([(12, 100)]));
        assert_eq!(parse_weights(&s(&["11=90", "12=10"])).expect("ok"), BTreeMap::from([(11, 90), (12, 10)]));
        assert!(parse_weights(&s(&["11", "12"])).is_err());
        assert!(parse_weights(&s(&["x=1"])).is_err());
        assert!(parse_weights(&s(&["1=1", "1=2"])).is_err());
    }
}
