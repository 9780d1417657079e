//! The container engine, through its API (bollard, over its unix socket): the image a build
//! command made, pushed to the formation's ECR repository under a tag named by its content
//! (`build-<image id>`), and the digest the registry gave it. An image already there under that
//! tag is not pushed again, so the same image from whichever machine is one release artifact.

use crate::failure::Failure;
use bollard::Docker;
use futures_util::StreamExt;
use gilliam_materializer::aws::Aws;
use gilliam_materializer::retry::retry;
use gilliam_materializer::Formation;
use std::time::{Duration, Instant};

/// Where the engine listens: `DOCKER_HOST` (`unix://PATH`), else Docker's default socket.
pub fn socket() -> Result<String, Failure> {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => h
            .strip_prefix("unix://")
            .map(str::to_string)
            .ok_or_else(|| Failure::usage(format!("DOCKER_HOST={h}: gilliam talks to the container engine over its unix socket; give unix:///PATH"))),
        _ => Ok("/var/run/docker.sock".to_string()),
    }
}

/// The local name the build command gives its image (`$GILLIAM_IMAGE`).
pub fn local_name(formation: &str) -> String {
    format!("gilliam-build/{formation}:latest")
}

async fn connect() -> Result<Docker, Failure> {
    let path = socket()?;
    let docker =
        Docker::connect_with_unix(&path, 600, bollard::API_DEFAULT_VERSION).map_err(|e| Failure::input(format!("the container engine at {path}: {e}")))?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| Failure::input(format!("no container engine answers at {path} ({e}): start dockerd, or set DOCKER_HOST=unix:///PATH to its socket")))
}

/// Pushes the image `local` (made by the build command) to the formation's repository, made
/// when missing: its reference by digest, `ACCOUNT.dkr.ecr.REGION.amazonaws.com/gilliam/F@sha256:...`.
/// `GILLIAM_REGISTRY_ENDPOINT` (`HOST:PORT`) makes the engine push through another address
/// than the repository's host: a proxy, or a registry that stands in for ECR in tests.
pub async fn push_build<A: Aws>(aws: &A, formation: &Formation, local: &str, say: &(dyn Fn(&str) + Sync)) -> Result<String, Failure> {
    let docker = connect().await?;
    let image = docker.inspect_image(local).await.map_err(|e| {
        Failure::input(format!(
            "the build command made no image {local} ({e}): it must tag what it builds with $GILLIAM_IMAGE, e.g. docker build -t \"$GILLIAM_IMAGE\" ."
        ))
    })?;
    let id = image.id.ok_or_else(|| Failure::internal(format!("the engine reports image {local} without an ID")))?;
    let region = &formation.region;
    let uri = gilliam_materializer::images::ensure_repository(aws, region, &formation.name, say).await.map_err(Failure::from)?;
    let (host, repository) = gilliam_materializer::images::split_uri(&uri).map_err(Failure::from)?;
    let tag = gilliam_compiler::repository::build_tag(&id);
    if let Some(there) = retry("look for the build in ECR", || aws.describe_image(region, repository, &tag)).await.map_err(Failure::from)? {
        say(&format!("image {id}: already in {uri} as {}, not pushed again", there.digest));
        return Ok(format!("{uri}@{}", there.digest));
    }
    let login = retry("log in to the registry", || aws.registry_login(region)).await.map_err(Failure::from)?;
    let through = gilliam_materializer::registry::address(host);
    let target = format!("{through}/{repository}");
    docker
        .tag_image(local, Some(bollard::image::TagImageOptions { repo: target.clone(), tag: tag.clone() }))
        .await
        .map_err(|e| Failure::refused(format!("tag {local} as {target}:{tag}: {e}")))?;
    let creds = bollard::auth::DockerCredentials {
        username: Some(login.username.clone()),
        password: Some(login.password.clone()),
        serveraddress: Some(through.clone()),
        ..Default::default()
    };
    say(&format!("image {id}: pushing to {uri}:{tag}"));
    let started = Instant::now();
    let mut stream = docker.push_image(&target, Some(bollard::image::PushImageOptions { tag: tag.clone() }), Some(creds));
    let mut last = Instant::now();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| Failure::refused(format!("push {target}:{tag}: {e}")))?;
        if let Some(e) = info.error {
            return Err(Failure::refused(format!("push {target}:{tag}: {e} (the role needs ecr:InitiateLayerUpload, ecr:UploadLayerPart, ecr:CompleteLayerUpload, ecr:PutImage and ecr:BatchCheckLayerAvailability on {repository})")));
        }
        if last.elapsed() >= Duration::from_secs(5) {
            last = Instant::now();
            say(&format!("pushing: {} ({}s)", info.status.unwrap_or_default(), started.elapsed().as_secs()));
        }
    }
    // The registry's digest of what was pushed, as the engine recorded it.
    let pushed = docker.inspect_image(&format!("{target}:{tag}")).await.map_err(|e| Failure::refused(format!("inspect {target}:{tag}: {e}")))?;
    let digest = pushed
        .repo_digests
        .unwrap_or_default()
        .iter()
        .find_map(|d| d.strip_prefix(&format!("{target}@")).map(str::to_string))
        .ok_or_else(|| Failure::refused(format!("the engine pushed {target}:{tag} but reports no digest for it")))?;
    // The release is checked in ECR by its digest before the deploy: wait until it is listed.
    gilliam_materializer::images::wait_listed(aws, region, repository, &digest, gilliam_materializer::images::LISTED_WITHIN).await.map_err(Failure::from)?;
    say(&format!("image {id}: pushed as {uri}@{digest} in {:.1}s", started.elapsed().as_secs_f64()));
    Ok(format!("{uri}@{digest}"))
}
