//! The SDK side of the seam against canned AWS answers from a tiny HTTP server on 127.0.0.1:
//! real SdkError values, as the SDK parses them, classified into AwsError.

use gilliam_materializer::aws::prelude::*;
use gilliam_materializer::aws::{AwsError, PutCondition, StackRequest, TemplateSource};
use gilliam_materializer::sdk::{Endpoint, SdkAws};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Serves every request with `(status, body)` from `answer`, which sees the request text.
fn serve(answer: impl Fn(&str) -> (u16, String) + Send + 'static) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            head.push_str(&String::from_utf8_lossy(&body));
            count.fetch_add(1, Ordering::SeqCst);
            let (status, text) = answer(&head);
            let _ = write!(stream, "HTTP/1.1 {status} X\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len());
        }
    });
    (url, served)
}

fn cfn_error(code: &str, message: &str) -> String {
    format!(
        r#"<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>r</RequestId></ErrorResponse>"#
    )
}

async fn client(url: &str) -> SdkAws {
    for (k, v) in gilliam_tests::moto::SAFE_ENV {
        std::env::set_var(k, v);
    }
    SdkAws::connect(&Endpoint { url: Some(url.into()), region: Some("eu-west-1".into()) }).await
}

fn req() -> StackRequest {
    StackRequest { name: "s".into(), template: TemplateSource::Body("{}".into()), capabilities: vec![], tags: vec![] }
}

#[tokio::test]
async fn no_updates_in_either_wording() {
    for message in ["No updates are to be performed.", "No Updates are to be performed"] {
        let m = message.to_string();
        let (url, _) = serve(move |_| (400, cfn_error("ValidationError", &m)));
        assert_eq!(client(&url).await.update_stack(&req()).await, Err(AwsError::NoUpdates), "{message}");
    }
}

#[tokio::test]
async fn missing_stack_is_none_other_validation_errors_are_invalid() {
    let (url, _) = serve(|_| (400, cfn_error("ValidationError", "Stack with id s does not exist")));
    assert_eq!(client(&url).await.describe_stack("s").await, Ok(None));
    let (url, _) = serve(|_| (400, cfn_error("ValidationError", "Template format error: unsupported structure.")));
    assert!(matches!(client(&url).await.create_stack(&req()).await, Err(AwsError::Invalid(m)) if m.contains("Template format error")));
}

#[tokio::test]
async fn throttling_and_server_errors_are_retryable() {
    let (url, served) = serve(|_| (400, cfn_error("Throttling", "Rate exceeded")));
    let e = client(&url).await.describe_stack("s").await.expect_err("throttled");
    assert!(matches!(&e, AwsError::Throttled(_)) && e.retryable(), "{e:?}");
    assert!(served.load(Ordering::SeqCst) >= 1);
    let (url, _) = serve(|_| (503, cfn_error("ServiceUnavailable", "try later")));
    let e = client(&url).await.describe_stack("s").await.expect_err("503");
    assert!(matches!(&e, AwsError::Transient(_)) && e.retryable(), "{e:?}");
}

#[tokio::test]
async fn a_lost_conditional_write_is_precondition_failed() {
    let (url, _) = serve(|_| {
        (412, "<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>".into())
    });
    let e = client(&url).await.put_object("b", "k", b"x".to_vec(), PutCondition::Absent).await;
    assert_eq!(e, Err(AwsError::PreconditionFailed));
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    // Bind and drop, so that nothing listens on that port.
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let e = client(&format!("http://127.0.0.1:{port}")).await.describe_stack("s").await.expect_err("refused");
    assert!(matches!(&e, AwsError::Transient(_)), "{e:?}");
}

/// DescribeAlarms answers metric alarms only unless AlarmTypes names composite ones too, and
/// pages with NextToken: both alarms of the analysis are found, the composite one on page two.
#[tokio::test]
async fn alarm_states_ask_for_composite_alarms_and_follow_next_token() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let (url, _) = serve(move |req| {
        log.lock().expect("log").push(req.to_string());
        let asks_composite = req.contains("AlarmTypes.member.2=CompositeAlarm") || req.contains("AlarmTypes.member.1=CompositeAlarm");
        let body = if !req.contains("NextToken=") {
            r#"<MetricAlarms><member><AlarmName>api-5xx</AlarmName><StateValue>OK</StateValue></member></MetricAlarms><CompositeAlarms/><NextToken>page-2</NextToken>"#
                .to_string()
        } else if asks_composite {
            r#"<MetricAlarms/><CompositeAlarms><member><AlarmName>shop-health</AlarmName><StateValue>ALARM</StateValue></member></CompositeAlarms>"#.to_string()
        } else {
            "<MetricAlarms/><CompositeAlarms/>".to_string()
        };
        (
            200,
            format!(
                r#"<DescribeAlarmsResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/"><DescribeAlarmsResult>{body}</DescribeAlarmsResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeAlarmsResponse>"#
            ),
        )
    });
    let aws = client(&url).await;
    let states = aws.alarm_states(&["api-5xx".to_string(), "shop-health".to_string()]).await.expect("states");
    assert_eq!(states, vec![("api-5xx".to_string(), "OK".to_string()), ("shop-health".to_string(), "ALARM".to_string())]);
    let requests = seen.lock().expect("log");
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests[1].contains("NextToken=page-2"), "{}", requests[1]);
}

/// A notification to a FIFO topic in another region than the stage's: called in the topic's
/// region (the SigV4 scope says so), with a message group and a deduplication id, and a subject
/// cut to 99 characters (SNS: "less than 100").
#[tokio::test]
async fn publish_to_a_fifo_topic_in_another_region() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let (url, _) = serve(move |req| {
        log.lock().expect("log").push(req.to_string());
        (200, r#"<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult><MessageId>m</MessageId></PublishResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></PublishResponse>"#.to_string())
    });
    let aws = client(&url).await;
    aws.publish("arn:aws:sns:eu-central-1:123456789012:deploys.fifo", &"s".repeat(150), "{}").await.expect("published");
    aws.publish("arn:aws:sns:eu-west-1:123456789012:deploys", "short", "{}").await.expect("published");
    let requests = seen.lock().expect("log");
    let fifo = &requests[0];
    assert!(fifo.contains("/eu-central-1/sns/aws4_request"), "signed for the topic's region: {fifo}");
    assert!(fifo.contains("MessageGroupId=gilliam") && fifo.contains("MessageDeduplicationId="), "{fifo}");
    let subject = fifo.split("Subject=").nth(1).expect("subject").split('&').next().expect("value");
    assert_eq!(subject.len(), 99, "{subject}");
    let standard = &requests[1];
    assert!(standard.contains("/eu-west-1/sns/aws4_request") && !standard.contains("MessageGroupId"), "{standard}");
}
