//! `gilliam warm`: a cold release routed again at weight 0, back to size and healthy; traffic untouched.

use super::common::*;
use crate::failure::Failure;
use gilliam_materializer::lock::{self};

#[derive(Debug, clap::Args)]
pub struct Args {
    pub release: u32,
    #[command(flatten)]
    pub warming: Warming,
}

pub async fn exec(s: &Session<'_>, a: &Args) -> Result<(), Failure> {
    let Args { release, warming } = a;
    let w = lock::with_lock(s.aws, s.formation, &format!("warm release {release}"), s.lock_opts, s.say, s.ops.warm(*release, &warming.options()))
        .await
        .map_err(Failure::from)?;
    println!("release {} warmed in {} ({} instance(s) in service, targets healthy, weight 0)", w.release, w.took(), w.instances);
    Ok(())
}
