//! `gilliam watch`: watch the recorded bake window (or open one with --for) from any machine.

use super::common::*;
use crate::failure::Failure;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Open a bake window of this long over the newest release with traffic (a breach
    /// sends all traffic to the release before it).
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub for_: Option<Duration>,
    /// Seconds between health polls.
    #[arg(long, default_value = "5")]
    pub poll: f64,
}

pub async fn exec(s: &Session<'_>, a: &Args) -> Result<(), Failure> {
    let Args { for_, poll } = a;
    let poll = Duration::from_secs_f64(poll.max(0.05));
    if let Some(d) = for_ {
        if s.ops.state().await.map_err(Failure::from)?.bake.is_some() {
            return Err(Failure::usage("a bake window is already recorded: run `gilliam watch` without --for to watch it"));
        }
        s.ops.begin_bake_over_serving(*d).await.map_err(Failure::from)?;
    }
    let outcome = s.ops.watch(poll, s.lock_opts).await.map_err(Failure::from)?;
    println!("{}", crate::judging::describe(&outcome));
    Ok(())
}
