//! `gilliam rollback`: all traffic back to the previous release, warmed first when cold.

use super::common::*;
use crate::failure::Failure;
use gilliam_materializer::lock::{self};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub warming: Warming,
}

pub async fn exec(s: &Session<'_>, a: &Args) -> Result<(), Failure> {
    let Args { warming } = a;
    let r = lock::with_lock(s.aws, s.formation, "rollback", s.lock_opts, s.say, s.ops.rollback(&warming.options())).await.map_err(Failure::from)?;
    if let Some(w) = &r.warmed {
        println!("release {} was cold: warmed in {} ({} instance(s))", w.release, w.took(), w.instances);
    }
    let c = &r.change;
    println!("rolled back to release {} ({} rule{} changed)", r.release, c.writes, if c.writes == 1 { "" } else { "s" });
    Ok(())
}
