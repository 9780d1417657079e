//! Preflight against moto: a network that lacks what a real account needs (DNS host names off,
//! public subnets in one zone, private subnets with no way out) is refused before anything is
//! written, with every problem named; the same formation in a good network goes through.

use gilliam_doubles::counting::Counting;
use gilliam_materializer::aws::prelude::*;
use gilliam_materializer::aws::{PutCondition, StackRequest, TemplateSource};
use gilliam_materializer::sdk::{Endpoint, SdkAws};
use gilliam_materializer::{Converger, Error};
use gilliam_tests::moto;
use std::collections::BTreeMap;

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_that_is_not_ready_is_refused_before_any_write() {
    let moto = moto::Moto::start();
    let aws = Counting::new(SdkAws::connect(&Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) }).await);
    // DNS host names off; both public subnets in zone a; private subnets with no route out.
    let template = serde_json::json!({
        "Resources": {
            "Vpc": { "Type": "AWS::EC2::VPC", "Properties": { "CidrBlock": "10.1.0.0/16", "EnableDnsSupport": true, "EnableDnsHostnames": false } },
            "A": { "Type": "AWS::EC2::Subnet", "Properties": { "VpcId": { "Ref": "Vpc" }, "CidrBlock": "10.1.0.0/24", "AvailabilityZone": format!("{REGION}a") } },
            "B": { "Type": "AWS::EC2::Subnet", "Properties": { "VpcId": { "Ref": "Vpc" }, "CidrBlock": "10.1.1.0/24", "AvailabilityZone": format!("{REGION}a") } },
            "C": { "Type": "AWS::EC2::Subnet", "Properties": { "VpcId": { "Ref": "Vpc" }, "CidrBlock": "10.1.2.0/24", "AvailabilityZone": format!("{REGION}a") } },
            "D": { "Type": "AWS::EC2::Subnet", "Properties": { "VpcId": { "Ref": "Vpc" }, "CidrBlock": "10.1.3.0/24", "AvailabilityZone": format!("{REGION}b") } },
        },
        "Outputs": { "Vpc": { "Value": { "Ref": "Vpc" } }, "A": { "Value": { "Ref": "A" } }, "B": { "Value": { "Ref": "B" } }, "C": { "Value": { "Ref": "C" } }, "D": { "Value": { "Ref": "D" } } },
    });
    let req = StackRequest { name: "bad-network".into(), template: TemplateSource::Body(template.to_string()), capabilities: vec![], tags: vec![] };
    aws.inner().create_stack(&req).await.expect("network");
    let out: BTreeMap<String, String> = aws.inner().describe_stack("bad-network").await.expect("describe").expect("exists").outputs.into_iter().collect();
    let stage = format!(
        "formation: shop\nregion: {REGION}\nvpc: {}\npublic_subnets: [{}, {}]\nprivate_subnets:\n  - {{id: {}, zone: {REGION}a}}\n  - {{id: {}, zone: {REGION}b}}\noutputs_bucket: {BUCKET}\n",
        out["Vpc"], out["A"], out["B"], out["C"], out["D"]
    );
    aws.inner().create_secure_bucket(ARTIFACTS, REGION).await.expect("artifact bucket");
    aws.inner().put_object(ARTIFACTS, "a.tgz", b"x".to_vec(), PutCondition::Always).await.expect("artifact");
    let b = compile_in("preflight", &stage, 1, "a.tgz", &gilliam_materializer::sha256_hex(b"x"));
    aws.reset();
    let err = Converger::new(&aws, &b, opts(), &|_| {}).run().await.expect_err("refused");
    let Error::Preflight { problems, .. } = &err else { panic!("{err}") };
    let text = err.to_string();
    assert!(text.contains("nothing was changed"), "{text}");
    assert!(problems.iter().any(|p| p.contains("DNS host names off")), "{text}");
    assert!(problems.iter().any(|p| p.contains("`public_subnets` are all in eu-west-1a")), "{text}");
    assert!(problems.iter().any(|p| p.contains(&format!("public subnet {} has no route to an internet gateway", out["A"]))), "{text}");
    // The quickstart has a database: instances need S3, CloudFormation and Secrets Manager.
    assert!(problems.iter().any(|p| p.contains(&format!("private subnet {} cannot reach cloudformation, s3, secretsmanager", out["C"]))), "{text}");
    assert_eq!(aws.mutations(), BTreeMap::new(), "nothing was written");
    assert_eq!(aws.inner().describe_stack("shop").await.expect("describe"), None);
    // The refusal names the way past it; with it, planning goes on without the check.
    assert!(text.contains("--skip-preflight"), "{text}");
    let skip = gilliam_materializer::Options { preflight: false, ..opts() };
    let plan = Converger::new(&aws, &b, skip, &|_| {}).plan().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(!plan.actions.is_empty());
    assert_eq!(aws.mutations(), BTreeMap::new(), "planning wrote nothing");

    // The same formation in a network shaped like a real one goes through.
    let stage = network(aws.inner(), &moto.url).await;
    let b = compile_in("preflight-good", &stage, 1, "a.tgz", &gilliam_materializer::sha256_hex(b"x"));
    Converger::new(&aws, &b, opts(), &|_| {}).run().await.unwrap_or_else(|e| panic!("{e}"));
}
