//! gilliam-agent: what runs on every instance. This part verifies a release's artifact and
//! unpacks it safely; fetching, running and supervising come with it in `runtime-image/`.

pub mod unpack;
