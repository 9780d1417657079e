//! gilliam-agent: what runs on every instance of a release. It reads the runtime config that
//! userdata wrote, fetches and verifies the artifact, unpacks it safely, runs the service as
//! an unprivileged user under supervision, proves it healthy, signals CloudFormation, and
//! drains it on shutdown; an image release runs as a container (`container`); every line is
//! shipped to CloudWatch Logs (`ship`). etcd members run the same way.

pub mod agent;
pub mod boot;
pub mod cgroup;
pub mod cloud;
pub mod container;
pub mod drain;
pub mod health;
pub mod host;
pub mod identity;
pub mod logs;
pub mod patience;
pub mod sdk;
pub mod ship;
pub mod supervise;
pub mod task;
pub mod unpack;
