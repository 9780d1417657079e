//! The AWS seam: the calls gilliam makes, one narrow trait per service (`S3`,
//! `CloudFormation`, `Elbv2`, `AutoScaling`, `SecretsManager`, `CloudWatch`, `Sns`,
//! `EventBridge`, `Ec2`) over plain types, and `Aws`, every one of them. The real SDK is
//! behind it (`sdk.rs`). Each service's calls are listed once (`__s3!` and the like); from that
//! list come the trait, the forwarding of `Layered` (a client wrapped in a `Layer` that sees
//! every call: counting, fault injection) and `forward!`, with which a wrapper that changes
//! one service passes the others through untouched.

use std::future::Future;

/// What went wrong in one AWS call, classified for retry and reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsError {
    /// Throttling: retry later, with backoff.
    Throttled(String),
    /// A 5xx, a timeout or a broken connection: retry with backoff.
    Transient(String),
    /// A conditional write lost: someone else wrote first.
    PreconditionFailed,
    /// CloudFormation's "No updates are to be performed": nothing to do.
    NoUpdates,
    /// The thing to create exists already (a create that went through, then its answer was lost).
    AlreadyExists(String),
    /// The stack is in the middle of an operation (perhaps the one whose answer was lost).
    InProgress(String),
    /// AWS refused the request as given (not retried).
    Invalid(String),
    /// No usable credentials: none found, expired, or not recognised (not retried).
    Credentials(String),
    /// The credentials are not allowed to make this call (not retried).
    Denied(String),
    /// AWS's endpoint cannot be reached: no such host, as for a region that does not exist
    /// (not retried: waiting does not mend a wrong region or endpoint).
    Unreachable(String),
    /// Anything else (not retried).
    Other(String),
}

impl AwsError {
    pub fn retryable(&self) -> bool {
        matches!(self, AwsError::Throttled(_) | AwsError::Transient(_))
    }
}

impl std::fmt::Display for AwsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AwsError::Throttled(m) => write!(f, "throttled: {m}"),
            AwsError::Transient(m) => write!(f, "transient failure: {m}"),
            AwsError::PreconditionFailed => write!(f, "conditional write lost to a concurrent writer"),
            AwsError::NoUpdates => write!(f, "no updates are to be performed"),
            AwsError::AlreadyExists(m) | AwsError::InProgress(m) => write!(f, "{m}"),
            AwsError::Invalid(m) | AwsError::Other(m) => write!(f, "{m}"),
            AwsError::Credentials(m) => write!(f, "no usable credentials: {m}"),
            AwsError::Denied(m) => write!(f, "access denied: {m}"),
            AwsError::Unreachable(m) => write!(f, "cannot reach AWS: {m}"),
        }
    }
}

impl std::error::Error for AwsError {}

pub type AwsResult<T> = Result<T, AwsError>;

/// How a put must relate to what is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutCondition {
    Always,
    /// Only if no object exists at the key (`If-None-Match: *`).
    Absent,
    /// Only if the stored object still has this ETag (`If-Match`).
    Matches(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub body: Vec<u8>,
    pub etag: String,
}

/// A stack as CloudFormation describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    pub name: String,
    pub id: String,
    pub status: String,
    pub reason: Option<String>,
    pub outputs: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSource {
    Body(String),
    Url(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackRequest {
    pub name: String,
    pub template: TemplateSource,
    pub capabilities: Vec<String>,
    pub tags: Vec<(String, String)>,
}

/// One resource event of a stack, newest first when listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackEvent {
    pub id: String,
    pub logical_id: String,
    pub resource_type: String,
    pub status: String,
    pub reason: Option<String>,
}

/// A listener rule and where it forwards, as ELBv2 reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub arn: String,
    /// Target group ARN and weight, for a weighted forward; empty otherwise.
    pub forward: Vec<(String, u32)>,
    /// The weighted forward's target group stickiness, in seconds, when enabled. A weight
    /// write replaces the whole action, so it carries this back.
    pub stickiness: Option<u32>,
}

/// One CloudWatch series to read: a metric, its dimensions, a statistic (`Sum`, `p99`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricQuery {
    /// Names the result; a lowercase letter first, then letters, digits and `_`.
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub dimensions: Vec<(String, String)>,
    pub stat: String,
    /// Seconds per datapoint (a multiple of 60).
    pub period: u32,
}

/// The size of an object and the sha256 gilliam recorded in its metadata when it wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: u64,
    pub sha256: Option<String>,
}

/// An Auto Scaling group's capacity and how many of its instances are in service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Its instances as Auto Scaling sees them.
    pub instances: Vec<GroupInstance>,
    pub name: String,
    pub min: u32,
    pub desired: u32,
    pub max: u32,
    pub in_service: u32,
}

/// An instance of an Auto Scaling group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInstance {
    pub id: String,
    pub zone: String,
    /// `Pending`, `InService`, `Terminating`...
    pub lifecycle: String,
    /// `Healthy` or `Unhealthy`, as Auto Scaling judges it.
    pub health: String,
}

/// The network a formation is placed in, as EC2 describes it: what the preflight checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    /// `None`: no such VPC.
    pub vpc: Option<Vpc>,
    /// The subnets found, by id (a subnet asked for and missing is absent).
    pub subnets: std::collections::BTreeMap<String, Subnet>,
    /// The VPC's route tables by id.
    pub route_tables: std::collections::BTreeMap<String, RouteTable>,
    /// The VPC's endpoints (PrivateLink interfaces and S3/DynamoDB gateways).
    pub endpoints: Vec<VpcEndpoint>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vpc {
    pub dns_support: bool,
    pub dns_hostnames: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subnet {
    pub vpc: String,
    pub zone: String,
    pub map_public_ip: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    /// The VPC's main route table: subnets without a table of their own use it.
    pub main: bool,
    pub subnets: Vec<String>,
    /// (destination CIDR, target id: `igw-...`, `nat-...`, `i-...`, `tgw-...`, `local`, ...).
    pub routes: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VpcEndpoint {
    /// `com.amazonaws.REGION.s3`, `com.amazonaws.REGION.secretsmanager`, ...
    pub service: String,
    /// `Gateway` or `Interface`.
    pub kind: String,
    pub private_dns: bool,
    /// Route tables a gateway endpoint is in.
    pub route_tables: Vec<String>,
    /// Subnets an interface endpoint has a network interface in.
    pub subnets: Vec<String>,
}

/// Every service gilliam calls: what the materializer and the operator commands are written
/// against.
pub trait Aws: S3 + CloudFormation + Elbv2 + AutoScaling + SecretsManager + CloudWatch + Sns + EventBridge + Ec2 + Ecr {}

impl<T: S3 + CloudFormation + Elbv2 + AutoScaling + SecretsManager + CloudWatch + Sns + EventBridge + Ec2 + Ecr> Aws for T {}

/// RunInstances of one instance from a launch template, overriding its userdata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceLaunch {
    pub launch_template_id: String,
    /// `$Latest`, `$Default` or a number.
    pub version: String,
    pub subnet: String,
    /// The userdata script (the client base64-encodes it).
    pub user_data: String,
    /// The instance's tags (the request's, for every key the launch template also tags).
    pub tags: Vec<(String, String)>,
    /// Idempotency: a retry with the same token launches nothing new.
    pub client_token: String,
    /// `terminate`: an instance that shuts itself down is gone.
    pub shutdown_terminates: bool,
}

/// A one-off instance of a formation, as DescribeInstances and its tags say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskInstance {
    pub id: String,
    pub release: Option<u32>,
    pub service: String,
    /// Its `gilliam:task` tag: `release phase`, `gilliam run by ...`.
    pub purpose: String,
    pub state: String,
    pub zone: String,
    /// RFC 3339.
    pub launched: String,
}

/// An instance's state as DescribeInstances reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceState {
    /// `pending`, `running`, `shutting-down`, `terminated`, `stopping`, `stopped`.
    pub name: String,
    /// EC2's state reason (`Client.InstanceInitiatedShutdown: ...`), when it gives one.
    pub reason: String,
}

/// An image in an ECR repository, as DescribeImages reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrImage {
    /// `sha256:...`: the image manifest's digest.
    pub digest: String,
    pub tags: Vec<String>,
}

/// A page of log events (FilterLogEvents).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogPage {
    pub events: Vec<LogEvent>,
    /// The token of the next page, when there is one.
    pub next: Option<String>,
}

/// One log event as CloudWatch Logs returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    pub id: String,
    pub ts_ms: i64,
    pub stream: String,
    pub message: String,
}

/// A login to an ECR registry (GetAuthorizationToken's answer, decoded).
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryLogin {
    /// `AWS`.
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryLogin").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// One call at the seam as a layer sees it: the AWS operation and the seam's method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// The AWS API operation (`PutObject`, `ModifyRule`).
    pub op: &'static str,
    /// The seam's method (`put_object`, `set_rule_weights`).
    pub method: &'static str,
}

/// What a wrapper does around every call it passes on (count it, time it, fail it).
pub trait Layer: Send + Sync {
    fn around<T: Send>(&self, call: Call, f: impl Future<Output = AwsResult<T>> + Send) -> impl Future<Output = AwsResult<T>> + Send;
}

/// A client with a layer around every call of every service: the one forwarding wrapper.
#[derive(Debug, Default)]
pub struct Layered<L, A> {
    pub layer: L,
    pub inner: A,
}

#[doc(hidden)]
#[macro_export]
macro_rules! __service_trait {
    ($(#[$tm:meta])* $svc:ident ; $( $(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $op:literal; )*) => {
        $(#[$tm])*
        pub trait $svc: Send + Sync {
            $( $(#[$m])* fn $name(&self $(, $arg: $ty)*) -> impl ::std::future::Future<Output = $crate::aws::AwsResult<$ret>> + Send; )*
        }
        impl<L: $crate::aws::Layer, A: $svc> $svc for $crate::aws::Layered<L, A> {
            $( async fn $name(&self $(, $arg: $ty)*) -> $crate::aws::AwsResult<$ret> {
                self.layer.around($crate::aws::Call { op: $op, method: stringify!($name) }, self.inner.$name($($arg),*)).await
            } )*
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __service_forward {
    ([$($gen:tt)*] $svc:ident for $ty:ty => $field:ident ; $( $(#[$m:meta])* fn $name:ident($($arg:ident: $aty:ty),*) -> $ret:ty = $op:literal; )*) => {
        impl<$($gen)*> $crate::aws::$svc for $ty {
            $( async fn $name(&self $(, $arg: $aty)*) -> $crate::aws::AwsResult<$ret> {
                self.$field.$name($($arg),*).await
            } )*
        }
    };
}

/// Passes a whole service through from a wrapper to the client in one of its fields:
/// `forward!(impl[A: Aws] S3 for Strict<A> => inner);` (`impl[]` when not generic).
#[macro_export]
macro_rules! forward {
    (impl[$($gen:tt)*] S3 for $ty:ty => $field:ident) => { $crate::__s3!(__service_forward!([$($gen)*] S3 for $ty => $field)); };
    (impl[$($gen:tt)*] CloudFormation for $ty:ty => $field:ident) => { $crate::__cloudformation!(__service_forward!([$($gen)*] CloudFormation for $ty => $field)); };
    (impl[$($gen:tt)*] Elbv2 for $ty:ty => $field:ident) => { $crate::__elbv2!(__service_forward!([$($gen)*] Elbv2 for $ty => $field)); };
    (impl[$($gen:tt)*] AutoScaling for $ty:ty => $field:ident) => { $crate::__autoscaling!(__service_forward!([$($gen)*] AutoScaling for $ty => $field)); };
    (impl[$($gen:tt)*] SecretsManager for $ty:ty => $field:ident) => { $crate::__secretsmanager!(__service_forward!([$($gen)*] SecretsManager for $ty => $field)); };
    (impl[$($gen:tt)*] CloudWatch for $ty:ty => $field:ident) => { $crate::__cloudwatch!(__service_forward!([$($gen)*] CloudWatch for $ty => $field)); };
    (impl[$($gen:tt)*] Sns for $ty:ty => $field:ident) => { $crate::__sns!(__service_forward!([$($gen)*] Sns for $ty => $field)); };
    (impl[$($gen:tt)*] EventBridge for $ty:ty => $field:ident) => { $crate::__eventbridge!(__service_forward!([$($gen)*] EventBridge for $ty => $field)); };
    (impl[$($gen:tt)*] Ec2 for $ty:ty => $field:ident) => { $crate::__ec2!(__service_forward!([$($gen)*] Ec2 for $ty => $field)); };
    (impl[$($gen:tt)*] Ecr for $ty:ty => $field:ident) => { $crate::__ecr!(__service_forward!([$($gen)*] Ecr for $ty => $field)); };
    // Every service but those named after `except`.
    (impl[$($gen:tt)*] Aws for $ty:ty => $field:ident $(, except $($skip:ident)+)?) => {
        $crate::__forward_all!([$($gen)*] $ty => $field; [S3 CloudFormation Elbv2 AutoScaling SecretsManager CloudWatch Sns EventBridge Ec2 Ecr]; [$($($skip)+)?]);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __forward_all {
    ([$($gen:tt)*] $ty:ty => $field:ident; []; [$($skip:ident)*]) => {};
    ([$($gen:tt)*] $ty:ty => $field:ident; [$svc:ident $($rest:ident)*]; [$($skip:ident)*]) => {
        $crate::__forward_unless!([$($gen)*] $svc for $ty => $field; [$($skip)*]);
        $crate::__forward_all!([$($gen)*] $ty => $field; [$($rest)*]; [$($skip)*]);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __forward_unless {
    ([$($gen:tt)*] $svc:ident for $ty:ty => $field:ident; []) => { $crate::forward!(impl[$($gen)*] $svc for $ty => $field); };
    ([$($gen:tt)*] S3 for $ty:ty => $field:ident; [S3 $($rest:ident)*]) => {};
    ([$($gen:tt)*] CloudFormation for $ty:ty => $field:ident; [CloudFormation $($rest:ident)*]) => {};
    ([$($gen:tt)*] Elbv2 for $ty:ty => $field:ident; [Elbv2 $($rest:ident)*]) => {};
    ([$($gen:tt)*] AutoScaling for $ty:ty => $field:ident; [AutoScaling $($rest:ident)*]) => {};
    ([$($gen:tt)*] SecretsManager for $ty:ty => $field:ident; [SecretsManager $($rest:ident)*]) => {};
    ([$($gen:tt)*] CloudWatch for $ty:ty => $field:ident; [CloudWatch $($rest:ident)*]) => {};
    ([$($gen:tt)*] Sns for $ty:ty => $field:ident; [Sns $($rest:ident)*]) => {};
    ([$($gen:tt)*] EventBridge for $ty:ty => $field:ident; [EventBridge $($rest:ident)*]) => {};
    ([$($gen:tt)*] Ec2 for $ty:ty => $field:ident; [Ec2 $($rest:ident)*]) => {};
    ([$($gen:tt)*] Ecr for $ty:ty => $field:ident; [Ecr $($rest:ident)*]) => {};
    ([$($gen:tt)*] $svc:ident for $ty:ty => $field:ident; [$other:ident $($rest:ident)*]) => {
        $crate::__forward_unless!([$($gen)*] $svc for $ty => $field; [$($rest)*]);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __s3 {
    ($gen:ident!($($pre:tt)*)) => { $crate::$gen!($($pre)* ;
        fn bucket_exists(bucket: &str) -> bool = "HeadBucket";
        /// Creates the bucket versioned, encrypted, with all public access blocked.
        fn create_secure_bucket(bucket: &str, region: &str) -> () = "CreateBucket";
        fn get_object(bucket: &str, key: &str) -> Option<$crate::aws::Object> = "GetObject";
        /// Size and recorded sha256 of an object, or `None` when there is none.
        fn head_object(bucket: &str, key: &str) -> Option<$crate::aws::ObjectHead> = "HeadObject";
        /// Stores an object, recording the body's sha256 in its metadata; returns its new ETag.
        /// `PreconditionFailed` when `cond` does not hold.
        fn put_object(bucket: &str, key: &str, body: Vec<u8>, cond: $crate::aws::PutCondition) -> String = "PutObject";
    ); };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __cloudformation {
    ($gen:ident!($($pre:tt)*)) => { $crate::$gen!($($pre)* ;
        fn describe_stack(name: &str) -> Option<$crate::aws::Stack> = "DescribeStacks";
        fn create_stack(req: &$crate::aws::StackRequest) -> String = "CreateStack";
        /// `Err(AwsError::NoUpdates)` when the template is unchanged.
        fn update_stack(req: &$crate::aws::StackRequest) -> () = "UpdateStack";
        fn delete_stack(name: &str) -> () = "DeleteStack";
        fn continue_update_rollback(name: &str) -> () = "ContinueUpdateRollback";
        /// The stack's events, newest first (at most one page).
        fn stack_events(name: &str) -> Vec<$crate::aws::StackEvent> = "DescribeStackEvents";
        /// The template body CloudFormation holds for the stack.
        fn get_template(name: &str) -> String = "GetTemplate";
        /// The stack's resources: (logical ID, physical ID, type).
        fn stack_resources(name: &str) -> Vec<(String, String, String)> = "ListStackResources";
        /// Every export in the region: (name, value).
        fn list_exports() -> Vec<(String, String)> = "ListExports";
        /// The account's stack quota in the region (`StackLimit`); `None` when not reported.
        fn stack_limit() -> Option<u32> = "DescribeAccountLimits";
        /// The names of the region's stacks that are not deleted.
        fn stack_names() -> Vec<String> = "ListStacks";
    ); };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __elbv2 {
    ($gen:ident!($($pre:tt)*)) => { $crate::$gen!($($pre)* ;
        fn describe_rules(arns: &[String]) -> Vec<$crate::aws::Rule> = "DescribeRules";
        /// Sets a rule's weighted forward: the whole list of target groups with their weights,
        /// and the forward's stickiness (seconds) when it has one.
        fn set_rule_weights(arn: &str, forward: &[(String, u32)], stickiness: Option<u32>) -> () = "ModifyRule";
        /// The health state of each registered target ("healthy", "unhealthy", "initial", ...).
        fn target_health(target_group_arn: &str) -> Vec<String> = "DescribeTargetHealth";
        /// Each target of the group with its state: (instance id, `healthy`, `unhealthy`,
        /// `initial`, `draining`, `unused`...).
        fn targets(target_group_arn: &str) -> Vec<(String, String)> = "DescribeTargetHealth";
        /// A target group's deregistration delay (`deregistration_delay.timeout_seconds`), in
        /// seconds: how long requests in flight to a deregistering target may still take.
        fn deregistration_delay(target_group_arn: &str) -> u32 = "DescribeTargetGroupAttributes";
        /// The account's ELBv2 quotas in the region, by name (`target-groups`,
        /// `application-load-balancers`, `rules-per-application-load-balancer`, ...).
        fn elb_limits() -> ::std::collections::BTreeMap<String, u32> = "DescribeAccountLimits";
        /// Every target group in the region (ARNs).
        fn target_group_arns() -> Vec<String> = "DescribeTargetGroups";
        /// Every load balancer in the region (ARNs).
        fn load_balancer_arns() -> Vec<String> = "DescribeLoadBalancers";
    ); };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __autoscaling {
    ($gen:ident!($($pre:tt)*)) => { $crate::$gen!($($pre)* ;
        fn describe_groups(names: &[String]) -> Vec<$crate::aws::Group> = "DescribeAutoScalingGroups";
        fn set_capacity(name: &str, min: u32, desired: u32, max: u32) -> () = "UpdateAutoScalingGroup";
    ); };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __secretsmanager {
    ($gen:ident!($($pre:tt)*)) => { $crate::$gen!($($pre)* ;
        /// Schedules a secret's deletion (recoverable for 7 days); a missing one is not an error.
        fn delete_secret(name: &str) -> () = "DeleteSecret";
        /// Stores a new secret (tagged with its formation) holding `value`; returns its ARN.
        fn put_secret(name: &str, value: &str, formation: &str) -> String = "CreateSecret";
        /// Whether a secret exists: `None` when there is none, `Some(true)` when it is
        /// scheduled for deletion (its name is still taken), `Some(false)` when it is there.
        fn describe_secret(name: &str) -> Option<bool> = "DescribeSecret";
        /// Cancels a secret's scheduled deletion.
        fn restore_secret(name: &str) -> () = "RestoreSecret";
        /// A password made by Secrets Manager: 32 characters, none that needs escaping in a URL.
        fn random_password() -> String = "GetRandomPassword";
        /// A secret's current string value; `None` when there is no such secret.
        fn secret_value(name: &str) -> Option<String> = "GetSecretValue";
        /// Stores a new value of an existing secret.
        fn put_secret_value(name: &str, value: &str) -> () = "PutSecretValue";
    ); };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __cloudwatch {
    ($gen:ident!($($pre:tt)*)) => { $crate::$gen!($($pre)* ;
        /// The datapoints of each query between `start` and `end` (seconds since the epoch), by
        /// query id; a series with no data is absent or empty. One GetMetricData call: at most 500 queries (`delivery::MAX_QUERIES`).
        fn metric_data(queries: &[$crate::aws::MetricQuery], start: i64, end: i64) -> ::std::collections::BTreeMap<String, Vec<f64>> = "GetMetricData";
        /// The state (`OK`, `ALARM`, `INSUFFICIENT_DATA`) of each CloudWatch alarm named that
        /// exists: (name, state).
        fn alarm_states(names: &[String]) -> Vec<(String, String)> = "DescribeAlarms";
        /// One page of CloudWatch Logs' events of `group` from `start_ms` on (milliseconds),
        /// interleaved in time order, narrowed to the streams named `stream_prefix...` where
        /// the service does (callers filter again); `next` continues a page.
        fn log_events(group: &str, stream_prefix: Option<&str>, start_ms: i64, next: Option<&str>) -> $crate::aws::LogPage = "FilterLogEvents";
    ); };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __sns {
    ($gen:ident!($($pre:tt)*)) => { $crate::$gen!($($pre)* ;
        /// Publishes a message to an SNS topic.
        fn publish(topic: &str, subject: &str, message: &str) -> () = "Publish";
    ); };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __eventbridge {
    ($gen:ident!($($pre:tt)*)) => { $crate::$gen!($($pre)* ;
        /// Puts one event on an EventBridge bus, source `gilliam`.
        fn put_event(bus: &str, detail_type: &str, detail: &str) -> () = "PutEvents";
    ); };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __ec2 {
    ($gen:ident!($($pre:tt)*)) => { $crate::$gen!($($pre)* ;
        /// The VPC, the subnets named, and the VPC's route tables and endpoints; `None` from a
        /// client that cannot tell (then the preflight says it was skipped).
        fn describe_network(vpc: &str, subnets: &[String]) -> Option<$crate::aws::Network> = "DescribeNetwork";
        /// When each instance named was launched (RFC 3339), by id; an instance EC2 no longer
        /// knows is absent.
        fn launch_times(ids: &[String]) -> ::std::collections::BTreeMap<String, String> = "DescribeInstances";
        /// Launches one instance from a launch template (a one-off task); returns its id. The
        /// client token makes a retried launch the same launch.
        fn run_instance(req: &$crate::aws::InstanceLaunch) -> String = "RunInstances";
        /// Each instance's state (`pending`, `running`, `shutting-down`, `terminated`...) and
        /// EC2's reason for it, by id; an instance EC2 no longer knows is absent.
        fn instance_states(ids: &[String]) -> ::std::collections::BTreeMap<String, $crate::aws::InstanceState> = "DescribeInstances";
        /// Terminates the instances (one already gone is no error).
        fn terminate_instances(ids: &[String]) -> () = "TerminateInstances";
        /// The formation's one-off instances (tagged `gilliam:task`) not yet terminated.
        fn task_instances(formation: &str) -> Vec<$crate::aws::TaskInstance> = "DescribeInstances";
    ); };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __ecr {
    ($gen:ident!($($pre:tt)*)) => { $crate::$gen!($($pre)* ;
        /// The image `reference` (a tag, or a `sha256:` digest) names in `repository` of the
        /// registry of `region`: its digest and tags; `None` when there is no such image.
        fn describe_image(region: &str, repository: &str, reference: &str) -> Option<$crate::aws::EcrImage> = "DescribeImages";
        /// Adds `tag` to the image `digest` (its manifest read, then put again with the tag); a
        /// tag the image already has is no change.
        fn tag_image(region: &str, repository: &str, digest: &str, tag: &str) -> () = "PutImage";
        /// Removes `tag` from its image (ECR deletes an image with its last tag); a tag that is
        /// not there is no change.
        fn untag_image(region: &str, repository: &str, tag: &str) -> () = "BatchDeleteImage";
        /// The URI of repository `name` in the registry of `region`
        /// (`ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME`); `None` when there is no such
        /// repository.
        fn describe_repository(region: &str, name: &str) -> Option<String> = "DescribeRepositories";
        /// Creates repository `name` as a formation's: immutable tags, scan on push, KMS
        /// encryption (the AWS managed key), tagged with its formation; returns its URI.
        fn create_repository(region: &str, name: &str, formation: &str) -> String = "CreateRepository";
        /// The repository's lifecycle policy text; `None` when it has none.
        fn lifecycle_policy(region: &str, name: &str) -> Option<String> = "GetLifecyclePolicy";
        /// Sets the repository's lifecycle policy.
        fn put_lifecycle_policy(region: &str, name: &str, text: &str) -> () = "PutLifecyclePolicy";
        /// A login to the registry of `region`, valid for 12 hours.
        fn registry_login(region: &str) -> $crate::aws::RegistryLogin = "GetAuthorizationToken";
    ); };
}

__s3!(__service_trait!(
    /// Amazon S3: the outputs bucket (published documents, templates, the state and the lock)
    /// and the artifacts.
    S3
));
__cloudformation!(__service_trait!(
    /// AWS CloudFormation: the formation's, releases' and routing groups' stacks.
    CloudFormation
));
__elbv2!(__service_trait!(
    /// Elastic Load Balancing v2: the weighted listener rules and target health.
    Elbv2
));
__autoscaling!(__service_trait!(
    /// EC2 Auto Scaling: a release's groups, their size.
    AutoScaling
));
__secretsmanager!(__service_trait!(
    /// AWS Secrets Manager: the auxiliaries' and the config releases' secrets.
    SecretsManager
));
__cloudwatch!(__service_trait!(
    /// Amazon CloudWatch: the metrics a release is judged by, and alarms.
    CloudWatch
));
__sns!(__service_trait!(
    /// Amazon SNS: notifications.
    Sns
));
__eventbridge!(__service_trait!(
    /// Amazon EventBridge: notifications.
    EventBridge
));
__ec2!(__service_trait!(
    /// Amazon EC2: the network the preflight checks (through `gilliam-ec2`).
    Ec2
));
__ecr!(__service_trait!(
    /// Amazon ECR: the images of image releases, and the tags that keep them.
    Ecr
));

/// Every service trait and `Aws`, for code that calls the seam on a concrete client.
pub mod prelude {
    pub use super::{AutoScaling, Aws, CloudFormation, CloudWatch, Ec2, Ecr, Elbv2, EventBridge, SecretsManager, Sns, S3};
}
