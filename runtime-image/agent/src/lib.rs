//! gilliam-agent: what runs on every instance. So far: a release's artifact verified and
//! unpacked safely, the service run and restarted with backoff, its health probed locally.
//! Fetching from S3, secrets, signalling and draining come with the agent binary.

pub mod health;
pub mod supervise;
pub mod unpack;
