//! The deploy lock of a formation: `{prefix}lock.json` in the outputs bucket, taken and renewed
//! with S3 conditional writes (`If-None-Match` to take a free lock, `If-Match` on the ETag read
//! to take over a stale one, renew, or release). A lock names its holder (actor, host, pid,
//! operation) and carries a lease; the holder renews it while it works. A lock whose lease ran
//! out, or whose holder was a process on this host that is gone, is stale and taken over.
//! Released locks are overwritten with `released: true`, never deleted, so that every change
//! of hands is a conditional write.

use crate::aws::{Aws, AwsError, PutCondition};
use crate::clock::hostname;
use crate::error::Error;
use crate::formation::Formation;
use crate::retry::retry;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const LOCK_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockRecord {
    pub format_version: u32,
    pub formation: String,
    pub owner: String,
    pub host: String,
    pub pid: u32,
    pub operation: String,
    /// Distinguishes this holder from any other, even the same process taking it twice.
    pub token: String,
    pub acquired: String,
    /// Seconds since the Unix epoch at which the lease runs out unless renewed.
    pub expires_unix: u64,
    pub released: bool,
}

impl LockRecord {
    /// `alice on ci-42 (pid 4242), deploy release 7, since 2026-11-22T10:00:00Z`
    pub fn describe(&self) -> String {
        format!("{} on {} (pid {}), {}, since {}", self.owner, self.host, self.pid, self.operation, self.acquired)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct LockOptions {
    pub lease: Duration,
    /// How long to wait for a lock held by someone else; zero: refuse at once.
    pub wait: Duration,
    pub poll: Duration,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions { lease: Duration::from_secs(120), wait: Duration::from_secs(300), poll: Duration::from_secs(5) }
    }
}

pub fn key(prefix: &str) -> String {
    gilliam_contract::keys::lock(prefix)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Whether a lock is free to take: released, expired, or held by a process of this host that
/// no longer exists (a killed deploy on the same machine need not wait out its lease).
pub fn stale(rec: &LockRecord, now: u64, host: &str) -> Option<&'static str> {
    if rec.released {
        Some("released")
    } else if rec.expires_unix < now {
        Some("its lease ran out")
    } else if rec.host == host && rec.pid != std::process::id() && !std::path::Path::new(&format!("/proc/{}", rec.pid)).exists() {
        Some("its process is gone")
    } else {
        None
    }
}

/// Reads a lock file's bytes, refusing corrupt or foreign ones.
pub fn parse(bytes: &[u8], where_: &str, formation: &str) -> Result<LockRecord, Error> {
    let rec: LockRecord = serde_json::from_slice(bytes)
        .map_err(|e| Error::Corrupt(format!("{where_} is not a gilliam lock ({e}); break it with `gilliam unlock` if nothing is running")))?;
    if rec.format_version != LOCK_VERSION || rec.formation != formation {
        return Err(Error::Corrupt(format!(
            "{where_} is lock format {} of formation {:?}, expected {LOCK_VERSION} of {formation:?}",
            rec.format_version, rec.formation
        )));
    }
    Ok(rec)
}

/// A lock this process holds.
#[derive(Debug)]
pub struct Held {
    pub record: LockRecord,
    etag: std::sync::Mutex<String>,
    bucket: String,
    key: String,
    lease: Duration,
}

fn body(rec: &LockRecord) -> Vec<u8> {
    [serde_json::to_vec_pretty(rec).unwrap_or_default(), b"\n".to_vec()].concat()
}

/// The current lock, if any, with its ETag.
pub async fn read<A: Aws>(aws: &A, f: &Formation) -> Result<Option<(LockRecord, String)>, Error> {
    let k = key(&f.prefix);
    match retry("read the deploy lock", || aws.get_object(&f.bucket, &k)).await? {
        None => Ok(None),
        Some(o) => Ok(Some((parse(&o.body, &format!("s3://{}/{k}", f.bucket), &f.name)?, o.etag))),
    }
}

/// Takes the formation's lock for `operation`, waiting up to `opts.wait` for another holder.
pub async fn acquire<A: Aws>(aws: &A, f: &Formation, operation: &str, opts: LockOptions, say: &(dyn Fn(&str) + Sync)) -> Result<Held, Error> {
    let k = key(&f.prefix);
    let host = hostname();
    let started = tokio::time::Instant::now();
    let mut told = false;
    loop {
        let current = read(aws, f).await?;
        let now = unix_now();
        let cond = match &current {
            None => Some(PutCondition::Absent),
            Some((rec, etag)) => match stale(rec, now, &host) {
                Some(why) => {
                    if !rec.released {
                        say(&format!("taking over the deploy lock of {}: {why}", rec.describe()));
                    }
                    Some(PutCondition::Matches(etag.clone()))
                }
                None => None,
            },
        };
        if let Some(cond) = cond {
            let rec = LockRecord {
                format_version: LOCK_VERSION,
                formation: f.name.clone(),
                owner: crate::clock::actor(),
                host: host.clone(),
                pid: std::process::id(),
                operation: operation.to_string(),
                token: crate::clock::nonce(),
                acquired: crate::clock::now(),
                expires_unix: now + opts.lease.as_secs().max(1),
                released: false,
            };
            let bytes = body(&rec);
            match aws.put_object(&f.bucket, &k, bytes.clone(), cond).await {
                Ok(etag) => return Ok(Held { record: rec, etag: std::sync::Mutex::new(etag), bucket: f.bucket.clone(), key: k, lease: opts.lease }),
                Err(AwsError::PreconditionFailed) => continue,
                // The lock lives in the outputs bucket: a formation's first deploy makes the bucket
                // here (as its plan would: versioned, encrypted, public access blocked).
                Err(e) if e.to_string().contains("NoSuchBucket") => {
                    retry("create the outputs bucket", || aws.create_secure_bucket(&f.bucket, &f.region)).await?;
                    continue;
                }
                Err(e) if e.retryable() => {
                    // The write may have gone through: if the lock now holds our token, it is ours.
                    if let Some((now_rec, etag)) = read(aws, f).await? {
                        if now_rec.token == rec.token {
                            return Ok(Held { record: rec, etag: std::sync::Mutex::new(etag), bucket: f.bucket.clone(), key: k, lease: opts.lease });
                        }
                    }
                    continue;
                }
                Err(err) => return Err(Error::Aws { what: "take the deploy lock".into(), err }),
            }
        }
        let Some((holder, _)) = current else { continue };
        if started.elapsed() >= opts.wait {
            return Err(Error::Locked(holder.describe()));
        }
        if !told {
            say(&format!("waiting for the deploy lock, held by {} (up to {:?})", holder.describe(), opts.wait));
            told = true;
        }
        tokio::time::sleep(opts.poll.min(opts.wait.saturating_sub(started.elapsed())).max(Duration::from_millis(10))).await;
    }
}

impl Held {
    async fn write<A: Aws>(&self, aws: &A, rec: &LockRecord) -> Result<(), Error> {
        let bytes = body(rec);
        let etag = self.etag.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        for _ in 0..8 {
            match aws.put_object(&self.bucket, &self.key, bytes.clone(), PutCondition::Matches(etag.clone())).await {
                Ok(new) => {
                    *self.etag.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = new;
                    return Ok(());
                }
                Err(AwsError::PreconditionFailed) => {
                    // Ours if the stored lock is what we just wrote (an answer lost), else lost.
                    return match retry("read the deploy lock", || aws.get_object(&self.bucket, &self.key)).await? {
                        Some(o) if o.body == bytes => {
                            *self.etag.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = o.etag;
                            Ok(())
                        }
                        Some(o) => {
                            let who = serde_json::from_slice::<LockRecord>(&o.body).map(|r| r.describe()).unwrap_or_else(|_| "something else".into());
                            Err(Error::LockLost(format!("the deploy lock was taken by {who}")))
                        }
                        None => Err(Error::LockLost("the deploy lock was removed".into())),
                    };
                }
                Err(e) if e.retryable() => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(err) => return Err(Error::Aws { what: "renew the deploy lock".into(), err }),
            }
        }
        Err(Error::LockLost("the deploy lock could not be renewed".into()))
    }

    /// Extends the lease; an error when the lock is no longer ours.
    pub async fn renew<A: Aws>(&self, aws: &A) -> Result<(), Error> {
        let rec = LockRecord { expires_unix: unix_now() + self.lease.as_secs().max(1), ..self.record.clone() };
        self.write(aws, &rec).await
    }

    pub async fn release<A: Aws>(&self, aws: &A) -> Result<(), Error> {
        let rec = LockRecord { released: true, expires_unix: 0, ..self.record.clone() };
        self.write(aws, &rec).await
    }
}

/// Runs `work` holding the formation's lock: taken first, renewed every third of the lease
/// while the work runs, released after. If the lock is lost (broken by an operator), the work
/// is abandoned at once, which is safe: a converge resumes from any point.
pub async fn with_lock<A: Aws, T>(
    aws: &A,
    f: &Formation,
    operation: &str,
    opts: LockOptions,
    say: &(dyn Fn(&str) + Sync),
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let held = acquire(aws, f, operation, opts, say).await?;
    let renew = async {
        loop {
            tokio::time::sleep(opts.lease / 3).await;
            if let Err(e) = held.renew(aws).await {
                return e;
            }
        }
    };
    let out = tokio::select! {
        r = work => r,
        e = renew => Err(e),
    };
    if !matches!(out, Err(Error::LockLost(_))) {
        if let Err(e) = held.release(aws).await {
            say(&format!("could not release the deploy lock ({e}); it expires in {:?}", opts.lease));
        }
    }
    out
}

/// Breaks the lock, whoever holds it (`gilliam unlock`). Returns the record it replaced.
pub async fn break_lock<A: Aws>(aws: &A, f: &Formation) -> Result<Option<LockRecord>, Error> {
    let k = key(&f.prefix);
    let Some(o) = retry("read the deploy lock", || aws.get_object(&f.bucket, &k)).await? else { return Ok(None) };
    let rec = serde_json::from_slice::<LockRecord>(&o.body).ok();
    let released = LockRecord {
        format_version: LOCK_VERSION,
        formation: f.name.clone(),
        owner: crate::clock::actor(),
        host: hostname(),
        pid: std::process::id(),
        operation: format!("unlock (broke {})", rec.as_ref().map_or("an unreadable lock".into(), LockRecord::describe)),
        token: crate::clock::nonce(),
        acquired: crate::clock::now(),
        expires_unix: 0,
        released: true,
    };
    match aws.put_object(&f.bucket, &k, body(&released), PutCondition::Matches(o.etag)).await {
        Ok(_) => Ok(rec),
        Err(AwsError::PreconditionFailed) => {
            Err(Error::Aws { what: "break the deploy lock".into(), err: AwsError::Other("the lock changed hands meanwhile; look again".into()) })
        }
        Err(err) => Err(Error::Aws { what: "break the deploy lock".into(), err }),
    }
}
