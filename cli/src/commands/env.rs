//! `gilliam env`: a release's config (secrets masked); `env set` / `env unset` make a config release from the latest one's inputs and deploy it.

use super::common::*;
use super::deploy::deploy_files;
use crate::failure::Failure;
use crate::judging::Judging;
use gilliam_materializer::lock::LockOptions;
use gilliam_materializer::retry::retry;
use gilliam_materializer::strategy::Strategy;
use gilliam_materializer::Options;
use gilliam_materializer::{Formation, Ops};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub change: Option<EnvChange>,
    /// Show this release's config instead of the latest one's.
    #[arg(short = 'r', long = "release")]
    pub release: Option<u32>,
}

pub async fn exec(s: &Session<'_>, a: &Args) -> Result<(), Failure> {
    let release = &a.release;
    match &a.change {
        None => {
            let n = match release {
                Some(n) => *n,
                None => s.ops.outputs().await.map_err(Failure::from)?.0.release.number,
            };
            let (rel, _) = published_inputs(s.aws, s.formation, n).await?;
            let config = rel["config"].as_object().cloned().unwrap_or_default();
            if s.json {
                let shown: serde_json::Map<String, serde_json::Value> = config
                    .iter()
                    .map(|(k, v)| (k.clone(), if v.is_string() { v.clone() } else { serde_json::json!({ "secret": v["secret"], "value": "********" }) }))
                    .collect();
                print_json(&serde_json::json!({ "release": n, "config": shown }));
            } else {
                println!("release {n}:");
                for (k, v) in &config {
                    match v.as_str() {
                        Some(v) => println!("  {k}={v}"),
                        None => println!("  {k}=******** (secret, in {})", v["secret"].as_str().unwrap_or("?")),
                    }
                }
            }
        }
        Some(change) => {
            let (set, secret, unset, strategy, poll) = match change {
                EnvChange::Set { pairs, secret, strategy, poll } => {
                    let mut set = BTreeMap::new();
                    for p in pairs {
                        let (k, v) = p.split_once('=').ok_or_else(|| Failure::usage(format!("{p:?}: write KEY=VALUE")))?;
                        set.insert(k.to_string(), v.to_string());
                    }
                    (set, *secret, Vec::new(), *strategy, *poll)
                }
                EnvChange::Unset { keys, strategy, poll } => (BTreeMap::new(), false, keys.clone(), *strategy, *poll),
            };
            let opts = Options { poll: Duration::from_secs_f64(poll.max(0.05)), strategy, ..Options::default() };
            config_release(s.aws, s.formation, s.stage, &set, secret, &unset, opts, s.lock_opts, s.say).await?;
        }
    }
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum EnvChange {
    /// Set config: `env set KEY=VALUE ...`; with --secret the values are kept in Secrets
    /// Manager and only their secret's name is in the release.
    Set {
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
        #[arg(long)]
        secret: bool,
        #[arg(long, default_value = "all-at-once", value_parser = parse_strategy)]
        strategy: Strategy,
        #[arg(long, default_value = "5")]
        poll: f64,
    },
    /// Remove config: `env unset KEY ...`.
    Unset {
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
        #[arg(long, default_value = "all-at-once", value_parser = parse_strategy)]
        strategy: Strategy,
        #[arg(long, default_value = "5")]
        poll: f64,
    },
}

/// The published inputs of a release: (release metadata, gilliam.yml).
pub async fn published_inputs<A: gilliam_materializer::aws::Aws>(aws: &A, f: &Formation, release: u32) -> Result<(serde_json::Value, String), Failure> {
    let get = |name: &'static str| {
        let key = gilliam_contract::keys::release_input(&f.prefix, release, name);
        async move {
            let o = retry(&format!("read s3://{}/{key}", f.bucket), || aws.get_object(&f.bucket, &key)).await.map_err(Failure::from)?;
            o.map(|o| o.body).ok_or_else(|| Failure { code: 4, message: format!("s3://{}/{key} is missing: release {release} was not published", f.bucket) })
        }
    };
    let rel: serde_json::Value = serde_json::from_slice(&get("release.json").await?)
        .map_err(|e| Failure { code: 4, message: format!("release {release}'s published metadata is not JSON: {e}") })?;
    let app = String::from_utf8(get("gilliam.yml").await?)
        .map_err(|_| Failure { code: 4, message: format!("release {release}'s published gilliam.yml is not UTF-8") })?;
    Ok((rel, app))
}

/// `gilliam env set|unset`: a new release with the latest one's artifact, image and
/// services, and the changed config (secret values in a secret of the new release), deployed.
#[allow(clippy::too_many_arguments)]
async fn config_release<A: gilliam_materializer::aws::Aws>(
    aws: &A,
    formation: &Formation,
    stage: &Path,
    set: &BTreeMap<String, String>,
    secret: bool,
    unset: &[String],
    opts: Options,
    lock_opts: LockOptions,
    say: &(dyn Fn(&str) + Sync),
) -> Result<(), Failure> {
    let ops = Ops::new(aws, formation.clone(), say);
    let (m, _) = ops.outputs().await.map_err(Failure::from)?;
    let latest = m.release.number;
    let (mut rel, app) = published_inputs(aws, formation, latest).await?;
    let mut config = rel["config"].as_object().cloned().unwrap_or_default();
    for k in unset {
        if config.remove(k).is_none() {
            return Err(Failure { code: 1, message: format!("{k} is not set in release {latest}: nothing to unset") });
        }
    }
    for k in set.keys() {
        if !k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Failure::usage(format!("bad config name {k:?}: letters, digits and _, not starting with a digit")));
        }
    }
    let what: Vec<String> = set.keys().map(|k| format!("{k}{}", if secret { " (secret)" } else { "" })).chain(unset.iter().map(|k| format!("-{k}"))).collect();
    let number = gilliam_materializer::state::allocate_release(aws, &formation.bucket, &formation.prefix, &formation.name, &format!("env {}", what.join(" ")))
        .await
        .map_err(Failure::from)?;
    if secret && !set.is_empty() {
        let name = format!("{}r{number}", gilliam_compiler::release::config_secret_prefix(&formation.name));
        let body = serde_json::to_string(set).map_err(|e| Failure { code: 3, message: e.to_string() })?;
        retry(&format!("store secret {name}"), || aws.put_secret(&name, &body, &formation.name)).await.map_err(Failure::from)?;
        for k in set.keys() {
            config.insert(k.clone(), serde_json::json!({ "secret": name }));
        }
    } else {
        for (k, v) in set {
            config.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
    }
    rel["number"] = serde_json::json!(number);
    rel["created"] = serde_json::json!(gilliam_materializer::clock::now());
    rel["config"] = serde_json::Value::Object(config);
    let dir = PathBuf::from(".gilliam/env");
    std::fs::create_dir_all(&dir).map_err(|e| Failure { code: 1, message: format!("{}: {e}", dir.display()) })?;
    let app_path = dir.join("gilliam.yml");
    std::fs::write(&app_path, app).map_err(|e| Failure { code: 1, message: format!("{}: {e}", app_path.display()) })?;
    let release_path = dir.join("release.json");
    crate::build_cmd::write_release(&release_path, &rel).map_err(|m| Failure { code: 1, message: m })?;
    println!("release {number}: release {latest}'s artifact with config {}", what.join(" "));
    deploy_files(aws, formation, stage, &app_path, &release_path, &dir.join("out"), opts, &Judging::default(), lock_opts, say).await
}
