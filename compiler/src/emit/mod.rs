//! Emission, one module per artefact: userdata and runtime configs (`userdata`), the
//! formation, release and routing templates (`formation`, `release`, `routing`, rendered in
//! order by `stacks`), and the manifest (`manifest`); `out` collects the files, `common` holds
//! what templates share. Each reads a checked and laid-out `model::Ctx`.

pub(crate) mod common;
pub(crate) mod formation;
pub(crate) mod manifest;
pub(crate) mod out;
pub(crate) mod release;
pub(crate) mod routing;
pub(crate) mod stacks;
pub(crate) mod userdata;
