//! Where a formation lives (name, region, outputs bucket and prefix), from a manifest or a
//! stage file: what the lock, the state and every operator command address.

use gilliam_compiler::manifest::Manifest;

/// Where a formation lives, from its stage file.
#[derive(Debug, Clone)]
pub struct Formation {
    pub name: String,
    pub region: String,
    pub bucket: String,
    pub prefix: String,
}

impl Formation {
    pub fn from_manifest(m: &Manifest) -> Self {
        Formation {
            name: m.formation.name.clone(),
            region: m.formation.region.clone(),
            bucket: m.formation.outputs_bucket.clone(),
            prefix: m.formation.s3_prefix.clone(),
        }
    }

    pub fn from_stage(stage: &gilliam_compiler::stage::Stage) -> Self {
        Formation {
            name: stage.formation.clone(),
            region: stage.region.clone(),
            bucket: stage.outputs_bucket.clone(),
            prefix: gilliam_contract::keys::prefix(&stage.formation),
        }
    }
}
