//! The service's health, checked locally the way its target group checks it: an HTTP GET of the
//! health path on the service's port, healthy on 200-399.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One probe: the status code, or why there is none.
pub fn probe(port: u16, path: &str, timeout: Duration) -> Result<u16, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect to port {port}: {e}"))?;
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    // The whole request in one write: one segment on the wire.
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: gilliam-agent\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).map_err(|e| format!("send: {e}"))?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&head[..n]);
    let code = line.strip_prefix("HTTP/1.").and_then(|r| r.get(2..5)).and_then(|c| c.parse::<u16>().ok());
    code.ok_or_else(|| format!("not an HTTP answer: {:?}", line.lines().next().unwrap_or("")))
}

pub fn healthy(code: u16) -> bool {
    (200..400).contains(&code)
}

/// Probes every `interval` until healthy (returns how long it took) or `deadline` passes
/// (returns the last reason).
pub fn wait_healthy(port: u16, path: &str, deadline: Duration, interval: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let mut last = String::from("never probed");
    while start.elapsed() < deadline {
        match probe(port, path, interval.max(Duration::from_millis(200))) {
            Ok(code) if healthy(code) => return Ok(start.elapsed()),
            Ok(code) => last = format!("{path} answered {code}"),
            Err(e) => last = e,
        }
        std::thread::sleep(interval);
    }
    Err(format!("not healthy after {deadline:?}: {last}"))
}
