//! The formation stack: security groups, the private zone, auxiliary services (RDS,
//! ElastiCache, etcd members) and their DNS names.

use super::common::*;
use crate::app::AuxType;
use crate::cfn::{get_att, r#ref, tags, Template};
use crate::model::{Ctx, Svc};
use crate::names::{self};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) fn formation_template(ctx: &Ctx<'_>, aux_scripts: &BTreeMap<(String, u32), String>) -> Result<Template, String> {
    let f = ctx.f();
    let mut t = Template::new(format!("gilliam formation {f}: security groups, private zone, auxiliary services"));
    let vpc = &ctx.stage.vpc;
    // Every release that can be live is counted, cold ones too: the ports and listeners of the
    // releases still running (or kept cold) stay open until the last of them is retired (the formation stack is updated
    // before the new release exists, so a port only the new release uses opens first).
    let mut ports: BTreeSet<u16> = BTreeSet::new();
    let mut public_ports: BTreeSet<u16> = BTreeSet::new();
    for share in ctx.traffic.iter().chain(&ctx.standby) {
        for (svc, port) in &share.ports {
            ports.insert(*port);
            if share.public.contains(svc) {
                public_ports.insert(*port);
            }
        }
    }
    let any_routed = !public_ports.is_empty();
    let tg = |k: &str, v: &str| json!([{ "Key": "gilliam:formation", "Value": f }, { "Key": k, "Value": v }]);

    t.add("InstanceSecurityGroup", "AWS::EC2::SecurityGroup", json!({ "GroupDescription": format!("gilliam {f}: service instances, reachable only from the formation load balancers"), "VpcId": vpc, "Tags": tg("Name", &format!("{f}-instances")) }))?;
    t.output(
        "InstanceSecurityGroup",
        get_att("InstanceSecurityGroup", "GroupId"),
        Some(&names::formation_export(f, "InstanceSecurityGroup")),
        "Security group of service instances",
    );
    // The load balancers' security groups and their exports exist whatever the services: a
    // routing stack may import them until its own update drops its load balancers, and
    // CloudFormation refuses to remove an export in use (or a group in use).
    {
        let mut ingress = Vec::new();
        if any_routed {
            ingress.push(json!({ "IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "CidrIp": "0.0.0.0/0", "Description": "HTTP from anywhere" }));
            if ctx.https() {
                ingress.push(json!({ "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIp": "0.0.0.0/0", "Description": "HTTPS from anywhere" }));
            }
        }
        let mut props = json!({ "GroupDescription": format!("gilliam {f}: public load balancers, open on their listener ports"), "VpcId": vpc, "Tags": tg("Name", &format!("{f}-public-lb")) });
        if !ingress.is_empty() {
            props["SecurityGroupIngress"] = Value::Array(ingress);
        }
        t.add("PublicLbSecurityGroup", "AWS::EC2::SecurityGroup", props)?;
        t.output(
            "PublicLbSecurityGroup",
            get_att("PublicLbSecurityGroup", "GroupId"),
            Some(&names::formation_export(f, "PublicLbSecurityGroup")),
            "Security group of public load balancers",
        );
        t.add(
            "InternalLbSecurityGroup",
            "AWS::EC2::SecurityGroup",
            json!({
                "GroupDescription": format!("gilliam {f}: internal load balancers, reachable from service instances"), "VpcId": vpc,
                "SecurityGroupIngress": [sg_rule(80, get_att("InstanceSecurityGroup", "GroupId"), "HTTP from service instances")],
                "Tags": tg("Name", &format!("{f}-internal-lb")),
            }),
        )?;
        t.output(
            "InternalLbSecurityGroup",
            get_att("InternalLbSecurityGroup", "GroupId"),
            Some(&names::formation_export(f, "InternalLbSecurityGroup")),
            "Security group of internal load balancers",
        );
    }
    for p in &ports {
        t.add(format!("InstanceIngressInternal{p}"), "AWS::EC2::SecurityGroupIngress", {
            let mut r = sg_rule(*p, get_att("InternalLbSecurityGroup", "GroupId"), "service port from internal load balancers");
            r["GroupId"] = get_att("InstanceSecurityGroup", "GroupId");
            r
        })?;
    }
    for p in &public_ports {
        t.add(format!("InstanceIngressPublic{p}"), "AWS::EC2::SecurityGroupIngress", {
            let mut r = sg_rule(*p, get_att("PublicLbSecurityGroup", "GroupId"), "service port from public load balancers");
            r["GroupId"] = get_att("InstanceSecurityGroup", "GroupId");
            r
        })?;
    }

    t.add(
        "PrivateZone",
        "AWS::Route53::HostedZone",
        json!({
            "Name": ctx.domain(),
            "HostedZoneConfig": { "Comment": format!("gilliam {f}: names of services and auxiliaries") },
            "VPCs": [{ "VPCId": vpc, "VPCRegion": ctx.stage.region }],
        }),
    )?;
    t.output("PrivateZoneId", r#ref("PrivateZone"), Some(&names::formation_export(f, "PrivateZoneId")), "Private hosted zone of the formation");

    // Where every instance ships its lines: they outlive the instances, for the retention the
    // stage file sets.
    t.add(
        "LogGroup",
        "AWS::Logs::LogGroup",
        json!({
            "LogGroupName": names::log_group(f),
            "RetentionInDays": ctx.stage.log_retention_days,
            "Tags": [{ "Key": "gilliam:formation", "Value": f }],
        }),
    )?;
    t.output("LogGroupName", r#ref("LogGroup"), None, "Where the formation's instances ship their output");

    let auxes: Vec<&Svc<'_>> = ctx.auxiliaries().collect();
    if auxes.is_empty() {
        return Ok(t);
    }
    let aux_ports: BTreeSet<u16> = auxes.iter().filter_map(|a| a.s.auxiliary()).map(|a| a.kind.port()).collect();
    t.add("AuxiliarySecurityGroup", "AWS::EC2::SecurityGroup", json!({
        "GroupDescription": format!("gilliam {f}: auxiliary services, reachable from the formation instances only"), "VpcId": vpc,
        "SecurityGroupIngress": aux_ports.iter().map(|p| sg_rule(*p, get_att("InstanceSecurityGroup", "GroupId"), "from service instances")).collect::<Vec<_>>(),
        "Tags": tg("Name", &format!("{f}-auxiliaries")),
    }))?;
    let private: Vec<&str> = ctx.stage.private_subnets.iter().map(|s| s.id.as_str()).collect();
    let kinds: BTreeSet<AuxType> = auxes.iter().filter_map(|a| a.s.auxiliary()).map(|a| a.kind).collect();
    if kinds.contains(&AuxType::Postgres) {
        t.add(
            "DatabaseSubnetGroup",
            "AWS::RDS::DBSubnetGroup",
            json!({ "DBSubnetGroupDescription": format!("gilliam {f}: databases"), "SubnetIds": private }),
        )?;
    }
    if kinds.contains(&AuxType::Redis) {
        t.add("CacheSubnetGroup", "AWS::ElastiCache::SubnetGroup", json!({ "Description": format!("gilliam {f}: caches"), "SubnetIds": private }))?;
    }
    if kinds.contains(&AuxType::Etcd) {
        t.add(
            "AuxiliaryIngressEtcdPeers",
            "AWS::EC2::SecurityGroupIngress",
            json!({
                "GroupId": get_att("AuxiliarySecurityGroup", "GroupId"), "IpProtocol": "tcp", "FromPort": 2379, "ToPort": 2380,
                "SourceSecurityGroupId": get_att("AuxiliarySecurityGroup", "GroupId"), "Description": "etcd peers",
            }),
        )?;
    }
    for a in auxes {
        let aux = a.s.auxiliary().ok_or("internal error: not an auxiliary")?;
        let id = format!("Aux{}", a.id);
        let host = format!("{}.", host(ctx, &a.s.name));
        let keep = |t: &mut Template, rid: &str, policy: &str| {
            if let Some(Value::Object(m)) = t.resources.get_mut(rid) {
                m.insert("DeletionPolicy".into(), json!(policy));
                m.insert("UpdateReplacePolicy".into(), json!(policy));
            }
        };
        let cname = |target: Value| json!({ "HostedZoneId": r#ref("PrivateZone"), "Name": host, "Type": "CNAME", "TTL": "60", "ResourceRecords": [target] });
        // The credentials live in a secret the materializer keeps (not a stack's resource: a
        // secret outlives its formation, and CloudFormation cannot make one whose name an
        // earlier formation left behind); templates read it by name.
        let secret = names::secret_name(f, &a.s.name);
        let resolve = |what: &str| json!(format!("{{{{resolve:secretsmanager:{secret}:SecretString:{what}}}}}"));
        match aux.kind {
            AuxType::Postgres => {
                let mut db = json!({
                    "Engine": "postgres", "DBInstanceClass": a.instance_type, "AllocatedStorage": aux.storage_gb.unwrap_or(20).to_string(),
                    "StorageType": "gp3", "StorageEncrypted": true, "DBName": aux.database,
                    "MasterUsername": resolve("username"), "MasterUserPassword": resolve("password"),
                    "VPCSecurityGroups": [get_att("AuxiliarySecurityGroup", "GroupId")], "DBSubnetGroupName": r#ref("DatabaseSubnetGroup"),
                    "PubliclyAccessible": false, "BackupRetentionPeriod": 7, "CopyTagsToSnapshot": true,
                    "EnableIAMDatabaseAuthentication": true, "DeletionProtection": true,
                    // A new major version in gilliam.yml is an in-place upgrade RDS performs
                    // only when allowed; without it the formation's update fails.
                    "AllowMajorVersionUpgrade": true,
                    "Tags": tg("gilliam:auxiliary", &a.s.name),
                });
                // An exact minor version pinned together with automatic minor upgrades breaks
                // the next update: RDS moves to a newer minor, the template still names the
                // older one, and RDS refuses to go back. A major version alone (`"17"`)
                // follows minor upgrades; an exact one (`"17.5"`) stays where it is.
                let pinned = aux.version.as_deref().is_some_and(|v| v.contains('.'));
                db["AutoMinorVersionUpgrade"] = json!(!pinned);
                if let Some(v) = &aux.version {
                    db["EngineVersion"] = json!(v);
                }
                t.add(format!("{id}Database"), "AWS::RDS::DBInstance", db)?;
                keep(&mut t, &format!("{id}Database"), "Snapshot");
                t.add(
                    format!("{id}SecretAttachment"),
                    "AWS::SecretsManager::SecretTargetAttachment",
                    json!({ "SecretId": secret, "TargetId": r#ref(&format!("{id}Database")), "TargetType": "AWS::RDS::DBInstance" }),
                )?;
                t.add(format!("{id}Record"), "AWS::Route53::RecordSet", cname(get_att(&format!("{id}Database"), "Endpoint.Address")))?;
            }
            AuxType::Redis => {
                let mut rg = json!({
                    "ReplicationGroupDescription": format!("gilliam {f}: {}", a.s.name), "Engine": "redis", "CacheNodeType": a.instance_type,
                    "NumCacheClusters": 1, "AutomaticFailoverEnabled": false, "AtRestEncryptionEnabled": true, "TransitEncryptionEnabled": true,
                    "AuthToken": resolve("password"), "CacheSubnetGroupName": r#ref("CacheSubnetGroup"),
                    "SecurityGroupIds": [get_att("AuxiliarySecurityGroup", "GroupId")], "SnapshotRetentionLimit": 7,
                    "Tags": tg("gilliam:auxiliary", &a.s.name),
                });
                if let Some(v) = &aux.version {
                    rg["EngineVersion"] = json!(v);
                }
                t.add(format!("{id}Cache"), "AWS::ElastiCache::ReplicationGroup", rg)?;
                keep(&mut t, &format!("{id}Cache"), "Snapshot");
                t.add(format!("{id}Record"), "AWS::Route53::RecordSet", cname(get_att(&format!("{id}Cache"), "PrimaryEndPoint.Address")))?;
                // The endpoint the cache's certificate names: the materializer copies it into
                // the secret, from which the agent builds the TLS URL.
                t.output(
                    &format!("{id}Address"),
                    get_att(&format!("{id}Cache"), "PrimaryEndPoint.Address"),
                    None,
                    &format!("Primary endpoint of {}", a.s.name),
                );
                t.output(&format!("{id}Port"), get_att(&format!("{id}Cache"), "PrimaryEndPoint.Port"), None, &format!("Port of {}", a.s.name));
            }
            AuxType::Etcd => etcd(ctx, &mut t, a, aux, &id, aux_scripts)?,
        }
    }
    Ok(t)
}

pub(crate) fn etcd(
    ctx: &Ctx<'_>,
    t: &mut Template,
    a: &Svc<'_>,
    aux: &crate::app::Auxiliary,
    id: &str,
    scripts: &BTreeMap<(String, u32), String>,
) -> Result<(), String> {
    let f = ctx.f();
    let subnets = &ctx.stage.private_subnets;
    let mut volumes = Vec::new();
    let mut interfaces = Vec::new();
    for i in 0..aux.size {
        volumes.push(arn("arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:volume/${{}}", &format!("{id}Member{i}Volume")));
        interfaces.push(arn("arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:network-interface/${{}}", &format!("{id}Member{i}Interface")));
    }
    let instances = arn("arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*", "");
    t.add(format!("{id}Role"), "AWS::IAM::Role", json!({
        "AssumeRolePolicyDocument": assume_ec2(),
        "Policies": [{ "PolicyName": "gilliam-etcd", "PolicyDocument": { "Version": "2012-10-17", "Statement": [
            { "Sid": "AttachOwnVolume", "Effect": "Allow", "Action": "ec2:AttachVolume", "Resource": volumes.iter().cloned().chain([instances.clone()]).collect::<Vec<_>>() },
            { "Sid": "AttachOwnInterface", "Effect": "Allow", "Action": "ec2:AttachNetworkInterface", "Resource": interfaces.iter().cloned().chain([instances]).collect::<Vec<_>>() },
            { "Sid": "FindOwnVolumeAndInterface", "Effect": "Allow", "Action": ["ec2:DescribeVolumes", "ec2:DescribeNetworkInterfaces"], "Resource": "*" },
            { "Sid": "SignalOwnStack", "Effect": "Allow", "Action": "cloudformation:SignalResource", "Resource": arn("arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:stack/{}/*", f) },
        ] } }],
    }))?;
    t.add(format!("{id}Profile"), "AWS::IAM::InstanceProfile", json!({ "Roles": [r#ref(&format!("{id}Role"))] }))?;
    let (meta, disk) = metadata_and_disk(ctx);
    for i in 0..aux.size {
        let subnet = &subnets[i as usize % subnets.len()];
        let member = member_label(&a.s.name, i);
        let mtags = tags(&[("gilliam:formation", f), ("gilliam:member", &format!("{f}/{member}")), ("Name", &format!("{f}-{member}"))]);
        t.add(format!("{id}Member{i}Interface"), "AWS::EC2::NetworkInterface", json!({ "SubnetId": subnet.id, "GroupSet": [get_att("AuxiliarySecurityGroup", "GroupId")], "Description": format!("gilliam {f}: stable address of etcd member {member}"), "Tags": mtags }))?;
        t.add(format!("{id}Member{i}Volume"), "AWS::EC2::Volume", json!({ "AvailabilityZone": subnet.zone.clone().unwrap_or_default(), "Size": aux.storage_gb.unwrap_or(20), "VolumeType": "gp3", "Encrypted": true, "Tags": mtags }))?;
        if let Some(Value::Object(m)) = t.resources.get_mut(&format!("{id}Member{i}Volume")) {
            m.insert("DeletionPolicy".into(), json!("Snapshot"));
            m.insert("UpdateReplacePolicy".into(), json!("Snapshot"));
            // A volume must sit in its member's subnet's zone: the zone is named on purpose.
            m.insert("Metadata".into(), json!({ "cfn-lint": { "config": { "ignore_checks": ["W3010"] } } }));
        }
        let script = scripts.get(&(a.s.name.clone(), i)).ok_or("internal error: etcd userdata missing")?;
        t.add(
            format!("{id}Member{i}LaunchTemplate"),
            "AWS::EC2::LaunchTemplate",
            json!({ "LaunchTemplateData": {
            "ImageId": ctx.stage.auxiliary_image, "InstanceType": a.instance_type,
            "IamInstanceProfile": { "Arn": get_att(&format!("{id}Profile"), "Arn") },
            "SecurityGroupIds": [get_att("AuxiliarySecurityGroup", "GroupId")],
            "MetadataOptions": meta, "BlockDeviceMappings": disk, "UserData": { "Fn::Base64": script },
            "TagSpecifications": [{ "ResourceType": "instance", "Tags": mtags }],
        } }),
        )?;
        t.add(format!("{id}Member{i}Group"), "AWS::AutoScaling::AutoScalingGroup", json!({
            "MinSize": "1", "MaxSize": "1", "DesiredCapacity": "1",
            "LaunchTemplate": { "LaunchTemplateId": r#ref(&format!("{id}Member{i}LaunchTemplate")), "Version": get_att(&format!("{id}Member{i}LaunchTemplate"), "LatestVersionNumber") },
            "VPCZoneIdentifier": [subnet.id], "HealthCheckType": "EC2", "HealthCheckGracePeriod": 300,
        }))?;
        if let Some(Value::Object(m)) = t.resources.get_mut(&format!("{id}Member{i}Group")) {
            m.insert("CreationPolicy".into(), json!({ "ResourceSignal": { "Count": 1, "Timeout": format!("PT{}M", SIGNAL_TIMEOUT_SECONDS / 60) } }));
        }
        t.add(format!("{id}Member{i}Record"), "AWS::Route53::RecordSet", json!({ "HostedZoneId": r#ref("PrivateZone"), "Name": format!("{member}.{}.", ctx.domain()), "Type": "A", "TTL": "60", "ResourceRecords": [get_att(&format!("{id}Member{i}Interface"), "PrimaryPrivateIpAddress")] }))?;
    }
    Ok(())
}
