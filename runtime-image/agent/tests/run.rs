//! Running the service: health probed like the target group does, restarts with backoff, the
//! environment given and nothing else, and a stop that ends a running process.

use gilliam_agent::health::{healthy, probe, wait_healthy};
use gilliam_agent::supervise::{supervise, Backoff, Spec};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Answers 503 to the first `sick` requests, then 200 to /healthz and 404 to anything else.
fn server(sick: usize) -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut req = String::new();
            let mut buf = [0u8; 1024];
            while !req.contains("\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
            let k = count.fetch_add(1, Ordering::SeqCst);
            let status = if k < sick {
                "503 Service Unavailable"
            } else if req.starts_with("GET /healthz ") {
                "200 OK"
            } else {
                "404 Not Found"
            };
            let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, served)
}

#[test]
fn health_is_probed_like_the_target_group() {
    let (port, _) = server(0);
    assert_eq!(probe(port, "/healthz", Duration::from_secs(2)), Ok(200));
    assert_eq!(probe(port, "/other", Duration::from_secs(2)), Ok(404));
    assert!(healthy(200) && healthy(302) && !healthy(404) && !healthy(503));
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    assert!(probe(closed, "/", Duration::from_millis(300)).is_err());
}

#[test]
fn waiting_for_health_ends_healthy_or_at_the_deadline() {
    let (port, served) = server(3);
    let took = wait_healthy(port, "/healthz", Duration::from_secs(10), Duration::from_millis(20)).expect("turns healthy");
    assert!(served.load(Ordering::SeqCst) >= 4 && took < Duration::from_secs(10));
    let (port, _) = server(usize::MAX);
    let err = wait_healthy(port, "/healthz", Duration::from_millis(300), Duration::from_millis(20)).expect_err("never healthy");
    assert!(err.contains("answered 503"), "{err}");
}

fn release_dir(name: &str, script: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-scratch/supervise").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("bin")).expect("dir");
    std::fs::write(d.join("bin/run"), script).expect("script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.join("bin/run"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    d
}

#[test]
fn an_exiting_service_is_restarted_with_growing_delays_and_only_its_environment() {
    let dir = release_dir("restarts", "#!/bin/sh\necho \"$GREETING home=$HOME arg=$1\" >> \"$OUT\"\nexit 3\n");
    let out = dir.join("out.txt");
    let env = BTreeMap::from([("GREETING".to_string(), "hello".to_string()), ("OUT".to_string(), out.display().to_string())]);
    let spec = Spec { script: "bin/run first".into(), dir: dir.clone(), env, ..Spec::default() };
    let backoff = Backoff { first: Duration::from_millis(10), max: Duration::from_millis(25), stable: Duration::from_secs(60) };
    let runs = supervise(&spec, backoff, &AtomicBool::new(false), Some(4), &|_| {});
    assert_eq!(runs.len(), 4);
    assert!(runs.iter().all(|r| r.status.and_then(|s| s.code()) == Some(3)));
    let waits: Vec<u128> = runs.iter().map(|r| r.then_waited.as_millis()).collect();
    assert_eq!(waits, vec![10, 20, 25, 25], "doubling up to the ceiling");
    let lines = std::fs::read_to_string(&out).expect("output");
    assert_eq!(lines.lines().collect::<Vec<_>>(), vec!["hello home= arg=first"; 4], "the given environment and nothing inherited");
}

#[test]
fn stop_ends_a_running_service() {
    let dir = release_dir("stop", "#!/bin/sh\nexec /bin/sleep 30\n");
    let spec = Spec { script: "bin/run".into(), dir, ..Spec::default() };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        flag.store(true, Ordering::SeqCst);
    });
    let t = Instant::now();
    let runs = supervise(&spec, Backoff::default(), &stop, None, &|_| {});
    assert!(t.elapsed() < Duration::from_secs(5), "stopped in {:?}", t.elapsed());
    assert!(runs.is_empty(), "the stopped run is not a crash: {runs:?}");
}

#[test]
fn a_script_that_is_not_there_is_reported_and_retried() {
    let dir = release_dir("missing", "#!/bin/sh\nexit 0\n");
    let spec = Spec { script: "bin/nope".into(), dir, ..Spec::default() };
    let logged = std::sync::Mutex::new(Vec::new());
    let runs = supervise(
        &spec,
        Backoff { first: Duration::from_millis(5), max: Duration::from_millis(5), stable: Duration::from_secs(60) },
        &AtomicBool::new(false),
        Some(2),
        &|l| logged.lock().expect("log").push(l.to_string()),
    );
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r.status.is_none()));
    assert!(logged.lock().expect("log").iter().any(|l| l.contains("cannot start bin/nope")), "{logged:?}");
}
