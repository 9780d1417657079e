//! The clock and who acts: the time as the history records it (RFC 3339) and as windows count
//! it (seconds since the epoch), the actor's name, this host's name, and nonces unique across
//! processes and hosts. The one place that reads the system clock and the environment for them.

/// Seconds since the epoch, from the system clock.
pub fn epoch() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The current UTC time as RFC 3339, from the system clock.
pub fn now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    rfc3339(secs as i64)
}

/// `secs` since the epoch as RFC 3339 UTC (`2026-12-04T19:20:01Z`).
pub fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Seconds since the epoch of an RFC 3339 UTC time (`2026-12-04T19:20:01.000Z`).
pub fn epoch_of(t: &str) -> Option<i64> {
    let (date, time) = t.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, dd) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut h = time.split(':');
    let (hh, mm) = (h.next()?.parse::<i64>().ok()?, h.next()?.parse::<i64>().ok()?);
    let ss = h.next()?.split('.').next()?.split('+').next()?.parse::<i64>().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + dd - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds (`...T19:20:01.123Z`).
pub fn rfc3339_ms(ms: i64) -> String {
    let s = rfc3339(ms.div_euclid(1000));
    format!("{}.{:03}Z", s.trim_end_matches('Z'), ms.rem_euclid(1000))
}

/// Milliseconds since the epoch, from the system clock.
pub fn epoch_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Who is acting: `GILLIAM_ACTOR`, else the user name (`USER`, `LOGNAME`), else "unknown".
pub fn actor() -> String {
    std::env::var("GILLIAM_ACTOR").or_else(|_| std::env::var("USER")).or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into())
}

/// This host's name, for lock holders and nonces.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Unique per call in this process, and across processes and hosts.
pub fn nonce() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let c = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    crate::sha256_hex(format!("{nanos}/{c}/{}/{}", std::process::id(), hostname()).as_bytes())[..16].to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn clock_formats_rfc3339() {
        let t = super::now();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T", "{t}");
    }

    #[test]
    fn rfc3339_reads_back_to_the_epoch() {
        for t in [0i64, 951_782_400, 1_796_000_000, 4_102_444_800] {
            assert_eq!(super::epoch_of(&super::rfc3339(t)), Some(t));
        }
        assert_eq!(super::epoch_of("2026-12-04T19:20:01.123Z"), Some(1_796_412_001));
    }
}
