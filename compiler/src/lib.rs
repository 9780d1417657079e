//! gilliam-compiler: turns `gilliam.yml`, release metadata and a stage file into CloudFormation
//! templates, userdata and the published manifest.
//!
//! Pure: no I/O, no clock, no randomness, no AWS SDK. The same inputs give byte-identical
//! outputs. Callers hand in file contents and get back files by relative path.

pub mod app;
/// The manifest and runtime config types live in the contract crate, which the materializer
/// and the agent read without the compiler.
pub use gilliam_contract::{manifest, runtime};
pub mod cfn;
mod check;
mod compile;
mod decode;
pub mod delivery;
pub mod diag;
mod emit;
mod layout;
mod model;
pub mod names;
pub mod node;
mod par;
mod plain_yaml;
pub mod priority;
pub mod release;
pub mod repository;
mod sizes;
pub mod stage;
pub mod task;
mod tree;

pub use compile::{compile, compile_with, compile_with_traffic};
pub use emit::userdata::{INLINE_USERDATA_BUDGET, RUNTIME_CONFIG_VERSION};
pub use model::{rule_weights, Compiled, Error, FileSink, Inputs, Options, Source, TrafficShare, MAX_WEIGHT, TARGET_GROUPS_PER_FORWARD, TARGET_GROUPS_PER_LB};

/// Reads a stage file on its own (the operator CLI needs only where the formation lives).
pub fn parse_stage(source: Source<'_>) -> Result<stage::Stage, diag::Diagnostics> {
    decode_yaml(source, stage::decode)
}

/// Reads `gilliam.yml` on its own (`gilliam build` needs its build command).
pub fn parse_app(source: Source<'_>) -> Result<app::App, diag::Diagnostics> {
    decode_yaml(source, app::decode)
}

/// One YAML input decoded alone, every problem collected.
fn decode_yaml<T>(source: Source<'_>, decode: fn(&node::Node, &mut diag::Sink<'_>) -> Option<T>) -> Result<T, diag::Diagnostics> {
    let mut out = Vec::new();
    let parsed = {
        let mut sink = diag::Sink { file: source.name, out: &mut out };
        node::parse_yaml(source.text, &mut sink).and_then(|n| decode(&n, &mut sink))
    };
    match parsed {
        Some(v) if out.is_empty() => Ok(v),
        _ => Err(diag::Diagnostics(out)),
    }
}
