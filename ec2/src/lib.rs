//! A narrow EC2 client: the handful of EC2 Query API calls that gilliam makes (the
//! materializer's network preflight, the agent's etcd attachments, the tests' network set-up),
//! and, with the same transport and signing, CloudWatch Logs' JSON protocol (`Ec2::logs`),
//! signed with SigV4 from the standard credential chain and sent over hyper.
//!
//! Why not `aws-sdk-ec2`: that crate is generated for all ~700 EC2 operations; it alone took
//! minutes and ~7 GB of memory to build on a 2-core machine and made a 650 MB rlib, for the
//! eleven calls gilliam needs. The EC2 Query protocol is stable and simple (a form-encoded POST,
//! an XML answer), and the parts that are easy to get wrong, signing and credentials, come
//! from the same `aws-sigv4` and `aws-config` crates the SDK uses.
//!
//! What it keeps from the SDK: the standard credential chain (whatever [`SdkConfig`] holds),
//! endpoints from `AWS_ENDPOINT_URL_EC2` / `AWS_ENDPOINT_URL` / the config, retries with
//! backoff on throttling, 5xx and network errors, pagination by `NextToken`, and errors that
//! carry EC2's code and message.

mod xml;

pub use xml::{Node, XmlError};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_types::SdkConfig;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::{Duration, SystemTime};

/// The EC2 API version every call names.
pub const API_VERSION: &str = "2016-11-15";

/// What went wrong with one call, after its retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ec2Error {
    /// The EC2 action (`DescribeSubnets`, ...).
    pub action: String,
    pub kind: ErrorKind,
    /// EC2's error code (`InvalidVpcID.NotFound`, `UnauthorizedOperation`, ...), when it sent one.
    pub code: Option<String>,
    pub message: String,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
}

/// How a failure should be treated by whoever called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// EC2 refused the request (4xx): retrying the same request will not help.
    Refused,
    /// Throttled, still after the retries.
    Throttled,
    /// A 5xx, a time-out or a broken connection, still after the retries.
    Transient,
    /// No credentials could be found or used to sign.
    NoCredentials,
    /// The endpoint or the answer made no sense (bad URL, unreadable XML).
    Other,
}

impl std::fmt::Display for Ec2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A JSON-protocol target (`Logs_20140328.FilterLogEvents`) names its service itself.
        if self.action.contains('.') {
            write!(f, "{}", self.action)?;
        } else {
            write!(f, "EC2 {}", self.action)?;
        }
        if let Some(code) = &self.code {
            write!(f, ": {code}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(s) = self.status {
            write!(f, " (HTTP {s})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Ec2Error {}

/// The parameters of one call, in the Query protocol's flattened form (`Filter.1.Name`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
    filters: usize,
}

impl Params {
    pub fn new() -> Params {
        Params::default()
    }

    /// One plain parameter: `VpcId`, `Attribute`, `EnableDnsSupport.Value`, ...
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Params {
        self.pairs.push((key.into(), value.into()));
        self
    }

    /// A list parameter: `RouteTableId.1`, `RouteTableId.2`, ...
    pub fn list<S: AsRef<str>>(mut self, key: &str, values: &[S]) -> Params {
        for (i, v) in values.iter().enumerate() {
            self.pairs.push((format!("{key}.{}", i + 1), v.as_ref().to_string()));
        }
        self
    }

    /// One `Filter.N` with its values.
    pub fn filter<S: AsRef<str>>(mut self, name: &str, values: &[S]) -> Params {
        self.filters += 1;
        let n = self.filters;
        self.pairs.push((format!("Filter.{n}.Name"), name.to_string()));
        self.list(&format!("Filter.{n}.Value"), values)
    }

    /// The form body of `action` with these parameters.
    pub fn body(&self, action: &str) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("Action", action).append_pair("Version", API_VERSION);
        for (k, v) in &self.pairs {
            form.append_pair(k, v);
        }
        form.finish()
    }
}

enum Transport {
    Plain(Client<HttpConnector, Full<Bytes>>),
    Tls(Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Plain(_) => "http",
            Transport::Tls(_) => "https",
        })
    }
}

/// The client. Cheap to share by reference; calls may run concurrently.
#[derive(Debug)]
pub struct Ec2 {
    transport: Transport,
    endpoint: http::Uri,
    region: String,
    /// The signing name: `ec2`, or `logs` for the CloudWatch Logs client.
    service: &'static str,
    credentials: Option<SharedCredentialsProvider>,
    max_attempts: u32,
    timeout: Duration,
}

/// Where EC2 is for `region`: the service's own endpoint variable first, then the general one
/// (both as the AWS SDKs read them), then the config's, then the public endpoint.
pub fn endpoint_for(region: &str, configured: Option<&str>, env: impl Fn(&str) -> Option<String>) -> String {
    endpoint_of("ec2", "AWS_ENDPOINT_URL_EC2", region, configured, env)
}

/// `endpoint_for`, for the service whose host is `host` (`ec2`, `logs`) and whose own
/// endpoint variable is `var`.
pub fn endpoint_of(host: &str, var: &str, region: &str, configured: Option<&str>, env: impl Fn(&str) -> Option<String>) -> String {
    let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    if let Some(u) = set(var) {
        return u;
    }
    if let Some(u) = configured {
        return u.to_string();
    }
    if let Some(u) = set("AWS_ENDPOINT_URL") {
        return u;
    }
    let suffix = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
    format!("https://{host}.{region}.{suffix}")
}

impl Ec2 {
    /// A client for the region, credentials and endpoint of `conf` (as `aws_config::load`
    /// made it), retrying each call up to `max_attempts` times in all.
    pub fn new(conf: &SdkConfig, max_attempts: u32) -> Result<Ec2, Ec2Error> {
        let region = conf.region().map(|r| r.to_string()).unwrap_or_default();
        let endpoint = endpoint_for(&region, conf.endpoint_url(), |k| std::env::var(k).ok());
        Ec2::with(&endpoint, &region, conf.credentials_provider(), max_attempts)
    }

    /// A client of CloudWatch Logs' JSON protocol (`call_json`), with the same transport,
    /// signing, credentials and retries: gilliam reads logs with one call (FilterLogEvents),
    /// and `aws-sdk-cloudwatchlogs` alone took half a minute of the demo's build.
    pub fn logs(conf: &SdkConfig, max_attempts: u32) -> Result<Ec2, Ec2Error> {
        let region = conf.region().map(|r| r.to_string()).unwrap_or_default();
        let endpoint = endpoint_of("logs", "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", &region, conf.endpoint_url(), |k| std::env::var(k).ok());
        let mut c = Ec2::with(&endpoint, &region, conf.credentials_provider(), max_attempts)?;
        c.service = "logs";
        Ok(c)
    }

    /// One call of a JSON-protocol service (`Logs_20140328.FilterLogEvents`), retried as
    /// `call` is: the answer's JSON.
    pub async fn call_json(&self, target: &str, body: &serde_json::Value) -> Result<serde_json::Value, Ec2Error> {
        let body = body.to_string();
        self.retried(|| self.once_json(target, &body)).await
    }

    async fn once_json(&self, target: &str, body: &str) -> Result<serde_json::Value, Ec2Error> {
        let fail = |kind, code: Option<String>, message: String, status| Ec2Error { action: target.into(), kind, code, message, status };
        let request = self.signed_as(target, body, "application/x-amz-json-1.1", Some(target)).await?;
        let (status, bytes) = self.send(target, request).await?;
        let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&bytes);
        if (200..300).contains(&status) {
            return parsed.map_err(|e| fail(ErrorKind::Other, None, format!("unreadable answer: {e}"), Some(status)));
        }
        let v = parsed.unwrap_or_default();
        // `__type` is `ResourceNotFoundException` or `com.amazonaws...#ResourceNotFoundException`.
        let code = v["__type"].as_str().map(|t| t.rsplit('#').next().unwrap_or(t).to_string());
        let message = v["message"].as_str().or(v["Message"].as_str()).unwrap_or("").to_string();
        Err(fail(classify(code.as_deref(), status), code, message, Some(status)))
    }

    async fn send(&self, action: &str, request: hyper::Request<Full<Bytes>>) -> Result<(u16, Bytes), Ec2Error> {
        let fail = |kind, message: String, status| Ec2Error { action: action.into(), kind, code: None, message, status };
        let sent = match &self.transport {
            Transport::Plain(c) => tokio::time::timeout(self.timeout, c.request(request)).await,
            Transport::Tls(c) => tokio::time::timeout(self.timeout, c.request(request)).await,
        };
        let response = match sent {
            Err(_) => return Err(fail(ErrorKind::Transient, format!("no answer from {} in {} s", self.endpoint, self.timeout.as_secs()), None)),
            Ok(Err(e)) => return Err(fail(ErrorKind::Transient, format!("{}: {}", self.endpoint, chain(&e)), None)),
            Ok(Ok(r)) => r,
        };
        let status = response.status().as_u16();
        match tokio::time::timeout(self.timeout, response.into_body().collect()).await {
            Ok(Ok(b)) => Ok((status, b.to_bytes())),
            Ok(Err(e)) => Err(fail(ErrorKind::Transient, format!("reading the answer: {e}"), Some(status))),
            Err(_) => Err(fail(ErrorKind::Transient, "the answer stopped arriving".into(), Some(status))),
        }
    }

    /// A client for an explicit endpoint (what [`Ec2::new`] resolves to).
    pub fn with(endpoint: &str, region: &str, credentials: Option<SharedCredentialsProvider>, max_attempts: u32) -> Result<Ec2, Ec2Error> {
        let bad = |message: String| Ec2Error { action: "(connect)".into(), kind: ErrorKind::Other, code: None, message, status: None };
        if region.is_empty() {
            return Err(bad("no AWS region is set: pass --region or set AWS_REGION".into()));
        }
        let uri: http::Uri = endpoint.parse().map_err(|e| bad(format!("the EC2 endpoint {endpoint:?} is not a URL: {e}")))?;
        let transport = match uri.scheme_str() {
            Some("http") => Transport::Plain(Client::builder(TokioExecutor::new()).build_http()),
            Some("https") => {
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_native_roots()
                    .map_err(|e| bad(format!("no TLS root certificates on this machine for {endpoint}: {e}")))?
                    .https_only()
                    .enable_http1()
                    .build();
                Transport::Tls(Client::builder(TokioExecutor::new()).build(connector))
            }
            _ => return Err(bad(format!("the EC2 endpoint {endpoint:?} must start with http:// or https://"))),
        };
        Ok(Ec2 {
            transport,
            endpoint: uri,
            region: region.to_string(),
            service: "ec2",
            credentials,
            max_attempts: max_attempts.max(1),
            timeout: Duration::from_secs(60),
        })
    }

    /// The endpoint calls go to.
    pub fn endpoint(&self) -> String {
        self.endpoint.to_string()
    }

    /// One call: the answer's root element (`DescribeVpcsResponse`, ...).
    pub async fn call(&self, action: &str, params: &Params) -> Result<Node, Ec2Error> {
        let body = params.body(action);
        self.retried(|| self.once(action, &body)).await
    }

    /// Runs `once` until it succeeds, fails for good, or `max_attempts` are spent: throttling
    /// and transient failures again after a backoff with jitter from the clock (0.2 s, 0.4 s,
    /// 0.8 s ... capped at 5 s).
    async fn retried<T, F, Fut>(&self, mut once: F) -> Result<T, Ec2Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Ec2Error>>,
    {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match once().await {
                Err(e) if attempt < self.max_attempts && matches!(e.kind, ErrorKind::Throttled | ErrorKind::Transient) => {
                    let base = 200u64 << (attempt - 1).min(5);
                    let jitter = u64::from(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_millis()).unwrap_or(0)) % 100;
                    tokio::time::sleep(Duration::from_millis(base.min(5_000) + jitter)).await;
                }
                other => return other,
            }
        }
    }

    /// A paginated call: the `item`s of the list element `list` (`vpcSet`, `routeTableSet`,
    /// ...) across every page, following `NextToken`.
    pub async fn call_all(&self, action: &str, params: &Params, list: &str) -> Result<Vec<Node>, Ec2Error> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        // Bounded: a server that always answers with a token must not loop forever.
        for _ in 0..1_000 {
            let p = match &token {
                Some(t) => params.clone().set("NextToken", t.clone()),
                None => params.clone(),
            };
            let page = self.call(action, &p).await?;
            out.extend(page.items(list).cloned());
            token = page.text("nextToken").filter(|t| !t.is_empty()).map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
        Err(Ec2Error {
            action: action.into(),
            kind: ErrorKind::Other,
            code: None,
            message: "more than 1000 pages: the answer keeps naming a next page".into(),
            status: None,
        })
    }

    async fn once(&self, action: &str, body: &str) -> Result<Node, Ec2Error> {
        let fail = |kind, code: Option<String>, message: String, status| Ec2Error { action: action.into(), kind, code, message, status };
        let request = self.signed_as(action, body, "application/x-www-form-urlencoded; charset=utf-8", None).await?;
        let (status, bytes) = self.send(action, request).await?;
        let text = String::from_utf8_lossy(&bytes);
        let parsed = Node::parse(&text);
        if (200..300).contains(&status) {
            return parsed.map_err(|e| fail(ErrorKind::Other, None, format!("unreadable answer: {e}"), Some(status)));
        }
        let (code, message) = match &parsed {
            Ok(root) => {
                let error = root.child("Errors").and_then(|e| e.child("Error")).or_else(|| root.child("Error"));
                (error.and_then(|e| e.text("Code")).map(str::to_string), error.and_then(|e| e.text("Message")).unwrap_or("").to_string())
            }
            Err(_) => (None, text.chars().take(200).collect()),
        };
        Err(fail(classify(code.as_deref(), status), code, message, Some(status)))
    }

    async fn signed_as(&self, action: &str, body: &str, content_type: &str, target: Option<&str>) -> Result<hyper::Request<Full<Bytes>>, Ec2Error> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        let no_creds = |message: String| Ec2Error { action: action.into(), kind: ErrorKind::NoCredentials, code: None, message, status: None };
        let provider = self.credentials.as_ref().ok_or_else(|| no_creds("no AWS credentials are configured".into()))?;
        let creds = provider.provide_credentials().await.map_err(|e| no_creds(format!("no AWS credentials: {}", chain(&e))))?;
        let identity = creds.into();
        let host = self.endpoint.authority().map(|a| a.to_string()).unwrap_or_default();
        let uri = self.endpoint.to_string();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| no_creds(format!("cannot sign: {e}")))?
            .into();
        let mut headers = vec![("host", host.as_str()), ("content-type", content_type)];
        if let Some(t) = target {
            headers.push(("x-amz-target", t));
        }
        let signable = SignableRequest::new("POST", uri.as_str(), headers.into_iter(), SignableBody::Bytes(body.as_bytes()))
            .map_err(|e| no_creds(format!("cannot sign: {e}")))?;
        let (instructions, _) = sign(signable, &params).map_err(|e| no_creds(format!("cannot sign: {e}")))?.into_parts();
        let mut request = hyper::Request::post(uri);
        if let Some(t) = target {
            request = request.header("x-amz-target", t);
        }
        let mut request = request
            .header("host", host)
            .header("content-type", content_type)
            .header("user-agent", concat!("gilliam/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| Ec2Error { action: action.into(), kind: ErrorKind::Other, code: None, message: e.to_string(), status: None })?;
        instructions.apply_to_request_http1x(&mut request);
        Ok(request)
    }
}

/// Retry or not, by EC2's code and the HTTP status.
pub fn classify(code: Option<&str>, status: u16) -> ErrorKind {
    let throttled = matches!(code, Some("RequestLimitExceeded" | "Throttling" | "ThrottlingException" | "RequestThrottled" | "TooManyRequestsException"));
    if throttled || status == 429 {
        ErrorKind::Throttled
    } else if matches!(code, Some("AuthFailure" | "InvalidClientTokenId" | "ExpiredToken" | "SignatureDoesNotMatch")) {
        ErrorKind::NoCredentials
    } else if status >= 500 || matches!(code, Some("InternalError" | "ServiceUnavailable" | "Unavailable")) {
        ErrorKind::Transient
    } else {
        ErrorKind::Refused
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_lists_flatten_as_the_query_protocol_says() {
        let p = Params::new()
            .filter("vpc-id", &["vpc-1"])
            .filter("tag:gilliam:member", &["a b", "c&d"])
            .list("RouteTableId", &["rtb-1", "rtb-2"])
            .set("EnableDnsSupport.Value", "true");
        assert_eq!(
            p.body("DescribeThings"),
            "Action=DescribeThings&Version=2016-11-15&Filter.1.Name=vpc-id&Filter.1.Value.1=vpc-1&Filter.2.Name=tag%3Agilliam%3Amember&Filter.2.Value.1=a+b&Filter.2.Value.2=c%26d&RouteTableId.1=rtb-1&RouteTableId.2=rtb-2&EnableDnsSupport.Value=true"
        );
    }

    #[test]
    fn endpoints_resolve_in_the_sdks_order() {
        let env = |pairs: &'static [(&'static str, &'static str)]| move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        assert_eq!(endpoint_for("eu-west-1", None, env(&[])), "https://ec2.eu-west-1.amazonaws.com");
        assert_eq!(endpoint_for("cn-north-1", None, env(&[])), "https://ec2.cn-north-1.amazonaws.com.cn");
        assert_eq!(endpoint_for("eu-west-1", None, env(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")])), "http://127.0.0.1:5000");
        assert_eq!(endpoint_for("eu-west-1", Some("http://127.0.0.1:1"), env(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")])), "http://127.0.0.1:1");
        let both = env(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"), ("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:6000")]);
        assert_eq!(endpoint_for("eu-west-1", Some("http://127.0.0.1:1"), both), "http://127.0.0.1:6000");
        let logs = env(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"), ("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", "http://127.0.0.1:7000")]);
        assert_eq!(endpoint_of("logs", "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", "eu-west-1", None, logs), "http://127.0.0.1:7000");
        assert_eq!(endpoint_of("logs", "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", "eu-west-1", None, env(&[])), "https://logs.eu-west-1.amazonaws.com");
    }

    #[test]
    fn throttles_and_server_errors_are_retried_refusals_are_not() {
        assert_eq!(classify(Some("RequestLimitExceeded"), 503), ErrorKind::Throttled);
        assert_eq!(classify(None, 429), ErrorKind::Throttled);
        assert_eq!(classify(Some("InternalError"), 500), ErrorKind::Transient);
        assert_eq!(classify(None, 502), ErrorKind::Transient);
        assert_eq!(classify(Some("InvalidVpcID.NotFound"), 400), ErrorKind::Refused);
        assert_eq!(classify(Some("UnauthorizedOperation"), 403), ErrorKind::Refused);
        assert_eq!(classify(Some("AuthFailure"), 401), ErrorKind::NoCredentials);
    }

    #[test]
    fn bad_endpoints_and_missing_regions_say_what_to_do() {
        let e = Ec2::with("ftp://x", "us-east-1", None, 3).expect_err("ftp");
        assert!(e.message.contains("http:// or https://"), "{e}");
        let e = Ec2::with("http://127.0.0.1:1", "", None, 3).expect_err("no region");
        assert!(e.message.contains("AWS_REGION"), "{e}");
    }
}
