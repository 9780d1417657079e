//! Central logs: every line the agent logs (the service's output and its own) shipped to the
//! formation's CloudWatch Logs group, in the stream `rN/SERVICE/INSTANCE`, as one JSON event
//! naming formation, service, release and instance. Logging never blocks the service: a line
//! goes into a queue bounded in bytes (full: the line is dropped and counted). One thread
//! batches within PutLogEvents' limits (1,048,576 bytes counting 26 per event, 10,000 events,
//! 24 hours, in time order) and, while CloudWatch fails, keeps what it could not send in a
//! spool on disk bounded in bytes (full: the oldest segment goes, its events counted as
//! dropped), sent oldest first once CloudWatch answers again.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// PutLogEvents' limits (CloudWatch Logs API reference).
pub const MAX_BATCH_BYTES: usize = 1_048_576;
pub const EVENT_OVERHEAD: usize = 26;
pub const MAX_BATCH_EVENTS: usize = 10_000;
pub const MAX_SPAN_MS: i64 = 24 * 3600 * 1000;
/// An event's message, at most (CloudWatch's 256 KiB less the per-event overhead).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 - EVENT_OVERHEAD;
/// CloudWatch refuses events older than 14 days: the spool drops them (an hour of margin).
pub const MAX_AGE_MS: i64 = (14 * 24 - 1) * 3600 * 1000;
/// A spool segment is closed at this size.
const SEGMENT_BYTES: u64 = 256 * 1024;

/// One log event: milliseconds since the epoch and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub ts_ms: i64,
    pub message: String,
}

impl Event {
    /// An event now, the message cut (at a character boundary) to what CloudWatch takes.
    pub fn now(message: String) -> Event {
        Event { ts_ms: now_ms(), message: cut(message) }
    }
    fn cost(&self) -> usize {
        self.message.len() + EVENT_OVERHEAD
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn cut(mut m: String) -> String {
    if m.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES - 16;
        while !m.is_char_boundary(end) {
            end -= 1;
        }
        m.truncate(end);
        m.push_str(" [cut]");
    }
    m
}

/// Where lines wait for the shipping thread: bounded in bytes, never blocking the caller.
#[derive(Debug)]
pub struct Queue {
    inner: Mutex<(VecDeque<Event>, usize, bool)>,
    ready: Condvar,
    limit: usize,
    dropped: AtomicU64,
}

impl Queue {
    pub fn new(limit_bytes: usize) -> Arc<Queue> {
        Arc::new(Queue { inner: Mutex::new((VecDeque::new(), 0, false)), ready: Condvar::new(), limit: limit_bytes, dropped: AtomicU64::new(0) })
    }

    /// Queues the event, or drops (and counts) it when the queue is full or closed.
    pub fn push(&self, e: Event) {
        let Ok(mut q) = self.inner.lock() else { return };
        if q.2 {
            return;
        }
        if q.1 + e.cost() > self.limit {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.1 += e.cost();
        q.0.push_back(e);
        self.ready.notify_one();
    }

    /// Whether lines are still taken (false once closed): callers skip building what would be
    /// let go.
    pub fn is_open(&self) -> bool {
        self.inner.lock().is_ok_and(|q| !q.2)
    }

    /// No more lines are queued (logs are not shipped for this config); what waits is let go.
    pub fn close(&self) {
        if let Ok(mut q) = self.inner.lock() {
            q.2 = true;
            q.0.clear();
            q.1 = 0;
        }
    }

    /// Everything queued, waiting up to `wait` for the first event.
    pub fn take(&self, wait: Duration) -> Vec<Event> {
        let Ok(mut q) = self.inner.lock() else { return Vec::new() };
        if q.0.is_empty() {
            q = match self.ready.wait_timeout(q, wait) {
                Ok((q, _)) => q,
                Err(_) => return Vec::new(),
            };
        }
        q.1 = 0;
        q.0.drain(..).collect()
    }

    /// Bytes waiting (for tests and the bound).
    pub fn bytes(&self) -> usize {
        self.inner.lock().map_or(0, |q| q.1)
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// `events` (in time order) cut into PutLogEvents calls: each within the byte, count and
/// 24-hour limits.
pub fn batches(events: &[Event]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, e) in events.iter().enumerate() {
        let full = i > start && (bytes + e.cost() > MAX_BATCH_BYTES || i - start >= MAX_BATCH_EVENTS || e.ts_ms - events[start].ts_ms > MAX_SPAN_MS);
        if full {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += e.cost();
    }
    if start < events.len() {
        out.push(start..events.len());
    }
    out
}

/// The spool: segments of `TS MESSAGE` lines (a message is one line of JSON) on disk, bounded
/// in bytes; the oldest segment goes first when the bound is reached.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    next: u64,
    /// Events dropped because the spool was full or they grew too old.
    pub dropped: u64,
}

impl Spool {
    /// The spool in `dir` (made when missing), with what an earlier agent left there.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let mut s = Spool { dir: dir.to_path_buf(), max_bytes, next: 0, dropped: 0 };
        s.next = s.segments().last().and_then(|p| seq(p)).map_or(0, |n| n + 1);
        Ok(s)
    }

    fn segments(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> =
            std::fs::read_dir(&self.dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| seq(p).is_some()).collect()).unwrap_or_default();
        v.sort();
        v
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.segments().iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.segments().is_empty()
    }

    /// Appends `events` to the newest segment (a new one past its size), then keeps the bound.
    pub fn append(&mut self, events: &[Event]) -> std::io::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let segs = self.segments();
        let path = match segs.last() {
            Some(p) if std::fs::metadata(p).map_or(0, |m| m.len()) < SEGMENT_BYTES && seq(p) == Some(self.next.saturating_sub(1)) => p.clone(),
            _ => {
                self.next += 1;
                self.dir.join(format!("seg-{:012}.log", self.next - 1))
            }
        };
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        let text: String = events.iter().map(spool_line).collect();
        f.write_all(text.as_bytes())?;
        // The bound: the oldest segments go, never the one just written.
        let mut segs = self.segments();
        let mut total: u64 = segs.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
        while total > self.max_bytes && segs.len() > 1 {
            let oldest = segs.remove(0);
            total -= std::fs::metadata(&oldest).map_or(0, |m| m.len());
            self.dropped += read(&oldest).len() as u64;
            let _ = std::fs::remove_file(&oldest);
        }
        Ok(())
    }

    /// The oldest segment and its events.
    pub fn oldest(&self) -> Option<(PathBuf, Vec<Event>)> {
        let p = self.segments().into_iter().next()?;
        let events = read(&p);
        Some((p, events))
    }

    /// Replaces a segment's events with `rest` (what is left to send), or removes it.
    pub fn keep_only(&mut self, path: &Path, rest: &[Event]) -> std::io::Result<()> {
        if rest.is_empty() {
            return std::fs::remove_file(path);
        }
        let tmp = path.with_extension("tmp");
        let text: String = rest.iter().map(spool_line).collect();
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}

/// An event as one spool line, `TS MESSAGE` (`read` parses it back).
fn spool_line(e: &Event) -> String {
    format!("{} {}\n", e.ts_ms, e.message.replace('\n', " "))
}

fn seq(p: &Path) -> Option<u64> {
    p.file_name()?.to_str()?.strip_prefix("seg-")?.strip_suffix(".log")?.parse().ok()
}

fn read(p: &Path) -> Vec<Event> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' ').and_then(|(t, m)| Some(Event { ts_ms: t.parse().ok()?, message: m.to_string() })))
        .collect()
}

/// Where batches go: CloudWatch Logs' PutLogEvents on the stream (or a test's sink).
pub trait Sink: Send {
    fn put(&mut self, events: &[Event]) -> Result<(), String>;
}

/// CloudWatch Logs behind the sink: PutLogEvents on the stream, made on first use.
pub struct CloudSink {
    cloud: Box<dyn crate::cloud::Cloud>,
    group: String,
    stream: String,
    made: bool,
}

impl std::fmt::Debug for CloudSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudSink").field("group", &self.group).field("stream", &self.stream).finish()
    }
}

impl CloudSink {
    pub fn new(cloud: Box<dyn crate::cloud::Cloud>, group: &str, stream: &str) -> CloudSink {
        CloudSink { cloud, group: group.to_string(), stream: stream.to_string(), made: false }
    }
}

impl Sink for CloudSink {
    fn put(&mut self, events: &[Event]) -> Result<(), String> {
        if !self.made {
            self.cloud.create_log_stream(&self.group, &self.stream).map_err(|e| e.to_string())?;
            self.made = true;
        }
        let events: Vec<(i64, String)> = events.iter().map(|e| (e.ts_ms, e.message.clone())).collect();
        self.cloud.put_log_events(&self.group, &self.stream, &events).map_err(|e| e.to_string())
    }
}

/// What shipping did, for the log and the tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub sent: u64,
    pub calls: u64,
    pub failures: u64,
}

/// The shipping loop's state.
#[derive(Debug)]
pub struct Shipper<S: Sink> {
    pub sink: S,
    pub queue: Arc<Queue>,
    pub spool: Spool,
    pub stats: Stats,
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl<S: Sink> Shipper<S> {
    pub fn new(sink: S, queue: Arc<Queue>, spool: Spool) -> Shipper<S> {
        Shipper { sink, queue, spool, stats: Stats::default(), retry_at: None, backoff: Duration::from_secs(1) }
    }

    fn put(&mut self, events: &[Event]) -> bool {
        self.stats.calls += 1;
        match self.sink.put(events) {
            Ok(()) => {
                self.stats.sent += events.len() as u64;
                self.retry_at = None;
                self.backoff = Duration::from_secs(1);
                true
            }
            Err(_) => {
                self.stats.failures += 1;
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
                false
            }
        }
    }

    fn waiting(&self) -> bool {
        self.retry_at.is_some_and(|t| Instant::now() < t)
    }

    /// One round: what the queue holds (waiting up to `wait` for it) sent, or spooled while
    /// CloudWatch fails or older events wait in the spool; then the spool drained, oldest
    /// first, as far as CloudWatch takes it.
    pub fn pump(&mut self, wait: Duration) {
        let mut events = self.queue.take(wait);
        events.sort_by_key(|e| e.ts_ms);
        if !events.is_empty() {
            if self.waiting() || !self.spool.is_empty() {
                let _ = self.spool.append(&events);
            } else {
                for r in batches(&events) {
                    if !self.put(&events[r.clone()]) {
                        let _ = self.spool.append(&events[r.start..]);
                        break;
                    }
                }
            }
        }
        self.drain_spool();
    }

    fn drain_spool(&mut self) {
        while !self.waiting() {
            let Some((path, mut events)) = self.spool.oldest() else { return };
            let old = now_ms() - MAX_AGE_MS;
            let before = events.len();
            events.retain(|e| e.ts_ms >= old);
            self.spool.dropped += (before - events.len()) as u64;
            events.sort_by_key(|e| e.ts_ms);
            for r in batches(&events) {
                if !self.put(&events[r.clone()]) {
                    let _ = self.spool.keep_only(&path, &events[r.start..]);
                    return;
                }
            }
            let _ = self.spool.keep_only(&path, &[]);
        }
    }

    /// Events dropped so far: by the full queue, by the full spool, for their age.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped() + self.spool.dropped
    }
}

/// Runs the shipper until `stop`, then sends what is left once (what cannot go stays in the
/// spool for the next agent on this instance). Says (through `notice`, which logs, and so
/// ships) how many lines were dropped, when some were.
pub fn run<S: Sink>(mut s: Shipper<S>, stop: &AtomicBool, interval: Duration, notice: &dyn Fn(&str)) -> Shipper<S> {
    let mut told = 0;
    while !stop.load(Ordering::SeqCst) {
        s.pump(interval);
        let dropped = s.dropped();
        if dropped > told {
            told = dropped;
            notice(&format!("log shipping: {dropped} lines dropped so far (queue or spool full, or too old)"));
        }
    }
    s.retry_at = None;
    s.pump(Duration::ZERO);
    s
}
