//! The flags that say how a traffic shift is judged (`--bake`, `--detach`, `--no-analysis`,
//! `--no-hooks`), shared by `gilliam deploy`, `gilliam traffic` and `gilliam-materialize`,
//! and the bake window that follows a shift.

use gilliam_materializer::lock::LockOptions;
use gilliam_materializer::ops::{Ops, WatchOutcome};
use gilliam_materializer::Error;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct Judging {
    /// After the last step, keep watching the new release for DURATION (30m, 2h): its health
    /// and, when configured, its metrics; a breach puts the earlier traffic back.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub bake: Option<Duration>,
    /// With --bake: record the bake window and return at once; `gilliam watch` (on any
    /// machine, any time before it ends) does the watching.
    #[arg(long, requires = "bake")]
    pub detach: bool,
    /// Judge the new release by its targets' health only, not by the metric analysis of
    /// gilliam.yml and the stage file.
    #[arg(long)]
    pub no_analysis: bool,
    /// Do not run the hooks of gilliam.yml and the stage file.
    #[arg(long)]
    pub no_hooks: bool,
    /// Do not run the release phase (`x-gilliam.release`) before traffic moves.
    #[arg(long)]
    pub no_release_phase: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    gilliam_materializer::strategy::parse_duration(s)
}

/// What the bake said, for the binary to print.
pub fn describe(outcome: &WatchOutcome) -> String {
    match outcome {
        WatchOutcome::Nothing => "no bake window to watch: `gilliam deploy --bake DURATION` or `gilliam watch --for DURATION` opens one".into(),
        WatchOutcome::Passed(what) => format!("bake passed: {what}"),
        WatchOutcome::Unjudged(why) => format!("bake ended NOT JUDGED (never counted as a pass): {why}"),
        WatchOutcome::Superseded(why) => format!("bake ended: {why}"),
    }
}

/// After a shift to `release` that started from `restore`: opens the bake window and, unless
/// detached, watches it to its end (a breach is `Error::Aborted`, traffic restored).
pub async fn bake_after<A: gilliam_materializer::aws::Aws>(
    ops: &Ops<'_, A>,
    judging: &Judging,
    release: u32,
    restore: &BTreeMap<u32, u32>,
    poll: Duration,
    lock: LockOptions,
) -> Result<Option<String>, Error> {
    let Some(d) = judging.bake else { return Ok(None) };
    let bake = ops.begin_bake(release, restore, d).await?;
    if judging.detach {
        return Ok(Some(format!(
            "bake window of release {release} recorded until {}s after the epoch; run `gilliam watch` to watch it (no one is watching yet)",
            bake.until
        )));
    }
    Ok(Some(describe(&ops.watch(poll, lock).await?)))
}
