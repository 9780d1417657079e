//! `gilliam unlock`: break the formation's deploy lock, after confirmation.

use super::common::*;
use crate::failure::Failure;
use gilliam_materializer::lock::{self};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub yes: bool,
}

pub async fn exec(s: &Session<'_>, a: &Args) -> Result<(), Failure> {
    let Args { yes } = a;
    let Some((held, _)) = lock::read(s.aws, s.formation).await.map_err(Failure::from)? else {
        println!("formation {} has no deploy lock", s.formation.name);
        return Ok(());
    };
    if held.released {
        println!("formation {}'s deploy lock is free (last: {})", s.formation.name, held.describe());
        return Ok(());
    }
    println!("formation {} is locked by {}", s.formation.name, held.describe());
    if !*yes {
        use std::io::{BufRead, IsTerminal, Write};
        if !std::io::stdin().is_terminal() {
            return Err(Failure::usage("breaking a lock needs confirmation: run it on a terminal, or pass --yes"));
        }
        print!("breaking it lets another deploy start while that one may still run; type the formation's name to break it: ");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if answer.trim() != s.formation.name {
            return Err(Failure { code: 4, message: "not confirmed; the lock is left as it was".into() });
        }
    }
    lock::break_lock(s.aws, s.formation).await.map_err(Failure::from)?;
    println!("lock broken; history keeps what was done");
    let _ = gilliam_materializer::state::update(s.aws, &s.formation.bucket, &s.formation.prefix, &s.formation.name, |st| {
        st.history.push(gilliam_materializer::state::event(format!("unlock (broke the lock of {})", held.describe())));
    })
    .await;
    Ok(())
}
