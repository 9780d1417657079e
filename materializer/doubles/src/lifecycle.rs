//! What an ECR lifecycle policy expires, evaluated as ECR documents it ("Lifecycle policy
//! properties", "How lifecycle policies work"), since the emulator stores policies but never
//! runs them: rules apply lowest `rulePriority` first; an image is selected by at most one rule
//! (the first whose `tagStatus` and tag lists it matches); `sinceImagePushed` expires selected
//! images older than the count, `imageCountMoreThan` all but the newest `countNumber`.

use serde_json::Value;

/// An image as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub digest: String,
    pub tags: Vec<String>,
    /// Days since it was pushed.
    pub age_days: u32,
}

fn wildcard(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, rest)) => s.strip_prefix(head).is_some_and(|s| (0..=s.len()).any(|i| s.is_char_boundary(i) && wildcard(rest, &s[i..]))),
    }
}

fn selects(selection: &Value, image: &Image) -> bool {
    let list =
        |k: &str| -> Vec<String> { selection[k].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default() };
    match selection["tagStatus"].as_str() {
        Some("untagged") => image.tags.is_empty(),
        Some("any") => true,
        // Every prefix (or pattern) listed must be matched by one of the image's tags.
        Some("tagged") => {
            let (prefixes, patterns) = (list("tagPrefixList"), list("tagPatternList"));
            !image.tags.is_empty()
                && prefixes.iter().all(|p| image.tags.iter().any(|t| t.starts_with(p.as_str())))
                && patterns.iter().all(|p| image.tags.iter().any(|t| wildcard(p, t)))
                && !(prefixes.is_empty() && patterns.is_empty())
        }
        _ => false,
    }
}

/// The digests the policy `text` expires among `images`.
pub fn expired(text: &str, images: &[Image]) -> Result<Vec<String>, String> {
    let policy: Value = serde_json::from_str(text).map_err(|e| format!("lifecycle policy: {e}"))?;
    let mut rules: Vec<&Value> = policy["rules"].as_array().ok_or("lifecycle policy: no rules")?.iter().collect();
    rules.sort_by_key(|r| r["rulePriority"].as_u64().unwrap_or(u64::MAX));
    let mut claimed = vec![false; images.len()];
    let mut out = Vec::new();
    for rule in rules {
        let s = &rule["selection"];
        let mut picked: Vec<usize> = (0..images.len()).filter(|i| !claimed[*i] && selects(s, &images[*i])).collect();
        for i in &picked {
            claimed[*i] = true;
        }
        let n = s["countNumber"].as_u64().unwrap_or(0) as usize;
        let expire: Vec<usize> = match s["countType"].as_str() {
            Some("sinceImagePushed") => picked.into_iter().filter(|i| images[*i].age_days as usize > n).collect(),
            Some("imageCountMoreThan") => {
                picked.sort_by_key(|i| images[*i].age_days);
                picked.into_iter().skip(n).collect()
            }
            other => return Err(format!("lifecycle policy: countType {other:?}")),
        };
        if rule["action"]["type"] == "expire" {
            out.extend(expire.into_iter().map(|i| images[i].digest.clone()));
        }
    }
    out.sort();
    Ok(out)
}
