//! A moto_server on a free loopback port, started by the test and stopped when dropped. Tests
//! talk only to it: static dummy credentials, the instance metadata service disabled.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Moto {
    child: Child,
    pub url: String,
}

/// `moto_server` from `$MOTO_SERVER`, the project's virtual environment, or `PATH`.
fn moto_server() -> PathBuf {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server");
    if venv.is_file() {
        return venv;
    }
    PathBuf::from("moto_server")
}

impl Moto {
    pub fn start() -> Moto {
        // The SDK must never look for real credentials or the instance metadata address.
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::remove_var("AWS_PROFILE");
        let mut child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start moto_server: run scripts/setup.sh (it installs moto in .venv) or set MOTO_SERVER");
        let stderr = child.stderr.take().expect("stderr");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut lines = BufReader::new(stderr).lines();
        let url = loop {
            assert!(Instant::now() < deadline, "moto_server did not report its port");
            let line = lines.next().expect("moto_server exited").expect("read moto_server output");
            if let Some(i) = line.find("http://127.0.0.1:") {
                break line[i..].split_whitespace().next().expect("url").trim_end_matches('/').to_string();
            }
        };
        // Keep draining its output so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Moto { child, url }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
