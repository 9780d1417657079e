//! Who the agent is: the instance id (it identifies the signal), from the flag, else from the
//! instance metadata service (IMDSv2, a short timeout; never tried when
//! `AWS_EC2_METADATA_DISABLED=true`), else the host name; and the unprivileged user that
//! runs services, from the system's user database.

use crate::supervise::Ids;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `(instance id, where it came from)`.
pub fn instance_id(given: Option<&str>) -> (String, &'static str) {
    if let Some(id) = given.filter(|s| !s.is_empty()) {
        return (id.to_string(), "given");
    }
    let disabled = std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    if !disabled {
        if let Some(id) = imds_instance_id() {
            return (id, "instance metadata");
        }
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default();
    (if host.is_empty() { "unknown-host".into() } else { host }, "host name")
}

fn http(addr: SocketAddr, request: &str) -> Option<String> {
    let t = Duration::from_secs(2);
    let mut s = TcpStream::connect_timeout(&addr, t).ok()?;
    s.set_read_timeout(Some(t)).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut body = String::new();
    s.take(64 * 1024).read_to_string(&mut body).ok()?;
    let (head, rest) = body.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| rest.trim().to_string())
}

fn imds_instance_id() -> Option<String> {
    let addr = SocketAddr::from(([169, 254, 169, 254], 80));
    let token = http(
        addr,
        "PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    )?;
    let id = http(
        addr,
        &format!("GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\nX-aws-ec2-metadata-token: {token}\r\nConnection: close\r\n\r\n"),
    )?;
    (id.starts_with("i-") && id.len() < 40).then_some(id)
}

/// A user from `/etc/passwd`: ids and home directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub ids: Ids,
    pub home: String,
}

pub fn lookup_user(passwd: &str, name: &str) -> Option<User> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 7 && f[0] == name {
            Some(User { name: name.into(), ids: Ids { uid: f[2].parse().ok()?, gid: f[3].parse().ok()? }, home: f[5].into() })
        } else {
            None
        }
    })
}

/// The identity services run as. As root: the named user, which must exist and not be root.
/// Otherwise the agent cannot change identity, and services run as the agent's own user.
pub fn service_user(name: &str) -> Result<Option<User>, String> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("cannot read /etc/passwd: {e}"))?;
    let user = lookup_user(&passwd, name)
        .ok_or_else(|| format!("user {name:?} does not exist: the runtime image creates `gilliam` (runtime-image/provision.sh); or pass --user"))?;
    if user.ids.uid == 0 {
        return Err(format!("user {name:?} is root: services never run as root; pass an unprivileged --user"));
    }
    Ok(Some(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_come_from_passwd_lines() {
        let p = "root:x:0:0:root:/root:/bin/bash\ngilliam:x:990:985:gilliam services:/var/lib/gilliam/home:/usr/sbin/nologin\nbad:line\n";
        assert_eq!(lookup_user(p, "gilliam"), Some(User { name: "gilliam".into(), ids: Ids { uid: 990, gid: 985 }, home: "/var/lib/gilliam/home".into() }));
        assert_eq!(lookup_user(p, "nobody"), None);
        assert_eq!(lookup_user(p, "bad"), None);
    }
}
