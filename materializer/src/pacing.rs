//! Pacing at the seam: every AWS call of a throttled action class (a service's reads or its
//! writes: one token bucket per account and region, as AWS has them) waits for its slot from
//! that class's `retry::Pacer`, which throttling slows down and success probes up. With
//! `retry`, which answers throttling by trying again rather than by giving up, a large
//! formation's flips, status reads and converges run close to what the buckets refill and
//! never fail on throttling, whatever share of the buckets other tools take.

use crate::aws::{AwsError, AwsResult, Call, Layer};
use crate::retry::Pacer;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// A token bucket's name: (service, `read` or `write`).
pub type Class = (&'static str, &'static str);

/// Which bucket a call takes from, by the seam's method; `None` for the services gilliam
/// makes few calls to (S3, Secrets Manager, CloudWatch Logs, IAM, ECR), which `retry`'s
/// backoff is enough for.
pub fn class(call: Call) -> Option<Class> {
    Some(match call.method {
        "describe_rules" | "target_health" | "targets" | "deregistration_delay" | "elb_limits" | "target_group_arns" | "load_balancer_arns" => {
            ("elbv2", "read")
        }
        "set_rule_weights" => ("elbv2", "write"),
        "describe_groups" => ("autoscaling", "read"),
        "set_capacity" => ("autoscaling", "write"),
        "describe_stack" | "stack_events" | "get_template" | "stack_resources" | "list_exports" | "stack_limit" | "stack_names" => ("cloudformation", "read"),
        "create_stack" | "update_stack" | "delete_stack" | "continue_update_rollback" => ("cloudformation", "write"),
        "describe_network" | "launch_times" | "instance_states" | "task_instances" => ("ec2", "read"),
        "run_instance" | "terminate_instances" => ("ec2", "write"),
        _ => return None,
    })
}

/// The pacing layer: `Layered { layer: Pacing::default(), inner }`, what every gilliam
/// client is (`sdk::connect_from_env`). One pacer per class, made at its first call at the
/// pacer's top rate: a run that is never throttled is never slowed.
#[derive(Debug, Default)]
pub struct Pacing {
    pacers: Mutex<BTreeMap<Class, Arc<Pacer>>>,
}

impl Pacing {
    fn pacer(&self, class: Class) -> Arc<Pacer> {
        let mut p = self.pacers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        p.entry(class).or_insert_with(|| Arc::new(Pacer::new(Pacer::MAX_RATE))).clone()
    }
}

impl Layer for Pacing {
    async fn around<T: Send>(&self, call: Call, f: impl Future<Output = AwsResult<T>> + Send) -> AwsResult<T> {
        let Some(class) = class(call) else { return f.await };
        let pacer = self.pacer(class);
        // The call starts when it is first polled: after its slot.
        let slot = pacer.slot().await;
        let r = f.await;
        match &r {
            Ok(_) => pacer.succeeded(),
            Err(AwsError::Throttled(_)) => pacer.throttled(slot),
            Err(_) => {}
        }
        r
    }
}
