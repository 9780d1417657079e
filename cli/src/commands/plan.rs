//! `gilliam plan`: what a deploy of this release would do; changes nothing.

use super::common::*;
use crate::failure::Failure;
use gilliam_materializer::bundle::Bundle;
use gilliam_materializer::{Converger, Options};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub files: ReleaseFiles,
}

pub async fn exec(s: &Session<'_>, a: &Args) -> Result<(), Failure> {
    let Args { files } = a;
    let release = files.release.as_ref().ok_or_else(|| Failure::usage("plan needs --release FILE (gilliam build writes one)"))?;
    compile_into(s.stage, &files.app, release, &files.out)?;
    let bundle = Bundle::load(&files.out).map_err(|e| Failure { code: 1, message: e.0 })?;
    let plan = Converger::new(s.aws, &bundle, Options::default(), s.say).plan().await.map_err(Failure::from)?;
    if s.json {
        print_json(&plan);
    } else {
        print!("{}", plan.render());
    }
    Ok(())
}
