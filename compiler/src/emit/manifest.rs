//! The manifest: what every emitted file is, what the materializer must do with it, and the
//! formation's published outputs.

use super::common::*;
use super::out::Out;
use super::routing::public_routes;
use super::userdata::Discovery;
use crate::app::AuxType;
use crate::manifest::{self as mf, Manifest};
use crate::model::{Compiled, Ctx, Inputs};
use crate::names::{self};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) fn manifest(
    ctx: &Ctx<'_>,
    inputs: &Inputs<'_>,
    out: &mut Out,
    d: &Discovery,
    mut userdata: BTreeMap<String, Vec<mf::FileEntry>>,
) -> Result<Manifest, String> {
    let f = ctx.f();
    let n = ctx.release.number;
    let app = out.file("inputs/gilliam.yml".into(), inputs.app.text.as_bytes().to_vec());
    let release = out.file("inputs/release.json".into(), inputs.release.text.as_bytes().to_vec());
    let stage = out.file("inputs/stage.yml".into(), inputs.stage.text.as_bytes().to_vec());
    let mut tg_names = BTreeSet::new();
    let mut services = Vec::new();
    for s in ctx.svcs.iter().filter(|s| !s.carried) {
        let p = s.s.process();
        let aux = s.s.auxiliary();
        let http = s.s.is_http();
        for public in [false, true] {
            if http && (!public || s.routed()) && !tg_names.insert(target_group_name(ctx, &s.s.name, public)) {
                return Err(format!("internal error: target group name for {} used twice", s.s.name));
            }
        }
        services.push(mf::ServiceEntry {
            name: s.s.name.clone(),
            kind: match (p, http) {
                (Some(_), true) => mf::ServiceKind::Web,
                (Some(_), false) => mf::ServiceKind::Worker,
                (None, _) => mf::ServiceKind::Auxiliary,
            },
            auxiliary_type: aux.map(|a| a.kind.name().to_string()),
            script: p.and_then(|p| p.script.clone()),
            port: p.and_then(|p| p.port).or(aux.map(|a| a.kind.port())),
            health_path: p.filter(|p| p.port.is_some()).map(|p| p.health.clone()),
            scale: p.map(|_| s.scale.clone()),
            instance_type: s.instance_type.clone(),
            internal: p.is_some_and(|p| p.internal || p.routes.is_empty()) || aux.is_some(),
            stack: if p.is_some() { ctx.release_stack(s.part) } else { names::formation_stack(f) },
            auto_scaling_group: p.map(|_| format!("{}AutoScalingGroup", s.id)),
            routing_group: s.group,
            internal_target_group_export: http.then(|| names::target_group_export(f, n, &s.s.name, false)),
            public_target_group_export: s.routed().then(|| names::target_group_export(f, n, &s.s.name, true)),
            url_variable: if http {
                Some(format!("{}_URL", s.env))
            } else {
                aux.map(|a| format!("{}_{}", s.env, if a.kind == AuxType::Etcd { "ENDPOINTS" } else { "URL" }))
            },
            internal_url: http.then(|| format!("http://{}", host(ctx, &s.s.name))),
            userdata: userdata.remove(&s.s.name).unwrap_or_default(),
        });
    }
    let mut routes = Vec::new();
    for g in 1..=ctx.groups {
        for (prio, (s, r)) in public_routes(ctx, g).into_iter().enumerate() {
            routes.push(mf::RouteEntry {
                service: s.s.name.clone(),
                route: r.raw.clone(),
                host: r.host.clone(),
                path: r.path.clone(),
                rewrite: r.rewrite.as_ref().map(|rw| rw.to.clone()),
                routing_group: g,
                priority: prio as u32 + 1,
            });
        }
    }
    let mut traffic: Vec<mf::TrafficEntry> = ctx.traffic.iter().map(|t| mf::TrafficEntry { release: t.release, weight: t.weight }).collect();
    traffic.sort_by_key(|t| t.release);
    Ok(Manifest {
        format_version: mf::FORMAT_VERSION,
        formation: mf::FormationInfo {
            name: f.to_string(),
            region: ctx.stage.region.clone(),
            vpc: ctx.stage.vpc.clone(),
            outputs_bucket: ctx.stage.outputs_bucket.clone(),
            s3_prefix: ctx.prefix(),
            internal_domain: ctx.domain(),
            keep_releases: ctx.stage.keep_releases,
            cold_releases: ctx.stage.cold_releases,
            max_live_releases: ctx.live,
            routing_groups: ctx.groups,
            https: ctx.https(),
            public_url: ctx.stage.domain.as_ref().map(|d| format!("{}://{d}", if ctx.https() { "https" } else { "http" })),
            footprint: Some(crate::layout::footprint(&ctx.svcs, ctx.stage, ctx.groups, ctx.parts, ctx.live)),
        },
        release: mf::ReleaseInfo {
            number: n,
            revision: ctx.release.revision.clone(),
            created: ctx.release.created.clone(),
            artifact_url: ctx.release.artifact.location(),
            artifact_sha256: ctx.release.artifact.sha256().to_string(),
            runtime_image: ctx.release.runtime_image.clone(),
            config: ctx.release.config.clone(),
            secret_config: ctx.release.secrets.iter().map(|(k, (name, _))| (k.clone(), name.clone())).collect(),
        },
        stacks: std::mem::take(&mut out.stacks),
        services,
        routes,
        internal_urls: d.urls.clone(),
        traffic,
        uploads: std::mem::take(&mut out.uploads),
        inputs: mf::InputFiles { app, release, stage },
        warnings: std::mem::take(&mut out.warnings),
        secrets: ctx
            .auxiliaries()
            .filter_map(|a| {
                let aux = a.s.auxiliary()?;
                let (username, endpoint) = match aux.kind {
                    AuxType::Postgres => ("gilliam", None),
                    AuxType::Redis => ("default", Some((format!("Aux{}Address", a.id), format!("Aux{}Port", a.id)))),
                    AuxType::Etcd => return None,
                };
                Some(mf::SecretEntry {
                    name: names::secret_name(f, &a.s.name),
                    auxiliary: a.s.name.clone(),
                    username: username.into(),
                    endpoint_outputs: endpoint,
                })
            })
            .collect(),
        test_route: ctx.own_http().next().is_some().then(|| mf::TestRoute { header: crate::delivery::TEST_HEADER.into(), value: n.to_string() }),
        delivery: ctx.delivery.clone(),
    })
}

/// The manifest of everything emitted, written last as `manifest.json`: the compile's result.
pub(crate) fn finish(
    ctx: &Ctx<'_>,
    inputs: &Inputs<'_>,
    mut out: Out,
    disc: &Discovery,
    userdata: BTreeMap<String, Vec<mf::FileEntry>>,
) -> Result<Compiled, String> {
    let manifest = manifest(ctx, inputs, &mut out, disc, userdata)?;
    let mut m = serde_json::to_vec_pretty(&manifest).map_err(|e| format!("internal error: {e}"))?;
    m.push(b'\n');
    out.files.insert("manifest.json".into(), m);
    Ok(Compiled { files: out.files, manifest })
}
