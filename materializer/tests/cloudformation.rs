//! Real CloudFormation and AWS behaviour that moto does not show, through the seam with a
//! scripted fake: asynchronous status, failed creates with their failing resource, cleanup of
//! ROLLBACK_COMPLETE, UPDATE_ROLLBACK_FAILED, "No updates", throttling and 5xx, deadlines.
//! Time is paused: backoff and polling cost nothing.

use gilliam_doubles::fake::{event, Fake};
use gilliam_materializer::aws::{AwsError, PutCondition};
use gilliam_materializer::bundle::Bundle;
use gilliam_materializer::plan::Action;
use gilliam_materializer::{Converger, Error, Options};
use std::path::Path;
use std::time::Duration;

const STAGE: &str = "formation: shop\nregion: eu-west-1\nvpc: vpc-0a1b2c3d4e5f60718\npublic_subnets: [subnet-00000001, subnet-00000002]\nprivate_subnets: [subnet-00000011, subnet-00000012]\noutputs_bucket: out-bucket\n";

fn bundle(name: &str) -> Bundle {
    let app = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart/gilliam.yml")).expect("quickstart");
    let sha = gilliam_materializer::sha256_hex(b"art");
    let release = format!(
        r#"{{"number": 1, "artifact": {{"url": "s3://art/a.tgz", "sha256": "{sha}"}}, "runtime_image": "ami-0a1b2c3d4e5f60718", "revision": "r", "created": "2026-11-22T10:00:00Z"}}"#
    );
    let inputs = gilliam_compiler::Inputs {
        app: gilliam_compiler::Source { name: "gilliam.yml", text: &app },
        release: gilliam_compiler::Source { name: "release.json", text: &release },
        stage: gilliam_compiler::Source { name: "stage.yml", text: STAGE },
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-scratch/cfn").join(name);
    gilliam_tests::compile_into(inputs.app.text, inputs.release.text, inputs.stage.text, &dir);
    Bundle::load(&dir).expect("bundle")
}

async fn world() -> Fake {
    let aws = Fake::default();
    aws.with(|w| w.buckets.push("art".into()));
    gilliam_materializer::aws::S3::put_object(&aws, "art", "a.tgz", b"art".to_vec(), PutCondition::Always).await.expect("artifact");
    aws
}

fn opts() -> Options {
    Options {
        traffic_auto: true,
        poll: Duration::from_secs(5),
        stack_timeout: Duration::from_secs(600),
        health_timeout: Duration::from_secs(60),
        ..Options::default()
    }
}

fn quiet(_: &str) {}

#[tokio::test(start_paused = true)]
async fn asynchronous_create_is_polled_to_completion() {
    let aws = world().await;
    aws.with(|w| {
        w.on_create.insert("shop-r1".into(), vec![("CREATE_IN_PROGRESS".into(), None), ("CREATE_IN_PROGRESS".into(), None), ("CREATE_COMPLETE".into(), None)]);
    });
    let b = bundle("async");
    Converger::new(&aws, &b, opts(), &quiet).run().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(aws.with(|w| w.stacks["shop-r1"].status.clone()), "CREATE_COMPLETE");
}

#[tokio::test(start_paused = true)]
async fn failed_create_names_the_resource_then_is_replaced() {
    let aws = world().await;
    let failure = event("ApiAutoScalingGroup", "AWS::AutoScaling::AutoScalingGroup", "CREATE_FAILED", "Received 0 SUCCESS signal(s) out of 2");
    aws.with(|w| {
        w.on_create.insert(
            "shop-r1".into(),
            vec![("CREATE_IN_PROGRESS".into(), Some(failure)), ("ROLLBACK_IN_PROGRESS".into(), None), ("ROLLBACK_COMPLETE".into(), None)],
        );
    });
    let b = bundle("rollback");
    let err = Converger::new(&aws, &b, opts(), &quiet).run().await.expect_err("create fails");
    match &err {
        Error::StackFailed { stack, status, cause } => {
            assert_eq!((stack.as_str(), status.as_str()), ("shop-r1", "ROLLBACK_COMPLETE"));
            assert_eq!(cause, "ApiAutoScalingGroup (AWS::AutoScaling::AutoScalingGroup): Received 0 SUCCESS signal(s) out of 2");
        }
        other => panic!("{other}"),
    }
    // The failed stack holds nothing: the next converge deletes it and creates it anew.
    let plan = Converger::new(&aws, &b, opts(), &quiet).plan().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(plan.actions.contains(&Action::ReplaceFailedStack { stack: "shop-r1".into(), status: "ROLLBACK_COMPLETE".into() }), "{}", plan.render());
    Converger::new(&aws, &b, opts(), &quiet).apply(&plan).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(aws.with(|w| w.stacks["shop-r1"].status.clone()), "CREATE_COMPLETE");
    assert!(aws.with(|w| w.calls.contains(&"delete_stack")));
}

#[tokio::test(start_paused = true)]
async fn update_rollback_failed_is_continued_then_updated() {
    let aws = world().await;
    let b = bundle("urf");
    Converger::new(&aws, &b, opts(), &quiet).run().await.unwrap_or_else(|e| panic!("{e}"));
    aws.with(|w| {
        let st = w.stacks.get_mut("shop").expect("formation");
        st.status = "UPDATE_ROLLBACK_FAILED".into();
        st.template = "{\"Resources\":{}}".into();
    });
    let plan = Converger::new(&aws, &b, opts(), &quiet).plan().await.unwrap_or_else(|e| panic!("{e}"));
    let shop: Vec<&Action> =
        plan.actions.iter().filter(|a| matches!(a, Action::ContinueRollback { stack } | Action::UpdateStack { stack, .. } if stack == "shop")).collect();
    assert_eq!(shop.len(), 2, "{}", plan.render());
    assert!(matches!(shop[0], Action::ContinueRollback { .. }));
    Converger::new(&aws, &b, opts(), &quiet).apply(&plan).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(aws.with(|w| w.stacks["shop"].status.clone()), "UPDATE_COMPLETE");
}

#[tokio::test(start_paused = true)]
async fn no_updates_is_no_change() {
    let aws = world().await;
    let b = bundle("noupdates");
    Converger::new(&aws, &b, opts(), &quiet).run().await.unwrap_or_else(|e| panic!("{e}"));
    // CloudFormation holds the same template in other words: the plan still sees a change.
    aws.with(|w| w.stacks.get_mut("shop").expect("shop").template.push(' '));
    aws.with(|w| w.faults.insert("update_stack", [AwsError::NoUpdates].into()));
    let report = Converger::new(&aws, &b, opts(), &quiet).run().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(!report.changes.iter().any(|c| c.contains("stack shop ")), "{:?}", report.changes);
}

#[tokio::test(start_paused = true)]
async fn throttling_and_server_errors_are_retried() {
    let aws = world().await;
    aws.with(|w| {
        w.faults.insert(
            "describe_stack",
            [AwsError::Throttled("Rate exceeded".into()), AwsError::Transient("503".into()), AwsError::Throttled("Rate exceeded".into())].into(),
        );
        w.faults.insert("create_stack", [AwsError::Transient("connection reset".into())].into());
        w.faults.insert("put_object", [AwsError::Throttled("SlowDown".into())].into());
    });
    let b = bundle("throttle");
    Converger::new(&aws, &b, opts(), &quiet).run().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(aws.with(|w| w.stacks.len()), 3);
}

#[tokio::test(start_paused = true)]
async fn a_non_retryable_error_is_reported_as_is() {
    let aws = world().await;
    aws.with(|w| w.faults.insert("create_stack", [AwsError::Invalid("ValidationError: Template format error".into())].into()));
    let err = Converger::new(&aws, &bundle("invalid"), opts(), &quiet).run().await.expect_err("invalid");
    assert_eq!(err.to_string(), "create stack: ValidationError: Template format error");
}

#[tokio::test(start_paused = true)]
async fn a_stack_stuck_in_progress_hits_the_deadline() {
    let aws = world().await;
    aws.with(|w| {
        w.on_create.insert("shop-r1".into(), vec![("CREATE_IN_PROGRESS".into(), None); 10_000]);
    });
    let err = Converger::new(&aws, &bundle("stuck"), opts(), &quiet).run().await.expect_err("deadline");
    assert!(matches!(&err, Error::Timeout(m) if m.contains("shop-r1 still CREATE_IN_PROGRESS")), "{err}");
    // Nothing further happened: the routing stack was never created, traffic never moved.
    assert!(!aws.with(|w| w.stacks.contains_key("shop-routing-1")));
}

#[tokio::test(start_paused = true)]
async fn a_stack_busy_elsewhere_is_not_touched() {
    let aws = world().await;
    let b = bundle("busy");
    Converger::new(&aws, &b, opts(), &quiet).run().await.unwrap_or_else(|e| panic!("{e}"));
    aws.with(|w| w.stacks.get_mut("shop").expect("shop").status = "UPDATE_IN_PROGRESS".into());
    let err = Converger::new(&aws, &b, opts(), &quiet).plan().await.expect_err("busy");
    assert!(matches!(err, Error::Busy { .. }), "{err}");
}
