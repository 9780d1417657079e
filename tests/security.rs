//! Security properties of everything the compiler emits, for every fixture case and the
//! quickstart: IMDSv2 required; storage encrypted (EBS root volumes and etcd volumes, RDS,
//! ElastiCache at rest and in transit); instance roles scoped to their own formation's
//! resources; instances reachable only from their load balancers, auxiliaries only from the
//! formation; secrets generated and resolved by AWS, never a literal in any output.
//! (The outputs bucket's encryption is read back from S3 in materializer/tests/seam.rs; secret
//! values kept out of the agent's logs in runtime-image/agent/tests/boot.rs.)

use gilliam_tests::{compile_case, compile_texts, CASES};
use serde_json::Value;
use std::path::Path;

fn outputs() -> Vec<(String, gilliam_compiler::Compiled)> {
    let mut v: Vec<(String, gilliam_compiler::Compiled)> = CASES.iter().map(|c| (c.to_string(), compile_case(c))).collect();
    let q = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    let read = |f: &str| std::fs::read_to_string(q.join(f)).expect("quickstart");
    v.push(("quickstart".into(), compile_texts(&read("gilliam.yml"), &read("release.json"), &read("stage.yml")).expect("quickstart compiles")));
    v
}

fn templates(c: &gilliam_compiler::Compiled) -> Vec<(String, Value)> {
    c.files.iter().filter(|(p, _)| p.starts_with("templates/")).map(|(p, b)| (p.clone(), serde_json::from_slice(b).expect("JSON"))).collect()
}

fn resources(t: &Value) -> impl Iterator<Item = (&String, &Value)> {
    t["Resources"].as_object().into_iter().flat_map(|m| m.iter())
}

fn of_type<'a>(t: &'a Value, ty: &'a str) -> impl Iterator<Item = (&'a String, &'a Value)> + 'a {
    resources(t).filter(move |(_, r)| r["Type"] == ty)
}

#[test]
fn instances_require_imdsv2_and_every_volume_is_encrypted() {
    let mut seen = 0;
    for (case, c) in outputs() {
        for (path, t) in templates(&c) {
            for (id, lt) in of_type(&t, "AWS::EC2::LaunchTemplate") {
                let d = &lt["Properties"]["LaunchTemplateData"];
                assert_eq!(d["MetadataOptions"]["HttpTokens"], "required", "{case}/{path}/{id}: IMDSv2");
                assert_eq!(d["MetadataOptions"]["HttpPutResponseHopLimit"], 1, "{case}/{path}/{id}: no metadata from containers");
                let disks = d["BlockDeviceMappings"].as_array().expect("disks");
                assert!(!disks.is_empty() && disks.iter().all(|b| b["Ebs"]["Encrypted"] == true), "{case}/{path}/{id}: encrypted disks");
                seen += 1;
            }
            for (id, v) in of_type(&t, "AWS::EC2::Volume") {
                assert_eq!(v["Properties"]["Encrypted"], true, "{case}/{path}/{id}");
            }
            for (id, db) in of_type(&t, "AWS::RDS::DBInstance") {
                assert_eq!(db["Properties"]["StorageEncrypted"], true, "{case}/{path}/{id}");
                assert_eq!(db["Properties"]["PubliclyAccessible"], false, "{case}/{path}/{id}");
            }
            for (id, rg) in of_type(&t, "AWS::ElastiCache::ReplicationGroup") {
                assert_eq!(rg["Properties"]["AtRestEncryptionEnabled"], true, "{case}/{path}/{id}");
                assert_eq!(rg["Properties"]["TransitEncryptionEnabled"], true, "{case}/{path}/{id}");
            }
            for (id, b) in of_type(&t, "AWS::S3::Bucket") {
                assert!(b["Properties"]["BucketEncryption"].is_object(), "{case}/{path}/{id}");
            }
        }
    }
    assert!(seen >= 8, "launch templates checked: {seen}");
}

/// Actions that AWS only grants on `*` (no resource-level permissions).
const STAR_ONLY: &[&str] = &["ec2:DescribeVolumes", "ec2:DescribeNetworkInterfaces", "ecr:GetAuthorizationToken"];

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

#[test]
fn instance_roles_reach_only_their_own_formation() {
    for (case, c) in outputs() {
        let f = &c.manifest.formation.name;
        let artifact = c.manifest.release.artifact_url.trim_start_matches("s3://").to_string();
        // An image release pulls exactly its own image's repository.
        let repository = gilliam_contract::image::ImageRef::parse(&c.manifest.release.artifact_url).ok().and_then(|i| i.repository_arn());
        for (path, t) in templates(&c) {
            for (id, role) in of_type(&t, "AWS::IAM::Role") {
                assert!(role["Properties"]["ManagedPolicyArns"].is_null(), "{case}/{path}/{id}: no managed policies");
                let principal = &role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"];
                assert_eq!(principal, "ec2.amazonaws.com", "{case}/{path}/{id}");
                for p in role["Properties"]["Policies"].as_array().expect("inline policies") {
                    for s in p["PolicyDocument"]["Statement"].as_array().expect("statements") {
                        assert_eq!(s["Effect"], "Allow", "{case}/{path}/{id}");
                        let actions: Vec<String> = match &s["Action"] {
                            Value::String(a) => vec![a.clone()],
                            other => other.as_array().expect("actions").iter().map(|a| a.as_str().expect("action").to_string()).collect(),
                        };
                        assert!(actions.iter().all(|a| !a.contains('*')), "{case}/{path}/{id}: no wildcard actions: {actions:?}");
                        if s["Resource"] == "*" {
                            assert!(actions.iter().all(|a| STAR_ONLY.contains(&a.as_str())), "{case}/{path}/{id}: {actions:?} on *");
                            continue;
                        }
                        let mut res = Vec::new();
                        strings(&s["Resource"], &mut res);
                        assert!(!res.is_empty(), "{case}/{path}/{id}: {s}");
                        for r in res {
                            let own = r.contains(&format!(":stack/{f}"))
                                || r.contains("${AWS::StackName}")
                                || r.contains(&format!(":secret:gilliam/{f}/"))
                                || r.contains(&format!(":log-group:/gilliam/{f}:"))
                                || r.ends_with(&artifact)
                                || repository.as_deref() == Some(r.as_str())
                                || r.contains(&format!(":::{}/gilliam/{f}/", c.manifest.formation.outputs_bucket))
                                || r.contains("${Aux")
                                || r.ends_with("instance/*")
                                || r.starts_with("${") && r.ends_with("Secret}");
                            assert!(own, "{case}/{path}/{id}: {actions:?} on {r}, outside formation {f}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn instances_are_reachable_only_from_their_load_balancers_and_auxiliaries_only_from_the_formation() {
    for (case, c) in outputs() {
        for (path, t) in templates(&c) {
            for (id, r) in resources(&t) {
                let mut ingress: Vec<(&Value, String)> = Vec::new();
                match r["Type"].as_str() {
                    Some("AWS::EC2::SecurityGroup") => {
                        for rule in r["Properties"]["SecurityGroupIngress"].as_array().into_iter().flatten() {
                            ingress.push((rule, id.clone()));
                        }
                    }
                    Some("AWS::EC2::SecurityGroupIngress") => {
                        let target = r["Properties"]["GroupId"]["Fn::GetAtt"][0].as_str().unwrap_or("?").to_string();
                        ingress.push((&r["Properties"], target));
                    }
                    _ => continue,
                }
                for (rule, group) in ingress {
                    let source = rule["SourceSecurityGroupId"]["Fn::GetAtt"][0].as_str();
                    match group.as_str() {
                        "PublicLbSecurityGroup" => {
                            let port = rule["FromPort"].as_u64();
                            assert!(port == Some(80) || port == Some(443), "{case}/{path}/{id}: public load balancer open only on 80/443");
                        }
                        "InstanceSecurityGroup" => {
                            assert!(rule["CidrIp"].is_null() && rule["CidrIpv6"].is_null(), "{case}/{path}/{id}: instances take no traffic by address");
                            assert!(
                                source.is_some_and(|s| s.ends_with("LbSecurityGroup")),
                                "{case}/{path}/{id}: instances only from load balancers, not {source:?}"
                            );
                        }
                        "AuxiliarySecurityGroup" => {
                            assert!(rule["CidrIp"].is_null(), "{case}/{path}/{id}");
                            assert!(
                                matches!(source, Some("InstanceSecurityGroup" | "AuxiliarySecurityGroup")),
                                "{case}/{path}/{id}: auxiliaries only from the formation, not {source:?}"
                            );
                        }
                        other => {
                            assert!(rule["CidrIp"].is_null(), "{case}/{path}/{id}: {other} takes traffic by address");
                            assert!(source.is_some(), "{case}/{path}/{id}: {other}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn secrets_are_generated_and_resolved_by_aws_never_written() {
    for (case, c) in outputs() {
        for (path, t) in templates(&c) {
            // The auxiliaries' secrets are the materializer's (made with a password Secrets
            // Manager generates, adopted when one is left): none is a template's resource.
            let secrets: Vec<&String> = of_type(&t, "AWS::SecretsManager::Secret").map(|(id, _)| id).collect();
            assert!(secrets.is_empty(), "{case}/{path}: secrets in a template: {secrets:?}");
            for (id, r) in resources(&t) {
                for key in ["MasterUserPassword", "AuthToken", "Password"] {
                    let v = &r["Properties"][key];
                    if !v.is_null() {
                        let text = v.to_string();
                        assert!(text.contains("{{resolve:secretsmanager:"), "{case}/{path}/{id}: {key} is not a dynamic reference: {text}");
                    }
                }
            }
        }
        // Userdata and runtime configs name secrets and formats, never values.
        let userdata = c.userdata().expect("userdata");
        let runtime = c.files.iter().filter(|(p, _)| p.starts_with("runtime/")).map(|(p, b)| (p.clone(), String::from_utf8_lossy(b).into_owned()));
        for (path, text) in userdata.into_iter().chain(runtime) {
            for (i, _) in text.match_indices("postgres://") {
                assert!(text[i..].starts_with("postgres://{username}:{password}@"), "{case}/{path}: a postgres URL with credentials in it");
            }
            assert!(!text.contains("resolve:secretsmanager"), "{case}/{path}: userdata is readable by anyone on the instance; secrets come from the agent");
        }
    }
}
