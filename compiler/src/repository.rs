//! The formation's image repository, `gilliam/FORMATION`, as data: its settings and the
//! lifecycle policy that can never expire an image a live or cold release uses. `gilliam
//! build` (and `gilliam promote`) create it when it is missing, as they do the outputs bucket,
//! so that the first release's image has somewhere to go before any stack exists.

use serde_json::json;

/// Days an image no release holds (a build never deployed, a retired release's) stays.
pub const IMAGE_GRACE_DAYS: u32 = 14;

/// The tag `gilliam build` gives the image it pushes: its content (the local image's ID), so
/// that the same image, from whichever machine, lands once.
pub const BUILD_TAG_PREFIX: &str = "build-";

/// The tag of a build whose local image ID is `id` (`sha256:HEX` or `HEX`).
pub fn build_tag(id: &str) -> String {
    format!("{BUILD_TAG_PREFIX}{}", id.strip_prefix("sha256:").unwrap_or(id))
}

/// The lifecycle policy, in ECR's JSON. Rules apply by priority and an image selected by one
/// cannot be expired by a later one (ECR, "Lifecycle policy properties"), so the first rule
/// claims every image a release holds (`gilliam-rN`, added on deploy, removed on retire) and
/// keeps it: no count a formation reaches. Then builds and untagged images go two weeks after
/// their push.
pub fn lifecycle_policy() -> String {
    let hold = crate::names::RELEASE_IMAGE_TAG_PREFIX;
    json!({ "rules": [
        {
            "rulePriority": 1,
            "description": "an image a live or cold release holds (tag gilliam-rN) is kept",
            "selection": { "tagStatus": "tagged", "tagPrefixList": [hold], "countType": "imageCountMoreThan", "countNumber": 9999 },
            "action": { "type": "expire" },
        },
        {
            "rulePriority": 2,
            "description": "a build no release holds goes two weeks after its push",
            "selection": { "tagStatus": "tagged", "tagPrefixList": [BUILD_TAG_PREFIX], "countType": "sinceImagePushed", "countUnit": "days", "countNumber": IMAGE_GRACE_DAYS },
            "action": { "type": "expire" },
        },
        {
            "rulePriority": 3,
            "description": "an untagged image (a retired release's, the last tag gone) goes two weeks after its push",
            "selection": { "tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": IMAGE_GRACE_DAYS },
            "action": { "type": "expire" },
        },
    ] })
    .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_hold_rule_names_the_release_tags_prefix() {
        let p: serde_json::Value = serde_json::from_str(&super::lifecycle_policy()).expect("JSON");
        assert_eq!(p["rules"][0]["selection"]["tagPrefixList"][0], "gilliam-r");
        assert!(crate::names::release_image_tag(12).starts_with("gilliam-r"));
        assert_eq!(super::build_tag("sha256:abc"), "build-abc");
    }
}
