//! The deploy lock against moto's S3 conditional writes: one holder at a time, named to the
//! others; stale locks (lease run out, released, holder process gone) taken over; the lease
//! renewed while work runs; a broken lock stops the work; corrupt lock files refused.

mod common;

use common::*;
use gilliam_materializer::aws::prelude::*;
use gilliam_materializer::aws::PutCondition;
use gilliam_materializer::lock::{self, LockOptions, LockRecord};
use gilliam_materializer::sdk::{Endpoint, SdkAws};
use gilliam_materializer::Error;
use gilliam_tests::moto::Moto;
use std::time::Duration;

async fn world() -> (Moto, SdkAws) {
    let moto = Moto::start();
    let aws = SdkAws::connect(&Endpoint { url: Some(moto.url.clone()), region: Some(REGION.into()) }).await;
    (moto, aws)
}

fn quick(wait_ms: u64) -> LockOptions {
    LockOptions { lease: Duration::from_secs(2), wait: Duration::from_millis(wait_ms), poll: Duration::from_millis(50) }
}

fn record(owner: &str, host: &str, pid: u32, expires_unix: u64) -> Vec<u8> {
    let r = LockRecord {
        format_version: 1,
        formation: "shop".into(),
        owner: owner.into(),
        host: host.into(),
        pid,
        operation: "deploy release 9".into(),
        token: "t".into(),
        acquired: "2026-11-22T10:00:00Z".into(),
        expires_unix,
        released: false,
    };
    serde_json::to_vec(&r).expect("json")
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}

const KEY: &str = "gilliam/shop/lock.json";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_at_a_time_and_the_others_are_told_who() {
    let (_moto, aws) = world().await;
    let say = |_: &str| {};
    let held = lock::acquire(&aws, &formation(), "deploy release 1", quick(0), &say).await.expect("free lock taken");
    let err = lock::acquire(&aws, &formation(), "traffic 2=100", quick(300), &say).await.expect_err("held");
    let Error::Locked(who) = &err else { panic!("{err}") };
    assert!(
        who.contains(&gilliam_materializer::clock::hostname()) && who.contains("deploy release 1") && who.contains(&format!("pid {}", std::process::id())),
        "{who}"
    );
    assert!(err.to_string().contains("gilliam unlock"), "says what to do: {err}");
    held.release(&aws).await.expect("release");
    lock::acquire(&aws, &formation(), "traffic 2=100", quick(0), &say).await.expect("released lock taken");

    // Eight at once: exactly one wins.
    let (_moto2, aws2) = world().await;
    let tries = (0..8).map(|i| {
        let aws = &aws2;
        async move { lock::acquire(aws, &formation(), &format!("contender {i}"), quick(0), &|_: &str| {}).await }
    });
    let results = futures_util::future::join_all(tries).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{:?}", results.iter().map(|r| r.as_ref().map(|_| ())).collect::<Vec<_>>());
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| matches!(e, Error::Locked(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_locks_are_taken_over_and_corrupt_ones_refused() {
    let (_moto, aws) = world().await;
    let f = formation();
    aws.create_secure_bucket(BUCKET, REGION).await.expect("bucket");
    let said = std::sync::Mutex::new(Vec::new());
    let say = |l: &str| said.lock().expect("said").push(l.to_string());
    // Lease ran out on another machine.
    aws.put_object(BUCKET, KEY, record("alice", "ci-7", 1, now() - 10), PutCondition::Always).await.expect("put");
    let held = lock::acquire(&aws, &f, "deploy", quick(0), &say).await.expect("expired lock taken over");
    assert!(said.lock().expect("said").iter().any(|l| l.contains("taking over the deploy lock of alice on ci-7") && l.contains("lease ran out")));
    held.release(&aws).await.expect("release");
    // Held on this host by a process that is gone: no need to wait out the lease.
    aws.put_object(BUCKET, KEY, record("bob", &gilliam_materializer::clock::hostname(), 999_999_999, now() + 3600), PutCondition::Always).await.expect("put");
    lock::acquire(&aws, &f, "deploy", quick(0), &say).await.expect("dead holder's lock taken over");
    // Live, on another machine: refused.
    aws.put_object(BUCKET, KEY, record("carol", "ci-8", 1, now() + 3600), PutCondition::Always).await.expect("put");
    let err = lock::acquire(&aws, &f, "deploy", quick(0), &say).await.expect_err("live");
    assert!(err.to_string().contains("carol on ci-8 (pid 1), deploy release 9"), "{err}");
    // Corrupt or foreign: an error that says what to do, never a panic or a takeover.
    for bad in [&b"{not json"[..], br#"{"format_version": 1, "formation": "other"}"#] {
        aws.put_object(BUCKET, KEY, bad.to_vec(), PutCondition::Always).await.expect("put");
        let err = lock::acquire(&aws, &f, "deploy", quick(0), &say).await.expect_err("corrupt");
        assert!(err.to_string().contains("not a gilliam lock"), "{err}");
    }
    // `gilliam unlock` breaks even those.
    let was = lock::break_lock(&aws, &f).await.expect("broken");
    assert_eq!(was, None, "an unreadable lock has no record to show");
    lock::acquire(&aws, &f, "deploy", quick(0), &say).await.expect("free after unlock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_renewed_while_work_runs_and_a_broken_lock_stops_it() {
    let (_moto, aws) = world().await;
    let f = formation();
    let say = |_: &str| {};
    // The work outlives the 2 s lease; renewal keeps others out the whole time.
    let outsider = async {
        tokio::time::sleep(Duration::from_millis(3500)).await;
        lock::acquire(&aws, &f, "intruder", quick(0), &say).await.map(|_| ())
    };
    let work = lock::with_lock(&aws, &f, "long deploy", quick(0), &say, async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, Error>("done")
    });
    let (done, intruder) = tokio::join!(work, outsider);
    assert_eq!(done.expect("work finished under its lock"), "done");
    assert!(matches!(intruder, Err(Error::Locked(_))), "renewed past its first lease: {intruder:?}");
    let (rec, _) = lock::read(&aws, &f).await.expect("read").expect("there");
    assert!(rec.released, "released after the work");

    // An operator breaks the lock mid-work: the work stops at once.
    let breaker = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        lock::break_lock(&aws, &f).await.expect("broken");
    };
    let started = std::time::Instant::now();
    let work = lock::with_lock(&aws, &f, "doomed deploy", quick(0), &say, async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<_, Error>(())
    });
    let (r, ()) = tokio::join!(work, breaker);
    assert!(matches!(&r, Err(Error::LockLost(_))), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "stopped within a renewal period: {:?}", started.elapsed());
}
