//! `gilliam promote`: a release of one stage deployed to the next, with the same artifact (by digest), gilliam.yml and config.

use super::common::*;
use super::deploy::deploy_files;
use super::env::published_inputs;
use crate::compile_cmd;
use crate::failure::Failure;
use crate::judging::Judging;
use gilliam_materializer::aws::prelude::*;
use gilliam_materializer::retry::retry;
use gilliam_materializer::sdk::{connect_from_env_as, Endpoint};
use gilliam_materializer::strategy::Strategy;
use gilliam_materializer::Options;
use gilliam_materializer::{Formation, Ops};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stage file of the formation the release comes from.
    #[arg(long, value_name = "STAGE_FILE")]
    pub from: PathBuf,
    /// The stage file of the formation it goes to.
    #[arg(long, value_name = "STAGE_FILE")]
    pub to: PathBuf,
    /// The release to promote (default: the source formation's latest published).
    pub release: Option<u32>,
    /// The runtime image in the target (AMIs are per region: needed when the regions differ).
    #[arg(long, value_name = "AMI")]
    pub runtime_image: Option<String>,
    /// The AWS profile whose credentials read the source stage (another account's); default:
    /// the standard chain.
    #[arg(long, value_name = "PROFILE")]
    pub from_profile: Option<String>,
    /// The AWS profile whose credentials write the target stage; default: the standard chain.
    #[arg(long, value_name = "PROFILE")]
    pub to_profile: Option<String>,
    /// Where the compiled files go.
    #[arg(long, default_value = ".gilliam/promote")]
    pub out: PathBuf,
    #[arg(long, default_value = "all-at-once", value_parser = parse_strategy)]
    pub strategy: Strategy,
    /// Seconds between polls of stack status and target health.
    #[arg(long, default_value = "5")]
    pub poll: f64,
    #[command(flatten)]
    pub judging: Judging,
}

pub fn read_stage(path: &Path) -> Result<gilliam_compiler::stage::Stage, Failure> {
    let text = compile_cmd::read(path).map_err(|e| Failure::usage(e.to_string().trim_start_matches("gilliam-compile: ").to_string()))?;
    let name = path.display().to_string();
    gilliam_compiler::parse_stage(gilliam_compiler::Source { name: &name, text: &text }).map_err(|d| Failure { code: 1, message: d.to_string() })
}

/// `gilliam promote`: release `release` of the formation `from` names, as a new release of the
/// formation `to` names, with the same artifact (by digest), gilliam.yml and config.
pub async fn exec(g: &Globals, a: &Args) -> Result<(), Failure> {
    let Args { from, to, release, runtime_image, from_profile, to_profile, out, strategy, poll, judging } = a;
    let (src, dst) = (read_stage(from)?, read_stage(to)?);
    let (sf, df) = (Formation::from_stage(&src), Formation::from_stage(&dst));
    if sf.name == df.name && sf.bucket == df.bucket && src.region == dst.region {
        return Err(Failure::usage("--from and --to name the same formation: promote goes from one stage to another"));
    }
    let progress = crate::progress::Progress::new(g.verbose, g.quiet);
    let say = |line: &str| progress.say(line);
    let a = connect_from_env_as(&Endpoint { url: g.endpoint_url.clone(), region: Some(sf.region.clone()) }, from_profile.as_deref())
        .await
        .map_err(Failure::usage)?;
    let b =
        connect_from_env_as(&Endpoint { url: g.endpoint_url.clone(), region: Some(df.region.clone()) }, to_profile.as_deref()).await.map_err(Failure::usage)?;
    let n = match release {
        Some(n) => *n,
        None => Ops::new(&a, sf.clone(), &say).outputs().await.map_err(Failure::from)?.0.release.number,
    };
    let (mut rel, app) = published_inputs(&a, &sf, n).await?;
    let sha = rel["artifact"]["sha256"].as_str().unwrap_or_default().to_string();
    let url = rel["artifact"]["url"].as_str().unwrap_or_default().to_string();
    if let Some((var, _)) = rel["config"].as_object().into_iter().flatten().find(|(_, v)| !v.is_string()) {
        return Err(Failure {
            code: 4,
            message: format!(
                "release {n} of {} keeps {var} in a secret of its own formation; set it in {} with `gilliam env set --secret` and promote a release without secret config",
                sf.name, df.name
            ),
        });
    }
    let image = match (runtime_image, src.region == dst.region) {
        (Some(i), _) => i.clone(),
        (None, true) => rel["runtime_image"].as_str().unwrap_or_default().to_string(),
        (None, false) => {
            return Err(Failure::usage(format!(
                "{} is in {} and {} in {}: AMIs are per region; copy the runtime image and pass --runtime-image ami-...",
                sf.name, src.region, df.name, dst.region
            )))
        }
    };
    // An image goes by its digest (see `promote_image`). A tarball is copied into the target's
    // bucket at its content address.
    let image_ref = rel["artifact"]["image"].as_str().map(str::to_string);
    let artifact = match image_ref {
        Some(reference) => {
            let promoted = promote_image(&a, &b, &reference, &sf, &df, &say).await?;
            rel["artifact"]["image"] = serde_json::json!(promoted);
            promoted
        }
        None => {
            // The artifact, by digest: read from where the release was built, checked, and copied into
            // the target's bucket at its content address unless it is there already.
            let (bucket, key) = url
                .strip_prefix("s3://")
                .and_then(|u| u.split_once('/'))
                .ok_or_else(|| Failure { code: 4, message: format!("release {n}'s artifact URL {url:?} is not s3://BUCKET/KEY") })?;
            let target_key = crate::build_cmd::artifact_key(&df, &sha);
            let there = retry(&format!("look for s3://{}/{target_key}", df.bucket), || b.head_object(&df.bucket, &target_key)).await.map_err(Failure::from)?;
            match there {
                Some(h) if h.sha256.as_deref() == Some(sha.as_str()) => say(&format!("artifact {sha} already in s3://{}/{target_key}", df.bucket)),
                Some(h) => {
                    return Err(Failure {
                        code: 4,
                        message: format!(
                            "s3://{}/{target_key} holds another artifact (sha256 {}) than release {n} of {} was built from ({sha}): refused; remove the object and promote again",
                            df.bucket,
                            h.sha256.unwrap_or_else(|| "unrecorded".into()),
                            sf.name
                        ),
                    })
                }
                None => {
                    let o = retry(&format!("read {url}"), || a.get_object(bucket, key))
                        .await
                        .map_err(Failure::from)?
                        .ok_or_else(|| Failure { code: 4, message: format!("{url} is gone: release {n}'s artifact cannot be promoted") })?;
                    let got = gilliam_materializer::sha256_hex(&o.body);
                    if got != sha {
                        return Err(Failure { code: 4, message: format!("{url} has sha256 {got}, not the {sha} release {n} was built from: refused") });
                    }
                    crate::build_cmd::ensure_bucket(&b, &df).await.map_err(Failure::from)?;
                    let what = format!("copy the artifact to s3://{}/{target_key}", df.bucket);
                    retry(&what, || b.put_object(&df.bucket, &target_key, o.body.clone(), gilliam_materializer::aws::PutCondition::Always))
                        .await
                        .map_err(Failure::from)?;
                    say(&format!("artifact {sha} copied to s3://{}/{target_key}", df.bucket));
                }
            }
            rel["artifact"]["url"] = serde_json::json!(format!("s3://{}/{target_key}", df.bucket));
            sha.clone()
        }
    };
    let digest = gilliam_materializer::sha256_hex(format!("{}\n{app}", rel["config"]).as_bytes());
    let purpose = format!("promote release {n} of {}", sf.name);
    crate::build_cmd::ensure_bucket(&b, &df).await.map_err(Failure::from)?;
    let number = gilliam_materializer::state::allocate_release(&b, &df.bucket, &df.prefix, &df.name, &purpose).await.map_err(Failure::from)?;
    rel["number"] = serde_json::json!(number);
    rel["runtime_image"] = serde_json::json!(image);
    std::fs::create_dir_all(out).map_err(|e| Failure { code: 1, message: format!("{}: {e}", out.display()) })?;
    let (app_path, release_path) = (out.join("gilliam.yml"), out.join("release.json"));
    std::fs::write(&app_path, &app).map_err(|e| Failure { code: 1, message: format!("{}: {e}", app_path.display()) })?;
    crate::build_cmd::write_release(&release_path, &rel).map_err(|m| Failure { code: 1, message: m })?;
    println!("release {number} of {}: release {n} of {} (artifact {artifact}, config and gilliam.yml {})", df.name, sf.name, &digest[..16]);
    let lock_opts = crate::materialize_cmd::lock_options(g.lock_wait);
    let opts = Options { poll: Duration::from_secs_f64(poll.max(0.05)), strategy: *strategy, ..Options::default() };
    deploy_files(&b, &df, to, &app_path, &release_path, &out.join("out"), opts, judging, lock_opts, &say).await?;
    let line = format!("{purpose} as release {number} (artifact {artifact}, config and gilliam.yml {})", &digest[..16]);
    gilliam_materializer::state::update(&b, &df.bucket, &df.prefix, &df.name, |st| st.history.push(gilliam_materializer::state::event(line.clone())))
        .await
        .map_err(Failure::from)?;
    Ok(())
}

/// The image of an image release, for the target, by the same digest. From the source
/// formation's own repository it is copied into the target's (made when missing): the target's
/// releases must never hang on the source's lifecycle policy, and another account or region
/// could not pull it anyway. From a repository of the user's, the same reference when the
/// target's account sees it there, else copied too. Refused when the source no longer holds
/// it, or when anything arrives under another digest.
async fn promote_image<A: gilliam_materializer::aws::Aws, B: gilliam_materializer::aws::Aws>(
    a: &A,
    b: &B,
    reference: &str,
    sf: &Formation,
    df: &Formation,
    say: &(dyn Fn(&str) + Sync),
) -> Result<String, Failure> {
    let Some(i) = gilliam_materializer::images::in_ecr(reference) else {
        // Not ECR: the registry is the instances' to reach; the digest pins what they run.
        say(&format!("image {reference}: not in ECR, the same reference"));
        return Ok(reference.to_string());
    };
    if i.repository != gilliam_compiler::names::image_repository(&sf.name) {
        match check_image_for_target(b, &i, reference, &df.name).await {
            Ok(()) => {
                say(&format!("image {reference}: the target's account sees it by its digest"));
                return Ok(reference.to_string());
            }
            Err(e) => say(&format!("{}; copying it into {}'s repository", e.message, df.name)),
        }
    }
    if gilliam_materializer::images::find(a, &i).await.map_err(Failure::from)?.is_none() {
        return Err(Failure { code: 4, message: format!("{reference}: ECR has no image with that digest as {}'s account sees it: refused", sf.name) });
    }
    gilliam_materializer::images::copy_to_formation(a, reference, b, &df.region, &df.name, say).await.map_err(Failure::from)
}

/// Refuses an image the target's account cannot see by its digest (no such image, no
/// permission): its instances could not pull it either.
async fn check_image_for_target<A: gilliam_materializer::aws::Aws>(
    b: &A,
    i: &gilliam_materializer::images::InEcr,
    reference: &str,
    target: &str,
) -> Result<(), Failure> {
    match gilliam_materializer::images::find(b, i).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Failure { code: 4, message: format!("{reference}: ECR has no image with that digest as {target}'s account sees it: refused") }),
        Err(e) => Err(Failure {
            code: 4,
            message: format!(
                "{reference}: {target}'s account cannot read it ({e}): let it in with a repository policy (or replicate the image) and promote again"
            ),
        }),
    }
}
