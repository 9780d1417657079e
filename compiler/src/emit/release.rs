//! A release stack: the release's instance role, and per service a launch template, an Auto
//! Scaling group, target groups and a scaling policy.

use super::common::*;
use crate::app::AuxType;
use crate::cfn::{self, r#ref, tags, Base64, GetAtt, Import, Ref, Resource, Tag, Template};
use crate::model::Ctx;
use crate::names::{self};
use crate::obj;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// `scripts` holds the userdata of this part's services as JSON strings, moved into their
/// launch templates.
pub(crate) fn release_template(ctx: &Ctx<'_>, part: u32, mut scripts: BTreeMap<String, String>, external: bool) -> Result<Template, String> {
    let f = ctx.f();
    let n = ctx.release.number;
    let mut t = Template::new(format!(
        "gilliam formation {f}, release {n}{}: launch templates, Auto Scaling groups, target groups",
        if ctx.parts > 1 { format!(" (part {part} of {})", ctx.parts) } else { String::new() }
    ));
    let mut statements = match &ctx.release.artifact {
        crate::release::Artifact::Tarball { bucket, key, .. } => {
            vec![
                json!({ "Sid": "ReadOwnArtifact", "Effect": "Allow", "Action": "s3:GetObject", "Resource": arn("arn:${AWS::Partition}:s3:::{}", &format!("{bucket}/{key}")) }),
            ]
        }
        // The release's image: exactly its repository (a registry that is not ECR needs no role).
        crate::release::Artifact::Image(i) => match i.repository_arn() {
            Some(repo) => vec![
                json!({ "Sid": "PullOwnImage", "Effect": "Allow", "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], "Resource": repo }),
                json!({ "Sid": "EcrAuthorizationToken", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*" }),
            ],
            None => Vec::new(),
        },
    };
    statements.push(
        json!({ "Sid": "SignalOwnStack", "Effect": "Allow", "Action": "cloudformation:SignalResource", "Resource": cfn::sub("arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:stack/${AWS::StackName}/*") }),
    );
    // Its instances ship their lines to the formation's log group, in streams of this release.
    let group = names::log_group(ctx.f());
    statements.push(json!({ "Sid": "MakeOwnLogStreams", "Effect": "Allow", "Action": "logs:CreateLogStream", "Resource": arn("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:{}:*", &group) }));
    statements.push(json!({ "Sid": "ShipOwnLogs", "Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": arn("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:{}", &format!("{group}:log-stream:r{n}/*")) }));
    if external {
        statements.push(json!({ "Sid": "ReadOwnRuntimeConfig", "Effect": "Allow", "Action": "s3:GetObject", "Resource": arn("arn:${AWS::Partition}:s3:::{}", &format!("{}/{}releases/{n}/runtime/*", ctx.stage.outputs_bucket, ctx.prefix())) }));
    }
    let mut secrets: Vec<Value> = ctx
        .auxiliaries()
        .filter(|a| a.s.auxiliary().is_some_and(|x| x.kind != AuxType::Etcd))
        .map(|a| arn("arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:{}-??????", &names::secret_name(f, &a.s.name)))
        .collect();
    // The release's own secret config, by exact name (the compiler checked they are this formation's).
    let config_secrets: std::collections::BTreeSet<&String> = ctx.release.secrets.values().map(|(name, _)| name).collect();
    secrets.extend(config_secrets.into_iter().map(|name| arn("arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:{}-??????", name)));
    if !secrets.is_empty() {
        statements.push(json!({ "Sid": "ReadFormationSecrets", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": secrets }));
    }
    t.add(
        "InstanceRole",
        "AWS::IAM::Role",
        json!({
            "AssumeRolePolicyDocument": assume_ec2(),
            "Policies": [{ "PolicyName": "gilliam-release", "PolicyDocument": { "Version": "2012-10-17", "Statement": statements } }],
            "Tags": tags(&[("gilliam:formation", f), ("gilliam:release", &n.to_string())]),
        }),
    )?;
    t.add("InstanceProfile", "AWS::IAM::InstanceProfile", json!({ "Roles": [r#ref("InstanceRole")] }))?;
    t.output("Release", json!(n.to_string()), None, "Release number");
    let private: Vec<&str> = ctx.stage.private_subnets.iter().map(|s| s.id.as_str()).collect();
    let rel = n.to_string();
    let security_groups = [Import { name: &names::formation_export(f, "InstanceSecurityGroup") }];
    let disk = [root_disk(ctx)];
    let drain = ctx.stage.deregistration_delay.to_string();
    for s in ctx.processes().filter(|s| s.part == part) {
        let p = s.s.process().ok_or("internal error: not a process")?;
        let id = &s.id;
        let name = format!("{f}-r{n}-{}", s.s.name);
        let service = s.s.name.as_str();
        let itags = [
            Tag { key: "Name", value: &name },
            Tag { key: "gilliam:formation", value: f },
            Tag { key: "gilliam:release", value: &rel },
            Tag { key: "gilliam:service", value: service },
        ];
        let script = scripts.remove(&s.s.name).ok_or("internal error: userdata missing")?;
        let (lt_id, asg_id) = (format!("{id}LaunchTemplate"), format!("{id}AutoScalingGroup"));
        let data = LaunchTemplateData {
            block_device_mappings: &disk,
            iam_instance_profile: Arn { arn: GetAtt { of: ["InstanceProfile", "Arn"] } },
            image_id: &ctx.release.runtime_image,
            instance_type: &s.instance_type,
            metadata_options: METADATA_OPTIONS,
            security_group_ids: &security_groups,
            tag_specifications: [TagSpecification { resource_type: "instance", tags: &itags }, TagSpecification { resource_type: "volume", tags: &itags }],
            user_data: Base64 { text: cfn::RAW_SLOT },
        };
        t.add_typed_with(lt_id.clone(), &Resource { creation_policy: None, properties: LaunchTemplate { data }, ty: "AWS::EC2::LaunchTemplate" }, &script)?;
        let mut tgs = Vec::new();
        if let Some(port) = p.port {
            for public in [false, true] {
                if public && !s.routed() {
                    continue;
                }
                let which = if public { "PublicTargetGroup" } else { "InternalTargetGroup" };
                let tg_id = format!("{id}{which}");
                let props = TargetGroup {
                    health_check_enabled: true,
                    health_check_interval_seconds: 10,
                    health_check_path: &p.health,
                    health_check_protocol: "HTTP",
                    health_check_timeout_seconds: 5,
                    healthy_threshold_count: 2,
                    matcher: Matcher { http_code: "200-399" },
                    name: &target_group_name(ctx, &s.s.name, public),
                    port,
                    protocol: "HTTP",
                    tags: &itags[1..],
                    target_group_attributes: [Tag { key: "deregistration_delay.timeout_seconds", value: &drain }],
                    target_type: "instance",
                    unhealthy_threshold_count: 3,
                    vpc_id: &ctx.stage.vpc,
                };
                t.add_typed(tg_id.clone(), &Resource { creation_policy: None, properties: props, ty: "AWS::ElasticLoadBalancingV2::TargetGroup" })?;
                let description = format!("{} target group of {}", if public { "Public" } else { "Internal" }, s.s.name);
                t.output_typed(tg_id.clone(), &Ref { id: &tg_id }, Some(&names::target_group_export(f, n, &s.s.name, public)), &description)?;
                tgs.push(tg_id);
            }
        }
        let asg_tags = itags.iter().map(|t| AsgTag { key: t.key, propagate_at_launch: true, value: t.value }).collect::<Vec<_>>();
        let (min, max, desired) = (s.scale.min.to_string(), s.scale.max.to_string(), s.scale.desired.to_string());
        let props = AutoScalingGroup {
            desired_capacity: &desired,
            health_check_grace_period: 300,
            health_check_type: if tgs.is_empty() { "EC2" } else { "ELB" },
            launch_template: LaunchTemplateRef { launch_template_id: Ref { id: &lt_id }, version: GetAtt { of: [&lt_id, "LatestVersionNumber"] } },
            max_size: &max,
            min_size: &min,
            tags: &asg_tags,
            target_group_arns: (!tgs.is_empty()).then(|| tgs.iter().map(|id| Ref { id }).collect()),
            vpc_zone_identifier: &private,
        };
        let creation_policy = (s.scale.desired > 0).then(|| {
            obj! { "ResourceSignal": obj! { "Count": s.scale.desired, "Timeout": format!("PT{}M", SIGNAL_TIMEOUT_SECONDS / 60) }, "AutoScalingCreationPolicy": obj! { "MinSuccessfulInstancesPercent": 100 } }
        });
        t.add_typed(asg_id.clone(), &Resource { creation_policy, properties: props, ty: "AWS::AutoScaling::AutoScalingGroup" })?;
        t.output_typed(asg_id.clone(), &Ref { id: &asg_id }, None, &format!("Auto Scaling group of {}", s.s.name))?;
        if s.scale.max > s.scale.min {
            let props = ScalingPolicy {
                auto_scaling_group_name: Ref { id: &asg_id },
                policy_type: "TargetTrackingScaling",
                target_tracking_configuration: TargetTracking {
                    predefined_metric_specification: Metric { predefined_metric_type: "ASGAverageCPUUtilization" },
                    target_value: s.scale.cpu,
                },
            };
            t.add_typed(format!("{id}CpuScalingPolicy"), &Resource { creation_policy: None, properties: props, ty: "AWS::AutoScaling::ScalingPolicy" })?;
        }
    }
    Ok(t)
}

// A service's resources as typed structs, rendered once each (`Template::add_typed`): a release
// stack holds hundreds of them, and a JSON tree per resource was most of a compile's time.
// Fields are declared in sorted order, as a tree renders its keys (tests/golden.rs holds
// the bytes).

#[derive(Serialize)]
struct LaunchTemplate<'a> {
    #[serde(rename = "LaunchTemplateData")]
    data: LaunchTemplateData<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct LaunchTemplateData<'a> {
    block_device_mappings: &'a [Disk],
    iam_instance_profile: Arn<'a>,
    image_id: &'a str,
    instance_type: &'a str,
    metadata_options: Metadata,
    security_group_ids: &'a [Import<'a>],
    tag_specifications: [TagSpecification<'a>; 2],
    user_data: Base64<'a>,
}

#[derive(Serialize)]
struct Arn<'a> {
    #[serde(rename = "Arn")]
    arn: GetAtt<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TagSpecification<'a> {
    resource_type: &'a str,
    tags: &'a [Tag<'a>],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TargetGroup<'a> {
    health_check_enabled: bool,
    health_check_interval_seconds: u32,
    health_check_path: &'a str,
    health_check_protocol: &'a str,
    health_check_timeout_seconds: u32,
    healthy_threshold_count: u32,
    matcher: Matcher<'a>,
    name: &'a str,
    port: u16,
    protocol: &'a str,
    tags: &'a [Tag<'a>],
    target_group_attributes: [Tag<'a>; 1],
    target_type: &'a str,
    unhealthy_threshold_count: u32,
    vpc_id: &'a str,
}

#[derive(Serialize)]
struct Matcher<'a> {
    #[serde(rename = "HttpCode")]
    http_code: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AsgTag<'a> {
    key: &'a str,
    propagate_at_launch: bool,
    value: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct LaunchTemplateRef<'a> {
    launch_template_id: Ref<'a>,
    version: GetAtt<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AutoScalingGroup<'a> {
    desired_capacity: &'a str,
    health_check_grace_period: u32,
    health_check_type: &'a str,
    launch_template: LaunchTemplateRef<'a>,
    max_size: &'a str,
    min_size: &'a str,
    tags: &'a [AsgTag<'a>],
    #[serde(rename = "TargetGroupARNs", skip_serializing_if = "Option::is_none")]
    target_group_arns: Option<Vec<Ref<'a>>>,
    #[serde(rename = "VPCZoneIdentifier")]
    vpc_zone_identifier: &'a [&'a str],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ScalingPolicy<'a> {
    auto_scaling_group_name: Ref<'a>,
    policy_type: &'a str,
    target_tracking_configuration: TargetTracking<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TargetTracking<'a> {
    predefined_metric_specification: Metric<'a>,
    target_value: u32,
}

#[derive(Serialize)]
struct Metric<'a> {
    #[serde(rename = "PredefinedMetricType")]
    predefined_metric_type: &'a str,
}
