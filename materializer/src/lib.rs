//! gilliam-materializer: converges AWS to a compiled formation (the output directory of
//! gilliam-compile) through CloudFormation, ELBv2 and S3, behind a narrow AWS seam.

pub mod aws;
pub mod bundle;
pub mod converge;
pub mod counting;
pub mod delivery;
pub mod faults;
pub mod lock;
pub mod observe;
pub mod ops;
pub mod plan;
pub mod preflight;
pub mod sdk;
pub mod state;
pub mod strategy;
pub mod strict;

/// Lowercase hex sha256 of `bytes`, as the manifest records them.
pub fn sha256_hex(bytes: &[u8]) -> String {
    gilliam_compiler::names::sha256_hex(bytes)
}
