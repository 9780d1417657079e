//! A tarball release's process within its memory and CPU limits: a cgroup of its own, a child
//! of the agent's (cgroup v2, the unified hierarchy of Debian 12 and Amazon Linux 2023, where
//! the unit delegates its subtree to the agent; or the memory and cpu hierarchies of cgroup
//! v1), with `memory.max` / `cpu.max` (v2) or `memory.limit_in_bytes` / `cpu.cfs_quota_us`
//! (v1) written, and the process moved into it as soon as it is started.

use gilliam_contract::runtime::Limits;
use std::path::{Path, PathBuf};

/// The CPU period quotas are counted in (the kernel's default).
const PERIOD_US: u64 = 100_000;

/// A service's cgroup: the `cgroup.procs` files a process joins it through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    pub procs: Vec<PathBuf>,
    /// Where the memory limit was written (for the log and tests).
    pub memory_file: PathBuf,
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("{}: {e}", path.display()))
}

/// The agent's own cgroup in each hierarchy: controller list ("" for v2) to its path.
fn own(proc_self_cgroup: &str) -> Vec<(String, String)> {
    proc_self_cgroup
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some((controllers.to_string(), path.trim_end_matches('/').to_string()))
        })
        .collect()
}

/// Makes (or reuses) the cgroup `name` beside the agent's, with `limits`, under the cgroup
/// filesystem at `root` (`/sys/fs/cgroup`).
pub fn create(root: &Path, name: &str, limits: Limits) -> Result<Cgroup, String> {
    create_from(root, &std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?, name, limits)
}

/// `create`, with the agent's own cgroups as `/proc/self/cgroup` lists them.
fn create_from(root: &Path, proc_self_cgroup: &str, name: &str, limits: Limits) -> Result<Cgroup, String> {
    let mine = own(proc_self_cgroup);
    let memory = u64::from(limits.memory_mib) * 1024 * 1024;
    let quota = u64::from(limits.cpu_millis) * PERIOD_US / 1000;
    if root.join("cgroup.controllers").is_file() {
        // v2: one tree. A cgroup with processes cannot hand controllers to its children, so the
        // agent first moves itself into a leaf of its own.
        let path = mine.iter().find(|(c, _)| c.is_empty()).map(|(_, p)| p.clone()).unwrap_or_default();
        let base = root.join(path.trim_start_matches('/'));
        let agent = base.join("gilliam-agent");
        if !agent.is_dir() {
            std::fs::create_dir_all(&agent).map_err(|e| format!("{}: {e}", agent.display()))?;
        }
        write(&agent.join("cgroup.procs"), &std::process::id().to_string())?;
        write(&base.join("cgroup.subtree_control"), "+memory +cpu")?;
        let dir = base.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        write(&dir.join("memory.max"), &memory.to_string())?;
        write(&dir.join("memory.swap.max"), "0").ok();
        write(&dir.join("cpu.max"), &format!("{quota} {PERIOD_US}"))?;
        return Ok(Cgroup { procs: vec![dir.join("cgroup.procs")], memory_file: dir.join("memory.max") });
    }
    // v1: the memory and the cpu hierarchies, each beside the agent's place in it.
    let place = |controller: &str| -> Result<PathBuf, String> {
        let (list, path) = mine.iter().find(|(c, _)| c.split(',').any(|x| x == controller)).ok_or_else(|| format!("no {controller} cgroup hierarchy"))?;
        let mount = root.join(list.as_str());
        let mount = if mount.is_dir() { mount } else { root.join(controller) };
        let dir = mount.join(path.trim_start_matches('/')).join(name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(dir)
    };
    let mem = place("memory")?;
    write(&mem.join("memory.limit_in_bytes"), &memory.to_string())?;
    let cpu = place("cpu")?;
    write(&cpu.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
    write(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
    Ok(Cgroup { procs: vec![mem.join("cgroup.procs"), cpu.join("cgroup.procs")], memory_file: mem.join("memory.limit_in_bytes") })
}

impl Cgroup {
    /// Moves process `pid` (and the threads and children it starts from now on) into it.
    pub fn join(&self, pid: u32) -> Result<(), String> {
        for p in &self.procs {
            write(p, &pid.to_string())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// The v2 protocol, on a directory standing in for the unified hierarchy (this machine's
    /// kernel mounts cgroup v1, and a cgroup2 mount beside it gets no memory or cpu
    /// controller: the end-to-end check in `tests/boot.rs` covers v1): the agent moves into a
    /// leaf of its own, hands the controllers to its children, and writes the limits.
    #[test]
    fn on_cgroup_v2_the_agent_leaves_its_cgroup_for_a_leaf_and_writes_the_limits() {
        let root = std::env::temp_dir().join(format!("gilliam-cg2-{}", std::process::id()));
        let base = root.join("system.slice/gilliam-agent.service");
        std::fs::create_dir_all(&base).expect("tree");
        std::fs::write(root.join("cgroup.controllers"), "cpuset cpu io memory pids").expect("controllers");
        let limits = gilliam_contract::runtime::Limits { memory_mib: 256, cpu_millis: 500 };
        let cg = super::create_from(&root, "0::/system.slice/gilliam-agent.service\n", "gilliam-r3-web", limits).expect("v2");
        let read = |p: &str| std::fs::read_to_string(base.join(p)).expect(p);
        assert_eq!(read("gilliam-agent/cgroup.procs"), std::process::id().to_string(), "the agent in a leaf of its own");
        assert_eq!(read("cgroup.subtree_control"), "+memory +cpu");
        assert_eq!(read("gilliam-r3-web/memory.max"), (256u64 << 20).to_string());
        assert_eq!(read("gilliam-r3-web/memory.swap.max"), "0");
        assert_eq!(read("gilliam-r3-web/cpu.max"), "50000 100000");
        assert_eq!(cg.procs, vec![base.join("gilliam-r3-web/cgroup.procs")]);
        cg.join(4242).expect("join");
        assert_eq!(read("gilliam-r3-web/cgroup.procs"), "4242");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn the_agents_own_cgroups_are_read_per_hierarchy() {
        let mine = super::own("12:memory:/process_api/abc\n3:cpu,cpuacct:/\n0::/system.slice/gilliam-agent.service\n");
        assert_eq!(
            mine,
            vec![
                ("memory".to_string(), "/process_api/abc".to_string()),
                ("cpu,cpuacct".to_string(), String::new()),
                (String::new(), "/system.slice/gilliam-agent.service".to_string())
            ]
        );
    }
}
