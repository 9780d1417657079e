//! Image releases on the instance, through the container engine's API (Docker Engine, with the
//! maintained `bollard` client over its unix socket; never by parsing CLI output): the release's
//! image pulled by digest (already present: not pulled again; bounded retries within a
//! deadline; progress in the log) and the digest of what was pulled checked; and a supervised
//! unit that runs it as a container: host networking on the service's port, the service's
//! environment, its memory and CPU limits, no privilege (every capability dropped, no new
//! privileges), a read-only root filesystem with a private `/tmp`.

use crate::supervise::{Output, Running, Stream, Unit};
use bollard::container::{Config, CreateContainerOptions, LogOutput, LogsOptions, RemoveContainerOptions, StopContainerOptions};
use bollard::image::CreateImageOptions;
use bollard::models::HostConfig;
use bollard::Docker;
use futures_util::StreamExt;
use gilliam_contract::runtime::{Image, Limits};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Credentials for a registry (ECR's: `AWS` and an authorization token's password).
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    pub server: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("server", &self.server).finish_non_exhaustive()
    }
}

/// The container engine, reached over its unix socket.
pub struct Engine {
    docker: Docker,
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

/// What a container runs.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// The container's name (one per service and release on an instance).
    pub name: String,
    pub image: Image,
    /// The command's words (given to the image's entrypoint); empty: the image's own command.
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub limits: Option<Limits>,
    /// `uid:gid` to run as; `None`: the image's user.
    pub user: Option<String>,
    pub output: Option<Output>,
    pub stop_grace: Duration,
}

impl Engine {
    /// Connects to the engine at `socket` and agrees on an API version.
    pub fn connect(socket: &Path) -> Result<Engine, String> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("a runtime for the container engine: {e}"))?;
        let path = socket.display().to_string();
        let docker = Docker::connect_with_unix(&path, 120, bollard::API_DEFAULT_VERSION).map_err(|e| format!("container engine at {path}: {e}"))?;
        let docker = rt.block_on(docker.negotiate_version()).map_err(|e| format!("container engine at {path} does not answer: {e}"))?;
        Ok(Engine { docker, rt })
    }

    /// Whether the image is here, by its digest.
    pub fn present(&self, image: &Image) -> bool {
        self.rt
            .block_on(self.docker.inspect_image(&image.reference))
            .is_ok_and(|i| i.repo_digests.unwrap_or_default().iter().any(|d| d.ends_with(&image.digest)))
    }

    /// Pulls the image by digest unless it is here, retrying until `deadline`; then checks that
    /// the engine holds it under that digest. `Ok(true)`: pulled; `Ok(false)`: already here.
    pub fn pull(&self, image: &Image, auth: Option<Credentials>, deadline: Duration, log: &dyn Fn(&str)) -> Result<bool, String> {
        if self.present(image) {
            log(&format!("image {} already present: not pulled again", image.reference));
            return Ok(false);
        }
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let creds = auth.as_ref().map(|c| bollard::auth::DockerCredentials {
                username: Some(c.username.clone()),
                password: Some(c.password.clone()),
                serveraddress: Some(c.server.clone()),
                ..Default::default()
            });
            let options = CreateImageOptions { from_image: image.reference.clone(), ..Default::default() };
            let left = deadline.saturating_sub(started.elapsed());
            let result: Result<(), String> = self.rt.block_on(async {
                let mut stream = self.docker.create_image(Some(options), None, creds);
                let mut last = Instant::now() - Duration::from_secs(10);
                let pulling = async {
                    while let Some(item) = stream.next().await {
                        let info = item.map_err(|e| e.to_string())?;
                        if let Some(e) = info.error {
                            return Err(e);
                        }
                        // Progress, at most every 5 s.
                        if last.elapsed() >= Duration::from_secs(5) {
                            if let Some(status) = info.status {
                                log(&format!("pulling {}: {status} {}", image.reference, info.progress.unwrap_or_default()));
                            }
                            last = Instant::now();
                        }
                    }
                    Ok(())
                };
                match tokio::time::timeout(left, pulling).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("no image after {deadline:?}")),
                }
            });
            match result {
                Ok(()) if self.present(image) => {
                    log(&format!("image {} pulled in {:.1?} (attempt {attempt})", image.reference, started.elapsed()));
                    return Ok(true);
                }
                Ok(()) => return Err(format!("the engine pulled {} but holds no image with digest {}", image.reference, image.digest)),
                Err(e) if attempt >= 3 || started.elapsed() >= deadline => {
                    return Err(format!("cannot pull {} (attempt {attempt}, {:.0?}): {e}", image.reference, started.elapsed()));
                }
                Err(e) => {
                    log(&format!("pulling {} failed (attempt {attempt}): {e}; trying again", image.reference));
                    std::thread::sleep(Duration::from_secs(u64::from(attempt)).min(deadline.saturating_sub(started.elapsed())));
                }
            }
        }
    }

    fn remove(&self, name: &str) {
        let _ = self.rt.block_on(self.docker.remove_container(name, Some(RemoveContainerOptions { force: true, ..Default::default() })));
    }
}

/// A container run under supervision: the engine and what to run.
pub struct ContainerUnit {
    pub engine: Arc<Engine>,
    pub spec: ContainerSpec,
}

impl std::fmt::Debug for ContainerUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerUnit").field("name", &self.spec.name).field("image", &self.spec.image.reference).finish()
    }
}

/// The engine's create request for `spec`: host network, limits, no privilege, read-only root.
pub fn config(spec: &ContainerSpec) -> Config<String> {
    let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let cmd = spec.command.clone();
    let host = HostConfig {
        network_mode: Some("host".into()),
        memory: spec.limits.map(|l| i64::from(l.memory_mib) * 1024 * 1024),
        // No swap beyond the memory limit.
        memory_swap: spec.limits.map(|l| i64::from(l.memory_mib) * 1024 * 1024),
        nano_cpus: spec.limits.map(|l| i64::from(l.cpu_millis) * 1_000_000),
        privileged: Some(false),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([("/tmp".to_string(), "rw,nosuid,nodev,size=64m".to_string())])),
        init: Some(true),
        ..Default::default()
    };
    Config {
        image: Some(spec.image.reference.clone()),
        cmd: (!cmd.is_empty()).then_some(cmd),
        env: Some(env),
        user: spec.user.clone(),
        host_config: Some(host),
        labels: Some(HashMap::from([("gilliam".to_string(), "service".to_string())])),
        ..Default::default()
    }
}

struct ContainerRun {
    engine: Arc<Engine>,
    name: String,
    pid: u32,
    logs: Option<std::thread::JoinHandle<()>>,
}

impl Unit for ContainerUnit {
    fn describe(&self) -> String {
        format!("container {} ({})", self.spec.name, self.spec.image.reference)
    }
    fn launch(&self) -> std::io::Result<Box<dyn Running>> {
        let e = &self.engine;
        let io = |m: String| std::io::Error::other(m);
        // A container left by an earlier run (or an earlier agent) is replaced.
        e.remove(&self.spec.name);
        let options = CreateContainerOptions { name: self.spec.name.clone(), platform: None };
        e.rt.block_on(e.docker.create_container(Some(options), config(&self.spec))).map_err(|x| io(format!("create {}: {x}", self.spec.name)))?;
        e.rt.block_on(e.docker.start_container::<String>(&self.spec.name, None)).map_err(|x| io(format!("start {}: {x}", self.spec.name)))?;
        let pid =
            e.rt.block_on(e.docker.inspect_container(&self.spec.name, None))
                .ok()
                .and_then(|i| i.state.and_then(|s| s.pid))
                .and_then(|p| u32::try_from(p).ok())
                .unwrap_or(0);
        let logs = self.spec.output.clone().map(|out| {
            let (engine, name) = (e.clone(), self.spec.name.clone());
            std::thread::spawn(move || follow_logs(&engine, &name, &out))
        });
        Ok(Box::new(ContainerRun { engine: e.clone(), name: self.spec.name.clone(), pid, logs }))
    }
    fn stop_grace(&self) -> Duration {
        self.spec.stop_grace
    }
}

/// Hands the container's output on, line by line, until it ends.
fn follow_logs(engine: &Engine, name: &str, out: &Output) {
    let options = LogsOptions::<String> { follow: true, stdout: true, stderr: true, ..Default::default() };
    engine.rt.block_on(async {
        let mut stream = engine.docker.logs(name, Some(options));
        while let Some(Ok(item)) = stream.next().await {
            let (which, bytes) = match item {
                LogOutput::StdErr { message } => (Stream::Stderr, message),
                LogOutput::StdOut { message } | LogOutput::Console { message } => (Stream::Stdout, message),
                LogOutput::StdIn { .. } => continue,
            };
            for line in String::from_utf8_lossy(&bytes).lines() {
                (out.0)(which, line);
            }
        }
    });
}

impl ContainerRun {
    fn exit(&self) -> std::io::Result<Option<ExitStatus>> {
        let state = self
            .engine
            .rt
            .block_on(self.engine.docker.inspect_container(&self.name, None))
            .map_err(|e| std::io::Error::other(format!("inspect {}: {e}", self.name)))?
            .state;
        match state {
            Some(s) if s.running == Some(true) => Ok(None),
            Some(s) => Ok(Some(ExitStatus::from_raw((s.exit_code.unwrap_or(1) as i32 & 0xff) << 8))),
            None => Ok(None),
        }
    }
}

impl Running for ContainerRun {
    fn pid(&self) -> u32 {
        self.pid
    }
    fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.exit()
    }
    fn poll_interval(&self) -> Duration {
        Duration::from_millis(200)
    }
    fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let t = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
        let _ = self.engine.rt.block_on(self.engine.docker.stop_container(&self.name, Some(StopContainerOptions { t })));
        self.exit().ok().flatten()
    }
    fn finish(&mut self) {
        if let Some(l) = self.logs.take() {
            let _ = l.join();
        }
        self.engine.remove(&self.name);
    }
}
