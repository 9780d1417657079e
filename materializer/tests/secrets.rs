//! The auxiliaries' secrets, which the materializer keeps instead of CloudFormation: made with a
//! password Secrets Manager generates, adopted when an earlier formation left one (where a
//! stack's own secret would fail with ResourceExistsException), restored when scheduled for
//! deletion, and, for a cache, given the endpoint its TLS certificate covers. Against moto for
//! what it models, and the scripted fake for stack outputs (moto has no ElastiCache).

mod common;

use common::*;
use gilliam_materializer::aws::prelude::*;
use gilliam_materializer::aws::PutCondition;
use gilliam_materializer::bundle::Bundle;
use gilliam_materializer::converge::Converger;
use gilliam_materializer::plan::Action;
use gilliam_materializer::sdk::{Endpoint, SdkAws};
use gilliam_tests::moto;

fn password_of(value: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(value).expect("a JSON secret");
    v["password"].as_str().expect("password").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_an_earlier_formation_left_is_adopted_and_a_deleted_one_restored() {
    for scheduled in [false, true] {
        let moto = moto::Moto::start();
        let aws = SdkAws::connect(&Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) }).await;
        let stage = network(&aws, &moto.url).await;
        aws.create_secure_bucket(ARTIFACTS, REGION).await.expect("artifact bucket");
        aws.put_object(ARTIFACTS, "a.tgz", b"x".to_vec(), PutCondition::Always).await.expect("artifact");
        // What a deleted formation leaves: its database's credentials (the snapshot's password).
        let left = r#"{"username": "gilliam", "password": "the-snapshots-password"}"#;
        aws.put_secret("gilliam/shop/db", left, "shop").await.expect("left behind");
        if scheduled {
            aws.delete_secret("gilliam/shop/db").await.expect("scheduled for deletion");
            assert_eq!(aws.describe_secret("gilliam/shop/db").await.expect("describe"), Some(true));
        }
        let b = compile_in(if scheduled { "secrets-restored" } else { "secrets-adopted" }, &stage, 1, "a.tgz", &gilliam_materializer::sha256_hex(b"x"));
        let plan = Converger::new(&aws, &b, opts(), &|_| {}).plan().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(!plan.actions.iter().any(|a| matches!(a, Action::CreateSecret { .. })), "{}", plan.render());
        assert_eq!(plan.actions.iter().any(|a| matches!(a, Action::RestoreSecret { .. })), scheduled, "{}", plan.render());
        Converger::new(&aws, &b, opts(), &|_| {}).apply(&plan).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(aws.describe_secret("gilliam/shop/db").await.expect("describe"), Some(false));
        assert_eq!(password_of(&aws.secret_value("gilliam/shop/db").await.expect("read").expect("value")), "the-snapshots-password", "used as it is");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_formation_gets_a_generated_password_never_written_anywhere_else() {
    let moto = moto::Moto::start();
    let aws = SdkAws::connect(&Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) }).await;
    let stage = network(&aws, &moto.url).await;
    aws.create_secure_bucket(ARTIFACTS, REGION).await.expect("artifact bucket");
    aws.put_object(ARTIFACTS, "a.tgz", b"x".to_vec(), PutCondition::Always).await.expect("artifact");
    let b = compile_in("secrets-new", &stage, 1, "a.tgz", &gilliam_materializer::sha256_hex(b"x"));
    let report = Converger::new(&aws, &b, opts(), &|_| {}).run().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(report.changes.iter().any(|c| c == "+ secret gilliam/shop/db"), "{:?}", report.changes);
    let password = password_of(&aws.secret_value("gilliam/shop/db").await.expect("read").expect("value"));
    assert_eq!(password.len(), 32);
    assert!(!password.contains(['@', '/', ':', '"', ' ']), "no character that needs escaping in a URL: {password}");
    // Not in any template, nor in anything published.
    for stack in ["shop", "shop-r1", "shop-routing-1"] {
        assert!(!aws.get_template(stack).await.expect("template").contains(&password), "{stack}");
    }
    for key in ["gilliam/shop/manifest.json", "gilliam/shop/state.json"] {
        let o = aws.get_object(BUCKET, key).await.expect("get").expect("published");
        assert!(!String::from_utf8_lossy(&o.body).contains(&password), "{key}");
    }
    // Converging again keeps the secret as it is.
    let plan = Converger::new(&aws, &b, opts(), &|_| {}).plan().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(plan.is_empty(), "{}", plan.render());
}

fn cache_bundle(name: &str) -> Bundle {
    let app = "api:\n  script: bin/api\n  ports: [8080]\n  routes: [/api/*]\ncache:\n  type: redis\n";
    let sha = gilliam_materializer::sha256_hex(b"art");
    let release = format!(
        r#"{{"number": 1, "artifact": {{"url": "s3://art/a.tgz", "sha256": "{sha}"}}, "runtime_image": "ami-0a1b2c3d4e5f60718", "revision": "r", "created": "2026-11-22T10:00:00Z"}}"#
    );
    let stage = "formation: shop\nregion: eu-west-1\nvpc: vpc-0a1b2c3d4e5f60718\npublic_subnets: [subnet-00000001, subnet-00000002]\nprivate_subnets: [subnet-00000011, subnet-00000012]\noutputs_bucket: out-bucket\n";
    let dir = root().join("target/test-scratch/secrets").join(name);
    gilliam_tests::compile_into(app, &release, stage, &dir);
    Bundle::load(&dir).expect("bundle")
}

#[tokio::test(start_paused = true)]
async fn a_cache_secret_holds_the_endpoint_its_certificate_covers() {
    let aws = gilliam_doubles::fake::Fake::default();
    aws.with(|w| {
        w.buckets.push("art".into());
        w.outputs.insert(
            "shop".into(),
            vec![("AuxCacheAddress".into(), "master.shop-cache.abc123.euw1.cache.amazonaws.com".into()), ("AuxCachePort".into(), "6379".into())],
        );
    });
    aws.put_object("art", "a.tgz", b"art".to_vec(), PutCondition::Always).await.expect("artifact");
    let b = cache_bundle("endpoint");
    // The agent builds the URL from the secret's fields: the cache's own endpoint, not the
    // private zone's CNAME, which the cache's certificate does not name.
    let cfg = std::fs::read_to_string(b.dir.join("userdata/api.sh")).expect("userdata");
    assert!(cfg.contains("\"format\":\"rediss://:{password}@{host}:{port}\""), "{cfg}");
    let plan = Converger::new(&aws, &b, opts(), &|_| {}).plan().await.unwrap_or_else(|e| panic!("{e}"));
    let order: Vec<String> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateSecret { name } => Some(format!("create {name}")),
            Action::CreateStack { stack, .. } => Some(format!("stack {stack}")),
            Action::SecretEndpoint { name } => Some(format!("endpoint {name}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        ["create gilliam/shop/cache", "stack shop", "endpoint gilliam/shop/cache", "stack shop-r1"],
        "the secret before the stack that reads it, the endpoint before the instances"
    );
    Converger::new(&aws, &b, opts(), &|_| {}).apply(&plan).await.unwrap_or_else(|e| panic!("{e}"));
    let value: serde_json::Value = serde_json::from_str(&aws.with(|w| w.secrets["gilliam/shop/cache"].0.clone())).expect("json");
    assert_eq!(value["username"], "default");
    assert_eq!(value["host"], "master.shop-cache.abc123.euw1.cache.amazonaws.com");
    assert_eq!(value["port"], "6379");
    let password = value["password"].clone();

    // The cache replaced elsewhere: the next converge writes the new endpoint, keeps the password.
    aws.with(|w| w.outputs.get_mut("shop").expect("outputs")[0].1 = "master.shop-cache.def456.euw1.cache.amazonaws.com".into());
    let plan = Converger::new(&aws, &b, opts(), &|_| {}).plan().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(plan.actions.iter().any(|a| matches!(a, Action::SecretEndpoint { .. })), "{}", plan.render());
    Converger::new(&aws, &b, opts(), &|_| {}).apply(&plan).await.unwrap_or_else(|e| panic!("{e}"));
    let value: serde_json::Value = serde_json::from_str(&aws.with(|w| w.secrets["gilliam/shop/cache"].0.clone())).expect("json");
    assert_eq!((value["host"].as_str(), &value["password"]), (Some("master.shop-cache.def456.euw1.cache.amazonaws.com"), &password));
    let plan = Converger::new(&aws, &b, opts(), &|_| {}).plan().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(!plan.actions.iter().any(|a| matches!(a, Action::SecretEndpoint { .. } | Action::CreateSecret { .. })), "{}", plan.render());
}

/// ElastiCache takes no punctuation in an AUTH token but `! & # $ ^ < > -`, and RDS none of
/// `/ @ " space`: the one generated password must satisfy both, every time. On the local AWS,
/// through the real GetRandomPassword call with the parameters gilliam sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_passwords_are_valid_auth_tokens_and_database_passwords() {
    let moto = moto::Moto::start();
    let aws = SdkAws::connect(&Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) }).await;
    for _ in 0..50 {
        let p = aws.random_password().await.expect("password");
        assert_eq!(gilliam_doubles::strict::auth_token_problem(&p), None, "{p}");
        assert!(!p.contains(['/', '@', '"', ' ']), "RDS refuses it: {p}");
        assert!(p.chars().any(|c| c.is_ascii_uppercase()) && p.chars().any(|c| c.is_ascii_lowercase()) && p.chars().any(|c| c.is_ascii_digit()), "{p}");
    }
}

/// A cache whose secret holds a password ElastiCache would refuse fails here as it fails on
/// AWS (the strict layer resolves the template's dynamic reference, as CloudFormation does);
/// one with a generated password goes through.
#[tokio::test(start_paused = true)]
async fn the_strict_layer_refuses_an_auth_token_elasticache_refuses() {
    let b = cache_bundle("auth-token");
    let formation = std::fs::read_to_string(b.dir.join("templates/shop.json")).expect("formation template");
    assert!(formation.contains("{{resolve:secretsmanager:gilliam/shop/cache:SecretString:password}}"), "the AuthToken is resolved from the secret");
    let req = gilliam_materializer::aws::StackRequest {
        name: "shop".into(),
        template: gilliam_materializer::aws::TemplateSource::Body(formation),
        capabilities: Vec::new(),
        tags: Vec::new(),
    };
    let fake = gilliam_doubles::fake::Fake::default();
    fake.put_secret("gilliam/shop/cache", r#"{"username": "default", "password": "Abcdefgh(1234567890)xyz"}"#, "shop").await.expect("secret");
    let strict = gilliam_doubles::strict::Strict::new(fake);
    let err = strict.create_stack(&req).await.expect_err("refused");
    assert!(err.to_string().contains("Invalid AuthToken"), "{err}");
    strict.inner.put_secret_value("gilliam/shop/cache", r#"{"username": "default", "password": "Abcdefgh1234567890xyzABCDEFGH123"}"#).await.expect("value");
    strict.create_stack(&req).await.unwrap_or_else(|e| panic!("{e}"));
}
