//! Shipping lines to CloudWatch Logs without ever blocking the service: batches within
//! PutLogEvents' limits; an outage fills the spool on disk and it drains after, in order; the
//! queue and the spool keep their bounds under a flood, dropping (and counting) the oldest; a
//! new agent on the instance sends what the last one spooled. The sink here records batches
//! and fails on command: CloudWatch itself is exercised on moto in `boot.rs`.

use gilliam_agent::ship::{batches, Event, Queue, Shipper, Sink, Spool, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_SPAN_MS};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
struct Recorder {
    down: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<Vec<Event>>>>,
}

impl Sink for Recorder {
    fn put(&mut self, events: &[Event]) -> Result<(), String> {
        if self.down.load(Ordering::SeqCst) {
            return Err("ServiceUnavailableException".into());
        }
        let bytes: usize = events.iter().map(|e| e.message.len() + 26).sum();
        assert!(events.len() <= MAX_BATCH_EVENTS && bytes <= MAX_BATCH_BYTES, "a batch PutLogEvents refuses");
        assert!(events.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms), "in time order");
        self.got.lock().expect("got").push(events.to_vec());
        Ok(())
    }
}

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("gilliam-ship-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn ev(ts: i64, i: usize) -> Event {
    Event { ts_ms: ts, message: format!("{{\"message\":\"line {i}\"}}") }
}

#[test]
fn batches_keep_within_put_log_events_limits() {
    let t = gilliam_agent::ship::now_ms();
    let many: Vec<Event> = (0..25_000).map(|i| ev(t, i)).collect();
    assert_eq!(batches(&many).iter().map(|r| r.len()).collect::<Vec<_>>(), [10_000, 10_000, 5_000]);
    let big: Vec<Event> = (0..10).map(|_| Event { ts_ms: t, message: "x".repeat(200 * 1024) }).collect();
    assert!(batches(&big).iter().all(|r| r.len() <= 5), "1,048,576 bytes at most");
    let span = [ev(t, 0), ev(t + MAX_SPAN_MS, 1), ev(t + MAX_SPAN_MS + 1, 2)];
    assert_eq!(batches(&span).iter().map(|r| r.len()).collect::<Vec<_>>(), [2, 1], "24 hours at most");
    let long = Event::now("y".repeat(300 * 1024));
    assert!(long.message.len() <= 256 * 1024 - 26 && long.message.ends_with("[cut]"));
}

#[test]
fn an_outage_fills_the_spool_and_it_drains_after_in_order() {
    let sink = Recorder::default();
    let queue = Queue::new(4 << 20);
    let spool = Spool::open(&dir("outage"), 8 << 20).expect("spool");
    let mut s = Shipper::new(sink.clone(), queue.clone(), spool);
    let t = gilliam_agent::ship::now_ms();
    sink.down.store(true, Ordering::SeqCst);
    for round in 0..5 {
        for i in 0..1_000 {
            queue.push(ev(t + round, round as usize * 1_000 + i));
        }
        s.pump(Duration::ZERO);
    }
    assert!(s.stats.failures >= 1 && sink.got.lock().expect("got").is_empty());
    assert!(!s.spool.is_empty() && s.spool.bytes() > 0, "kept on disk through the outage");
    // CloudWatch answers again: everything goes, oldest first, nothing lost.
    sink.down.store(false, Ordering::SeqCst);
    for _ in 0..50 {
        if s.spool.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        s.pump(Duration::ZERO);
    }
    assert!(s.spool.is_empty());
    let sent: Vec<String> = sink.got.lock().expect("got").iter().flatten().map(|e| e.message.clone()).collect();
    assert_eq!(sent.len(), 5_000);
    assert_eq!(sent, (0..5_000).map(|i| format!("{{\"message\":\"line {i}\"}}")).collect::<Vec<_>>());
    assert_eq!(s.dropped(), 0);
}

#[test]
fn the_queue_and_the_spool_keep_their_bounds_under_a_flood() {
    let sink = Recorder::default();
    sink.down.store(true, Ordering::SeqCst);
    let queue = Queue::new(64 * 1024);
    let max = 1 << 20;
    let d = dir("flood");
    let mut s = Shipper::new(sink.clone(), queue.clone(), Spool::open(&d, max).expect("spool"));
    let t = gilliam_agent::ship::now_ms();
    let line = "z".repeat(100);
    let mut pushed = 0u64;
    for round in 0..200 {
        // Faster than the shipper drains: the queue fills and drops, never grows.
        for _ in 0..2_000 {
            queue.push(Event { ts_ms: t + round, message: line.clone() });
            pushed += 1;
            assert!(queue.bytes() <= 64 * 1024);
        }
        s.pump(Duration::ZERO);
        assert!(s.spool.bytes() <= max, "the spool's bound: {} bytes", s.spool.bytes());
    }
    let spooled: u64 =
        std::fs::read_dir(&d).expect("dir").map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("segment").lines().count() as u64).sum();
    assert!(queue.dropped() > 0 && s.spool.dropped > 0, "both bounds were reached");
    assert_eq!(queue.dropped() + s.spool.dropped + spooled, pushed, "every line sent, spooled or counted as dropped");
}

#[test]
fn a_new_agent_sends_what_the_last_one_spooled() {
    let d = dir("restart");
    let sink = Recorder::default();
    sink.down.store(true, Ordering::SeqCst);
    let t = gilliam_agent::ship::now_ms();
    {
        let queue = Queue::new(1 << 20);
        let mut s = Shipper::new(sink.clone(), queue.clone(), Spool::open(&d, 1 << 20).expect("spool"));
        (0..100).for_each(|i| queue.push(ev(t, i)));
        let stop = AtomicBool::new(true);
        let s2 = gilliam_agent::ship::run(
            std::mem::replace(&mut s, Shipper::new(sink.clone(), Queue::new(1), Spool::open(&d, 1 << 20).expect("spool"))),
            &stop,
            Duration::ZERO,
            &|_| {},
        );
        assert!(!s2.spool.is_empty(), "the last send failed: spooled");
    }
    sink.down.store(false, Ordering::SeqCst);
    let mut again = Shipper::new(sink.clone(), Queue::new(1 << 20), Spool::open(&d, 1 << 20).expect("spool"));
    again.pump(Duration::ZERO);
    assert!(again.spool.is_empty());
    assert_eq!(sink.got.lock().expect("got").iter().flatten().count(), 100);
}
