//! The real AWS behind the seam: aws-config for credentials and region (the standard chain),
//! an optional endpoint URL for a local emulator, and the SDK clients. Errors are classified
//! into [`AwsError`] here, once.

use crate::aws::prelude::*;
use crate::aws::{AwsError, AwsResult, Group, MetricQuery, Object, ObjectHead, PutCondition, Rule, Stack, StackEvent, StackRequest, TemplateSource};
use aws_config::{BehaviorVersion, Region};
use aws_sdk_autoscaling as asg;
use aws_sdk_cloudformation as cfn;
use aws_sdk_elasticloadbalancingv2 as elb;
use aws_sdk_s3 as s3;
use aws_smithy_http_client::tls;
// The SDK's request futures are large; boxing each one here keeps every caller's future small.
use futures_util::FutureExt;

/// Where to find AWS: the standard chain, optionally overridden.
#[derive(Debug, Clone, Default)]
pub struct Endpoint {
    /// `--endpoint-url` / `AWS_ENDPOINT_URL`: every client talks to this URL (a local emulator).
    pub url: Option<String>,
    /// Region override; otherwise the standard chain decides.
    pub region: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SdkAws {
    s3: s3::Client,
    cfn: cfn::Client,
    elb: elb::Client,
    asg: asg::Client,
    secrets: aws_sdk_secretsmanager::Client,
    /// The narrow EC2 client; an endpoint it cannot use is reported at the first EC2 call.
    ec2: std::sync::Arc<Result<gilliam_ec2::Ec2, gilliam_ec2::Ec2Error>>,
    cloudwatch: aws_sdk_cloudwatch::Client,
    /// CloudWatch Logs through the narrow client's JSON protocol (one call: FilterLogEvents).
    logs: std::sync::Arc<Result<gilliam_ec2::Ec2, gilliam_ec2::Ec2Error>>,
    sns: aws_sdk_sns::Client,
    events: aws_sdk_eventbridge::Client,
    ecr: aws_sdk_ecr::Client,
}

/// The HTTP client every gilliam AWS client uses: rustls with ring.
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring)).build_https()
}

/// What every gilliam command talks to AWS through: the SDK client, behind the fault injector
/// (a testing facility, `GILLIAM_FAULTS`; without it, it passes every call through), behind
/// the pacing layer (each action class paced to its token bucket).
pub type Client = crate::aws::Layered<crate::pacing::Pacing, crate::faults::Faulty<SdkAws>>;

/// The real AWS client, paced, behind the fault injector when `GILLIAM_FAULTS` says so.
pub async fn connect_from_env(endpoint: &Endpoint) -> Result<Client, String> {
    connect_from_env_as(endpoint, None).await
}

/// `connect_from_env`, with the credentials of the named profile (`~/.aws/config` and
/// `~/.aws/credentials`) rather than the standard chain, when one is named: another account's.
pub async fn connect_from_env_as(endpoint: &Endpoint, profile: Option<&str>) -> Result<Client, String> {
    let spec = match std::env::var("GILLIAM_FAULTS") {
        Ok(s) => crate::faults::FaultSpec::parse(&s)?,
        Err(_) => crate::faults::FaultSpec::default(),
    };
    Ok(crate::aws::Layered { layer: crate::pacing::Pacing::default(), inner: crate::faults::Faulty::new(SdkAws::connect_as(endpoint, profile).await, spec) })
}

impl SdkAws {
    pub async fn connect(endpoint: &Endpoint) -> Self {
        SdkAws::connect_as(endpoint, None).await
    }

    /// `connect`, with the named profile's credentials when one is named.
    pub async fn connect_as(endpoint: &Endpoint, profile: Option<&str>) -> Self {
        let http = http_client();
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
        if let Some(p) = profile {
            // The profile's own credentials, even where the environment has others.
            let conf = aws_config::provider_config::ProviderConfig::without_region().with_http_client(http_client());
            let creds = aws_config::profile::ProfileFileCredentialsProvider::builder().configure(&conf).profile_name(p).build();
            loader = loader.profile_name(p).credentials_provider(creds);
        }
        if let Some(r) = &endpoint.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(u) = &endpoint.url {
            loader = loader.endpoint_url(u.clone());
        }
        let conf = loader.load().await;
        // Path-style addressing: bucket names in the path work with every endpoint, emulators too.
        let s3conf = s3::config::Builder::from(&conf).force_path_style(true).build();
        SdkAws {
            s3: s3::Client::from_conf(s3conf),
            cfn: cfn::Client::new(&conf),
            elb: elb::Client::new(&conf),
            asg: asg::Client::new(&conf),
            secrets: aws_sdk_secretsmanager::Client::new(&conf),
            ec2: std::sync::Arc::new(gilliam_ec2::Ec2::new(&conf, 3)),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&conf),
            logs: std::sync::Arc::new(gilliam_ec2::Ec2::logs(&conf, 3)),
            sns: aws_sdk_sns::Client::new(&conf),
            events: aws_sdk_eventbridge::Client::new(&conf),
            ecr: aws_sdk_ecr::Client::new(&conf),
        }
    }
}

/// Generated passwords are 32 letters and digits, with at least one of each case and a digit:
/// one password serves a database's `MasterUserPassword` (RDS refuses `/`, `@`, `"` and space)
/// and a cache's `AuthToken` (ElastiCache accepts no punctuation but `! & # $ ^ < > -`), and
/// needs no escaping in a connection URL or a shell. About 190 bits.
pub const PASSWORD_LENGTH: i64 = 32;

/// Classifies an SDK error by its code, HTTP status and kind.
fn classify<E>(e: aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::http::Response>) -> AwsError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    match &e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("").to_string();
            let message = se.err().message().unwrap_or("").to_string();
            let status = se.raw().status().as_u16();
            classify_service(&code, &message, status)
        }
        SdkError::DispatchFailure(_) => classify_dispatch(&format!("{e}: {}", source_chain(&e))),
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => AwsError::Transient(format!("{e}: {}", source_chain(&e))),
        _ => AwsError::Other(format!("{e}: {}", source_chain(&e))),
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}

/// Classifies a failed EC2 call the same way: by EC2's code and the HTTP status; a call that
/// never got an answer (time-out, connection) is transient.
fn classify_ec2(e: gilliam_ec2::Ec2Error) -> AwsError {
    match (&e.code, e.status) {
        (Some(code), Some(status)) => classify_service(code, &e.message, status),
        _ if e.kind == gilliam_ec2::ErrorKind::Transient || e.kind == gilliam_ec2::ErrorKind::Throttled => AwsError::Transient(e.to_string()),
        _ if e.kind == gilliam_ec2::ErrorKind::NoCredentials => AwsError::Credentials(e.message.clone()),
        _ => AwsError::Other(e.to_string()),
    }
}

/// A call that never got an answer, by what the SDK's chain of causes says: credentials that
/// could not be loaded, a host that does not exist or refuses, or else a transient failure.
/// The text kept is the cause alone, in a few words, not the SDK's chain.
pub(crate) fn classify_dispatch(chain: &str) -> AwsError {
    let lower = chain.to_ascii_lowercase();
    if lower.contains("loading credentials") || lower.contains("no credentials") || lower.contains("credentials provider") {
        let cause = if lower.contains("sso") && (lower.contains("expired") || lower.contains("token")) {
            "the SSO session has expired or was never started".to_string()
        } else if lower.contains("expired") {
            "they have expired".to_string()
        } else if let Some(p) =
            chain.split("profile").nth(1).filter(|_| lower.contains("could not find") || lower.contains("not found") || lower.contains("missing"))
        {
            format!("profile{}", p.split(':').next().unwrap_or(p).trim_end())
        } else if lower.contains("imds is disabled") || lower.contains("metadata") {
            "none in the environment or a profile, and the instance metadata service is off".to_string()
        } else {
            "none found in the environment, a profile or an instance role".to_string()
        };
        return AwsError::Credentials(cause);
    }
    let host = chain.split("://").nth(1).map(|r| r.split(['/', ' ', ':', '"', ')']).next().unwrap_or("")).filter(|h| !h.is_empty());
    let at = host.map(|h| format!(" {h}")).unwrap_or_default();
    if lower.contains("dns error")
        || lower.contains("failed to lookup address")
        || lower.contains("name or service not known")
        || lower.contains("no such host")
    {
        return AwsError::Unreachable(format!("no such host{at}"));
    }
    // A refused connection may be a proxy or endpoint restarting: retried as transient (the
    // binaries still say it in one line when the retries run out).
    AwsError::Transient(chain.to_string())
}

/// The classification itself, on plain values so that it can be tested without the SDK.
pub(crate) fn classify_service(code: &str, message: &str, status: u16) -> AwsError {
    let text = if message.is_empty() { code.to_string() } else { format!("{code}: {message}") };
    let lower = message.to_ascii_lowercase();
    if matches!(
        code,
        "ExpiredToken"
            | "ExpiredTokenException"
            | "InvalidClientTokenId"
            | "UnrecognizedClientException"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "AuthFailure"
            | "InvalidSignatureException"
            | "IncompleteSignature"
            | "MissingAuthenticationToken"
    ) {
        return AwsError::Credentials(text);
    }
    if matches!(code, "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" | "AuthorizationError" | "UnauthorizedAccess")
        || (status == 403 && code.is_empty())
    {
        return AwsError::Denied(text);
    }
    if matches!(code, "Throttling" | "ThrottlingException" | "TooManyRequestsException" | "RequestLimitExceeded" | "SlowDown" | "RequestThrottled")
        || status == 429
    {
        AwsError::Throttled(text)
    } else if code == "PreconditionFailed" || code == "ConditionalRequestConflict" || status == 412 {
        AwsError::PreconditionFailed
    } else if lower.contains("no updates are to be performed") || lower.contains("no updates to be performed") {
        // The wording has varied over the years; both forms mean "unchanged".
        AwsError::NoUpdates
    } else if code == "AlreadyExistsException" || code == "AlreadyExists" {
        AwsError::AlreadyExists(text)
    } else if lower.contains("_in_progress state") && (lower.contains("can not be") || lower.contains("cannot be")) {
        // "Stack:... is in UPDATE_IN_PROGRESS state and can not be updated."
        AwsError::InProgress(text)
    } else if status >= 500 || matches!(code, "InternalFailure" | "ServiceUnavailable" | "InternalError" | "RequestTimeout") {
        AwsError::Transient(text)
    } else if status == 400 || code.ends_with("ValidationError") || code == "ValidationError" {
        AwsError::Invalid(text)
    } else {
        AwsError::Other(text)
    }
}

fn not_found(e: &AwsError) -> bool {
    match e {
        AwsError::Invalid(m) | AwsError::Other(m) => {
            m.contains("NotFound") || m.contains("NoSuchKey") || m.contains("NoSuchBucket") || m.contains("does not exist") || m.starts_with("404")
        }
        _ => false,
    }
}

fn request(req: &StackRequest) -> (Option<String>, Option<String>, Vec<cfn::types::Capability>, Vec<cfn::types::Tag>) {
    let (body, url) = match &req.template {
        TemplateSource::Body(b) => (Some(b.clone()), None),
        TemplateSource::Url(u) => (None, Some(u.clone())),
    };
    let caps = req.capabilities.iter().map(|c| cfn::types::Capability::from(c.as_str())).collect();
    let tags = req.tags.iter().map(|(k, v)| cfn::types::Tag::builder().key(k).value(v).build()).collect();
    (body, url, caps, tags)
}

impl S3 for SdkAws {
    async fn bucket_exists(&self, bucket: &str) -> AwsResult<bool> {
        match self.s3.head_bucket().bucket(bucket).send().boxed().await {
            Ok(_) => Ok(true),
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                if status == Some(404) {
                    return Ok(false);
                }
                Err(classify(e))
            }
        }
    }
    async fn create_secure_bucket(&self, bucket: &str, region: &str) -> AwsResult<()> {
        let mut req = self.s3.create_bucket().bucket(bucket);
        if region != "us-east-1" {
            req = req.create_bucket_configuration(
                s3::types::CreateBucketConfiguration::builder().location_constraint(s3::types::BucketLocationConstraint::from(region)).build(),
            );
        }
        match req.send().boxed().await.map_err(classify) {
            Ok(_) => {}
            Err(AwsError::Invalid(m) | AwsError::Other(m)) if m.contains("BucketAlreadyOwnedByYou") => {}
            Err(e) => return Err(e),
        }
        self.s3
            .put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(s3::types::VersioningConfiguration::builder().status(s3::types::BucketVersioningStatus::Enabled).build())
            .send()
            .boxed()
            .await
            .map_err(classify)?;
        let rule = s3::types::ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(
                s3::types::ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(s3::types::ServerSideEncryption::Aes256)
                    .build()
                    .map_err(|e| AwsError::Other(e.to_string()))?,
            )
            .build();
        self.s3
            .put_bucket_encryption()
            .bucket(bucket)
            .server_side_encryption_configuration(
                s3::types::ServerSideEncryptionConfiguration::builder().rules(rule).build().map_err(|e| AwsError::Other(e.to_string()))?,
            )
            .send()
            .boxed()
            .await
            .map_err(classify)?;
        self.s3
            .put_public_access_block()
            .bucket(bucket)
            .public_access_block_configuration(
                s3::types::PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(true)
                    .build(),
            )
            .send()
            .boxed()
            .await
            .map_err(classify)?;
        Ok(())
    }
    async fn get_object(&self, bucket: &str, key: &str) -> AwsResult<Option<Object>> {
        match self.s3.get_object().bucket(bucket).key(key).send().boxed().await {
            Ok(o) => {
                let etag = o.e_tag().unwrap_or_default().to_string();
                let body = o.body.collect().await.map_err(|e| AwsError::Transient(e.to_string()))?.into_bytes().to_vec();
                Ok(Some(Object { body, etag }))
            }
            Err(e) => {
                let e = classify(e);
                if not_found(&e) {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }
    async fn head_object(&self, bucket: &str, key: &str) -> AwsResult<Option<ObjectHead>> {
        match self.s3.head_object().bucket(bucket).key(key).send().boxed().await {
            Ok(o) => Ok(Some(ObjectHead { size: o.content_length().unwrap_or(0).max(0) as u64, sha256: o.metadata().and_then(|m| m.get("sha256")).cloned() })),
            Err(e) => {
                if e.raw_response().map(|r| r.status().as_u16()) == Some(404) {
                    return Ok(None);
                }
                Err(classify(e))
            }
        }
    }
    async fn put_object(&self, bucket: &str, key: &str, body: Vec<u8>, cond: PutCondition) -> AwsResult<String> {
        let sha = crate::sha256_hex(&body);
        let mut req = self.s3.put_object().bucket(bucket).key(key).metadata("sha256", sha).body(s3::primitives::ByteStream::from(body));
        req = match cond {
            PutCondition::Always => req,
            PutCondition::Absent => req.if_none_match("*"),
            PutCondition::Matches(etag) => req.if_match(etag),
        };
        let out = req.send().boxed().await.map_err(classify)?;
        Ok(out.e_tag().unwrap_or_default().to_string())
    }
}

impl CloudFormation for SdkAws {
    async fn describe_stack(&self, name: &str) -> AwsResult<Option<Stack>> {
        match self.cfn.describe_stacks().stack_name(name).send().boxed().await {
            Ok(out) => Ok(out.stacks().first().map(|s| Stack {
                name: s.stack_name().unwrap_or_default().to_string(),
                id: s.stack_id().unwrap_or_default().to_string(),
                status: s.stack_status().map(|x| x.as_str().to_string()).unwrap_or_default(),
                reason: s.stack_status_reason().map(str::to_string),
                outputs: s
                    .outputs()
                    .iter()
                    .map(|o| (o.output_key().unwrap_or_default().to_string(), o.output_value().unwrap_or_default().to_string()))
                    .collect(),
            })),
            Err(e) => {
                let e = classify(e);
                if not_found(&e) {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }
    async fn create_stack(&self, req: &StackRequest) -> AwsResult<String> {
        let (body, url, caps, tags) = request(req);
        let out = self
            .cfn
            .create_stack()
            .stack_name(&req.name)
            .set_template_body(body)
            .set_template_url(url)
            .set_capabilities(Some(caps))
            .set_tags(Some(tags))
            .on_failure(cfn::types::OnFailure::Rollback)
            .send()
            .boxed()
            .await
            .map_err(classify)?;
        Ok(out.stack_id().unwrap_or_default().to_string())
    }
    async fn update_stack(&self, req: &StackRequest) -> AwsResult<()> {
        let (body, url, caps, tags) = request(req);
        self.cfn
            .update_stack()
            .stack_name(&req.name)
            .set_template_body(body)
            .set_template_url(url)
            .set_capabilities(Some(caps))
            .set_tags(Some(tags))
            .send()
            .boxed()
            .await
            .map_err(classify)?;
        Ok(())
    }
    async fn delete_stack(&self, name: &str) -> AwsResult<()> {
        self.cfn.delete_stack().stack_name(name).send().boxed().await.map_err(classify)?;
        Ok(())
    }
    async fn continue_update_rollback(&self, name: &str) -> AwsResult<()> {
        self.cfn.continue_update_rollback().stack_name(name).send().boxed().await.map_err(classify)?;
        Ok(())
    }
    async fn stack_events(&self, name: &str) -> AwsResult<Vec<StackEvent>> {
        let out = self.cfn.describe_stack_events().stack_name(name).send().boxed().await.map_err(classify)?;
        Ok(out
            .stack_events()
            .iter()
            .map(|e| StackEvent {
                id: e.event_id().unwrap_or_default().to_string(),
                logical_id: e.logical_resource_id().unwrap_or_default().to_string(),
                resource_type: e.resource_type().unwrap_or_default().to_string(),
                status: e.resource_status().map(|s| s.as_str().to_string()).unwrap_or_default(),
                reason: e.resource_status_reason().map(str::to_string),
            })
            .collect())
    }
    async fn get_template(&self, name: &str) -> AwsResult<String> {
        let out = self.cfn.get_template().stack_name(name).send().boxed().await.map_err(classify)?;
        Ok(out.template_body().unwrap_or_default().to_string())
    }
    async fn stack_resources(&self, name: &str) -> AwsResult<Vec<(String, String, String)>> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self.cfn.list_stack_resources().stack_name(name).set_next_token(token).send().boxed().await.map_err(classify)?;
            for r in page.stack_resource_summaries() {
                out.push((
                    r.logical_resource_id().unwrap_or_default().to_string(),
                    r.physical_resource_id().unwrap_or_default().to_string(),
                    r.resource_type().unwrap_or_default().to_string(),
                ));
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }
    async fn list_exports(&self) -> AwsResult<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self.cfn.list_exports().set_next_token(token).send().boxed().await.map_err(classify)?;
            for e in page.exports() {
                out.push((e.name().unwrap_or_default().to_string(), e.value().unwrap_or_default().to_string()));
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }
    async fn stack_limit(&self) -> AwsResult<Option<u32>> {
        let mut token = None;
        loop {
            let page = self.cfn.describe_account_limits().set_next_token(token).send().boxed().await.map_err(classify)?;
            if let Some(v) = page.account_limits().iter().find(|l| l.name() == Some("StackLimit")).and_then(|l| l.value()) {
                return Ok(u32::try_from(v).ok());
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(None);
            }
        }
    }
    async fn stack_names(&self) -> AwsResult<Vec<String>> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self.cfn.list_stacks().set_next_token(token).send().boxed().await.map_err(classify)?;
            for s in page.stack_summaries() {
                if s.stack_status().map(|st| st.as_str()) != Some("DELETE_COMPLETE") {
                    out.push(s.stack_name().unwrap_or_default().to_string());
                }
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }
}

impl Elbv2 for SdkAws {
    async fn elb_limits(&self) -> AwsResult<std::collections::BTreeMap<String, u32>> {
        let mut out = std::collections::BTreeMap::new();
        let mut marker = None;
        loop {
            let page = self.elb.describe_account_limits().set_marker(marker).send().boxed().await.map_err(classify)?;
            for l in page.limits() {
                if let (Some(name), Some(max)) = (l.name(), l.max().and_then(|m| m.parse::<f64>().ok())) {
                    out.insert(name.to_string(), max as u32);
                }
            }
            marker = page.next_marker().map(str::to_string);
            if marker.is_none() {
                return Ok(out);
            }
        }
    }
    async fn target_group_arns(&self) -> AwsResult<Vec<String>> {
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            let page = self.elb.describe_target_groups().set_marker(marker).send().boxed().await.map_err(classify)?;
            out.extend(page.target_groups().iter().filter_map(|t| t.target_group_arn().map(str::to_string)));
            marker = page.next_marker().map(str::to_string);
            if marker.is_none() {
                return Ok(out);
            }
        }
    }
    async fn load_balancer_arns(&self) -> AwsResult<Vec<String>> {
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            let page = self.elb.describe_load_balancers().set_marker(marker).send().boxed().await.map_err(classify)?;
            out.extend(page.load_balancers().iter().filter_map(|l| l.load_balancer_arn().map(str::to_string)));
            marker = page.next_marker().map(str::to_string);
            if marker.is_none() {
                return Ok(out);
            }
        }
    }
    async fn describe_rules(&self, arns: &[String]) -> AwsResult<Vec<Rule>> {
        let mut out = Vec::new();
        // DescribeRules takes a bounded number of ARNs per call.
        for chunk in arns.chunks(20) {
            let page = self.elb.describe_rules().set_rule_arns(Some(chunk.to_vec())).send().boxed().await.map_err(classify)?;
            for r in page.rules() {
                let forward = r
                    .actions()
                    .iter()
                    .filter_map(|a| a.forward_config())
                    .flat_map(|f| {
                        f.target_groups().iter().map(|t| (t.target_group_arn().unwrap_or_default().to_string(), t.weight().unwrap_or(1).max(0) as u32))
                    })
                    .collect();
                let stickiness = r
                    .actions()
                    .iter()
                    .filter_map(|a| a.forward_config())
                    .filter_map(|f| f.target_group_stickiness_config())
                    .find(|c| c.enabled() == Some(true))
                    .map(|c| c.duration_seconds().unwrap_or(3600).max(1) as u32);
                out.push(Rule { arn: r.rule_arn().unwrap_or_default().to_string(), forward, stickiness });
            }
        }
        Ok(out)
    }
    async fn set_rule_weights(&self, arn: &str, forward: &[(String, u32)], stickiness: Option<u32>) -> AwsResult<()> {
        let groups: Vec<elb::types::TargetGroupTuple> =
            forward.iter().map(|(tg, w)| elb::types::TargetGroupTuple::builder().target_group_arn(tg).weight(*w as i32).build()).collect();
        let mut config = elb::types::ForwardActionConfig::builder().set_target_groups(Some(groups));
        if let Some(secs) = stickiness {
            config =
                config.target_group_stickiness_config(elb::types::TargetGroupStickinessConfig::builder().enabled(true).duration_seconds(secs as i32).build());
        }
        let action = elb::types::Action::builder().r#type(elb::types::ActionTypeEnum::Forward).forward_config(config.build()).build();
        self.elb.modify_rule().rule_arn(arn).actions(action).send().boxed().await.map_err(classify)?;
        Ok(())
    }
    async fn deregistration_delay(&self, target_group_arn: &str) -> AwsResult<u32> {
        let out = self.elb.describe_target_group_attributes().target_group_arn(target_group_arn).send().boxed().await.map_err(classify)?;
        let value = out.attributes().iter().find(|a| a.key() == Some("deregistration_delay.timeout_seconds")).and_then(|a| a.value());
        // ELBv2's default when the attribute is not reported.
        Ok(value.and_then(|v| v.parse().ok()).unwrap_or(300))
    }
    async fn targets(&self, target_group_arn: &str) -> AwsResult<Vec<(String, String)>> {
        let out = self.elb.describe_target_health().target_group_arn(target_group_arn).send().boxed().await.map_err(classify)?;
        Ok(out
            .target_health_descriptions()
            .iter()
            .map(|d| {
                let id = d.target().and_then(|t| t.id()).unwrap_or_default().to_string();
                (id, d.target_health().and_then(|h| h.state()).map(|s| s.as_str().to_string()).unwrap_or_default())
            })
            .collect())
    }
    async fn target_health(&self, target_group_arn: &str) -> AwsResult<Vec<String>> {
        let out = self.elb.describe_target_health().target_group_arn(target_group_arn).send().boxed().await.map_err(classify)?;
        Ok(out
            .target_health_descriptions()
            .iter()
            .map(|d| d.target_health().and_then(|h| h.state()).map(|s| s.as_str().to_string()).unwrap_or_default())
            .collect())
    }
}

impl AutoScaling for SdkAws {
    async fn describe_groups(&self, names: &[String]) -> AwsResult<Vec<Group>> {
        let mut out = Vec::new();
        for chunk in names.chunks(50) {
            let page = self.asg.describe_auto_scaling_groups().set_auto_scaling_group_names(Some(chunk.to_vec())).send().boxed().await.map_err(classify)?;
            for g in page.auto_scaling_groups() {
                let count = |v: Option<i32>| v.unwrap_or(0).max(0) as u32;
                let in_service = g.instances().iter().filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService")).count() as u32;
                let instances = g
                    .instances()
                    .iter()
                    .map(|i| crate::aws::GroupInstance {
                        id: i.instance_id().unwrap_or_default().to_string(),
                        zone: i.availability_zone().unwrap_or_default().to_string(),
                        lifecycle: i.lifecycle_state().map(|s| s.as_str().to_string()).unwrap_or_default(),
                        health: i.health_status().unwrap_or_default().to_string(),
                    })
                    .collect();
                out.push(Group {
                    instances,
                    name: g.auto_scaling_group_name().unwrap_or_default().to_string(),
                    min: count(g.min_size()),
                    desired: count(g.desired_capacity()),
                    max: count(g.max_size()),
                    in_service,
                });
            }
        }
        Ok(out)
    }
    async fn set_capacity(&self, name: &str, min: u32, desired: u32, max: u32) -> AwsResult<()> {
        self.asg
            .update_auto_scaling_group()
            .auto_scaling_group_name(name)
            .min_size(min as i32)
            .desired_capacity(desired as i32)
            .max_size(max as i32)
            .send()
            .boxed()
            .await
            .map_err(classify)?;
        Ok(())
    }
}

impl SecretsManager for SdkAws {
    async fn delete_secret(&self, name: &str) -> AwsResult<()> {
        match self.secrets.delete_secret().secret_id(name).recovery_window_in_days(7).send().boxed().await.map_err(classify) {
            Ok(_) => Ok(()),
            // Gone already, or already scheduled (a retirement that is run again).
            Err(e) if not_found(&e) || e.to_string().contains("ResourceNotFound") || e.to_string().contains("marked for deletion") => Ok(()),
            Err(e) => Err(e),
        }
    }
    async fn describe_secret(&self, name: &str) -> AwsResult<Option<bool>> {
        match self.secrets.describe_secret().secret_id(name).send().boxed().await.map_err(classify) {
            Ok(out) => Ok(Some(out.deleted_date().is_some())),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
    async fn restore_secret(&self, name: &str) -> AwsResult<()> {
        self.secrets.restore_secret().secret_id(name).send().boxed().await.map_err(classify).map(|_| ())
    }
    async fn random_password(&self) -> AwsResult<String> {
        let out = self
            .secrets
            .get_random_password()
            .password_length(PASSWORD_LENGTH)
            .exclude_punctuation(true)
            .require_each_included_type(true)
            .send()
            .boxed()
            .await
            .map_err(classify)?;
        out.random_password().map(str::to_string).ok_or_else(|| AwsError::Other("GetRandomPassword answered no password".into()))
    }
    async fn secret_value(&self, name: &str) -> AwsResult<Option<String>> {
        match self.secrets.get_secret_value().secret_id(name).send().boxed().await.map_err(classify) {
            Ok(out) => Ok(out.secret_string().map(str::to_string)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
    async fn put_secret_value(&self, name: &str, value: &str) -> AwsResult<()> {
        self.secrets.put_secret_value().secret_id(name).secret_string(value).send().boxed().await.map_err(classify).map(|_| ())
    }
    async fn put_secret(&self, name: &str, value: &str, formation: &str) -> AwsResult<String> {
        let tag = aws_sdk_secretsmanager::types::Tag::builder().key("gilliam:formation").value(formation).build();
        let out = self.secrets.create_secret().name(name).secret_string(value).tags(tag).send().boxed().await.map_err(classify)?;
        Ok(out.arn().unwrap_or_default().to_string())
    }
}

impl CloudWatch for SdkAws {
    async fn metric_data(&self, queries: &[MetricQuery], start: i64, end: i64) -> AwsResult<std::collections::BTreeMap<String, Vec<f64>>> {
        use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
        use aws_smithy_types::DateTime;
        // One call (the seam's contract: at most 500 queries, `delivery::samples` splits),
        // its pages followed.
        let qs: Vec<MetricDataQuery> = queries
            .iter()
            .map(|q| {
                let dims: Vec<Dimension> = q.dimensions.iter().map(|(n, v)| Dimension::builder().name(n).value(v).build()).collect();
                let metric = Metric::builder().namespace(&q.namespace).metric_name(&q.name).set_dimensions(Some(dims)).build();
                let stat = MetricStat::builder().metric(metric).period(q.period as i32).stat(&q.stat).build();
                MetricDataQuery::builder().id(&q.id).metric_stat(stat).return_data(true).build()
            })
            .collect();
        let mut out: std::collections::BTreeMap<String, Vec<f64>> = std::collections::BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .cloudwatch
                .get_metric_data()
                .set_metric_data_queries(Some(qs.clone()))
                .start_time(DateTime::from_secs(start))
                .end_time(DateTime::from_secs(end))
                .set_next_token(token.clone())
                .send()
                .boxed()
                .await
                .map_err(classify)?;
            for r in page.metric_data_results() {
                out.entry(r.id().unwrap_or_default().to_string()).or_default().extend(r.values().iter().copied());
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Ok(out)
    }
    async fn alarm_states(&self, names: &[String]) -> AwsResult<Vec<(String, String)>> {
        use aws_sdk_cloudwatch::types::AlarmType;
        let mut out = Vec::new();
        for chunk in names.chunks(100) {
            // Without AlarmTypes, DescribeAlarms answers metric alarms only: a composite alarm
            // (what the analysis hint recommends) would read as missing. And a page can end
            // before the names do: NextToken is followed.
            let mut token: Option<String> = None;
            loop {
                let page = self
                    .cloudwatch
                    .describe_alarms()
                    .set_alarm_names(Some(chunk.to_vec()))
                    .alarm_types(AlarmType::MetricAlarm)
                    .alarm_types(AlarmType::CompositeAlarm)
                    .set_next_token(token.clone())
                    .send()
                    .boxed()
                    .await
                    .map_err(classify)?;
                for a in page.metric_alarms() {
                    out.push((a.alarm_name().unwrap_or_default().to_string(), a.state_value().map(|s| s.as_str().to_string()).unwrap_or_default()));
                }
                for a in page.composite_alarms() {
                    out.push((a.alarm_name().unwrap_or_default().to_string(), a.state_value().map(|s| s.as_str().to_string()).unwrap_or_default()));
                }
                token = page.next_token().filter(|t| !t.is_empty()).map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
        }
        Ok(out)
    }
    async fn log_events(&self, group: &str, stream_prefix: Option<&str>, start_ms: i64, next: Option<&str>) -> AwsResult<crate::aws::LogPage> {
        let logs = (*self.logs).as_ref().map_err(|e| AwsError::Other(e.to_string()))?;
        let mut body = serde_json::json!({ "logGroupName": group, "startTime": start_ms, "interleaved": true });
        if let Some(p) = stream_prefix {
            body["logStreamNamePrefix"] = p.into();
        }
        if let Some(t) = next {
            body["nextToken"] = t.into();
        }
        let out = logs.call_json("Logs_20140328.FilterLogEvents", &body).boxed().await.map_err(classify_ec2)?;
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        Ok(crate::aws::LogPage {
            events: out["events"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| crate::aws::LogEvent {
                    id: text(&e["eventId"]),
                    ts_ms: e["timestamp"].as_i64().unwrap_or_default(),
                    stream: text(&e["logStreamName"]),
                    message: text(&e["message"]),
                })
                .collect(),
            next: out["nextToken"].as_str().filter(|t| !t.is_empty()).map(str::to_string),
        })
    }
}

impl Sns for SdkAws {
    /// SNS: a subject of printable ASCII "less than 100 characters long"; a FIFO topic
    /// (`.fifo`) wants a message group and a deduplication id with every message; a topic is
    /// called in its own region (the ARN's), which need not be the stage's.
    async fn publish(&self, topic: &str, subject: &str, message: &str) -> AwsResult<()> {
        let subject: String = subject.chars().filter(|c| c.is_ascii() && !c.is_ascii_control()).take(99).collect();
        let mut req = self.sns.publish().topic_arn(topic).subject(subject).message(message);
        if topic.ends_with(".fifo") {
            req = req.message_group_id("gilliam").message_deduplication_id(crate::sha256_hex(message.as_bytes()));
        }
        let own = self.sns.config().region().map(|r| r.as_ref().to_string());
        match topic_region(topic).filter(|r| Some(r) != own.as_ref()) {
            Some(region) => req
                .customize()
                .config_override(aws_sdk_sns::config::Builder::default().region(aws_sdk_sns::config::Region::new(region)))
                .send()
                .boxed()
                .await
                .map_err(classify)
                .map(|_| ()),
            None => req.send().boxed().await.map_err(classify).map(|_| ()),
        }
    }
}

/// The region of an ARN (`arn:aws:sns:eu-central-1:123456789012:alerts` is `eu-central-1`).
fn topic_region(arn: &str) -> Option<String> {
    arn.split(':').nth(3).filter(|r| !r.is_empty()).map(str::to_string)
}

impl EventBridge for SdkAws {
    async fn put_event(&self, bus: &str, detail_type: &str, detail: &str) -> AwsResult<()> {
        let entry =
            aws_sdk_eventbridge::types::PutEventsRequestEntry::builder().event_bus_name(bus).source("gilliam").detail_type(detail_type).detail(detail).build();
        let out = self.events.put_events().entries(entry).send().boxed().await.map_err(classify)?;
        if out.failed_entry_count() > 0 {
            let why = out.entries().iter().filter_map(|e| e.error_message()).collect::<Vec<_>>().join("; ");
            return Err(AwsError::Other(format!("EventBridge refused the event: {why}")));
        }
        Ok(())
    }
}

impl SdkAws {
    /// The instances named, as DescribeInstances describes them: by a filter rather than ids,
    /// so that an instance already gone is an answer (absent), not an error.
    async fn instances_by_id(&self, ids: &[String]) -> AwsResult<Vec<gilliam_ec2::Node>> {
        use gilliam_ec2::Params;
        let ec2 = (*self.ec2).as_ref().map_err(|e| AwsError::Other(e.to_string()))?;
        let mut out = Vec::new();
        for chunk in ids.chunks(200) {
            let by_id = Params::new().filter("instance-id", chunk);
            for r in ec2.call_all("DescribeInstances", &by_id, "reservationSet").boxed().await.map_err(classify_ec2)? {
                out.extend(r.items("instancesSet").cloned());
            }
        }
        Ok(out)
    }
}

impl Ec2 for SdkAws {
    async fn launch_times(&self, ids: &[String]) -> AwsResult<std::collections::BTreeMap<String, String>> {
        let found = self.instances_by_id(ids).await?;
        Ok(found.iter().filter_map(|i| Some((i.text("instanceId")?.to_string(), i.text("launchTime")?.to_string()))).collect())
    }
    async fn run_instance(&self, req: &crate::aws::InstanceLaunch) -> AwsResult<String> {
        use gilliam_ec2::Params;
        let ec2 = (*self.ec2).as_ref().map_err(|e| AwsError::Other(e.to_string()))?;
        let mut p = Params::new()
            .set("LaunchTemplate.LaunchTemplateId", &req.launch_template_id)
            .set("LaunchTemplate.Version", &req.version)
            .set("MinCount", "1")
            .set("MaxCount", "1")
            .set("SubnetId", &req.subnet)
            .set("UserData", aws_smithy_types::base64::encode(req.user_data.as_bytes()))
            .set("ClientToken", &req.client_token)
            .set("TagSpecification.1.ResourceType", "instance");
        if req.shutdown_terminates {
            p = p.set("InstanceInitiatedShutdownBehavior", "terminate");
        }
        for (i, (k, v)) in req.tags.iter().enumerate() {
            p = p.set(format!("TagSpecification.1.Tag.{}.Key", i + 1), k).set(format!("TagSpecification.1.Tag.{}.Value", i + 1), v);
        }
        let answer = ec2.call("RunInstances", &p).boxed().await.map_err(classify_ec2)?;
        let id = answer.items("instancesSet").find_map(|i| i.text("instanceId").map(str::to_string));
        id.ok_or_else(|| AwsError::Other("RunInstances answered without an instance id".into()))
    }
    async fn instance_states(&self, ids: &[String]) -> AwsResult<std::collections::BTreeMap<String, crate::aws::InstanceState>> {
        let found = self.instances_by_id(ids).await?;
        Ok(found
            .iter()
            .filter_map(|i| {
                let name = i.child("instanceState").and_then(|s| s.text("name")).unwrap_or_default().to_string();
                let reason = i.child("stateReason").and_then(|s| s.text("message")).or_else(|| i.text("reason")).unwrap_or_default().to_string();
                Some((i.text("instanceId")?.to_string(), crate::aws::InstanceState { name, reason }))
            })
            .collect())
    }
    async fn task_instances(&self, formation: &str) -> AwsResult<Vec<crate::aws::TaskInstance>> {
        use gilliam_ec2::Params;
        let ec2 = (*self.ec2).as_ref().map_err(|e| AwsError::Other(e.to_string()))?;
        let by_tag = Params::new()
            .filter("tag:gilliam:formation", &[formation])
            .filter("tag-key", &["gilliam:task"])
            .filter("instance-state-name", &["pending", "running", "shutting-down", "stopping"]);
        let mut out = Vec::new();
        for r in ec2.call_all("DescribeInstances", &by_tag, "reservationSet").boxed().await.map_err(classify_ec2)? {
            for i in r.items("instancesSet") {
                let tag = |k: &str| i.items("tagSet").find(|t| t.text("key") == Some(k)).and_then(|t| t.text("value")).unwrap_or_default().to_string();
                out.push(crate::aws::TaskInstance {
                    id: i.text("instanceId").unwrap_or_default().to_string(),
                    release: tag("gilliam:release").parse().ok(),
                    service: tag("gilliam:service"),
                    purpose: tag("gilliam:task"),
                    state: i.child("instanceState").and_then(|s| s.text("name")).unwrap_or_default().to_string(),
                    zone: i.child("placement").and_then(|p| p.text("availabilityZone")).unwrap_or_default().to_string(),
                    launched: i.text("launchTime").unwrap_or_default().to_string(),
                });
            }
        }
        Ok(out)
    }
    async fn terminate_instances(&self, ids: &[String]) -> AwsResult<()> {
        use gilliam_ec2::Params;
        if ids.is_empty() {
            return Ok(());
        }
        let ec2 = (*self.ec2).as_ref().map_err(|e| AwsError::Other(e.to_string()))?;
        match ec2.call("TerminateInstances", &Params::new().list("InstanceId", ids)).boxed().await {
            Ok(_) => Ok(()),
            Err(e) if e.code.as_deref() == Some("InvalidInstanceID.NotFound") => Ok(()),
            Err(e) => Err(classify_ec2(e)),
        }
    }
    async fn describe_network(&self, vpc: &str, subnets: &[String]) -> AwsResult<Option<crate::aws::Network>> {
        use crate::aws::{Network, RouteTable, Subnet, Vpc, VpcEndpoint};
        use gilliam_ec2::Params;
        let ec2 = (*self.ec2).as_ref().map_err(|e| AwsError::Other(e.to_string()))?;
        let by_vpc = Params::new().filter("vpc-id", &[vpc]);
        let mut net = Network::default();
        // Filters rather than ids: a missing VPC or subnet is an answer here, not an error.
        let vpcs = ec2.call_all("DescribeVpcs", &by_vpc, "vpcSet").boxed().await.map_err(classify_ec2)?;
        if !vpcs.is_empty() {
            let attr = |name: &'static str| {
                let params = Params::new().set("VpcId", vpc).set("Attribute", name);
                async move { ec2.call("DescribeVpcAttribute", &params).await }.boxed()
            };
            let on = |answer: &gilliam_ec2::Node, name: &str| answer.child(name).and_then(|a| a.flag("value")).unwrap_or(false);
            let support = attr("enableDnsSupport").await.map_err(classify_ec2)?;
            let hostnames = attr("enableDnsHostnames").await.map_err(classify_ec2)?;
            net.vpc = Some(Vpc { dns_support: on(&support, "enableDnsSupport"), dns_hostnames: on(&hostnames, "enableDnsHostnames") });
        }
        if !subnets.is_empty() {
            let ids = Params::new().filter("subnet-id", subnets);
            for s in ec2.call_all("DescribeSubnets", &ids, "subnetSet").boxed().await.map_err(classify_ec2)? {
                let text = |name: &str| s.text(name).unwrap_or_default().to_string();
                net.subnets.insert(
                    text("subnetId"),
                    Subnet { vpc: text("vpcId"), zone: text("availabilityZone"), map_public_ip: s.flag("mapPublicIpOnLaunch").unwrap_or(false) },
                );
            }
        }
        for t in ec2.call_all("DescribeRouteTables", &by_vpc, "routeTableSet").boxed().await.map_err(classify_ec2)? {
            const TARGETS: [&str; 9] = [
                "natGatewayId",
                "gatewayId",
                "instanceId",
                "transitGatewayId",
                "networkInterfaceId",
                "vpcPeeringConnectionId",
                "coreNetworkArn",
                "localGatewayId",
                "carrierGatewayId",
            ];
            let routes = t
                .items("routeSet")
                .filter_map(|r| {
                    let dest = r.text("destinationCidrBlock").or(r.text("destinationPrefixListId"))?.to_string();
                    // A target of a kind not listed is kept, as unknown: the preflight warns of
                    // it rather than reading the route as missing.
                    let target = TARGETS.iter().find_map(|k| r.text(k)).unwrap_or("unknown");
                    Some((dest, target.to_string()))
                })
                .collect();
            net.route_tables.insert(
                t.text("routeTableId").unwrap_or_default().to_string(),
                RouteTable {
                    main: t.items("associationSet").any(|a| a.flag("main").unwrap_or(false)),
                    subnets: t.items("associationSet").filter_map(|a| a.text("subnetId").map(str::to_string)).collect(),
                    routes,
                },
            );
        }
        for e in ec2.call_all("DescribeVpcEndpoints", &by_vpc, "vpcEndpointSet").boxed().await.map_err(classify_ec2)? {
            net.endpoints.push(VpcEndpoint {
                service: e.text("serviceName").unwrap_or_default().to_string(),
                kind: e.text("vpcEndpointType").unwrap_or_default().to_string(),
                private_dns: e.flag("privateDnsEnabled").unwrap_or(false),
                route_tables: e.texts("routeTableIdSet"),
                subnets: e.texts("subnetIdSet"),
            });
        }
        Ok(Some(net))
    }
}

/// ECR calls go to the registry's region (an image may live in another than the formation's).
fn ecr_region(region: &str) -> aws_sdk_ecr::config::Builder {
    aws_sdk_ecr::config::Builder::default().region(aws_sdk_ecr::config::Region::new(region.to_string()))
}

impl Ecr for SdkAws {
    async fn describe_image(&self, region: &str, repository: &str, reference: &str) -> AwsResult<Option<crate::aws::EcrImage>> {
        let id = if reference.starts_with("sha256:") {
            aws_sdk_ecr::types::ImageIdentifier::builder().image_digest(reference).build()
        } else {
            aws_sdk_ecr::types::ImageIdentifier::builder().image_tag(reference).build()
        };
        let req = self.ecr.describe_images().repository_name(repository).image_ids(id);
        let sent = req.customize().config_override(ecr_region(region)).send().boxed().await;
        match sent.map_err(classify) {
            Ok(out) => Ok(out
                .image_details()
                .first()
                .map(|d| crate::aws::EcrImage { digest: d.image_digest().unwrap_or_default().to_string(), tags: d.image_tags().to_vec() })),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
    async fn tag_image(&self, region: &str, repository: &str, digest: &str, tag: &str) -> AwsResult<()> {
        let id = aws_sdk_ecr::types::ImageIdentifier::builder().image_digest(digest).build();
        let get = self.ecr.batch_get_image().repository_name(repository).image_ids(id);
        let got = get.customize().config_override(ecr_region(region)).send().boxed().await.map_err(classify)?;
        let Some(image) = got.images().first() else {
            return Err(AwsError::Invalid(format!("ImageNotFoundException: no image {digest} in repository {repository}")));
        };
        let mut put =
            self.ecr.put_image().repository_name(repository).image_manifest(image.image_manifest().unwrap_or_default()).image_tag(tag).image_digest(digest);
        if let Some(t) = image.image_manifest_media_type() {
            put = put.image_manifest_media_type(t);
        }
        let sent = put.customize().config_override(ecr_region(region)).send().boxed().await;
        match sent.map_err(classify) {
            Ok(_) => Ok(()),
            // The image already has this tag.
            Err(AwsError::Invalid(m) | AwsError::Other(m)) if m.contains("ImageAlreadyExists") => Ok(()),
            Err(e) => Err(e),
        }
    }
    async fn describe_repository(&self, region: &str, name: &str) -> AwsResult<Option<String>> {
        let req = self.ecr.describe_repositories().repository_names(name);
        match req.customize().config_override(ecr_region(region)).send().boxed().await.map_err(classify) {
            Ok(out) => Ok(out.repositories().first().and_then(|r| r.repository_uri()).map(str::to_string)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
    async fn create_repository(&self, region: &str, name: &str, formation: &str) -> AwsResult<String> {
        use aws_sdk_ecr::types::{EncryptionConfiguration, EncryptionType, ImageScanningConfiguration, ImageTagMutability, Tag};
        let req = self
            .ecr
            .create_repository()
            .repository_name(name)
            .image_tag_mutability(ImageTagMutability::Immutable)
            .image_scanning_configuration(ImageScanningConfiguration::builder().scan_on_push(true).build())
            .encryption_configuration(
                EncryptionConfiguration::builder().encryption_type(EncryptionType::Kms).build().map_err(|e| AwsError::Invalid(e.to_string()))?,
            )
            .tags(Tag::builder().key("gilliam:formation").value(formation).build().map_err(|e| AwsError::Invalid(e.to_string()))?);
        let out = req.customize().config_override(ecr_region(region)).send().boxed().await.map_err(classify)?;
        out.repository()
            .and_then(|r| r.repository_uri())
            .map(str::to_string)
            .ok_or_else(|| AwsError::Other(format!("CreateRepository {name}: no URI in the answer")))
    }
    async fn lifecycle_policy(&self, region: &str, name: &str) -> AwsResult<Option<String>> {
        let req = self.ecr.get_lifecycle_policy().repository_name(name);
        match req.customize().config_override(ecr_region(region)).send().boxed().await.map_err(classify) {
            Ok(out) => Ok(out.lifecycle_policy_text().map(str::to_string)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
    async fn put_lifecycle_policy(&self, region: &str, name: &str, text: &str) -> AwsResult<()> {
        let req = self.ecr.put_lifecycle_policy().repository_name(name).lifecycle_policy_text(text);
        req.customize().config_override(ecr_region(region)).send().boxed().await.map_err(classify).map(|_| ())
    }
    async fn registry_login(&self, region: &str) -> AwsResult<crate::aws::RegistryLogin> {
        let req = self.ecr.get_authorization_token();
        let out = req.customize().config_override(ecr_region(region)).send().boxed().await.map_err(classify)?;
        let bad = |why: &str| AwsError::Other(format!("GetAuthorizationToken: {why}"));
        let data = out.authorization_data().first().ok_or_else(|| bad("no authorization data in the answer"))?;
        let token = data.authorization_token().ok_or_else(|| bad("no token in the answer"))?;
        let decoded = aws_smithy_types::base64::decode(token).map_err(|_| bad("the token is not base64"))?;
        let text = String::from_utf8(decoded).map_err(|_| bad("the token is not text"))?;
        let (user, password) = text.split_once(':').ok_or_else(|| bad("the token is not USER:PASSWORD"))?;
        Ok(crate::aws::RegistryLogin { username: user.to_string(), password: password.to_string() })
    }
    async fn untag_image(&self, region: &str, repository: &str, tag: &str) -> AwsResult<()> {
        let id = aws_sdk_ecr::types::ImageIdentifier::builder().image_tag(tag).build();
        let req = self.ecr.batch_delete_image().repository_name(repository).image_ids(id);
        let sent = req.customize().config_override(ecr_region(region)).send().boxed().await;
        match sent.map_err(classify) {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_contact_failures_are_named_by_their_cause() {
        let imds = "dispatch failure: other: an error occurred while loading credentials: failed to load IMDS session token: service error: request forbidden: IMDS is disabled";
        assert_eq!(classify_dispatch(imds), AwsError::Credentials("none in the environment or a profile, and the instance metadata service is off".into()));
        let sso = "dispatch failure: other: an error occurred while loading credentials: the SSO token has expired";
        assert_eq!(classify_dispatch(sso), AwsError::Credentials("the SSO session has expired or was never started".into()));
        let dns = "dispatch failure: io error: client error (Connect): dns error: failed to lookup address information: Name or service not known for https://cloudformation.eu-west-9.amazonaws.com/";
        assert_eq!(classify_dispatch(dns), AwsError::Unreachable("no such host cloudformation.eu-west-9.amazonaws.com".into()));
        let refused = "dispatch failure: io error: client error (Connect): tcp connect error: Connection refused (os error 111)";
        assert!(matches!(classify_dispatch(refused), AwsError::Transient(_)), "retried");
        assert!(matches!(classify_dispatch("dispatch failure: io error: connection reset"), AwsError::Transient(_)));
        assert!(matches!(classify_service("ExpiredToken", "The security token included in the request is expired", 400), AwsError::Credentials(_)));
        assert!(matches!(classify_service("InvalidClientTokenId", "The security token included in the request is invalid.", 403), AwsError::Credentials(_)));
        assert!(matches!(
            classify_service("AccessDenied", "User: arn:aws:iam::1:user/ci is not authorized to perform: s3:GetObject", 403),
            AwsError::Denied(_)
        ));
        for e in [AwsError::Credentials(String::new()), AwsError::Denied(String::new()), AwsError::Unreachable(String::new())] {
            assert!(!e.retryable(), "{e:?}");
        }
    }

    #[test]
    fn classification() {
        assert_eq!(classify_service("Throttling", "Rate exceeded", 400), AwsError::Throttled("Throttling: Rate exceeded".into()));
        assert_eq!(classify_service("ValidationError", "No updates are to be performed.", 400), AwsError::NoUpdates);
        assert_eq!(classify_service("ValidationError", "No Updates are to be performed", 400), AwsError::NoUpdates);
        assert_eq!(classify_service("PreconditionFailed", "", 412), AwsError::PreconditionFailed);
        assert!(matches!(classify_service("InternalFailure", "", 500), AwsError::Transient(_)));
        assert!(matches!(classify_service("", "", 503), AwsError::Transient(_)));
        assert!(matches!(classify_service("ValidationError", "Stack with id x does not exist", 400), AwsError::Invalid(_)));
        assert!(matches!(classify_service("AlreadyExistsException", "Stack [f-r2] already exists", 400), AwsError::AlreadyExists(_)));
        assert!(matches!(
            classify_service(
                "ValidationError",
                "Stack:arn:aws:cloudformation:eu-west-1:1:stack/f/x is in UPDATE_IN_PROGRESS state and can not be updated.",
                400
            ),
            AwsError::InProgress(_)
        ));
        assert!(AwsError::Throttled(String::new()).retryable());
        assert!(!AwsError::NoUpdates.retryable());
    }
}
