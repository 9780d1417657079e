//! gilliam-doubles: what tests and benchmarks put at the AWS seam, kept out of the library the
//! binaries ship: `strict` (the rules real CloudFormation and ELBv2 enforce and the emulator
//! does not), `counting` (calls by operation, through the seam's one forwarding wrapper) and
//! `fake` (an in-memory CloudFormation whose asynchronous states a test scripts), and
//! `lifecycle` (what an ECR lifecycle policy expires: the emulator never runs one).

pub mod counting;
pub mod fake;
pub mod lifecycle;
pub mod strict;
pub mod throttle;
