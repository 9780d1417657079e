//! The files a compile writes as they are emitted: templates (checked against
//! CloudFormation's limits and hashed), userdata, uploads, warnings.

use crate::cfn::{self, Template};
use crate::manifest::{self as mf, StackRole};
use crate::model::{Ctx, FileSink};
use crate::names::sha256_hex;
use std::collections::BTreeMap;

/// Every file emitted so far, and what the manifest says of them.
#[derive(Debug, Default)]
pub(crate) struct Out {
    pub(crate) files: BTreeMap<String, Vec<u8>>,
    pub(crate) stacks: Vec<mf::StackEntry>,
    pub(crate) warnings: Vec<String>,
    pub(crate) uploads: Vec<mf::UploadEntry>,
    /// Where each file also goes as soon as it is complete (`Options::sink`).
    pub(crate) sink: Option<std::sync::Arc<dyn FileSink>>,
}

impl Out {
    pub(crate) fn file(&mut self, path: String, bytes: Vec<u8>) -> mf::FileEntry {
        let e = mf::FileEntry { path: path.clone(), sha256: sha256_hex(&bytes), bytes: bytes.len() };
        self.keep(path, bytes);
        e
    }

    /// A file the materializer uploads next to the templates before creating the release.
    pub(crate) fn upload(&mut self, ctx: &Ctx<'_>, path: &str, bytes: Vec<u8>) -> mf::UploadEntry {
        let sha = sha256_hex(&bytes);
        self.upload_hashed(ctx, path, bytes, sha)
    }

    pub(crate) fn upload_hashed(&mut self, ctx: &Ctx<'_>, path: &str, bytes: Vec<u8>, sha256: String) -> mf::UploadEntry {
        let u = mf::UploadEntry { s3_key: upload_key(ctx, path), path: path.to_string(), sha256, bytes: bytes.len() };
        self.keep(path.to_string(), bytes);
        self.uploads.push(u.clone());
        u
    }

    /// A finished file: to the sink when there is one (and then not held), else into `files`.
    fn keep(&mut self, path: String, bytes: Vec<u8>) {
        match &self.sink {
            Some(s) => s.file(&path, &bytes),
            None => {
                self.files.insert(path, bytes);
            }
        }
    }

    pub(crate) fn push_stack(&mut self, ctx: &Ctx<'_>, r: RenderedStack) {
        let path = template_path(&r.name);
        self.stacks.push(mf::StackEntry {
            s3_key: gilliam_contract::keys::release_file(&ctx.prefix(), ctx.release.number, &path),
            name: r.name,
            role: r.role,
            template: path.clone(),
            sha256: r.sha256,
            bytes: r.len,
            resources: r.resources,
            upload_required: r.len > cfn::MAX_INLINE_BYTES,
            depends_on: r.depends_on,
            capabilities: if r.iam { vec!["CAPABILITY_IAM".into()] } else { Vec::new() },
            routing_group: r.group,
        });
        if let Some(bytes) = r.bytes {
            self.files.insert(path, bytes);
        }
    }
}

/// A stack's template, rendered, checked against CloudFormation's limits and hashed.
pub(crate) struct RenderedStack {
    name: String,
    role: StackRole,
    /// `None` once handed to the sink.
    bytes: Option<Vec<u8>>,
    len: usize,
    sha256: String,
    resources: usize,
    iam: bool,
    depends_on: Vec<String>,
    group: Option<u32>,
}

/// Where a stack's template is written, in the output directory.
fn template_path(stack: &str) -> String {
    format!("templates/{stack}.json")
}

/// Renders, checks and hashes a template, and hands it to the sink at once, if there is one
/// (on the worker that rendered it, so that writing overlaps the other workers' rendering, and
/// its memory is free for the next template).
pub(crate) fn render_stack(
    name: String,
    role: StackRole,
    t: &Template,
    depends_on: Vec<String>,
    group: Option<u32>,
    sink: Option<&dyn FileSink>,
) -> Result<RenderedStack, String> {
    let mut bytes = t.render();
    cfn::template_limits(t, &name, bytes.len())?;
    let iam = t.resource_types().any(|(_, ty)| ty.starts_with("AWS::IAM::"));
    let (sha256, len) = (sha256_hex(&bytes), bytes.len());
    let bytes = match sink {
        Some(s) => {
            s.file(&template_path(&name), &bytes);
            None
        }
        None => {
            // Rendering grows the buffer by doubling: give back what it did not use, since
            // every template is held until the compile ends.
            bytes.shrink_to_fit();
            Some(bytes)
        }
    };
    Ok(RenderedStack { sha256, name, role, bytes, len, resources: t.resource_count(), iam, depends_on, group })
}

pub(crate) fn upload_key(ctx: &Ctx<'_>, path: &str) -> String {
    gilliam_contract::keys::release_file(&ctx.prefix(), ctx.release.number, path)
}
