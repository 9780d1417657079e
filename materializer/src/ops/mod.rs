//! Operator commands on a live formation, one module per command: traffic and shift (in
//! `base`, over the `traffic` and `shift` layers), rollback, warm, scale, retire, bake and
//! watch, and the read commands (releases, status, history, outputs, logs, ps), and one-off processes (run). Everything is read from
//! AWS and the published state on each call; traffic changes are ELBv2 writes only.

mod bake;
mod base;
mod logs;
mod ps;
mod retire;
mod rollback;
mod run;
mod scale;
mod status;
mod warm;

pub use self::bake::WatchOutcome;
pub use self::base::Ops;
pub use self::logs::{LogFilter, LogLine};
pub use self::ps::InstanceRow;
pub use self::rollback::Rollback;
pub use self::status::{ReleaseRow, RouteRow, ServiceHealth, Status, METRICS_WINDOW};
pub use self::warm::{WarmOptions, Warmed};
pub use crate::shift::ShiftOptions;
pub use crate::traffic::TrafficChange;
