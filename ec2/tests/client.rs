//! The client against a scripted EC2 on 127.0.0.1: what it sends (a signed form POST), how it
//! retries, pages and reports errors. moto covers what EC2 answers (the materializer's
//! preflight tests and the agent's etcd test run these calls against it).

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use gilliam_ec2::{Ec2, ErrorKind, Params};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers each request with the next of `script` (status, body) and keeps what it was sent.
async fn scripted(script: Vec<(u16, &'static str)>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    tokio::spawn(async move {
        for (status, body) in script {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head, then as much body as Content-Length says.
            loop {
                let n = sock.read(&mut chunk).await.expect("read");
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let len = text[..head_end]
                        .lines()
                        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().expect("length")))
                        .unwrap_or(0);
                    if buf.len() >= head_end + 4 + len || n == 0 {
                        break;
                    }
                }
            }
            kept.lock().expect("lock").push(String::from_utf8_lossy(&buf).to_string());
            let reply = format!("HTTP/1.1 {status} X\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            sock.write_all(reply.as_bytes()).await.expect("write");
            let _ = sock.shutdown().await;
        }
    });
    (url, seen)
}

fn creds(token: Option<&str>) -> Option<SharedCredentialsProvider> {
    Some(SharedCredentialsProvider::new(Credentials::new("AKIDTEST", "secret", token.map(str::to_string), None, "test")))
}

const VPCS: &str =
    "<DescribeVpcsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><vpcSet><item><vpcId>vpc-1</vpcId></item></vpcSet></DescribeVpcsResponse>";
const THROTTLED: &str =
    "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>r</RequestID></Response>";
const NOT_FOUND: &str = "<Response><Errors><Error><Code>InvalidVpcID.NotFound</Code><Message>The vpc ID 'vpc-9' does not exist</Message></Error></Errors><RequestID>r</RequestID></Response>";

#[tokio::test]
async fn sends_a_sigv4_signed_form_post_with_the_session_token() {
    let (url, seen) = scripted(vec![(200, VPCS)]).await;
    let ec2 = Ec2::with(&url, "eu-west-1", creds(Some("session-token")), 3).expect("client");
    let root = ec2.call("DescribeVpcs", &Params::new().filter("vpc-id", &["vpc-1"])).await.expect("call");
    assert_eq!(root.items("vpcSet").filter_map(|v| v.text("vpcId")).collect::<Vec<_>>(), ["vpc-1"]);
    let sent = seen.lock().expect("lock")[0].clone();
    let lower = sent.to_ascii_lowercase();
    assert!(sent.starts_with("POST / HTTP/1.1\r\n"), "{sent}");
    assert!(lower.contains("authorization: aws4-hmac-sha256 credential=akidtest/"), "{sent}");
    assert!(lower.contains("/eu-west-1/ec2/aws4_request"), "{sent}");
    assert!(lower.contains("x-amz-date: "), "{sent}");
    assert!(lower.contains("x-amz-security-token: session-token"), "{sent}");
    assert!(lower.contains("content-type: application/x-www-form-urlencoded"), "{sent}");
    assert!(sent.ends_with("Action=DescribeVpcs&Version=2016-11-15&Filter.1.Name=vpc-id&Filter.1.Value.1=vpc-1"), "{sent}");
}

#[tokio::test]
async fn throttling_and_5xx_are_retried_then_succeed() {
    let (url, seen) = scripted(vec![
        (503, THROTTLED),
        (500, "<Response><Errors><Error><Code>InternalError</Code><Message>m</Message></Error></Errors></Response>"),
        (200, VPCS),
    ])
    .await;
    let ec2 = Ec2::with(&url, "eu-west-1", creds(None), 3).expect("client");
    let root = ec2.call("DescribeVpcs", &Params::new()).await.expect("third attempt answers");
    assert_eq!(root.items("vpcSet").count(), 1);
    assert_eq!(seen.lock().expect("lock").len(), 3);
}

#[tokio::test]
async fn retries_stop_at_the_limit_and_say_throttled() {
    let (url, seen) = scripted(vec![(503, THROTTLED), (503, THROTTLED), (200, VPCS)]).await;
    let ec2 = Ec2::with(&url, "eu-west-1", creds(None), 2).expect("client");
    let e = ec2.call("DescribeVpcs", &Params::new()).await.expect_err("two attempts, both throttled");
    assert_eq!((e.kind, e.code.as_deref(), e.status), (ErrorKind::Throttled, Some("RequestLimitExceeded"), Some(503)));
    assert_eq!(seen.lock().expect("lock").len(), 2);
}

#[tokio::test]
async fn a_refusal_is_not_retried_and_carries_ec2s_code_and_message() {
    let (url, seen) = scripted(vec![(400, NOT_FOUND), (200, VPCS)]).await;
    let ec2 = Ec2::with(&url, "eu-west-1", creds(None), 3).expect("client");
    let e = ec2.call("DescribeVpcAttribute", &Params::new().set("VpcId", "vpc-9")).await.expect_err("refused");
    assert_eq!((e.kind, e.code.as_deref()), (ErrorKind::Refused, Some("InvalidVpcID.NotFound")));
    assert_eq!(e.to_string(), "EC2 DescribeVpcAttribute: InvalidVpcID.NotFound: The vpc ID 'vpc-9' does not exist (HTTP 400)");
    assert_eq!(seen.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn pages_follow_next_token() {
    let first = "<DescribeSubnetsResponse><subnetSet><item><subnetId>a</subnetId></item></subnetSet><nextToken>p2</nextToken></DescribeSubnetsResponse>";
    let second = "<DescribeSubnetsResponse><subnetSet><item><subnetId>b</subnetId></item></subnetSet></DescribeSubnetsResponse>";
    let (url, seen) = scripted(vec![(200, first), (200, second)]).await;
    let ec2 = Ec2::with(&url, "eu-west-1", creds(None), 3).expect("client");
    let items = ec2.call_all("DescribeSubnets", &Params::new(), "subnetSet").await.expect("pages");
    assert_eq!(items.iter().filter_map(|i| i.text("subnetId")).collect::<Vec<_>>(), ["a", "b"]);
    assert!(seen.lock().expect("lock")[1].ends_with("&NextToken=p2"));
}

#[tokio::test]
async fn no_credentials_and_no_server_are_clear_errors() {
    let ec2 = Ec2::with("http://127.0.0.1:9", "eu-west-1", None, 1).expect("client");
    let e = ec2.call("DescribeVpcs", &Params::new()).await.expect_err("no credentials");
    assert_eq!(e.kind, ErrorKind::NoCredentials);
    // A port nothing listens on: refused at once, reported as transient.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let ec2 = Ec2::with(&format!("http://127.0.0.1:{port}"), "eu-west-1", creds(None), 1).expect("client");
    let e = ec2.call("DescribeVpcs", &Params::new()).await.expect_err("nothing listens");
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    let (url, _) = scripted(vec![(200, "not xml at all")]).await;
    let ec2 = Ec2::with(&url, "eu-west-1", creds(None), 1).expect("client");
    let e = ec2.call("DescribeVpcs", &Params::new()).await.expect_err("unreadable");
    assert!(e.message.starts_with("unreadable answer"), "{e}");
}
