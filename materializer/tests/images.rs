//! The formation's image repository keeps what releases may return to: its lifecycle policy,
//! as the compiler writes it, evaluated the way ECR evaluates one (the emulator stores policies but never
//! runs them), against the images a formation holds: a live or cold release's image (tagged
//! `gilliam-rN`) never expires however old; an image no release holds does, two weeks after its
//! push; a retired release's image, once its tag is gone, becomes eligible.

use gilliam_doubles::fake::Fake;
use gilliam_doubles::lifecycle::{expired, Image};
use gilliam_materializer::aws::prelude::*;

fn policy() -> String {
    gilliam_compiler::repository::lifecycle_policy()
}

fn image(digest: &str, tags: &[&str], age_days: u32) -> Image {
    Image { digest: digest.into(), tags: tags.iter().map(|t| t.to_string()).collect(), age_days }
}

#[test]
fn the_lifecycle_policy_never_expires_a_live_or_cold_releases_image() {
    let policy = policy();
    let images = [
        image("sha256:live", &["gilliam-r9"], 400),
        image("sha256:cold", &["gilliam-r3"], 900),
        image("sha256:shared", &["gilliam-r4", "gilliam-r5"], 900),
        image("sha256:fresh-untagged", &[], 3),
        image("sha256:old-untagged", &[], 15),
        // What `gilliam build` pushed: kept two weeks unless a release holds it, however old.
        image("sha256:fresh-build", &["build-1"], 3),
        image("sha256:old-build", &["build-2"], 15),
        image("sha256:deployed-build", &["build-3", "gilliam-r8"], 400),
    ];
    assert_eq!(expired(&policy, &images).expect("evaluates"), vec!["sha256:old-build".to_string(), "sha256:old-untagged".to_string()]);
}

#[tokio::test]
async fn a_retired_releases_image_becomes_eligible_and_a_shared_one_stays_held() {
    let policy = policy();
    let aws = Fake::default();
    let (region, repo) = ("eu-west-1".to_string(), "gilliam/shop".to_string());
    aws.with(|w| {
        w.images.insert((region.clone(), repo.clone()), vec![("sha256:a".into(), Default::default()), ("sha256:b".into(), Default::default())]);
    });
    // Releases 4 and 5 run image a, release 6 image b; each is held by its own tag.
    for (n, d) in [(4, "sha256:a"), (5, "sha256:a"), (6, "sha256:b")] {
        aws.tag_image(&region, &repo, d, &format!("gilliam-r{n}")).await.expect("tag");
    }
    let held = |aws: &Fake| -> Vec<Image> {
        aws.with(|w| {
            w.images[&(region.clone(), repo.clone())]
                .iter()
                .map(|(d, t)| Image { digest: d.clone(), tags: t.iter().cloned().collect(), age_days: 100 })
                .collect()
        })
    };
    assert!(expired(&policy, &held(&aws)).expect("evaluates").is_empty());
    // Release 4 retired: image a stays, held by release 5's tag.
    aws.untag_image(&region, &repo, "gilliam-r4").await.expect("untag");
    assert!(expired(&policy, &held(&aws)).expect("evaluates").is_empty());
    // Release 6 retired: with its last tag, ECR deletes image b; and an image that was left
    // untagged some other way is eligible once it is two weeks old.
    aws.untag_image(&region, &repo, "gilliam-r6").await.expect("untag");
    assert_eq!(held(&aws).iter().map(|i| i.digest.as_str()).collect::<Vec<_>>(), ["sha256:a"]);
    let untagged = [image("sha256:a", &[], 15)];
    assert_eq!(expired(&policy, &untagged).expect("evaluates"), vec!["sha256:a".to_string()]);
}

#[test]
fn the_evaluator_follows_ecrs_rules_for_tagged_and_counted_selections() {
    // Rules apply by priority; an image claimed by one is not seen by the next.
    let policy = r#"{"rules": [
        {"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["keep"], "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}},
        {"rulePriority": 2, "selection": {"tagStatus": "any", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 10}, "action": {"type": "expire"}}
    ]}"#;
    let images = [image("k-new", &["keep-2"], 1), image("k-old", &["keep-1"], 50), image("other", &["x"], 20), image("young", &[], 2)];
    assert_eq!(expired(policy, &images).expect("evaluates"), vec!["k-old".to_string(), "other".to_string()]);
}

#[tokio::test]
async fn the_repository_is_made_once_with_its_policy_and_a_drifted_policy_is_set_back() {
    let aws = Fake::default();
    let said = std::sync::Mutex::new(Vec::<String>::new());
    let say = |m: &str| said.lock().expect("lock").push(m.to_string());
    let uri = gilliam_materializer::images::ensure_repository(&aws, "eu-west-1", "shop", &say).await.expect("made");
    assert_eq!(uri, "123456789012.dkr.ecr.eu-west-1.amazonaws.com/gilliam/shop");
    let key = ("eu-west-1".to_string(), "gilliam/shop".to_string());
    assert_eq!(aws.with(|w| w.repositories[&key].clone()), Some(policy()));
    // Again: nothing to do.
    aws.with(|w| w.calls.clear());
    gilliam_materializer::images::ensure_repository(&aws, "eu-west-1", "shop", &say).await.expect("again");
    let calls = aws.with(|w| w.calls.clone());
    assert!(!calls.iter().any(|c| *c == "create_repository" || *c == "put_lifecycle_policy"), "{calls:?}");
    // Someone edited the policy in the console: the next build sets it back.
    aws.with(|w| w.repositories.insert(key.clone(), Some(r#"{"rules": []}"#.into())));
    gilliam_materializer::images::ensure_repository(&aws, "eu-west-1", "shop", &say).await.expect("set back");
    assert_eq!(aws.with(|w| w.repositories[&key].clone()), Some(policy()));
    let said = said.lock().expect("lock").join("\n");
    assert!(said.contains("created") && said.contains("lifecycle policy set"), "{said}");
}
