//! `gilliam build`: the build command, the reproducible tarball uploaded once by digest, a release number allocated, the release file written.

use super::common::*;
use crate::compile_cmd;
use crate::failure::Failure;
use gilliam_materializer::Formation;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The source tree (with gilliam.yml at its top).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The runtime image (AMI) of the release; default: the latest release's.
    #[arg(long, value_name = "AMI")]
    pub runtime_image: Option<String>,
    /// The revision to record; default: git's commit of the tree, else the artifact digest.
    #[arg(long)]
    pub revision: Option<String>,
    /// The release is this container image (REGISTRY/REPOSITORY:TAG, its tag resolved to a
    /// digest in ECR, or @sha256:DIGEST), not a tarball of the tree.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Where the release metadata goes.
    #[arg(long, value_name = "FILE", default_value = ".gilliam/release.json")]
    pub release_out: PathBuf,
}

pub async fn exec(s: &Session<'_>, a: &Args) -> Result<(), Failure> {
    let Args { dir, runtime_image, revision, image, release_out } = a;
    let app = dir.join("gilliam.yml");
    let (n, path) = build_release(s.aws, s.formation, dir, &app, runtime_image.as_deref(), image.as_deref(), revision.as_deref(), release_out, s.say).await?;
    println!("release {n}: {}", path.display());
    Ok(())
}

/// `gilliam build`: returns the release number and its metadata file.
#[allow(clippy::too_many_arguments)]
pub async fn build_release<A: gilliam_materializer::aws::Aws>(
    aws: &A,
    formation: &Formation,
    dir: &Path,
    app: &Path,
    runtime_image: Option<&str>,
    image: Option<&str>,
    revision: Option<&str>,
    out: &Path,
    say: &(dyn Fn(&str) + Sync),
) -> Result<(u32, PathBuf), Failure> {
    use crate::build_cmd;
    let text = compile_cmd::read(app).map_err(|e| Failure { code: 1, message: e.to_string().trim_start_matches("gilliam-compile: ").to_string() })?;
    let name = app.display().to_string();
    let parsed = gilliam_compiler::parse_app(gilliam_compiler::Source { name: &name, text: &text }).map_err(|d| Failure { code: 1, message: d.to_string() })?;
    let previous = build_cmd::previous(aws, formation, say).await.map_err(Failure::from)?;
    let ami = runtime_image
        .map(str::to_string)
        .or_else(|| previous.as_ref().and_then(|p| p["runtime_image"].as_str().map(str::to_string)))
        .ok_or_else(|| Failure::usage("no runtime image: pass --runtime-image ami-... (the first release needs one; see runtime-image/README.md)"))?;
    // `--image` first, else gilliam.yml's `x-gilliam: {image: ...}`.
    let image = image.map(str::to_string).or_else(|| parsed.image.clone());
    let image_of = |pinned: String| {
        let digest = pinned.rsplit_once("@sha256:").map(|(_, d)| d.to_string()).unwrap_or_default();
        (serde_json::json!({ "image": pinned }), digest)
    };
    let (artifact, digest) = match (image.as_deref(), &parsed.build) {
        // An image CI built: its tag resolved to the digest the release pins.
        (Some(reference), _) => {
            let pinned = build_cmd::resolve_image(aws, reference).await?;
            say(&format!("image {pinned}"));
            build_cmd::ensure_bucket(aws, formation).await.map_err(Failure::from)?;
            image_of(pinned)
        }
        // An image the build command makes: pushed to the formation's repository.
        (None, Some(gilliam_compiler::app::Build::Image(cmd))) => {
            let local = crate::engine::local_name(&formation.name);
            say(&format!("build: {cmd} (GILLIAM_IMAGE={local})"));
            build_cmd::run_build_command(dir, cmd, &[("GILLIAM_IMAGE", &local)]).map_err(|m| Failure { code: 1, message: m })?;
            let pinned = crate::engine::push_build(aws, formation, &local, say).await?;
            build_cmd::ensure_bucket(aws, formation).await.map_err(Failure::from)?;
            image_of(pinned)
        }
        (None, build) => {
            if let Some(gilliam_compiler::app::Build::Tree(cmd)) = build {
                say(&format!("build: {cmd}"));
                build_cmd::run_build_command(dir, cmd, &[]).map_err(|m| Failure { code: 1, message: m })?;
            }
            let epoch = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
            let packed = build_cmd::pack(dir, epoch).map_err(|m| Failure { code: 1, message: m })?;
            let uploaded = build_cmd::upload(aws, formation, &packed).await.map_err(Failure::from)?;
            let key = build_cmd::artifact_key(formation, &packed.sha256);
            say(&format!(
                "artifact s3://{}/{key}: {} entries, {} bytes, {}",
                formation.bucket,
                packed.entries,
                packed.gz.len(),
                if uploaded { "uploaded" } else { "already there" }
            ));
            (serde_json::json!({ "url": format!("s3://{}/{key}", formation.bucket), "sha256": packed.sha256 }), packed.sha256.clone())
        }
    };
    let revision = revision.map(str::to_string).unwrap_or_else(|| build_cmd::revision(dir, &digest));
    let number = gilliam_materializer::state::allocate_release(aws, &formation.bucket, &formation.prefix, &formation.name, &format!("build of {revision}"))
        .await
        .map_err(Failure::from)?;
    let config = previous.as_ref().map(|p| p["config"].clone()).filter(|c| c.is_object()).unwrap_or_else(|| serde_json::json!({}));
    let release = serde_json::json!({
        "number": number,
        "artifact": artifact,
        "runtime_image": ami,
        "revision": revision,
        "created": gilliam_materializer::clock::now(),
        "config": config,
    });
    build_cmd::write_release(out, &release).map_err(|m| Failure { code: 1, message: m })?;
    Ok((number, out.to_path_buf()))
}
