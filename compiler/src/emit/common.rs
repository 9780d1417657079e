//! What every template shares: names in the private zone and of load balancers and target
//! groups, security group rules, instance metadata and disk settings, IAM helpers.

use crate::cfn::{self};
use crate::model::Ctx;
use crate::names::{self, shorten, ELB_NAME_MAX};
use serde_json::{json, Value};

/// A service's (or auxiliary's) name in the private zone: `api.shop.internal`.
pub(crate) fn host(ctx: &Ctx<'_>, name: &str) -> String {
    format!("{}.{}", names::dns_label(name), ctx.domain())
}

/// An etcd member's name (and DNS label): `coord-0`.
pub(crate) fn member_label(aux: &str, i: u32) -> String {
    names::dns_label(&format!("{aux}-{i}"))
}

pub(crate) fn lb_name(ctx: &Ctx<'_>, scheme: &str, g: u32) -> String {
    shorten(&format!("{}-{scheme}-{g}", ctx.f()), ELB_NAME_MAX)
}

/// How long an Auto Scaling group waits for its instances' success signals.
pub const SIGNAL_TIMEOUT_SECONDS: u32 = 900;

/// Load balancer deregistration delay by default (`deregistration_delay` in the stage file),
/// which the agent also waits out when draining.
pub const DRAIN_SECONDS: u32 = crate::stage::DEFAULT_DEREGISTRATION_DELAY;
pub(crate) const TLS_POLICY: &str = "ELBSecurityPolicy-TLS13-1-2-2021-06";

pub(crate) fn sg_rule(port: u16, source: Value, description: &str) -> Value {
    json!({ "IpProtocol": "tcp", "FromPort": port, "ToPort": port, "SourceSecurityGroupId": source, "Description": description })
}

/// Every instance's metadata options: IMDSv2 only, one hop.
pub(crate) const METADATA_OPTIONS: Metadata = Metadata { http_endpoint: "enabled", http_put_response_hop_limit: 1, http_tokens: "required" };

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Metadata {
    http_endpoint: &'static str,
    http_put_response_hop_limit: u32,
    http_tokens: &'static str,
}

/// Every instance's root volume: encrypted gp3 of the stage's size. (Fields in sorted order,
/// as typed resources need.)
pub(crate) fn root_disk(ctx: &Ctx<'_>) -> Disk {
    Disk {
        device_name: "/dev/xvda",
        ebs: Ebs { delete_on_termination: true, encrypted: true, volume_size: ctx.stage.defaults.root_volume_gb, volume_type: "gp3" },
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Disk {
    device_name: &'static str,
    ebs: Ebs,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Ebs {
    delete_on_termination: bool,
    encrypted: bool,
    volume_size: u32,
    volume_type: &'static str,
}

/// The metadata options and block device mappings as JSON trees, for the templates built as
/// trees (etcd members): the same settings as the typed ones.
pub(crate) fn metadata_and_disk(ctx: &Ctx<'_>) -> (Value, Value) {
    (json!(METADATA_OPTIONS), json!([root_disk(ctx)]))
}

pub(crate) fn assume_ec2() -> Value {
    json!({ "Version": "2012-10-17", "Statement": [{ "Effect": "Allow", "Principal": { "Service": "ec2.amazonaws.com" }, "Action": "sts:AssumeRole" }] })
}

/// An ARN pattern through Fn::Sub: `${AWS::...}` pseudo parameters resolve, literal text is
/// escaped so that a `${` in a user value can never become a substitution.
pub(crate) fn arn(pattern: &str, literal: &str) -> Value {
    cfn::sub(&pattern.replace("{}", &literal.replace("${", "${!")))
}

pub(crate) fn target_group_name(ctx: &Ctx<'_>, svc: &str, public: bool) -> String {
    shorten(&format!("{}-r{}-{}-{}", ctx.f(), ctx.release.number, names::dns_label(svc), if public { "p" } else { "i" }), ELB_NAME_MAX)
}
