//! The stage file: where a formation runs (account-side settings), decoded and checked.

use crate::app::{self, PartialScale};
use crate::decode::{self, Fields};
use crate::diag::{Pos, Sink};
use crate::node::Node;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    pub id: String,
    pub zone: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    pub instance_type: String,
    pub root_volume_gb: u32,
    pub scale: PartialScale,
}

/// Adjustable AWS quotas in force for this account (the defaults unless raised).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    pub load_balancers: u32,
    pub rules_per_load_balancer: u32,
    /// Target groups per region (ELBv2, shared with every other user of the account).
    pub target_groups: u32,
    /// CloudFormation stacks per region.
    pub stacks: u32,
}

impl Default for Quotas {
    /// AWS's defaults.
    fn default() -> Self {
        Quotas { load_balancers: 50, rules_per_load_balancer: 100, target_groups: 3000, stacks: 2000 }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub formation: String,
    pub formation_pos: Pos,
    pub region: String,
    pub vpc: String,
    pub public_subnets: Vec<Subnet>,
    pub public_subnets_pos: Pos,
    pub private_subnets: Vec<Subnet>,
    pub private_subnets_pos: Pos,
    pub domain: Option<String>,
    pub certificate: Option<String>,
    pub defaults: Defaults,
    pub outputs_bucket: String,
    pub keep_releases: u32,
    /// Releases kept cold beyond `keep_releases`: out of routing, Auto Scaling groups at zero,
    /// stacks (target groups, launch templates) kept, so that a rollback to one only warms it.
    pub cold_releases: u32,
    pub auxiliary_image: Option<String>,
    pub routing_groups: Option<u32>,
    pub quotas: Quotas,
    /// Seconds a release's target groups keep a deregistering target for its requests in flight
    /// (`deregistration_delay.timeout_seconds`); the agent drains that long on shutdown, and the
    /// materializer waits that long after a release's weight reaches 0 before scaling it down.
    pub deregistration_delay: u32,
    /// Days the formation's log group keeps its events (`log_retention_days`, one of
    /// CloudWatch Logs' allowed values; default 30).
    pub log_retention_days: u32,
    /// `analysis`, `hooks`, `stickiness`, `notifications`: over gilliam.yml's, key by key.
    pub delivery: crate::delivery::Partial,
    pub root_pos: Pos,
}

const KEYS: &[&str] = &[
    "formation",
    "region",
    "vpc",
    "public_subnets",
    "private_subnets",
    "domain",
    "certificate",
    "defaults",
    "outputs_bucket",
    "keep_releases",
    "cold_releases",
    "auxiliary_image",
    "routing_groups",
    "quotas",
    "deregistration_delay",
    "log_retention_days",
    "analysis",
    "hooks",
    "stickiness",
    "notifications",
    "release",
];
const DEFAULT_KEYS: &[&str] = &["instance_type", "root_volume_gb", "scale"];
const QUOTA_KEYS: &[&str] = &["load_balancers", "rules_per_load_balancer", "target_groups", "stacks"];

/// Days a formation's log group keeps its events, unless the stage file says.
pub const DEFAULT_LOG_RETENTION_DAYS: u32 = 30;
/// What CloudWatch Logs accepts as a log group's `RetentionInDays`.
pub const LOG_RETENTION_DAYS: &[u32] = &[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

/// Seconds a deregistering target keeps its requests in flight, unless the stage file says.
pub const DEFAULT_DEREGISTRATION_DELAY: u32 = 30;

/// Most previous releases kept running: with the serving release and one being deployed, a
/// weighted forward then names at most 5 target groups, the ELBv2 limit.
pub const MAX_KEEP_RELEASES: u32 = 3;
/// Cold releases hold no listener rule, so ELBv2's limits do not bound them; their stacks and
/// target groups still count against the account's quotas (CloudFormation stacks, target
/// groups per region), and each is one more stack to list: a dozen is plenty for rollback.
pub const MAX_COLD_RELEASES: u32 = 12;

pub(crate) fn is_formation_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 24
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
        && !s.contains("--")
        // ELBv2 refuses load balancer names that start with `internal-` (FORMATION-public-1).
        && s != "internal"
        && !s.starts_with("internal-")
}

pub(crate) fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
        && parts[parts.len() - 1].bytes().all(|c| c.is_ascii_digit())
}

pub(crate) fn is_aws_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|h| (8..=17).contains(&h.len()) && h.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)))
}

pub(crate) fn is_bucket_name(s: &str) -> bool {
    let b = s.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !s.contains("..")
}

fn is_domain(s: &str) -> bool {
    s.len() <= 253
        && s.contains('.')
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn is_certificate_arn(s: &str) -> bool {
    let p: Vec<&str> = s.splitn(6, ':').collect();
    p.len() == 6
        && p[0] == "arn"
        && p[1].starts_with("aws")
        && p[2] == "acm"
        && is_region(p[3])
        && p[4].len() == 12
        && p[4].bytes().all(|c| c.is_ascii_digit())
        && p[5].starts_with("certificate/")
        && p[5].len() > 12
}

pub(crate) fn decode(root: &Node, sink: &mut Sink<'_>) -> Option<Stage> {
    let entries = decode::map(root, sink, "the stage file")?;
    let mut f = Fields::new(entries);
    let missing = |k: &str, what: &str, sink: &mut Sink<'_>| {
        sink.error_hint(root.pos, format!("the stage file has no `{k}`"), format!("add `{k}: {what}`"));
    };

    let formation_node = f.get("formation");
    let formation = match formation_node {
        Some(n) => decode::string(n, sink, "`formation`").filter(|s| {
            decode::check(
                sink,
                n.pos,
                is_formation_name(s),
                format!("bad formation name `{s}`"),
                "start with a lowercase letter; lowercase letters, digits and single `-`; at most 24 characters; not `internal` or `internal-...` (ELBv2 keeps that prefix for itself)",
            )
        }),
        None => {
            missing("formation", "NAME", sink);
            None
        }
    };
    let region = match f.get("region") {
        Some(n) => decode::string(n, sink, "`region`")
            .filter(|s| decode::check(sink, n.pos, is_region(s), format!("bad region `{s}`"), "write an AWS region such as `eu-west-1`")),
        None => {
            missing("region", "eu-west-1", sink);
            None
        }
    };
    let vpc = match f.get("vpc") {
        Some(n) => decode::string(n, sink, "`vpc`")
            .filter(|s| decode::check(sink, n.pos, is_aws_id(s, "vpc-"), format!("bad VPC id `{s}`"), "write a VPC id such as `vpc-0123456789abcdef0`")),
        None => {
            missing("vpc", "vpc-0123456789abcdef0", sink);
            None
        }
    };
    let public_node = f.get("public_subnets");
    let public_subnets = public_node.map(|n| subnets(n, sink, "`public_subnets`")).unwrap_or_default();
    let private_node = f.get("private_subnets");
    let private_subnets = match private_node {
        Some(n) => subnets(n, sink, "`private_subnets`"),
        None => {
            missing("private_subnets", "[subnet-..., subnet-...]", sink);
            Vec::new()
        }
    };
    let domain = f.get("domain").and_then(|n| {
        decode::string(n, sink, "`domain`")
            .filter(|s| decode::check(sink, n.pos, is_domain(s), format!("bad domain `{s}`"), "write a lowercase DNS name such as `shop.example.com`"))
    });
    let certificate = f.get("certificate").and_then(|n| {
        decode::string(n, sink, "`certificate`").filter(|s| {
            decode::check(
                sink,
                n.pos,
                is_certificate_arn(s),
                format!("bad certificate `{s}`"),
                "give an ACM certificate ARN: arn:aws:acm:REGION:ACCOUNT:certificate/ID",
            )
        })
    });
    let defaults = match f.get("defaults") {
        Some(n) => defaults(n, sink),
        None => Defaults { instance_type: "t3.small".into(), root_volume_gb: 20, scale: PartialScale::default() },
    };
    let outputs_bucket = match f.get("outputs_bucket") {
        Some(n) => decode::string(n, sink, "`outputs_bucket`").filter(|s| {
            decode::check(sink, n.pos, is_bucket_name(s), format!("bad bucket name `{s}`"), "an S3 bucket name: 3-63 lowercase letters, digits, `-` and `.`")
        }),
        None => {
            missing("outputs_bucket", "BUCKET", sink);
            None
        }
    };
    let keep_releases = f.get("keep_releases").and_then(|n| decode::int_in(n, sink, "`keep_releases`", 0, MAX_KEEP_RELEASES as i64)).map_or(2, |v| v as u32);
    let cold_releases = f.get("cold_releases").and_then(|n| decode::int_in(n, sink, "`cold_releases`", 0, MAX_COLD_RELEASES as i64)).map_or(0, |v| v as u32);
    let auxiliary_image = f.get("auxiliary_image").and_then(|n| {
        decode::string(n, sink, "`auxiliary_image`")
            .filter(|s| decode::check(sink, n.pos, is_aws_id(s, "ami-"), format!("bad image id `{s}`"), "give an AMI id such as `ami-0123456789abcdef0`"))
    });
    let routing_groups = f.get("routing_groups").and_then(|n| decode::int_in(n, sink, "`routing_groups`", 1, 200)).map(|v| v as u32);
    let quotas = match f.get("quotas") {
        Some(n) => quotas(n, sink),
        None => Quotas::default(),
    };
    let deregistration_delay = f
        .get("deregistration_delay")
        .and_then(|n| crate::delivery::seconds(n, sink, "`deregistration_delay`", 0, 3600))
        .unwrap_or(DEFAULT_DEREGISTRATION_DELAY);
    let log_retention_days = f
        .get("log_retention_days")
        .and_then(|n| {
            let v = decode::int_in(n, sink, "`log_retention_days`", 1, 3653)? as u32;
            let list = LOG_RETENTION_DAYS.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
            decode::check(
                sink,
                n.pos,
                LOG_RETENTION_DAYS.contains(&v),
                format!("`log_retention_days` {v} is not a retention CloudWatch Logs offers"),
                &format!("one of {list}"),
            )
            .then_some(v)
        })
        .unwrap_or(DEFAULT_LOG_RETENTION_DAYS);
    let delivery = crate::delivery::decode(&mut f, sink, true);
    f.finish(sink, KEYS, "the stage file");
    Some(Stage {
        formation: formation?,
        formation_pos: formation_node.map_or(root.pos, |n| n.pos),
        region: region?,
        vpc: vpc?,
        public_subnets,
        public_subnets_pos: public_node.map_or(root.pos, |n| n.pos),
        private_subnets,
        private_subnets_pos: private_node.map_or(root.pos, |n| n.pos),
        domain,
        certificate,
        defaults,
        outputs_bucket: outputs_bucket?,
        keep_releases,
        cold_releases,
        auxiliary_image,
        routing_groups,
        quotas,
        deregistration_delay,
        log_retention_days,
        delivery,
        root_pos: root.pos,
    })
}

fn subnets(n: &Node, sink: &mut Sink<'_>, what: &str) -> Vec<Subnet> {
    let Some(list) = decode::seq(n, sink, what) else {
        return Vec::new();
    };
    let mut out: Vec<Subnet> = Vec::new();
    for item in list {
        let (id_node, zone) = match &item.value {
            crate::node::Value::Map(entries) => {
                let mut f = Fields::new(entries);
                let id = f.get("id");
                let zone = f.get("zone").and_then(|z| decode::string(z, sink, "`zone`"));
                f.finish(sink, &["id", "zone"], "a subnet");
                match id {
                    Some(id) => (id, zone),
                    None => {
                        sink.error_hint(item.pos, "a subnet needs an `id`", "write `{id: subnet-..., zone: eu-west-1a}` or just `subnet-...`");
                        continue;
                    }
                }
            }
            _ => (item, None),
        };
        if let Some(id) = decode::string(id_node, sink, "a subnet id") {
            if !is_aws_id(&id, "subnet-") {
                sink.error_hint(id_node.pos, format!("bad subnet id `{id}`"), "write a subnet id such as `subnet-0123456789abcdef0`");
            } else if out.iter().any(|s| s.id == id) {
                sink.error(id_node.pos, format!("subnet `{id}` is listed twice"));
            } else {
                out.push(Subnet { id, zone });
            }
        }
    }
    out
}

fn defaults(n: &Node, sink: &mut Sink<'_>) -> Defaults {
    let mut d = Defaults { instance_type: "t3.small".into(), root_volume_gb: 20, scale: PartialScale::default() };
    let Some(entries) = decode::map(n, sink, "`defaults`") else {
        return d;
    };
    let mut f = Fields::new(entries);
    if let Some(n) = f.get("instance_type") {
        if let Some(s) = decode::string(n, sink, "`instance_type`") {
            if decode::check(sink, n.pos, app::is_instance_type(&s), format!("bad instance type `{s}`"), "write an EC2 instance type such as `t3.small`") {
                d.instance_type = s;
            }
        }
    }
    if let Some(v) = f.get("root_volume_gb").and_then(|n| decode::int_in(n, sink, "`root_volume_gb`", 8, 16_384)) {
        d.root_volume_gb = v as u32;
    }
    if let Some(n) = f.get("scale") {
        d.scale = app::partial_scale(n, sink);
    }
    f.finish(sink, DEFAULT_KEYS, "`defaults`");
    d
}

fn quotas(n: &Node, sink: &mut Sink<'_>) -> Quotas {
    let mut q = Quotas::default();
    let Some(entries) = decode::map(n, sink, "`quotas`") else {
        return q;
    };
    let mut f = Fields::new(entries);
    if let Some(v) = f.get("load_balancers").and_then(|n| decode::int_in(n, sink, "`quotas.load_balancers`", 1, 10_000)) {
        q.load_balancers = v as u32;
    }
    if let Some(v) = f.get("rules_per_load_balancer").and_then(|n| decode::int_in(n, sink, "`quotas.rules_per_load_balancer`", 10, 1_000)) {
        q.rules_per_load_balancer = v as u32;
    }
    if let Some(v) = f.get("target_groups").and_then(|n| decode::int_in(n, sink, "`quotas.target_groups`", 1, 1_000_000)) {
        q.target_groups = v as u32;
    }
    if let Some(v) = f.get("stacks").and_then(|n| decode::int_in(n, sink, "`quotas.stacks`", 1, 1_000_000)) {
        q.stacks = v as u32;
    }
    f.finish(sink, QUOTA_KEYS, "`quotas`");
    q
}
