//! Draining on shutdown: while requests are in flight on the service's port (established TCP
//! connections to it, read from /proc/net/tcp and tcp6), the process keeps running, up to the
//! drain deadline (the target group's deregistration delay).

use std::time::{Duration, Instant};

/// Established connections whose local port is `port`, in one /proc/net/tcp-format table.
pub fn established_in(table: &str, port: u16) -> usize {
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[3] == "01" && f[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok()) == Some(port)
        })
        .count()
}

/// Established connections to `port` on this host.
pub fn in_flight(port: u16) -> usize {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().filter_map(|p| std::fs::read_to_string(p).ok()).map(|t| established_in(&t, port)).sum()
}

/// Waits until nothing has been in flight on `port` for `quiet`, or `deadline` passed.
/// Returns how long it waited and whether connections were still open at the end.
pub fn drain(port: u16, deadline: Duration, quiet: Duration) -> (Duration, usize) {
    let start = Instant::now();
    let mut idle_since = Instant::now();
    loop {
        let n = in_flight(port);
        if n > 0 {
            idle_since = Instant::now();
        }
        if idle_since.elapsed() >= quiet || start.elapsed() >= deadline {
            return (start.elapsed(), n);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_established_connections_to_the_port_count() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
           1: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n\
           2: 0100007F:D2F0 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 3 1\n\
           3: 0100007F:1F90 0100007F:D2F2 06 00000000:00000000 00:00000000 00000000     0        0 4 1\n";
        assert_eq!(established_in(t, 8080), 1, "listening, client-side and TIME_WAIT sockets do not count");
        assert_eq!(established_in(t, 9999), 0);
    }

    #[test]
    fn an_open_connection_holds_the_drain_until_it_closes() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let (_s, _) = l.accept().expect("accept");
        assert!(in_flight(port) >= 1);
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(600));
            drop(c);
        });
        let (took, left) = drain(port, Duration::from_secs(20), Duration::from_millis(200));
        closer.join().expect("closer");
        // The server side lingers in CLOSE_WAIT, not ESTABLISHED, once the client is gone.
        assert!(took >= Duration::from_millis(600) && took < Duration::from_secs(20), "{took:?}");
        assert_eq!(left, 0);
        let (took, _) = drain(port, Duration::from_millis(300), Duration::from_secs(10));
        assert!(took < Duration::from_secs(2), "the deadline bounds it: {took:?}");
    }
}
