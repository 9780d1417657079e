//! Converge: make AWS hold the compiled formation. Bootstrap the bucket, verify the artifact,
//! upload what differs, converge the formation stack, create the release's stacks (at once,
//! they are independent), then render the routing stacks with the traffic weights observed in
//! ELBv2, so that a converge never undoes a traffic change; with automatic traffic, shift to
//! the new release once its target groups are healthy.
//!
//! `converger` holds the `Converger` and what planning and applying share; `plan` observes and
//! decides, step by step (reads only); `apply` performs a plan's actions in order.

mod apply;
mod converger;
mod plan;

pub use self::converger::{Converger, Options, Report};
