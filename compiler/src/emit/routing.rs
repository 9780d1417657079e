//! A routing stack: one routing group's public and internal load balancers, listeners, the
//! weighted listener rules (and their test-header twins) and the services' DNS names.

use super::common::*;
use crate::cfn::{get_att, import, r#ref, tags, GetAtt, Import, Ref, Resource, Template};
use crate::model::{Ctx, Svc};
use crate::names::{self};
use crate::obj;
use serde::Serialize;
use serde_json::{json, Value};

const LISTENER_RULE: &str = "AWS::ElasticLoadBalancingV2::ListenerRule";

/// Orders routes so that the most specific one is evaluated first (lowest priority number):
/// an exact host before a wildcard host before no host; then, on the same host rank, an exact
/// path before a wildcard path before no path (all paths), and a longer literal prefix first.
pub(crate) fn route_order(r: &crate::app::Route) -> impl Ord {
    let host_rank = match &r.host {
        Some(h) if !h.contains(['*', '?']) => 0,
        Some(_) => 1,
        None => 2,
    };
    let (path_rank, literal) = match &r.path {
        Some(p) if !p.contains(['*', '?']) => (0, p.len()),
        Some(p) => (1, p.find(['*', '?']).unwrap_or(p.len())),
        None => (2, 0),
    };
    (host_rank, path_rank, std::cmp::Reverse(literal), r.host.clone(), r.path.clone())
}

/// The weighted forward of a service's rule: each live release that has the service, with the
/// weight `rule_weights` gives it. `None` only when no live release has the service.
pub(crate) fn forward(ctx: &Ctx<'_>, s: &Svc<'_>, public: bool) -> Option<[Action; 1]> {
    let svc = s.s.name.as_str();
    let mut shares: Vec<(u32, u32)> =
        ctx.traffic.iter().filter(|t| if public { t.public.contains(svc) } else { t.internal.contains(svc) }).map(|t| (t.release, t.weight)).collect();
    shares.sort_unstable();
    let weights = crate::model::rule_weights(&shares)?;
    let target_groups = shares
        .iter()
        .zip(weights)
        .map(|((n, _), weight)| Weighted { target_group_arn: Exported { name: names::target_group_export_of(ctx.f(), *n, &s.id, public) }, weight })
        .collect();
    let stickiness = ctx.delivery.stickiness_seconds.map(|duration_seconds| Stickiness { duration_seconds, enabled: true });
    Some([Action { forward_config: ForwardConfig { stickiness, target_groups }, ty: "forward" }])
}

/// The forward of a test-header rule: the compiled release's target group alone.
pub(crate) fn test_forward(ctx: &Ctx<'_>, s: &Svc<'_>, public: bool) -> [Action; 1] {
    let tg = Exported { name: names::target_group_export_of(ctx.f(), ctx.release.number, &s.id, public) };
    [Action { forward_config: ForwardConfig { stickiness: None, target_groups: vec![Weighted { target_group_arn: tg, weight: 1 }] }, ty: "forward" }]
}

/// The condition that picks the compiled release out: `X-Gilliam-Release: N`.
pub(crate) fn test_condition(release: &str) -> Condition<'_> {
    Condition { http_header_config: Some(HttpHeader { http_header_name: crate::delivery::TEST_HEADER, values: [release] }), ..Condition::new("http-header") }
}

pub(crate) fn not_found() -> Value {
    json!([{ "Type": "fixed-response", "FixedResponseConfig": { "StatusCode": "404", "ContentType": "text/plain", "MessageBody": "no route" } }])
}

/// The public routes of routing group `g`, most specific first (the order of evaluation).
pub(crate) fn public_routes<'c>(ctx: &'c Ctx<'_>, g: u32) -> Vec<(&'c Svc<'c>, &'c crate::app::Route)> {
    let mut routes: Vec<(&Svc<'_>, &crate::app::Route)> =
        ctx.http().filter(|s| s.group == Some(g)).flat_map(|s| s.s.process().into_iter().flat_map(|p| p.routes.iter()).map(move |r| (s, r))).collect();
    routes.sort_by_cached_key(|(s, r)| (route_order(r), s.s.name.clone()));
    routes
}

/// The public (internet-facing, in the public subnets) or internal load balancer of group `g`.
pub(crate) fn load_balancer(ctx: &Ctx<'_>, t: &mut Template, g: u32, public: bool) -> Result<(), String> {
    let f = ctx.f();
    let (id, scheme, subnets, sg) = if public {
        ("PublicLoadBalancer", "internet-facing", &ctx.stage.public_subnets, "PublicLbSecurityGroup")
    } else {
        ("InternalLoadBalancer", "internal", &ctx.stage.private_subnets, "InternalLbSecurityGroup")
    };
    t.add(
        id,
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        obj! {
            "Name": lb_name(ctx, if public { "public" } else { "internal" }, g), "Type": "application", "Scheme": scheme,
            "Subnets": subnets.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            "SecurityGroups": vec![import(&names::formation_export(f, sg))],
            "LoadBalancerAttributes": vec![obj! { "Key": "routing.http.drop_invalid_header_fields.enabled", "Value": "true" }],
            "Tags": tags(&[("gilliam:formation", f)]),
        },
    )?;
    Ok(())
}

pub(crate) fn routing_template(ctx: &Ctx<'_>, g: u32) -> Result<Template, String> {
    let f = ctx.f();
    let mut t = Template::new(format!("gilliam formation {f}, routing group {g} of {}: load balancers, listeners, routes, service names", ctx.groups));
    let members: Vec<&Svc<'_>> = ctx.http().filter(|s| s.group == Some(g)).collect();
    let routes = public_routes(ctx, g);
    // The priorities the deployed stack's rules hold (none on a first deploy).
    let none = crate::priority::DeployedRules::default();
    let deployed = ctx.deployed_rules.get(&names::routing_stack(f, g)).unwrap_or(&none);
    let release = ctx.release.number.to_string();
    if !routes.is_empty() {
        load_balancer(ctx, &mut t, g, true)?;
        let listener = if let Some(cert) = &ctx.stage.certificate {
            t.add(
                "PublicHttpsListener",
                "AWS::ElasticLoadBalancingV2::Listener",
                json!({
                    "LoadBalancerArn": r#ref("PublicLoadBalancer"), "Port": 443, "Protocol": "HTTPS", "SslPolicy": TLS_POLICY,
                    "Certificates": [{ "CertificateArn": cert }], "DefaultActions": not_found(),
                }),
            )?;
            t.add(
                "PublicHttpListener",
                "AWS::ElasticLoadBalancingV2::Listener",
                json!({
                    "LoadBalancerArn": r#ref("PublicLoadBalancer"), "Port": 80, "Protocol": "HTTP",
                    "DefaultActions": [{ "Type": "redirect", "RedirectConfig": { "Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301" } }],
                }),
            )?;
            "PublicHttpsListener"
        } else {
            t.add(
                "PublicHttpListener",
                "AWS::ElasticLoadBalancingV2::Listener",
                json!({ "LoadBalancerArn": r#ref("PublicLoadBalancer"), "Port": 80, "Protocol": "HTTP", "DefaultActions": not_found() }),
            )?;
            "PublicHttpListener"
        };
        // Each route's rule comes just after its test-header twin, which sends a request
        // carrying `X-Gilliam-Release: N` to the compiled release whatever the weights.
        let ids: Vec<String> = routes
            .iter()
            .flat_map(|(_, r)| {
                let id = names::route_rule_id(r.host.as_deref(), r.path.as_deref());
                [names::test_rule_id(&id), id]
            })
            .collect();
        let keys: Vec<&str> = ids.iter().map(String::as_str).collect();
        let priorities = crate::priority::allocate(&keys, &deployed.on(listener), true).map_err(|e| format!("routing group {g}'s public listener: {e}"))?;
        let pairs = routes.iter().flat_map(|sr| [(sr, true), (sr, false)]);
        for ((((s, r), test), id), prio) in pairs.zip(&ids).zip(priorities) {
            // A carried service has no target group in this release for the header to reach.
            if test && s.carried {
                continue;
            }
            let actions = if test {
                test_forward(ctx, s, true)
            } else {
                let Some(actions) = forward(ctx, s, true) else {
                    continue;
                };
                actions
            };
            let mut conditions = Vec::new();
            if let Some(h) = &r.host {
                conditions.push(Condition { host_header_config: Some(Values { values: [h] }), ..Condition::new("host-header") });
            }
            if let Some(p) = &r.path {
                conditions.push(Condition { path_pattern_config: Some(Values { values: [p] }), ..Condition::new("path-pattern") });
            }
            if test {
                conditions.push(test_condition(&release));
            }
            let mut transforms = None;
            if let Some(rw) = &r.rewrite {
                let mut list = Vec::new();
                if let Some((regex, replace)) = &rw.host {
                    let rewrites = vec![obj! { "Regex": regex.as_str(), "Replace": replace.as_str() }];
                    list.push(obj! { "Type": "host-header-rewrite", "HostHeaderRewriteConfig": obj! { "Rewrites": rewrites } });
                }
                if let Some((regex, replace)) = &rw.path {
                    let rewrites = vec![obj! { "Regex": regex.as_str(), "Replace": replace.as_str() }];
                    list.push(obj! { "Type": "url-rewrite", "UrlRewriteConfig": obj! { "Rewrites": rewrites } });
                }
                transforms = Some(list);
            }
            let rule = ListenerRule { actions, conditions, listener_arn: Ref { id: listener }, priority: prio, transforms };
            t.add_typed(id.clone(), &Resource { creation_policy: None, properties: rule, ty: LISTENER_RULE })?;
        }
        t.output("PublicLoadBalancerDns", get_att("PublicLoadBalancer", "DNSName"), None, "DNS name of the public load balancer");
    }
    if !members.is_empty() {
        load_balancer(ctx, &mut t, g, false)?;
        t.add(
            "InternalListener",
            "AWS::ElasticLoadBalancingV2::Listener",
            json!({ "LoadBalancerArn": r#ref("InternalLoadBalancer"), "Port": 80, "Protocol": "HTTP", "DefaultActions": not_found() }),
        )?;
        // Internal rules match one exact host each, so services may come in any order; but a
        // service's test-header rule must come before its own rule.
        let ids: Vec<String> = members
            .iter()
            .flat_map(|s| {
                let id = format!("{}InternalRule", s.id);
                [names::test_rule_id(&id), id]
            })
            .collect();
        let keys: Vec<&str> = ids.iter().map(String::as_str).collect();
        let priorities =
            crate::priority::allocate(&keys, &deployed.on("InternalListener"), true).map_err(|e| format!("routing group {g}'s internal listener: {e}"))?;
        let zone = names::formation_export(f, "PrivateZoneId");
        for (s, (pair, prio)) in members.iter().zip(ids.chunks(2).zip(priorities.chunks(2))) {
            let host = host(ctx, &s.s.name);
            let host_condition = || Condition { host_header_config: Some(Values { values: [host.as_str()] }), ..Condition::new("host-header") };
            if !s.carried {
                let rule = ListenerRule {
                    actions: test_forward(ctx, s, false),
                    conditions: vec![host_condition(), test_condition(&release)],
                    listener_arn: Ref { id: "InternalListener" },
                    priority: prio[0],
                    transforms: None,
                };
                t.add_typed(pair[0].clone(), &Resource { creation_policy: None, properties: rule, ty: LISTENER_RULE })?;
            }
            if let Some(actions) = forward(ctx, s, false) {
                let rule = ListenerRule {
                    actions,
                    conditions: vec![host_condition()],
                    listener_arn: Ref { id: "InternalListener" },
                    priority: prio[1],
                    transforms: None,
                };
                t.add_typed(pair[1].clone(), &Resource { creation_policy: None, properties: rule, ty: LISTENER_RULE })?;
            }
            let record = DnsRecord {
                alias_target: AliasTarget {
                    dns_name: GetAtt { of: ["InternalLoadBalancer", "DNSName"] },
                    evaluate_target_health: false,
                    hosted_zone_id: GetAtt { of: ["InternalLoadBalancer", "CanonicalHostedZoneID"] },
                },
                hosted_zone_id: Import { name: &zone },
                name: format!("{host}."),
                ty: "A",
            };
            t.add_typed(format!("{}DnsRecord", s.id), &Resource { creation_policy: None, properties: record, ty: "AWS::Route53::RecordSet" })?;
        }
        t.output("InternalLoadBalancerDns", get_att("InternalLoadBalancer", "DNSName"), None, "DNS name of the internal load balancer");
    }
    Ok(t)
}

// Listener rules and DNS records as typed structs, rendered once each (`Template::add_typed`):
// a routing group holds two rules a service. Fields in sorted order, as a tree renders them.

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListenerRule<'a> {
    actions: [Action; 1],
    conditions: Vec<Condition<'a>>,
    listener_arn: Ref<'a>,
    priority: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    transforms: Option<Vec<Value>>,
}

#[derive(Serialize)]
pub(crate) struct Action {
    #[serde(rename = "ForwardConfig")]
    forward_config: ForwardConfig,
    #[serde(rename = "Type")]
    ty: &'static str,
}

#[derive(Serialize)]
struct ForwardConfig {
    #[serde(rename = "TargetGroupStickinessConfig", skip_serializing_if = "Option::is_none")]
    stickiness: Option<Stickiness>,
    #[serde(rename = "TargetGroups")]
    target_groups: Vec<Weighted>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Stickiness {
    duration_seconds: u32,
    enabled: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Weighted {
    target_group_arn: Exported,
    weight: u32,
}

/// `{"Fn::ImportValue": name}`, owning its name.
#[derive(Serialize)]
struct Exported {
    #[serde(rename = "Fn::ImportValue")]
    name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Condition<'a> {
    field: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_header_config: Option<Values<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_header_config: Option<HttpHeader<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_pattern_config: Option<Values<'a>>,
}

impl Condition<'_> {
    fn new(field: &'static str) -> Self {
        Condition { field, host_header_config: None, http_header_config: None, path_pattern_config: None }
    }
}

#[derive(Serialize)]
struct Values<'a> {
    #[serde(rename = "Values")]
    values: [&'a str; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct HttpHeader<'a> {
    http_header_name: &'static str,
    values: [&'a str; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DnsRecord<'a> {
    alias_target: AliasTarget<'a>,
    hosted_zone_id: Import<'a>,
    name: String,
    #[serde(rename = "Type")]
    ty: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AliasTarget<'a> {
    #[serde(rename = "DNSName")]
    dns_name: GetAtt<'a>,
    evaluate_target_health: bool,
    hosted_zone_id: GetAtt<'a>,
}

#[cfg(test)]
mod tests {
    use super::route_order;
    use crate::app::Route;
    use crate::diag::Pos;

    fn route(raw: &str) -> Route {
        let mut out = Vec::new();
        crate::app::parse_route(raw, Pos::new(1, 1), &mut crate::diag::Sink { file: "t", out: &mut out }).expect("valid route")
    }

    #[test]
    fn specific_routes_come_first() {
        let mut rs: Vec<Route> =
            ["/*", "shop.example.com", "/api/*", "shop.example.com/api/*", "shop.example.com/api/v2/*", "shop.example.com/health", "*.example.com/x/*"]
                .map(route)
                .to_vec();
        rs.sort_by_key(route_order);
        let order: Vec<&str> = rs.iter().map(|r| r.raw.as_str()).collect();
        assert_eq!(
            order,
            ["shop.example.com/health", "shop.example.com/api/v2/*", "shop.example.com/api/*", "shop.example.com", "*.example.com/x/*", "/api/*", "/*"]
        );
    }

    #[test]
    fn catch_all_keeps_a_condition() {
        assert_eq!(route("/*").path.as_deref(), Some("/*"));
        assert_eq!(route("shop.example.com/*").path, None);
    }
}
