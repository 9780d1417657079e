//! A release stack: the release's instance role, and per service a launch template, an Auto
//! Scaling group, target groups and a scaling policy.

use super::common::*;
use crate::app::AuxType;
use crate::cfn::{self, get_att, import, r#ref, tags, Template};
use crate::model::Ctx;
use crate::names::{self};
use crate::obj;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// `scripts` holds the userdata of this part's services, moved into their launch templates.
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
    for s in ctx.processes().filter(|s| s.part == part) {
        let p = s.s.process().ok_or("internal error: not a process")?;
        let id = &s.id;
        let name = format!("{f}-r{n}-{}", s.s.name);
        let rel = n.to_string();
        let itags = || tags(&[("Name", &name), ("gilliam:formation", f), ("gilliam:release", &rel), ("gilliam:service", &s.s.name)]);
        let script = scripts.remove(&s.s.name).ok_or("internal error: userdata missing")?;
        let (meta, disk) = metadata_and_disk(ctx);
        t.add(
            format!("{id}LaunchTemplate"),
            "AWS::EC2::LaunchTemplate",
            obj! { "LaunchTemplateData": obj! {
                "ImageId": ctx.release.runtime_image.as_str(), "InstanceType": s.instance_type.as_str(),
                "IamInstanceProfile": obj! { "Arn": get_att("InstanceProfile", "Arn") },
                "SecurityGroupIds": vec![import(&names::formation_export(f, "InstanceSecurityGroup"))],
                "MetadataOptions": meta, "BlockDeviceMappings": disk, "UserData": obj! { "Fn::Base64": script },
                "TagSpecifications": vec![obj! { "ResourceType": "instance", "Tags": itags() }, obj! { "ResourceType": "volume", "Tags": itags() }],
            } },
        )?;
        let mut tgs = Vec::new();
        if let Some(port) = p.port {
            for public in [false, true] {
                if public && !s.routed() {
                    continue;
                }
                let which = if public { "PublicTargetGroup" } else { "InternalTargetGroup" };
                t.add(
                    format!("{id}{which}"),
                    "AWS::ElasticLoadBalancingV2::TargetGroup",
                    obj! {
                        "Name": target_group_name(ctx, &s.s.name, public), "Port": port, "Protocol": "HTTP", "VpcId": ctx.stage.vpc.as_str(), "TargetType": "instance",
                        "HealthCheckEnabled": true, "HealthCheckProtocol": "HTTP", "HealthCheckPath": p.health.as_str(), "HealthCheckIntervalSeconds": 10,
                        "HealthCheckTimeoutSeconds": 5, "HealthyThresholdCount": 2, "UnhealthyThresholdCount": 3, "Matcher": obj! { "HttpCode": "200-399" },
                        "TargetGroupAttributes": vec![obj! { "Key": "deregistration_delay.timeout_seconds", "Value": ctx.stage.deregistration_delay.to_string() }],
                        "Tags": tags(&[("gilliam:formation", f), ("gilliam:release", &rel), ("gilliam:service", &s.s.name)]),
                    },
                )?;
                t.output(
                    &format!("{id}{which}"),
                    r#ref(&format!("{id}{which}")),
                    Some(&names::target_group_export(f, n, &s.s.name, public)),
                    &format!("{} target group of {}", if public { "Public" } else { "Internal" }, s.s.name),
                );
                tgs.push(r#ref(&format!("{id}{which}")));
            }
        }
        let prop = |k: &str, v: &str| obj! { "Key": k, "Value": v, "PropagateAtLaunch": true };
        let mut asg = obj! {
            "MinSize": s.scale.min.to_string(), "MaxSize": s.scale.max.to_string(), "DesiredCapacity": s.scale.desired.to_string(),
            "LaunchTemplate": obj! { "LaunchTemplateId": r#ref(&format!("{id}LaunchTemplate")), "Version": get_att(&format!("{id}LaunchTemplate"), "LatestVersionNumber") },
            "VPCZoneIdentifier": private.clone(), "HealthCheckType": if tgs.is_empty() { "EC2" } else { "ELB" }, "HealthCheckGracePeriod": 300,
            "Tags": vec![prop("Name", &name), prop("gilliam:formation", f), prop("gilliam:release", &rel), prop("gilliam:service", &s.s.name)],
        };
        if !tgs.is_empty() {
            asg["TargetGroupARNs"] = Value::Array(tgs);
        }
        let asg_id = format!("{id}AutoScalingGroup");
        let r = t.add(asg_id.clone(), "AWS::AutoScaling::AutoScalingGroup", asg)?;
        if s.scale.desired > 0 {
            r.insert(
                "CreationPolicy".into(),
                obj! { "ResourceSignal": obj! { "Count": s.scale.desired, "Timeout": format!("PT{}M", SIGNAL_TIMEOUT_SECONDS / 60) }, "AutoScalingCreationPolicy": obj! { "MinSuccessfulInstancesPercent": 100 } },
            );
        }
        t.output(&asg_id, r#ref(&asg_id), None, &format!("Auto Scaling group of {}", s.s.name));
        if s.scale.max > s.scale.min {
            t.add(
                format!("{id}CpuScalingPolicy"),
                "AWS::AutoScaling::ScalingPolicy",
                obj! {
                    "AutoScalingGroupName": r#ref(&asg_id), "PolicyType": "TargetTrackingScaling",
                    "TargetTrackingConfiguration": obj! { "PredefinedMetricSpecification": obj! { "PredefinedMetricType": "ASGAverageCPUUtilization" }, "TargetValue": s.scale.cpu },
                },
            )?;
        }
    }
    Ok(t)
}
