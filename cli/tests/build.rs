//! From a source tree to a release, against moto on 127.0.0.1: `gilliam build` of the same tree
//! in two checkouts with different file times gives the same sha256, and the artifact lands
//! once; builds at the same time get different release numbers; a failing build command
//! uploads and allocates nothing; `gilliam deploy` with no release file builds, compiles and
//! deploys in one go.

mod common;

use common::*;
use gilliam_materializer::aws::prelude::*;
use gilliam_materializer::sdk::{Endpoint, SdkAws};
use std::path::{Path, PathBuf};

const IMAGE: &str = "ami-0a1b2c3d4e5f60718";

/// A source tree: the quickstart's gilliam.yml with a build command, scripts, ignored files.
fn checkout(dir: &Path, build: &str, stamp: &str) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("bin")).expect("tree");
    let app = std::fs::read_to_string(root().join("examples/quickstart/gilliam.yml")).expect("app");
    std::fs::write(dir.join("gilliam.yml"), format!("x-gilliam:\n  build: {build}\n{app}")).expect("app");
    for s in ["api", "pricing", "worker"] {
        std::fs::write(dir.join("bin").join(s), format!("#!/bin/sh\nexec echo {s}\n")).expect("script");
    }
    std::fs::write(dir.join(".gitignore"), "*.log\n").expect("ignore");
    std::fs::write(dir.join("debug.log"), format!("{stamp}\n")).expect("log");
    // Different times and modes on each checkout: none of it may reach the artifact.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("chmod 0755 bin/*; find . -exec touch -h -d @{stamp} {{}} +"))
        .current_dir(dir)
        .status()
        .expect("touch");
    assert!(status.success());
    dir.to_path_buf()
}

fn field(out: &str, prefix: &str) -> Option<String> {
    out.lines().find_map(|l| l.strip_prefix(prefix).map(|r| r.split(':').next().unwrap_or(r).trim().to_string()))
}

fn release(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("release file")).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_are_reproducible_land_once_number_safely_and_deploy_in_one_go() {
    let Session { moto, dir, stage, app: _ } = session("build").await;
    let g = |args: &[&str]| gilliam(&moto, &stage, None, args);
    let a = checkout(&dir.join("checkout-a"), "mkdir -p dist && echo built > dist/version", "1000000000");
    let b = checkout(&dir.join("checkout-b"), "mkdir -p dist && echo built > dist/version", "1700000000");
    let (a_s, b_s) = (a.display().to_string(), b.display().to_string());

    // The first release needs a runtime image.
    let o = g(&["build", &a_s]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--runtime-image"), "{}", text(&o));

    let ra = dir.join("ra.json").display().to_string();
    let rb = dir.join("rb.json").display().to_string();
    let o = g(&["build", &a_s, "--runtime-image", IMAGE, "--revision", "abc123", "--release-out", &ra]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("uploaded"), "{}", text(&o));
    let o = g(&["build", &b_s, "--runtime-image", IMAGE, "--revision", "abc123", "--release-out", &rb]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("already there"), "the same tree lands once: {}", text(&o));
    let (ja, jb) = (release(Path::new(&ra)), release(Path::new(&rb)));
    assert_eq!(ja["artifact"], jb["artifact"], "same tree, same artifact, on any checkout");
    assert_eq!((ja["number"].as_u64(), jb["number"].as_u64()), (Some(1), Some(2)));
    assert_eq!(ja["runtime_image"], IMAGE);
    let url = ja["artifact"]["url"].as_str().expect("url");
    let sha = ja["artifact"]["sha256"].as_str().expect("sha");
    assert_eq!(url, format!("s3://gilliam-cli-outputs/gilliam/shop/artifacts/{sha}.tar.gz"), "content-addressed");
    let aws = SdkAws::connect(&Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) }).await;
    let obj = aws.get_object("gilliam-cli-outputs", url.trim_start_matches("s3://gilliam-cli-outputs/")).await.expect("get").expect("artifact");
    assert_eq!(gilliam_materializer::sha256_hex(&obj.body), sha);
    // What is in it: the build's output and the scripts, not the ignored log.
    let listing = std::process::Command::new("sh")
        .arg("-c")
        .arg("tar -tzvf -")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(&obj.body)?;
            c.wait_with_output()
        })
        .expect("tar");
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("dist/version") && listing.contains("bin/api") && !listing.contains("debug.log"), "{listing}");
    assert!(listing.lines().all(|l| l.contains("0/0") && l.contains("1970-01-01")), "owners and times fixed: {listing}");

    // Builds at the same time never get the same number.
    let mut numbers = vec![1, 2];
    for round in 0..3 {
        let outs: Vec<String> = (0..3).map(|i| dir.join(format!("c{round}-{i}.json")).display().to_string()).collect();
        let kids: Vec<std::process::Child> = outs
            .iter()
            .map(|out| {
                let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_gilliam"));
                c.args(["--stage", &stage, "-q", "build", &a_s, "--runtime-image", IMAGE, "--release-out", out]).env("AWS_ENDPOINT_URL", &moto.url);
                for (k, v) in gilliam_tests::moto::SAFE_ENV {
                    c.env(k, v);
                }
                c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("spawn")
            })
            .collect();
        for k in kids {
            let o = k.wait_with_output().expect("wait");
            assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        }
        for out in &outs {
            numbers.push(release(Path::new(out))["number"].as_u64().expect("number") as u32);
        }
    }
    let mut sorted = numbers.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), numbers.len(), "every build got its own number: {numbers:?}");
    assert_eq!(sorted, (1..=11).collect::<Vec<u32>>());
    let st = gilliam_materializer::state::read(&aws, "gilliam-cli-outputs", "gilliam/shop/", "shop").await.expect("state").0;
    assert_eq!(st.reserved.len(), 11, "reserved until deployed");

    // A failing build command: nothing uploaded, no number taken.
    let bad = checkout(&dir.join("checkout-bad"), "exit 3", "1000000000");
    let o = g(&["build", &bad.display().to_string(), "--runtime-image", IMAGE]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("build command") && text(&o).contains("nothing was uploaded"), "{}", text(&o));
    let st = gilliam_materializer::state::read(&aws, "gilliam-cli-outputs", "gilliam/shop/", "shop").await.expect("state").0;
    assert_eq!(st.reserved.len(), 11);

    // deploy with no release file: build, compile, materialize; the new number is printed.
    let app = a.join("gilliam.yml").display().to_string();
    let out = dir.join("deploy-out").display().to_string();
    let o = g(&["deploy", "--app", &app, "--out", &out, "--poll", "0.1", "--runtime-image", IMAGE]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(field(&text(&o), "built release ").as_deref(), Some("12"), "{}", text(&o));
    assert!(text(&o).contains("deployed release 12 of shop"), "{}", text(&o));
    // The release metadata it built sits beside the compiled directory, under its usual name.
    let written = std::fs::read_to_string(dir.join("release.json")).expect("release.json beside deploy-out");
    assert!(written.contains("\"number\": 12"), "{written}");
    let st = gilliam_materializer::state::read(&aws, "gilliam-cli-outputs", "gilliam/shop/", "shop").await.expect("state").0;
    assert!(st.releases.contains_key(&12) && !st.reserved.contains_key(&12), "recorded, no longer only reserved");
    assert_eq!(st.traffic.get(&12), Some(&100));
}

/// A release from the image CI pushed: `gilliam build --image REPO:TAG` resolves the tag in ECR
/// (moto's) and records the digest, never the tag; a tag ECR does not have, and a tag in a
/// registry gilliam cannot ask, are refused with the way out; a digest is taken as given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_with_an_image_records_its_digest_resolved_in_ecr() {
    let Session { moto, dir, stage, app: _ } = session("build-image").await;
    let g = |args: &[&str]| gilliam(&moto, &stage, None, args);
    let conf = sdk_config(&moto).await;
    let ecr = aws_sdk_ecr::Client::new(&conf);
    ecr.create_repository().repository_name("shop/api").send().await.expect("repository");
    let manifest = r#"{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2, "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}, "layers": []}"#;
    let pushed = ecr.put_image().repository_name("shop/api").image_manifest(manifest).image_tag("v3").send().await.expect("push");
    let digest = pushed.image().and_then(|i| i.image_id()).and_then(|i| i.image_digest()).expect("digest").to_string();
    let tree = checkout(&dir.join("tree"), "true", "1000000000");
    let t = tree.display().to_string();
    let out = dir.join("release.json").display().to_string();
    let repo = format!("123456789012.dkr.ecr.{REGION}.amazonaws.com/shop/api");

    let o = g(&["build", &t, "--runtime-image", IMAGE, "--image", &format!("{repo}:v3"), "--release-out", &out]);
    assert!(o.status.success(), "{}", text(&o));
    let r = release(Path::new(&out));
    assert_eq!(r["artifact"], serde_json::json!({ "image": format!("{repo}@{digest}") }), "{r}");
    // gilliam.yml may name the image instead (`x-gilliam: {image: ...}`): the same digest.
    let named = dir.join("named");
    std::fs::create_dir_all(&named).expect("tree");
    std::fs::write(named.join("gilliam.yml"), format!("x-gilliam:\n  image: {repo}:v3\nweb:\n  ports: [8080]\n")).expect("app");
    let named_out = dir.join("named.json").display().to_string();
    let o = g(&["build", &named.display().to_string(), "--runtime-image", IMAGE, "--release-out", &named_out]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(release(Path::new(&named_out))["artifact"], serde_json::json!({ "image": format!("{repo}@{digest}") }));
    // And it deploys: the image is in ECR by that digest (an image in a repository of the
    // user's own: no tag of gilliam's is added to it).
    let app = root().join("examples/quickstart/gilliam.yml").display().to_string();
    let deployed =
        gilliam(&moto, &stage, None, &["deploy", "--app", &app, "--release", &out, "--out", &dir.join("out").display().to_string(), "--poll", "0.2"]);
    assert!(deployed.status.success(), "{}", text(&deployed));
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("out/manifest.json")).expect("manifest")).expect("JSON");
    assert_eq!(manifest["release"]["artifact_url"], format!("{repo}@{digest}"));

    // Promoted to the next stage by digest: the same reference, which the target sees in ECR.
    let prod = prod_stage(&dir, &stage);
    let promoted = dir.join("promoted").display().to_string();
    let promote = |release: &str| {
        gilliam(&moto, "/nonexistent.yml", Some(&dir), &["promote", "--from", &stage, "--to", &prod, release, "--poll", "0.2", "--out", &promoted])
    };
    let o = promote("1");
    assert!(o.status.success(), "{}", text(&o));
    let p: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("promoted/out/manifest.json")).expect("manifest")).expect("JSON");
    assert_eq!(p["release"]["artifact_url"], format!("{repo}@{digest}"), "the same image, by digest");
    // An image ECR no longer holds is not promoted.
    let id = aws_sdk_ecr::types::ImageIdentifier::builder().image_digest(&digest).build();
    ecr.batch_delete_image().repository_name("shop/api").image_ids(id).send().await.expect("delete");
    let o = promote("1");
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("ECR has no image with that digest") && text(&o).contains("refused"), "{}", text(&o));

    let o = g(&["build", &t, "--runtime-image", IMAGE, "--image", &format!("{repo}:v4")]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("has no image tagged v4"), "{}", text(&o));
    let o = g(&["build", &t, "--runtime-image", IMAGE, "--image", "registry.example.com/api:v3"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("give the digest"), "{}", text(&o));
    let pinned = format!("registry.example.com/api@sha256:{}", "a".repeat(64));
    let o = g(&["build", &t, "--runtime-image", IMAGE, "--image", &pinned, "--release-out", &out]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(release(Path::new(&out))["artifact"]["image"], pinned);
}

/// `x-gilliam: {build: {image: CMD}}`: the command makes `$GILLIAM_IMAGE` with the real engine
/// (dockerd on 127.0.0.1), gilliam makes the formation's repository (in moto's ECR) and pushes
/// the image there through the registry standing in for ECR's (docker-registry, bridged to
/// moto); the release pins the registry's digest. The same image built again is found in ECR
/// by its content and not pushed again; the release deploys, and its image is then held;
/// promoted, it is copied into the next stage's repository by the same digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_the_build_makes_is_pushed_once_to_the_formations_repository_and_deployed() {
    let Session { moto, dir, stage, app: _ } = session("build-push").await;
    let Some(engine) = gilliam_tests::engine::Engine::start_for_ecr(&moto.url, &[("123456789012", REGION)]) else { return };
    let env = [("DOCKER_HOST", engine.host()), ("GILLIAM_REGISTRY_ENDPOINT", engine.registry.clone())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let g = |args: &[&str]| gilliam_env(&moto, &stage, None, args, &env);
    // A reproducible build (as `pack build` is): the same content gives the same image ID.
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree).expect("tree");
    let import = engine.import_command("gilliam-test/web:src");
    std::fs::write(
        tree.join("make-image.sh"),
        format!("set -e\ndocker image inspect gilliam-test/web:src >/dev/null 2>&1 || {import}\ndocker tag gilliam-test/web:src \"$GILLIAM_IMAGE\"\n"),
    )
    .expect("script");
    let app = std::fs::read_to_string(root().join("examples/quickstart/gilliam.yml")).expect("app");
    std::fs::write(tree.join("gilliam.yml"), format!("x-gilliam:\n  build:\n    image: sh make-image.sh\n{app}")).expect("app");
    let (t, out) = (tree.display().to_string(), dir.join("release.json").display().to_string());

    let o = g(&["build", &t, "--runtime-image", IMAGE, "--release-out", &out]);
    assert!(o.status.success(), "{}", text(&o));
    let reference = release(Path::new(&out))["artifact"]["image"].as_str().expect("an image release").to_string();
    let repo = format!("123456789012.dkr.ecr.{REGION}.amazonaws.com/gilliam/shop");
    let digest = reference.strip_prefix(&format!("{repo}@")).unwrap_or_else(|| panic!("pinned in the formation's repository: {reference}")).to_string();
    let id = engine.run(&["image", "inspect", "--format", "{{.Id}}", "gilliam-test/web:src"]);
    let tag = gilliam_compiler::repository::build_tag(&id);
    assert_eq!(*engine.pushed.lock().expect("pushed"), vec![format!("gilliam/shop:{tag}@{digest}")], "pushed once, under its content's tag");
    // The repository, as gilliam made it in ECR.
    let conf = sdk_config(&moto).await;
    let ecr = aws_sdk_ecr::Client::new(&conf);
    let r = ecr.describe_repositories().repository_names("gilliam/shop").send().await.expect("repository");
    let r = &r.repositories()[0];
    assert_eq!(r.image_tag_mutability().map(|m| m.as_str()), Some("IMMUTABLE"));
    assert_eq!(r.image_scanning_configuration().map(|c| c.scan_on_push()), Some(true));
    assert_eq!(r.encryption_configuration().map(|c| c.encryption_type().as_str()), Some("KMS"));
    let policy = ecr.get_lifecycle_policy().repository_name("gilliam/shop").send().await.expect("policy");
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).expect("JSON");
    assert_eq!(parse(policy.lifecycle_policy_text().expect("text")), parse(&gilliam_compiler::repository::lifecycle_policy()));
    // What the registry holds by that digest is the image: pulled back by it, the same ID.
    engine.run(&["rmi", &format!("{}/gilliam/shop:{tag}", engine.registry)]);
    engine.run(&["pull", &format!("{}/gilliam/shop@{digest}", engine.registry)]);

    // Built again (another checkout, another machine: the same content): not pushed again.
    let again = dir.join("again.json").display().to_string();
    let o = g(&["build", &t, "--runtime-image", IMAGE, "--release-out", &again]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("not pushed again"), "{}", text(&o));
    assert_eq!(release(Path::new(&again))["artifact"]["image"], reference.as_str());
    assert_eq!(engine.pushed.lock().expect("pushed").len(), 1);

    // It deploys, and the release's tag then holds the image.
    let app = tree.join("gilliam.yml").display().to_string();
    let deployed = g(&["deploy", "--app", &app, "--release", &out, "--out", &dir.join("out").display().to_string(), "--poll", "0.2"]);
    assert!(deployed.status.success(), "{}", text(&deployed));
    let number = release(Path::new(&out))["number"].as_u64().expect("number");
    let id = aws_sdk_ecr::types::ImageIdentifier::builder().image_digest(&digest).build();
    let images = ecr.describe_images().repository_name("gilliam/shop").image_ids(id).send().await.expect("images");
    let tags = images.image_details()[0].image_tags().to_vec();
    assert!(tags.contains(&format!("gilliam-r{number}")) && tags.contains(&tag), "{tags:?}");

    // Promoted to the next stage: copied into that formation's own repository (its releases
    // must not hang on staging's lifecycle policy), by the same digest, and deployed there.
    let prod = prod_stage(&dir, &stage);
    let promoted = dir.join("promoted").display().to_string();
    let promote =
        || gilliam_env(&moto, "/nonexistent.yml", Some(&dir), &["promote", "--from", &stage, "--to", &prod, "--poll", "0.2", "--out", &promoted], &env);
    let o = promote();
    assert!(o.status.success(), "{}", text(&o));
    let p: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("promoted/out/manifest.json")).expect("manifest")).expect("JSON");
    let prod_repo = format!("123456789012.dkr.ecr.{REGION}.amazonaws.com/gilliam/shop-prod");
    assert_eq!(p["release"]["artifact_url"], format!("{prod_repo}@{digest}"), "{}", text(&o));
    assert!(engine.pushed.lock().expect("pushed").iter().any(|p| p.starts_with("gilliam/shop-prod:") && p.ends_with(&digest)), "through the registry");
    let id = aws_sdk_ecr::types::ImageIdentifier::builder().image_digest(&digest).build();
    let held = ecr.describe_images().repository_name("gilliam/shop-prod").image_ids(id).send().await.expect("prod's image");
    assert!(held.image_details()[0].image_tags().iter().any(|t| t.starts_with("gilliam-r")), "held by prod's release");
    // Promoted again: prod's repository has it; nothing is copied.
    let o = promote();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&format!("already in {prod_repo}")), "{}", text(&o));

    // A build command that makes no image: the way out.
    std::fs::write(tree.join("make-image.sh"), "true\n").expect("script");
    engine.run(&["rmi", "gilliam-build/shop:latest"]);
    let o = g(&["build", &t, "--runtime-image", IMAGE, "--release-out", &again]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("made no image gilliam-build/shop:latest") && text(&o).contains("$GILLIAM_IMAGE"), "{}", text(&o));
}
