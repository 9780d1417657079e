//! Preflight: before anything is written, what a real account must have for the formation to
//! come up, checked against the network EC2 describes, each problem said with what to do.
//! CloudFormation would otherwise accept the stacks and fail (or hang until a timeout) much
//! later: a private zone in a VPC without DNS, an internet-facing load balancer in one zone,
//! instances that cannot reach S3 to fetch their artifact or CloudFormation to signal.

use crate::aws::{Aws, Network};
use crate::error::Error;
use crate::retry::retry;
use gilliam_compiler::manifest::Manifest;
use std::collections::BTreeSet;

/// What the formation needs of its network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    pub region: String,
    pub vpc: String,
    pub public_subnets: Vec<String>,
    pub private_subnets: Vec<String>,
    /// An internet-facing load balancer (some service has routes).
    pub public_lb: bool,
    /// Two private zones: an internal load balancer or a managed database.
    pub private_pair: bool,
    /// AWS services the instances call, by endpoint name (`s3`, `cloudformation`, ...).
    pub services: BTreeSet<&'static str>,
}

impl Needs {
    /// What the compiled formation needs, from its manifest and stage file.
    pub fn of(m: &Manifest, stage: &gilliam_compiler::stage::Stage) -> Needs {
        let aux = |t: &str| m.services.iter().any(|s| s.auxiliary_type.as_deref() == Some(t));
        let mut services = BTreeSet::from(["s3", "cloudformation"]);
        if aux("postgres") || aux("redis") || !m.release.secret_config.is_empty() {
            services.insert("secretsmanager");
        }
        if aux("etcd") {
            services.insert("ec2");
        }
        Needs {
            region: stage.region.clone(),
            vpc: stage.vpc.clone(),
            public_subnets: stage.public_subnets.iter().map(|s| s.id.clone()).collect(),
            private_subnets: stage.private_subnets.iter().map(|s| s.id.clone()).collect(),
            public_lb: m.services.iter().any(|s| s.public_target_group_export.is_some()),
            private_pair: m.services.iter().any(|s| s.internal_target_group_export.is_some()) || aux("postgres") || aux("redis"),
            services,
        }
    }
}

/// Every problem of `net` for `needs`, each with what to do; empty when it will do.
pub fn problems(needs: &Needs, net: &Network) -> Vec<String> {
    let mut out = Vec::new();
    let vpc = &needs.vpc;
    let Some(v) = &net.vpc else {
        return vec![format!("vpc {vpc} does not exist in {}: check `vpc` (and `region`) in the stage file", needs.region)];
    };
    for (on, flag, what) in [(v.dns_support, "--enable-dns-support", "DNS resolution"), (v.dns_hostnames, "--enable-dns-hostnames", "DNS host names")] {
        if !on {
            out.push(format!(
                "vpc {vpc} has {what} off: the formation's private zone (service names such as api.FORMATION.internal) needs it; turn it on with `aws ec2 modify-vpc-attribute --vpc-id {vpc} {flag}`"
            ));
        }
    }
    let mut known = |list: &str, ids: &[String]| -> Vec<String> {
        let mut zones = Vec::new();
        for id in ids {
            match net.subnets.get(id) {
                None => out.push(format!("subnet {id} (`{list}` in the stage file) does not exist in {}", needs.region)),
                Some(s) if s.vpc != *vpc => out.push(format!("subnet {id} (`{list}`) is in vpc {}, not in the stage's vpc {vpc}", s.vpc)),
                Some(s) => zones.push(s.zone.clone()),
            }
        }
        zones
    };
    let public_zones = known("public_subnets", &needs.public_subnets);
    let private_zones = known("private_subnets", &needs.private_subnets);
    let distinct = |z: &[String]| z.iter().collect::<BTreeSet<_>>().len();
    if needs.public_lb {
        if distinct(&public_zones) < 2 && public_zones.len() == needs.public_subnets.len() {
            out.push(format!(
                "`public_subnets` are all in {}: an internet-facing load balancer needs subnets in two zones or more; add a public subnet of another zone",
                public_zones.first().map_or("one zone", String::as_str)
            ));
        }
        for id in needs.public_subnets.iter().filter(|id| net.subnets.get(*id).is_some_and(|s| s.vpc == *vpc)) {
            let default = default_route(net, id);
            // An internet gateway, or a firewall endpoint in front of one; an unknown target
            // is warned of.
            if !default.as_deref().is_some_and(|t| t.starts_with("igw-") || t.starts_with("vpce-") || !known_target(t)) {
                out.push(format!(
                    "public subnet {id} has no route to an internet gateway ({}): the public load balancer would not be reachable; route 0.0.0.0/0 to the VPC's internet gateway",
                    default.map_or("no route for 0.0.0.0/0".to_string(), |t| format!("0.0.0.0/0 goes to {t}"))
                ));
            }
        }
    }
    if needs.private_pair && distinct(&private_zones) < 2 && private_zones.len() == needs.private_subnets.len() {
        out.push(format!(
            "`private_subnets` are all in {}: internal load balancers and managed databases need two zones or more; add a private subnet of another zone",
            private_zones.first().map_or("one zone", String::as_str)
        ));
    }
    for id in needs.private_subnets.iter().filter(|id| net.subnets.get(*id).is_some_and(|s| s.vpc == *vpc)) {
        let missing: Vec<&str> = needs.services.iter().copied().filter(|svc| !reaches(net, &needs.region, id, svc)).collect();
        if !missing.is_empty() {
            let endpoints: Vec<String> = missing.iter().map(|s| format!("com.amazonaws.{}.{s}", needs.region)).collect();
            out.push(format!(
                "private subnet {id} cannot reach {} (no NAT route for 0.0.0.0/0, no VPC endpoint): instances there could not fetch their artifact, read their secrets or signal CloudFormation; route 0.0.0.0/0 to a NAT gateway, or add VPC endpoints for {}",
                missing.join(", "),
                endpoints.join(", ")
            ));
        }
    }
    out
}

/// Route targets that take traffic out of the VPC toward the internet or AWS: a NAT gateway or
/// instance, a network interface, a transit gateway, a peering, a Gateway Load Balancer or
/// Network Firewall endpoint (`vpce-`, in front of a NAT or an internet gateway), a Cloud WAN
/// core network, a virtual private gateway, a local or carrier gateway.
const OUT: &[&str] = &["nat-", "i-", "eni-", "tgw-", "pcx-", "vpce-", "arn:aws:networkmanager:", "vgw-", "lgw-", "cagw-"];

/// Whether gilliam knows what a route target is (and so whether a subnet behind it reaches AWS).
fn known_target(target: &str) -> bool {
    target == "local" || target.starts_with("igw-") || OUT.iter().any(|p| target.starts_with(p))
}

/// What the preflight cannot judge, said and not refused: a subnet whose default route goes to
/// a target gilliam does not know.
pub fn warnings(needs: &Needs, net: &Network) -> Vec<String> {
    let mut out = Vec::new();
    for (list, ids) in [("public_subnets", &needs.public_subnets), ("private_subnets", &needs.private_subnets)] {
        for id in ids {
            if let Some(t) = default_route(net, id).filter(|t| !known_target(t)) {
                out.push(format!(
                    "subnet {id} (`{list}`) sends 0.0.0.0/0 to {t}, which gilliam does not know: it cannot tell whether instances there reach AWS (S3, CloudFormation); make sure they do"
                ));
            }
        }
    }
    out
}

/// The route table a subnet uses: its own, or the VPC's main one.
fn route_table<'n>(net: &'n Network, subnet: &str) -> Option<(&'n String, &'n crate::aws::RouteTable)> {
    net.route_tables.iter().find(|(_, t)| t.subnets.iter().any(|s| s == subnet)).or_else(|| net.route_tables.iter().find(|(_, t)| t.main))
}

/// Where a subnet's 0.0.0.0/0 goes, if anywhere.
fn default_route(net: &Network, subnet: &str) -> Option<String> {
    route_table(net, subnet).and_then(|(_, t)| t.routes.iter().find(|(d, _)| d == "0.0.0.0/0").map(|(_, target)| target.clone()))
}

/// Whether instances in `subnet` reach AWS service `svc`: through a NAT (or any route out that
/// is not an internet gateway), through an internet gateway when the subnet gives public
/// addresses, or through a VPC endpoint (a gateway in its route table, an interface with
/// private DNS).
fn reaches(net: &Network, region: &str, subnet: &str, svc: &str) -> bool {
    let public_ip = net.subnets.get(subnet).is_some_and(|s| s.map_public_ip);
    if let Some(target) = default_route(net, subnet) {
        // An unknown target is warned of (`warnings`), never refused.
        let out = OUT.iter().any(|p| target.starts_with(p)) || !known_target(&target);
        if out || (target.starts_with("igw-") && public_ip) {
            return true;
        }
    }
    let name = format!("com.amazonaws.{region}.{svc}");
    let table = route_table(net, subnet).map(|(id, _)| id.clone());
    net.endpoints.iter().filter(|e| e.service == name).any(|e| match e.kind.as_str() {
        "Gateway" => table.as_ref().is_some_and(|t| e.route_tables.contains(t)),
        _ => e.private_dns,
    })
}

/// What the preflight found: problems (refused) and what it could not judge (said).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

/// Reads the network and checks it. `Ok(None)` when the AWS client cannot describe networks
/// (a test double); otherwise what was found.
pub async fn check<A: Aws>(aws: &A, needs: &Needs) -> Result<Option<Findings>, Error> {
    let subnets: Vec<String> = needs.public_subnets.iter().chain(&needs.private_subnets).cloned().collect();
    let Some(net) = retry("describe the network", || aws.describe_network(&needs.vpc, &subnets)).await? else { return Ok(None) };
    Ok(Some(Findings { problems: problems(needs, &net), warnings: warnings(needs, &net) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::{RouteTable, Subnet, Vpc, VpcEndpoint};

    fn needs() -> Needs {
        Needs {
            region: "eu-west-1".into(),
            vpc: "vpc-1".into(),
            public_subnets: vec!["subnet-a".into(), "subnet-b".into()],
            private_subnets: vec!["subnet-c".into(), "subnet-d".into()],
            public_lb: true,
            private_pair: true,
            services: BTreeSet::from(["s3", "cloudformation", "secretsmanager"]),
        }
    }

    /// A network that will do: DNS on, two zones each side, an internet gateway for the public
    /// subnets, a NAT gateway for the private ones.
    fn good() -> Network {
        let subnet = |zone: &str| Subnet { vpc: "vpc-1".into(), zone: zone.into(), map_public_ip: false };
        let table = |subnets: &[&str], target: &str| RouteTable {
            main: false,
            subnets: subnets.iter().map(|s| s.to_string()).collect(),
            routes: vec![("10.0.0.0/16".into(), "local".into()), ("0.0.0.0/0".into(), target.into())],
        };
        Network {
            vpc: Some(Vpc { dns_support: true, dns_hostnames: true }),
            subnets: [("subnet-a", "eu-west-1a"), ("subnet-b", "eu-west-1b"), ("subnet-c", "eu-west-1a"), ("subnet-d", "eu-west-1b")]
                .into_iter()
                .map(|(id, z)| (id.to_string(), subnet(z)))
                .collect(),
            route_tables: [
                ("rtb-public".to_string(), table(&["subnet-a", "subnet-b"], "igw-1")),
                ("rtb-private".to_string(), table(&["subnet-c", "subnet-d"], "nat-1")),
            ]
            .into_iter()
            .collect(),
            endpoints: Vec::new(),
        }
    }

    #[test]
    fn a_good_network_passes() {
        assert_eq!(problems(&needs(), &good()), Vec::<String>::new());
    }

    #[test]
    fn each_missing_piece_is_named_with_what_to_do() {
        let mut n = good();
        n.vpc = Some(Vpc { dns_support: true, dns_hostnames: false });
        n.subnets.get_mut("subnet-b").expect("b").zone = "eu-west-1a".into();
        n.route_tables.get_mut("rtb-private").expect("private").routes.pop();
        let p = problems(&needs(), &n).join("\n");
        assert!(p.contains("DNS host names off") && p.contains("--enable-dns-hostnames"), "{p}");
        assert!(p.contains("`public_subnets` are all in eu-west-1a"), "{p}");
        assert!(p.contains("private subnet subnet-c cannot reach cloudformation, s3, secretsmanager"), "{p}");
        assert!(p.contains("com.amazonaws.eu-west-1.s3"), "{p}");
        let mut gone = good();
        gone.vpc = None;
        assert!(problems(&needs(), &gone)[0].contains("vpc vpc-1 does not exist"));
        let mut foreign = good();
        foreign.subnets.remove("subnet-d");
        foreign.subnets.get_mut("subnet-c").expect("c").vpc = "vpc-2".into();
        let p = problems(&needs(), &foreign).join("\n");
        assert!(p.contains("subnet subnet-d (`private_subnets` in the stage file) does not exist"), "{p}");
        assert!(p.contains("subnet subnet-c (`private_subnets`) is in vpc vpc-2"), "{p}");
    }

    #[test]
    fn vpc_endpoints_stand_in_for_a_nat() {
        let mut n = good();
        n.route_tables.get_mut("rtb-private").expect("private").routes.pop();
        let endpoint = |svc: &str, kind: &str, tables: &[&str]| VpcEndpoint {
            service: format!("com.amazonaws.eu-west-1.{svc}"),
            kind: kind.into(),
            private_dns: kind == "Interface",
            route_tables: tables.iter().map(|t| t.to_string()).collect(),
            subnets: Vec::new(),
        };
        n.endpoints = vec![endpoint("s3", "Gateway", &["rtb-private"]), endpoint("cloudformation", "Interface", &[])];
        let p = problems(&needs(), &n).join("\n");
        assert!(p.contains("cannot reach secretsmanager (") && !p.contains("s3,"), "{p}");
        n.endpoints.push(endpoint("secretsmanager", "Interface", &[]));
        assert_eq!(problems(&needs(), &n), Vec::<String>::new());
        // A gateway endpoint in another route table does not count; the main table does.
        n.endpoints[0].route_tables = vec!["rtb-other".into()];
        assert!(problems(&needs(), &n).join("\n").contains("cannot reach s3"));
        let t = n.route_tables.remove("rtb-private").expect("private");
        n.route_tables.insert("rtb-main".into(), RouteTable { main: true, subnets: Vec::new(), ..t });
        n.endpoints[0].route_tables = vec!["rtb-main".into()];
        assert_eq!(problems(&needs(), &n), Vec::<String>::new());
    }

    #[test]
    fn firewalls_cloud_wan_and_unknown_targets_are_not_refused() {
        for target in ["vpce-0a1b2c3d4e5f", "arn:aws:networkmanager::123456789012:core-network/core-network-0a1b", "vgw-1", "lgw-1"] {
            let mut n = good();
            n.route_tables.get_mut("rtb-private").expect("private").routes[1].1 = target.into();
            assert_eq!(problems(&needs(), &n), Vec::<String>::new(), "{target}");
            assert_eq!(warnings(&needs(), &n), Vec::<String>::new(), "{target}");
        }
        // A Network Firewall endpoint in front of the internet gateway, for the public subnets.
        let mut n = good();
        n.route_tables.get_mut("rtb-public").expect("public").routes[1].1 = "vpce-0fw".into();
        assert_eq!(problems(&needs(), &n), Vec::<String>::new());
        // A target gilliam does not know: said, not refused.
        let mut n = good();
        n.route_tables.get_mut("rtb-private").expect("private").routes[1].1 = "xgw-42".into();
        assert_eq!(problems(&needs(), &n), Vec::<String>::new());
        let w = warnings(&needs(), &n).join("\n");
        assert!(w.contains("subnet subnet-c (`private_subnets`) sends 0.0.0.0/0 to xgw-42, which gilliam does not know"), "{w}");
    }
}
