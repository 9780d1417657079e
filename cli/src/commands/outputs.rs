//! `gilliam outputs`: the published outputs (the latest manifest).

use super::common::*;
use crate::failure::Failure;

pub async fn exec(s: &Session<'_>) -> Result<(), Failure> {
    let (_, bytes) = s.ops.outputs().await.map_err(Failure::from)?;
    print!("{}", String::from_utf8_lossy(&bytes));
    Ok(())
}
