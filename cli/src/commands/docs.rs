//! `gilliam completions` and `gilliam man`: generated from the three binaries' clap definitions.

use crate::failure::Failure;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
    /// Which binary the completions are for.
    #[arg(long = "for", default_value = "gilliam", value_parser = ["gilliam", "gilliam-materialize", "gilliam-compile"])]
    pub for_: String,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    pub dir: PathBuf,
}

/// The clap definition of one of the three binaries (`gilliam`'s is handed in: it is the
/// dispatcher's).
fn definition(binary: &str, gilliam: &dyn Fn() -> clap::Command) -> clap::Command {
    use clap::CommandFactory;
    match binary {
        "gilliam-materialize" => crate::materialize_cmd::Args::command(),
        "gilliam-compile" => crate::compile_cmd::Args::command(),
        _ => gilliam(),
    }
}

fn io(path: &Path, e: std::io::Error) -> Failure {
    Failure::usage(format!("{}: {e}", path.display()))
}

/// `gilliam completions SHELL [--for BINARY]`, on stdout.
pub fn completions(a: &CompletionsArgs, gilliam: &dyn Fn() -> clap::Command) -> Result<(), Failure> {
    clap_complete::generate(a.shell, &mut definition(&a.for_, gilliam), a.for_.as_str(), &mut std::io::stdout());
    Ok(())
}

/// `gilliam man DIR`: a page per binary and per gilliam verb (`gilliam-deploy.1`).
pub fn man(a: &ManArgs, gilliam: &dyn Fn() -> clap::Command) -> Result<(), Failure> {
    let dir = &a.dir;
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut pages = Vec::new();
    for binary in ["gilliam", "gilliam-materialize", "gilliam-compile"] {
        let cmd = definition(binary, gilliam);
        if binary == "gilliam" {
            for sub in cmd.get_subcommands() {
                pages.push((format!("gilliam-{}", sub.get_name()), sub.clone().name(format!("gilliam-{}", sub.get_name()))));
            }
        }
        pages.push((binary.to_string(), cmd));
    }
    for (name, cmd) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut page).map_err(|e| io(&path, e))?;
        std::fs::write(&path, page).map_err(|e| io(&path, e))?;
        println!("{}", path.display());
    }
    Ok(())
}
