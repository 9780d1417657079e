//! Names derived from user names: CloudFormation logical IDs, environment variable prefixes,
//! stack and export names, and AWS resource names shortened deterministically to their limits.

/// `api-v2` and `api_v2` both become `ApiV2`; collisions are reported by the compiler.
pub fn logical(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for part in name.split(['-', '_']).filter(|p| !p.is_empty()) {
        let mut cs = part.chars();
        if let Some(c) = cs.next() {
            out.push(c.to_ascii_uppercase());
            out.extend(cs);
        }
    }
    out
}

/// `api-v2` becomes `API_V2` (for `API_V2_URL`).
pub fn env_prefix(name: &str) -> String {
    name.chars().map(|c| if c == '-' { '_' } else { c.to_ascii_uppercase() }).collect()
}

pub use gilliam_contract::digest::sha256_hex;

/// Fits `name` into `max` characters. Names that fit are kept; longer ones keep a readable
/// prefix and end in `-` plus 6 hex digits of the full name's sha256, so two long names that
/// share a prefix never truncate into the same name.
pub fn shorten(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let hash = &sha256_hex(name.as_bytes())[..6];
    let keep = max - hash.len() - 1;
    let prefix = name[..keep].trim_end_matches('-');
    format!("{prefix}-{hash}")
}

/// Load balancer and target group names: at most 32 characters.
pub const ELB_NAME_MAX: usize = 32;
/// A DNS label: at most 63 characters.
pub const DNS_LABEL_MAX: usize = 63;

/// A service name as it appears in names AWS checks against DNS and ELBv2 rules (host names,
/// listener host conditions, target group names): `_` becomes `-`, and a label over 63
/// characters is shortened with a hash. Two services that map to the same label already map
/// to the same logical ID, which the compiler refuses.
pub fn dns_label(name: &str) -> String {
    shorten(&name.replace('_', "-"), DNS_LABEL_MAX)
}

/// A public route's listener rule ID, from what it matches (host and path): stable whatever
/// routes come and go around it. A positional ID would make CloudFormation replace rules that
/// did not change, and renumber them.
pub fn route_rule_id(host: Option<&str>, path: Option<&str>) -> String {
    let key = format!("{}\n{}", host.unwrap_or(""), path.unwrap_or(""));
    format!("Route{}", &sha256_hex(key.as_bytes())[..12])
}

pub fn formation_stack(formation: &str) -> String {
    formation.to_string()
}

/// Where an instance role's userdata is written: the `UserData` of the launch template
/// `launch_template` in `stack`'s template, as `templates/STACK.json#JSON-POINTER` (RFC 6901).
/// The manifest's userdata entries hold this instead of a file of their own, so that each
/// byte is written once.
pub fn userdata_location(stack: &str, launch_template: &str) -> String {
    format!("templates/{stack}.json#/Resources/{launch_template}/Properties/LaunchTemplateData/UserData/Fn::Base64")
}

pub fn routing_stack(formation: &str, group: u32) -> String {
    format!("{formation}-routing-{group}")
}

pub fn release_stack(formation: &str, release: u32, part: u32, parts: u32) -> String {
    if parts <= 1 {
        format!("{formation}-r{release}")
    } else {
        format!("{formation}-r{release}-{part}")
    }
}

/// The formation's ECR repository: `gilliam/FORMATION`.
pub fn image_repository(formation: &str) -> String {
    format!("gilliam/{formation}")
}

/// The formation's CloudWatch Logs group: `/gilliam/FORMATION`.
pub fn log_group(formation: &str) -> String {
    format!("/gilliam/{formation}")
}

/// What every release's image tag starts with (the lifecycle policy's hold rule selects it).
pub const RELEASE_IMAGE_TAG_PREFIX: &str = "gilliam-r";

/// The tag that keeps release `n`'s image from the repository's lifecycle policy.
pub fn release_image_tag(release: u32) -> String {
    format!("{RELEASE_IMAGE_TAG_PREFIX}{release}")
}

/// Whether `stack` is one of `formation`'s: its formation stack, a routing stack, a release's.
pub fn is_formation_stack(formation: &str, stack: &str) -> bool {
    let Some(rest) = stack.strip_prefix(formation) else { return false };
    if rest.is_empty() || rest.strip_prefix("-routing-").is_some_and(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit())) {
        return true;
    }
    let Some(n) = rest.strip_prefix("-r") else { return false };
    let (number, part) = n.split_once('-').unwrap_or((n, "1"));
    !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) && !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())
}

/// The export through which routing stacks find a release's target group.
pub fn target_group_export(formation: &str, release: u32, service: &str, public: bool) -> String {
    target_group_export_of(formation, release, &logical(service), public)
}

/// [`target_group_export`] from the service's logical ID (`logical(service)`), which the
/// compiler holds already: a thousand services' rules name it for every live release.
pub fn target_group_export_of(formation: &str, release: u32, logical_id: &str, public: bool) -> String {
    format!("{formation}-r{release}-{logical_id}-{}", if public { "PublicTargetGroup" } else { "InternalTargetGroup" })
}

pub fn formation_export(formation: &str, what: &str) -> String {
    format!("{formation}-{what}")
}

pub fn internal_domain(formation: &str) -> String {
    format!("{formation}.internal")
}

pub fn secret_name(formation: &str, aux: &str) -> String {
    gilliam_contract::keys::auxiliary_secret(formation, aux)
}

/// The logical ID of the test-header twin of rule `rule` (`Route1a2b3c4dTest`).
pub fn test_rule_id(rule: &str) -> String {
    format!("{rule}Test")
}

/// Whether a listener rule's logical ID is a test-header rule's: its forward is no weight.
pub fn is_test_rule(logical: &str) -> bool {
    logical.ends_with("Test")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_formations_stacks_are_told_from_others() {
        for ours in ["shop", "shop-routing-2", "shop-r12", "shop-r12-3"] {
            assert!(is_formation_stack("shop", ours), "{ours}");
        }
        for theirs in ["shopfront", "shop-api", "shop-routing-", "shop-r", "shop-rx", "shop-r1-", "net", "shop-r1-a"] {
            assert!(!is_formation_stack("shop", theirs), "{theirs}");
        }
    }

    #[test]
    fn logical_ids_fold_separators() {
        assert_eq!(logical("api-v2"), "ApiV2");
        assert_eq!(logical("api_v2"), "ApiV2");
        assert_eq!(logical("web"), "Web");
        assert_eq!(env_prefix("api-v2"), "API_V2");
    }

    #[test]
    fn dns_labels_hold_no_underscore_and_fit_63() {
        assert_eq!(dns_label("my_api"), "my-api");
        assert_eq!(dns_label("web"), "web");
        let long = format!("{}-0", "a".repeat(63));
        assert_eq!(dns_label(&long).len(), 63);
        assert_ne!(dns_label(&long), dns_label(&format!("{}-1", "a".repeat(63))));
    }

    #[test]
    fn shorten_keeps_short_names_and_hashes_long_ones() {
        assert_eq!(shorten("shop-r1-api-i", 32), "shop-r1-api-i");
        let a = shorten("checkout-prod-r123456-payment-gateway-i", 32);
        let b = shorten("checkout-prod-r123456-payment-gateway-p", 32);
        assert_eq!(a.len(), 32);
        assert_eq!(b.len(), 32);
        assert_ne!(a, b);
        assert_eq!(a, shorten("checkout-prod-r123456-payment-gateway-i", 32));
        assert!(!a.contains("--"));
    }
}
