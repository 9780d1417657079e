//! The real AWS behind the agent's seam: S3, CloudFormation, Secrets Manager, ECR, CloudWatch
//! Logs and EC2 clients
//! from the standard credential chain (the instance role on EC2), on a small runtime of its own.

use crate::cloud::{parse_s3_url, Attached, Cloud, CloudError, Fetched, SignalCall, NO_CREDENTIALS};
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::io::Write;
use std::path::Path;

#[derive(Debug)]
pub struct SdkCloud {
    rt: tokio::runtime::Runtime,
    s3: aws_sdk_s3::Client,
    cfn: aws_sdk_cloudformation::Client,
    secrets: aws_sdk_secretsmanager::Client,
    ecr: aws_sdk_ecr::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    /// The narrow EC2 client; an endpoint it cannot use is reported at the first EC2 call.
    ec2: Result<gilliam_ec2::Ec2, gilliam_ec2::Ec2Error>,
}

/// A failed SDK call, with AWS's error code; a request that could not be signed or sent for
/// want of credentials gets [`NO_CREDENTIALS`].
fn err<E, R>(call: &'static str, e: SdkError<E, R>) -> CloudError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug + 'static,
{
    let message = DisplayErrorContext(&e).to_string();
    let code = e.code().map(str::to_string).or_else(|| {
        let unsent = matches!(e, SdkError::ConstructionFailure(_) | SdkError::DispatchFailure(_));
        (unsent && message.to_ascii_lowercase().contains("credential")).then(|| NO_CREDENTIALS.to_string())
    });
    CloudError { call, message, code }
}

/// A failure of the agent's own, with no AWS error code.
fn own(call: &'static str, message: String) -> CloudError {
    CloudError { call, message, code: None }
}

/// The HTTPS client every AWS client here uses (rustls with ring; no native TLS).
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring)).build_https()
}

impl SdkCloud {
    /// Clients for `region`. Endpoints come from the standard settings (`AWS_ENDPOINT_URL`,
    /// `AWS_ENDPOINT_URL_S3`, ...), which is how tests point the agent at local servers.
    pub fn connect(region: &str) -> Result<SdkCloud, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the AWS client runtime: {e}"))?;
        let http = http_client();
        // A booting instance may meet throttling or a role not yet visible: retry a little longer.
        let conf = rt.block_on(
            aws_config::defaults(BehaviorVersion::latest())
                .http_client(http)
                .region(Region::new(region.to_string()))
                .retry_config(RetryConfig::standard().with_max_attempts(6))
                .load(),
        );
        let s3conf = aws_sdk_s3::config::Builder::from(&conf).force_path_style(true).build();
        Ok(SdkCloud {
            s3: aws_sdk_s3::Client::from_conf(s3conf),
            cfn: aws_sdk_cloudformation::Client::new(&conf),
            secrets: aws_sdk_secretsmanager::Client::new(&conf),
            ecr: aws_sdk_ecr::Client::new(&conf),
            logs: aws_sdk_cloudwatchlogs::Client::new(&conf),
            ec2: gilliam_ec2::Ec2::new(&conf, 6),
            rt,
        })
    }

    async fn fetch_async(&self, url: &str, dest: &Path, max_bytes: u64) -> Result<Fetched, CloudError> {
        use sha2::Digest;
        let (bucket, key) = parse_s3_url(url).map_err(|m| own("GetObject", m))?;
        let out = self.s3.get_object().bucket(&bucket).key(&key).send().await.map_err(|e| err("GetObject", e))?;
        let too_big = |n: u64| own("GetObject", format!("{url} is {n} bytes or more, over the agent's bound of {max_bytes}"));
        if let Some(n) = out.content_length().and_then(|n| u64::try_from(n).ok()) {
            if n > max_bytes {
                return Err(too_big(n));
            }
        }
        let io = |e: std::io::Error| own("GetObject", format!("writing {}: {e}", dest.display()));
        let mut file = std::fs::File::create(dest).map_err(io)?;
        let mut hash = sha2::Sha256::new();
        let mut body = out.body;
        let mut bytes = 0u64;
        while let Some(chunk) = body.try_next().await.map_err(|e| own("GetObject", DisplayErrorContext(e).to_string()))? {
            bytes += chunk.len() as u64;
            if bytes > max_bytes {
                return Err(too_big(bytes));
            }
            hash.update(&chunk);
            file.write_all(&chunk).map_err(io)?;
        }
        file.sync_all().map_err(io)?;
        Ok(Fetched { sha256: hash.finalize().iter().map(|b| format!("{b:02x}")).collect(), bytes })
    }

    async fn attach_async(&self, tag_key: &str, tag_value: &str, instance: &str) -> Result<Attached, CloudError> {
        use gilliam_ec2::Params;
        let ec2 = self.ec2.as_ref().map_err(|e| ec2_err("DescribeNetworkInterfaces", e.clone()))?;
        let filter = Params::new().filter(&format!("tag:{tag_key}"), &[tag_value]);
        let mut attached = Attached::default();
        let enis = ec2.call_all("DescribeNetworkInterfaces", &filter, "networkInterfaceSet").await.map_err(|e| ec2_err("DescribeNetworkInterfaces", e))?;
        if let Some(eni) = enis.first() {
            let id = eni.text("networkInterfaceId").unwrap_or_default().to_string();
            let ip = eni.text("privateIpAddress").unwrap_or_default().to_string();
            if eni.child("attachment").and_then(|a| a.text("instanceId")) != Some(instance) {
                let attach = Params::new().set("NetworkInterfaceId", &id).set("InstanceId", instance).set("DeviceIndex", "1");
                ec2.call("AttachNetworkInterface", &attach).await.map_err(|e| ec2_err("AttachNetworkInterface", e))?;
            }
            attached.interface = Some((id, ip));
        }
        let vols = ec2.call_all("DescribeVolumes", &filter, "volumeSet").await.map_err(|e| ec2_err("DescribeVolumes", e))?;
        if let Some(v) = vols.first() {
            let id = v.text("volumeId").unwrap_or_default().to_string();
            if !v.items("attachmentSet").any(|a| a.text("instanceId") == Some(instance)) {
                let attach = Params::new().set("VolumeId", &id).set("InstanceId", instance).set("Device", "/dev/xvdf");
                ec2.call("AttachVolume", &attach).await.map_err(|e| ec2_err("AttachVolume", e))?;
            }
            attached.volume = Some(id);
        }
        Ok(attached)
    }
}

/// A failed EC2 call, with EC2's error code; unusable credentials get [`NO_CREDENTIALS`].
fn ec2_err(call: &'static str, e: gilliam_ec2::Ec2Error) -> CloudError {
    let code = match e.kind {
        gilliam_ec2::ErrorKind::NoCredentials if e.code.is_none() => Some(NO_CREDENTIALS.to_string()),
        _ => e.code.clone(),
    };
    CloudError { call, message: e.to_string(), code }
}

impl Cloud for SdkCloud {
    fn fetch(&self, url: &str, dest: &Path, max_bytes: u64) -> Result<Fetched, CloudError> {
        self.rt.block_on(self.fetch_async(url, dest, max_bytes))
    }

    fn registry_credentials(&self, registry: &str) -> Result<Option<(String, String)>, CloudError> {
        // ECR's registries take a token from GetAuthorizationToken, as the instance role; others
        // are pulled from without credentials.
        let Some(ecr) = gilliam_contract::image::ImageRef::parse(&format!("{registry}/x")).ok().and_then(|r| r.ecr()) else { return Ok(None) };
        let req = self.ecr.get_authorization_token().customize().config_override(aws_sdk_ecr::config::Builder::default().region(Region::new(ecr.region)));
        let out = self.rt.block_on(req.send()).map_err(|e| err("GetAuthorizationToken", e))?;
        let token = out
            .authorization_data()
            .first()
            .and_then(|d| d.authorization_token())
            .ok_or_else(|| own("GetAuthorizationToken", "no token in the answer".into()))?;
        let decoded = aws_smithy_types::base64::decode(token).map_err(|e| own("GetAuthorizationToken", format!("the token is not base64: {e}")))?;
        let text = String::from_utf8(decoded).map_err(|_| own("GetAuthorizationToken", "the token is not text".into()))?;
        let (user, password) = text.split_once(':').ok_or_else(|| own("GetAuthorizationToken", "the token is not USER:PASSWORD".into()))?;
        Ok(Some((user.to_string(), password.to_string())))
    }

    fn create_log_stream(&self, group: &str, stream: &str) -> Result<(), CloudError> {
        match self.rt.block_on(self.logs.create_log_stream().log_group_name(group).log_stream_name(stream).send()) {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceAlreadyExistsException") => Ok(()),
            Err(e) => Err(err("CreateLogStream", e)),
        }
    }

    fn put_log_events(&self, group: &str, stream: &str, events: &[(i64, String)]) -> Result<(), CloudError> {
        use aws_sdk_cloudwatchlogs::types::InputLogEvent;
        let mut req = self.logs.put_log_events().log_group_name(group).log_stream_name(stream);
        for (ts, m) in events {
            let e = InputLogEvent::builder().timestamp(*ts).message(m).build().map_err(|e| own("PutLogEvents", e.to_string()))?;
            req = req.log_events(e);
        }
        self.rt.block_on(req.send()).map(|_| ()).map_err(|e| err("PutLogEvents", e))
    }

    fn secret(&self, id: &str) -> Result<String, CloudError> {
        let out = self.rt.block_on(self.secrets.get_secret_value().secret_id(id).send()).map_err(|e| err("GetSecretValue", e))?;
        out.secret_string().map(str::to_string).ok_or_else(|| own("GetSecretValue", format!("secret {id} has no string value")))
    }

    fn signal(&self, call: &SignalCall) -> Result<(), CloudError> {
        use aws_sdk_cloudformation::types::ResourceSignalStatus;
        let status = if call.success { ResourceSignalStatus::Success } else { ResourceSignalStatus::Failure };
        self.rt
            .block_on(self.cfn.signal_resource().stack_name(&call.stack).logical_resource_id(&call.resource).unique_id(&call.unique_id).status(status).send())
            .map(|_| ())
            .map_err(|e| err("SignalResource", e))
    }

    fn attach(&self, tag_key: &str, tag_value: &str, instance_id: &str) -> Result<Attached, CloudError> {
        self.rt.block_on(self.attach_async(tag_key, tag_value, instance_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    #[test]
    fn errors_keep_aws_codes_and_name_missing_credentials() {
        let refused = GetSecretValueError::generic(ErrorMetadata::builder().code("AccessDeniedException").message("not authorized yet").build());
        let status = StatusCode::try_from(400).expect("status");
        let e = err("GetSecretValue", SdkError::<GetSecretValueError, _>::service_error(refused, Response::new(status, SdkBody::empty())));
        assert_eq!(e.code.as_deref(), Some("AccessDeniedException"));
        assert!(e.message.contains("not authorized yet"), "{}", e.message);
        let unsigned: SdkError<GetSecretValueError, Response> = SdkError::construction_failure("no credentials in the provider chain");
        assert_eq!(err("GetSecretValue", unsigned).code.as_deref(), Some(NO_CREDENTIALS));
        let unsent: SdkError<GetSecretValueError, Response> = SdkError::construction_failure("bad endpoint");
        assert_eq!(err("GetSecretValue", unsent).code, None);
    }
}
