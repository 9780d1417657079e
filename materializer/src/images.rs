//! Image releases in ECR: the release's image checked before anything is created (it exists,
//! by its digest), and, in the formation's own repository, the tag `gilliam-rN` that keeps it
//! from the repository's lifecycle policy while release N is live or cold, removed when it is
//! retired (ECR deletes an image with its last tag); that repository made when missing, with
//! the compiler's lifecycle policy.

use crate::aws::{Aws, EcrImage};
use crate::error::Error;
use crate::retry::retry;
use gilliam_compiler::manifest::Manifest;
use gilliam_contract::image::ImageRef;

/// A release's image in an ECR registry: (region, repository, digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InEcr {
    pub region: String,
    pub repository: String,
    pub digest: String,
}

/// The release's image, when its artifact is one in ECR.
pub fn in_ecr(artifact_url: &str) -> Option<InEcr> {
    let r = ImageRef::parse(artifact_url).ok()?;
    let ecr = r.ecr()?;
    Some(InEcr { region: ecr.region, repository: r.repository, digest: r.digest? })
}

/// The release's image when it is in the formation's own repository (`gilliam/FORMATION`),
/// whose lifecycle policy gilliam's tags steer.
pub fn in_own_repository(m: &Manifest) -> Option<InEcr> {
    in_ecr(&m.release.artifact_url).filter(|i| i.repository == gilliam_compiler::names::image_repository(&m.formation.name))
}

/// The image `i` names, as ECR holds it by its digest (`None`: not there).
pub async fn find<A: Aws>(aws: &A, i: &InEcr) -> Result<Option<EcrImage>, Error> {
    let found = retry("look for the image", || aws.describe_image(&i.region, &i.repository, &i.digest)).await?;
    Ok(found.filter(|f| f.digest == i.digest))
}

/// Refuses a release whose image ECR does not hold by its digest; returns the image when it is
/// in the formation's own repository and lacks its release's `gilliam-rN` tag (to be held). An
/// image in a registry that is not ECR is not checked here (the instances pull it; a failed
/// pull signals FAILURE).
pub async fn check<A: Aws>(aws: &A, m: &Manifest, say: &(dyn Fn(&str) + Sync)) -> Result<Option<InEcr>, Error> {
    let url = &m.release.artifact_url;
    let Some(i) = in_ecr(url) else {
        say(&format!("image {url}: not in ECR, not checked before the deploy (each instance checks the digest it pulls)"));
        return Ok(None);
    };
    let Some(found) = find(aws, &i).await? else {
        return Err(Error::Artifact(format!(
            "image {url} is not in ECR repository {} ({}): push it before deploying release {} (`gilliam build` pushes and records the digest)",
            i.repository, i.region, m.release.number
        )));
    };
    let tag = gilliam_compiler::names::release_image_tag(m.release.number);
    let own = in_own_repository(m).is_some();
    Ok((own && !found.tags.contains(&tag)).then_some(i))
}

/// Tags release `release`'s image `gilliam-rN`: the lifecycle policy never selects it now.
pub async fn hold<A: Aws>(aws: &A, i: &InEcr, release: u32) -> Result<(), Error> {
    let tag = gilliam_compiler::names::release_image_tag(release);
    retry("tag the release's image", || aws.tag_image(&i.region, &i.repository, &i.digest, &tag)).await
}

/// After release `retired` is retired: its `gilliam-rN` tag goes, and with it the image when no
/// other release holds it (a release that runs the same image has its own tag).
pub async fn let_go<A: Aws>(aws: &A, m: &Manifest, retired: u32) -> Result<(), Error> {
    let published = crate::published::release(aws, &m.formation.outputs_bucket, &m.formation.s3_prefix, retired).await?;
    let Some(i) = published.as_ref().and_then(in_own_repository) else { return Ok(()) };
    let tag = gilliam_compiler::names::release_image_tag(retired);
    retry("untag the retired release's image", || aws.untag_image(&i.region, &i.repository, &tag)).await
}

/// The formation's repository in `region`, made when it is missing (immutable tags, scan on
/// push, KMS), its lifecycle policy set to the compiler's when it differs: its URI. As the
/// outputs bucket, it comes before any stack, so that a first release's image has a home.
pub async fn ensure_repository<A: Aws>(aws: &A, region: &str, formation: &str, say: &(dyn Fn(&str) + Sync)) -> Result<String, Error> {
    let name = gilliam_compiler::names::image_repository(formation);
    let uri = match retry("look for the formation's image repository", || aws.describe_repository(region, &name)).await? {
        Some(uri) => uri,
        None => match retry("create the formation's image repository", || aws.create_repository(region, &name, formation)).await {
            Ok(uri) => {
                say(&format!("image repository {uri}: created (immutable tags, scan on push, KMS)"));
                uri
            }
            // Made meanwhile by another build of the same formation.
            Err(Error::Aws { err: crate::aws::AwsError::Invalid(m) | crate::aws::AwsError::Other(m), .. }) if m.contains("AlreadyExists") => {
                retry("look for the formation's image repository", || aws.describe_repository(region, &name))
                    .await?
                    .ok_or_else(|| Error::Artifact(format!("image repository {name} was created and is gone again")))?
            }
            Err(e) => return Err(e),
        },
    };
    let want = gilliam_compiler::repository::lifecycle_policy();
    let have = retry("read the repository's lifecycle policy", || aws.lifecycle_policy(region, &name)).await?;
    let parse = |t: &str| serde_json::from_str::<serde_json::Value>(t).ok();
    if have.as_deref().and_then(parse) != parse(&want) {
        retry("set the repository's lifecycle policy", || aws.put_lifecycle_policy(region, &name, &want)).await?;
        say(&format!(
            "image repository {name}: lifecycle policy set (held images kept; builds and untagged images go after {} days)",
            gilliam_compiler::repository::IMAGE_GRACE_DAYS
        ));
    }
    Ok(uri)
}

/// How long ECR may take to list an image after it was put.
pub const LISTED_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// A repository URI's registry host and repository name (`HOST/NAME`).
pub fn split_uri(uri: &str) -> Result<(&str, &str), Error> {
    uri.split_once('/').ok_or_else(|| Error::Artifact(format!("ECR gave the repository URI {uri}, which names no host")))
}

/// Waits until ECR lists image `digest` in `repository` (a push is listed at once in ECR; a
/// registry that stands in for it may take a moment).
pub async fn wait_listed<A: Aws>(aws: &A, region: &str, repository: &str, digest: &str, within: std::time::Duration) -> Result<(), Error> {
    let until = std::time::Instant::now() + within;
    loop {
        let listed = retry("look for the image", || aws.describe_image(region, repository, digest)).await?;
        if listed.is_some_and(|i| i.digest == digest) {
            return Ok(());
        }
        if std::time::Instant::now() >= until {
            return Err(Error::Artifact(format!("{repository}@{digest} was put, and ECR does not list it after {}s", within.as_secs())));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Copies the image `reference` (in ECR, read with `from`'s login) into `formation`'s own
/// repository in `region` (made when missing, written with `to`'s login): another account's,
/// another region's, or the same account's. Nothing is sent when the target lists the digest
/// already; blobs it holds are not sent again. Returns the image's reference there, by the
/// same digest.
pub async fn copy_to_formation<A: Aws, B: Aws>(
    from: &A,
    reference: &str,
    to: &B,
    region: &str,
    formation: &str,
    say: &(dyn Fn(&str) + Sync),
) -> Result<String, Error> {
    let (Some(source), Ok(parsed)) = (in_ecr(reference), ImageRef::parse(reference)) else {
        return Err(Error::Artifact(format!("{reference} is not an image in ECR by its digest")));
    };
    let source_registry = parsed.registry;
    let uri = ensure_repository(to, region, formation, say).await?;
    let (host, repository) = split_uri(&uri)?;
    let target = InEcr { region: region.to_string(), repository: repository.to_string(), digest: source.digest.clone() };
    if find(to, &target).await?.is_some() {
        say(&format!("image {}: already in {uri}", source.digest));
        return Ok(format!("{uri}@{}", source.digest));
    }
    let from_login = retry("log in to the source registry", || from.registry_login(&source.region)).await?;
    let to_login = retry("log in to the target registry", || to.registry_login(region)).await?;
    let src = crate::registry::Registry::new(&crate::registry::address(&source_registry), Some((&from_login.username, &from_login.password)))
        .map_err(Error::Artifact)?;
    let dst = crate::registry::Registry::new(&crate::registry::address(host), Some((&to_login.username, &to_login.password))).map_err(Error::Artifact)?;
    let tag = gilliam_compiler::repository::build_tag(&source.digest);
    let started = std::time::Instant::now();
    let copied = crate::registry::copy(&src, &source.repository, &dst, repository, &source.digest, &tag)
        .await
        .map_err(|e| Error::Artifact(format!("copy {reference} to {uri}: {e}")))?;
    wait_listed(to, region, repository, &source.digest, LISTED_WITHIN).await?;
    say(&format!(
        "image {}: copied to {uri} in {:.1}s ({} blobs, {} bytes sent; {} already there)",
        source.digest,
        started.elapsed().as_secs_f64(),
        copied.sent,
        copied.bytes,
        copied.there
    ));
    Ok(format!("{uri}@{}", source.digest))
}
