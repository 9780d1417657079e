//! An image copied by its digest into another account's repository in another region, as
//! `gilliam promote` does when the target cannot pull from the source: moto for ECR's API in
//! both accounts (the second account's keys made in moto's IAM, read from a profile as an
//! operator's would be), the real engine and registry (dockerd, docker-registry on 127.0.0.1)
//! for the registry protocol, with the registry standing in for both accounts' registries.

use gilliam_materializer::aws::prelude::*;
use gilliam_materializer::images;
use gilliam_materializer::sdk::{Endpoint, SdkAws};
use gilliam_tests::engine::Engine;
use gilliam_tests::moto::Moto;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_goes_to_another_accounts_repository_in_another_region_by_its_digest() {
    let moto = Moto::start();
    let (key, secret) = gilliam_tests::moto::account_keys(&moto.url, "222222222222");
    let dir = gilliam_tests::scratch("image-copy");
    std::fs::write(dir.join("credentials"), format!("[prod]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n")).expect("credentials");
    std::fs::write(dir.join("config"), "[profile prod]\nregion = us-west-2\n").expect("config");
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", dir.join("credentials"));
    std::env::set_var("AWS_CONFIG_FILE", dir.join("config"));
    let Some(engine) = Engine::start_for_ecr(&moto.url, &[("123456789012", "us-east-1"), ("222222222222", "us-west-2")]) else { return };
    std::env::set_var("GILLIAM_REGISTRY_ENDPOINT", &engine.registry);
    let endpoint = |region: &str| Endpoint { url: Some(moto.url.clone()), region: Some(region.into()) };
    let staging = SdkAws::connect(&endpoint("us-east-1")).await;
    let prod = SdkAws::connect_as(&endpoint("us-west-2"), Some("prod")).await;
    let said = std::sync::Mutex::new(Vec::<String>::new());
    let say = |m: &str| said.lock().expect("said").push(m.to_string());

    // Staging's repository, in the first account, with an image pushed to it.
    let source = images::ensure_repository(&staging, "us-east-1", "shop", &say).await.expect("source repository");
    assert!(source.starts_with("123456789012.dkr.ecr.us-east-1.amazonaws.com/"), "{source}");
    let pushed = format!("{}/gilliam/shop:v1", engine.registry);
    let import = engine.import_command(&pushed);
    let out = std::process::Command::new("sh").args(["-c", &import]).env("DOCKER_HOST", engine.host()).output().expect("import");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    engine.run(&["push", &pushed]);
    let id = engine.run(&["image", "inspect", "--format", "{{.Id}}", &pushed]);
    let digest = engine.run(&["inspect", "--format", "{{index .RepoDigests 0}}", &pushed]).rsplit_once('@').expect("digest").1.to_string();
    images::wait_listed(&staging, "us-east-1", "gilliam/shop", &digest, Duration::from_secs(60)).await.expect("listed in staging");
    let reference = format!("{source}@{digest}");

    // Copied into prod's repository, made there, in the second account and region.
    let copied = images::copy_to_formation(&staging, &reference, &prod, "us-west-2", "shop-prod", &say).await.expect("copied");
    assert_eq!(copied, format!("222222222222.dkr.ecr.us-west-2.amazonaws.com/gilliam/shop-prod@{digest}"));
    let there = prod.describe_image("us-west-2", "gilliam/shop-prod", &digest).await.expect("describe").expect("prod's ECR lists it");
    assert_eq!(there.tags, vec![gilliam_compiler::repository::build_tag(&digest)]);
    assert!(staging.describe_repository("us-west-2", "gilliam/shop-prod").await.expect("describe").is_none(), "made in prod's account, not staging's");
    assert!(said.lock().expect("said").iter().any(|l| l.contains("copied to") && l.contains("blobs")), "{:?}", said.lock());
    // What prod's repository holds by that digest is the same image.
    engine.run(&["rmi", &pushed]);
    engine.run(&["pull", &format!("{}/gilliam/shop-prod@{digest}", engine.registry)]);
    assert_eq!(engine.run(&["image", "inspect", "--format", "{{.Id}}", &format!("{}/gilliam/shop-prod@{digest}", engine.registry)]), id);

    // Promoted again: prod lists it already, nothing is sent.
    said.lock().expect("said").clear();
    let again = images::copy_to_formation(&staging, &reference, &prod, "us-west-2", "shop-prod", &say).await.expect("again");
    assert_eq!(again, copied);
    assert!(said.lock().expect("said").iter().any(|l| l.contains("already in")), "{:?}", said.lock());

    // A digest the source registry does not hold: refused, saying which.
    let missing = format!("{source}@sha256:{}", "0".repeat(64));
    let e = images::copy_to_formation(&staging, &missing, &prod, "us-west-2", "shop-prod", &say).await.expect_err("refused");
    assert!(e.to_string().contains("HTTP 404") && e.to_string().contains(&"0".repeat(64)), "{e}");
}
