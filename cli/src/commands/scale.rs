//! `gilliam scale`: the desired count of one release's services.

use super::common::*;
use crate::failure::Failure;
use gilliam_materializer::lock::{self};
use std::collections::BTreeMap;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(short = 'r', long = "release", value_name = "RELEASE")]
    pub release: u32,
    #[arg(required = true, value_name = "SERVICE=COUNT")]
    pub counts: Vec<String>,
}

pub async fn exec(s: &Session<'_>, a: &Args) -> Result<(), Failure> {
    let Args { release, counts } = a;
    let counts = parse_counts(counts)?;
    lock::with_lock(s.aws, s.formation, &format!("scale release {release}"), s.lock_opts, s.say, s.ops.scale(*release, &counts))
        .await
        .map_err(Failure::from)?;
    let c: Vec<String> = counts.iter().map(|(s, n)| format!("{s}={n}")).collect();
    println!("release {release}: {}", c.join(" "));
    Ok(())
}

pub fn parse_counts(args: &[String]) -> Result<BTreeMap<String, u32>, Failure> {
    let mut out = BTreeMap::new();
    for a in args {
        let (s, n) = a.split_once('=').ok_or_else(|| Failure::usage(format!("{a:?}: write SERVICE=COUNT, e.g. api=10")))?;
        let n: u32 = n.parse().map_err(|_| Failure::usage(format!("bad count in {a:?}")))?;
        out.insert(s.to_string(), n);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_counts(&s(&["api=10", "worker=2"])).expect("ok").len(), 2);
        assert!(parse_counts(&s(&["api"])).is_err());
    }
}
