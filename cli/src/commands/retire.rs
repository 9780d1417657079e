//! `gilliam retire`: remove a release that carries no traffic.

use super::common::*;
use crate::failure::Failure;
use gilliam_materializer::lock::{self};

#[derive(Debug, clap::Args)]
pub struct Args {
    pub release: u32,
}

pub async fn exec(s: &Session<'_>, a: &Args) -> Result<(), Failure> {
    let Args { release } = a;
    lock::with_lock(s.aws, s.formation, &format!("retire release {release}"), s.lock_opts, s.say, s.ops.retire(*release)).await.map_err(Failure::from)?;
    println!("retired release {release}");
    Ok(())
}
