//! The AWS seam: the few calls gilliam makes, as one narrow trait over plain types. The real
//! SDK is behind it (`sdk.rs`); tests put fakes and fault injectors in front of it.

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
    pub name: String,
    pub min: u32,
    pub desired: u32,
    pub max: u32,
    pub in_service: u32,
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

pub trait Aws: Send + Sync {
    fn bucket_exists(&self, bucket: &str) -> impl Future<Output = AwsResult<bool>> + Send;
    /// Creates the bucket versioned, encrypted, with all public access blocked.
    fn create_secure_bucket(&self, bucket: &str, region: &str) -> impl Future<Output = AwsResult<()>> + Send;
    fn get_object(&self, bucket: &str, key: &str) -> impl Future<Output = AwsResult<Option<Object>>> + Send;
    /// Size and recorded sha256 of an object, or `None` when there is none.
    fn head_object(&self, bucket: &str, key: &str) -> impl Future<Output = AwsResult<Option<ObjectHead>>> + Send;
    /// Stores an object, recording the body's sha256 in its metadata; returns its new ETag.
    /// `PreconditionFailed` when `cond` does not hold.
    fn put_object(&self, bucket: &str, key: &str, body: Vec<u8>, cond: PutCondition) -> impl Future<Output = AwsResult<String>> + Send;

    fn describe_stack(&self, name: &str) -> impl Future<Output = AwsResult<Option<Stack>>> + Send;
    fn create_stack(&self, req: &StackRequest) -> impl Future<Output = AwsResult<String>> + Send;
    /// `Err(AwsError::NoUpdates)` when the template is unchanged.
    fn update_stack(&self, req: &StackRequest) -> impl Future<Output = AwsResult<()>> + Send;
    fn delete_stack(&self, name: &str) -> impl Future<Output = AwsResult<()>> + Send;
    fn continue_update_rollback(&self, name: &str) -> impl Future<Output = AwsResult<()>> + Send;
    /// The stack's events, newest first (at most one page).
    fn stack_events(&self, name: &str) -> impl Future<Output = AwsResult<Vec<StackEvent>>> + Send;
    /// The template body CloudFormation holds for the stack.
    fn get_template(&self, name: &str) -> impl Future<Output = AwsResult<String>> + Send;
    /// The stack's resources: (logical ID, physical ID, type).
    fn stack_resources(&self, name: &str) -> impl Future<Output = AwsResult<Vec<(String, String, String)>>> + Send;
    /// Every export in the region: (name, value).
    fn list_exports(&self) -> impl Future<Output = AwsResult<Vec<(String, String)>>> + Send;

    fn describe_rules(&self, arns: &[String]) -> impl Future<Output = AwsResult<Vec<Rule>>> + Send;
    /// Sets a rule's weighted forward: the whole list of target groups with their weights, and
    /// the forward's stickiness (seconds) when it has one.
    fn set_rule_weights(&self, arn: &str, forward: &[(String, u32)], stickiness: Option<u32>) -> impl Future<Output = AwsResult<()>> + Send;
    /// The health state of each registered target ("healthy", "unhealthy", "initial", ...).
    fn target_health(&self, target_group_arn: &str) -> impl Future<Output = AwsResult<Vec<String>>> + Send;

    fn describe_groups(&self, names: &[String]) -> impl Future<Output = AwsResult<Vec<Group>>> + Send;
    fn set_capacity(&self, name: &str, min: u32, desired: u32, max: u32) -> impl Future<Output = AwsResult<()>> + Send;

    /// Schedules a secret's deletion (recoverable for 7 days); a missing one is not an error.
    fn delete_secret(&self, name: &str) -> impl Future<Output = AwsResult<()>> + Send {
        let _ = name;
        async { Err(AwsError::Other("this AWS client cannot delete secrets".into())) }
    }

    /// The VPC, the subnets named, and the VPC's route tables and endpoints; `None` from a
    /// client that cannot tell (then the preflight says it was skipped).
    fn describe_network(&self, vpc: &str, subnets: &[String]) -> impl Future<Output = AwsResult<Option<Network>>> + Send;

    /// Whether a secret exists: `None` when there is none, `Some(true)` when it is scheduled
    /// for deletion (its name is still taken), `Some(false)` when it is there to use.
    fn describe_secret(&self, name: &str) -> impl Future<Output = AwsResult<Option<bool>>> + Send;

    /// Cancels a secret's scheduled deletion.
    fn restore_secret(&self, name: &str) -> impl Future<Output = AwsResult<()>> + Send;

    /// A password made by Secrets Manager: 32 characters, none that needs escaping in a URL.
    fn random_password(&self) -> impl Future<Output = AwsResult<String>> + Send;

    /// A secret's current string value; `None` when there is no such secret.
    fn secret_value(&self, name: &str) -> impl Future<Output = AwsResult<Option<String>>> + Send;

    /// Stores a new value of an existing secret.
    fn put_secret_value(&self, name: &str, value: &str) -> impl Future<Output = AwsResult<()>> + Send;

    /// Stores a new secret (tagged with its formation) holding `value`; returns its ARN.
    fn put_secret(&self, name: &str, value: &str, formation: &str) -> impl Future<Output = AwsResult<String>> + Send {
        let _ = (name, value, formation);
        async { Err(AwsError::Other("this AWS client cannot store secrets".into())) }
    }

    /// The datapoints of each query between `start` and `end` (seconds since the epoch), by
    /// query id; a series with no data is absent or empty. One GetMetricData round.
    fn metric_data(
        &self,
        queries: &[MetricQuery],
        start: i64,
        end: i64,
    ) -> impl Future<Output = AwsResult<std::collections::BTreeMap<String, Vec<f64>>>> + Send;

    /// The state (`OK`, `ALARM`, `INSUFFICIENT_DATA`) of each CloudWatch alarm named that
    /// exists: (name, state).
    fn alarm_states(&self, names: &[String]) -> impl Future<Output = AwsResult<Vec<(String, String)>>> + Send;

    /// Publishes a message to an SNS topic.
    fn publish(&self, topic: &str, subject: &str, message: &str) -> impl Future<Output = AwsResult<()>> + Send;

    /// Puts one event on an EventBridge bus, source `gilliam`.
    fn put_event(&self, bus: &str, detail_type: &str, detail: &str) -> impl Future<Output = AwsResult<()>> + Send;
}
