//! gilliam-contract: what the compiler writes and the materializer, the operator CLI and the
//! on-instance agent read, in one small crate they all depend on (no YAML parser, no AWS):
//! the manifest (`manifest`), the runtime config userdata hands the agent (`runtime`), the
//! rule every weighted listener rule follows (`weights`), the S3 keys and secret names of the
//! published documents (`keys`), and the digest every file is checked by (`digest`).

pub mod digest;
pub mod image;
pub mod keys;
pub mod manifest;
pub mod runtime;
pub mod weights;
