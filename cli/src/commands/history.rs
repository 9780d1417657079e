//! `gilliam history`: who did what and when.

use super::common::*;
use crate::failure::Failure;

pub async fn exec(s: &Session<'_>) -> Result<(), Failure> {
    let h = s.ops.history().await.map_err(Failure::from)?;
    if s.json {
        print_json(&h);
    } else {
        for e in h {
            println!("{}  {:<12} {}", e.at, e.actor, e.action);
        }
    }
    Ok(())
}
