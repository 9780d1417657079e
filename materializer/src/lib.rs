//! gilliam-materializer: converges AWS to a compiled formation (the output directory of
//! gilliam-compile) through CloudFormation, ELBv2 and S3, behind a narrow AWS seam.
//!
//! Layers, each using only those below it (no circle of modules; `tests/layers.rs` checks):
//! the seam (`aws`) and its implementations (`sdk`, `faults`; the test doubles are in
//! `gilliam-doubles`); values
//! (`error`, `retry`, `clock`, `formation`, `strategy`, `plan`, `bundle`); a registry's HTTP API
//! (`registry`); the published
//! documents (`state`, `lock`, `published`, `observe`); AWS operations (`stacks`,
//! `traffic`, `delivery`, `preflight`); `shift` and `routing`; `retention`; and on top the
//! two callers, `converge` (plan and apply) and `ops` (one module per operator command).

pub mod aws;
pub mod bundle;
pub mod clock;
pub mod converge;
pub mod delivery;
pub mod drain;
pub mod error;
pub mod faults;
pub mod formation;
pub mod images;
pub mod lock;
pub mod logs;
pub mod observe;
pub mod ops;
pub mod pacing;
pub mod plan;
pub mod preflight;
pub mod published;
pub mod quotas;
pub mod registry;
pub mod retention;
pub mod retry;
pub mod routing;
pub mod sdk;
pub mod shift;
pub mod stacks;
pub mod state;
pub mod strategy;
pub mod task;
pub mod traffic;

pub use converge::{Converger, Options, Report};
pub use error::Error;
pub use formation::Formation;
pub use ops::{Ops, ShiftOptions};

/// Lowercase hex sha256 of `bytes`, as the manifest records them.
pub use gilliam_contract::digest::sha256_hex;
