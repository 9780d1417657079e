//! The published manifest (`manifest.json`): the ideal state that the materializer converges to
//! and that downstream tools read. Its JSON Schema is generated from these types.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped on any change that an older reader would misread.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Version of this document's format; readers refuse versions they do not know.
    pub format_version: u32,
    pub formation: FormationInfo,
    pub release: ReleaseInfo,
    /// Every stack of this compile, in the order they are created (dependencies first).
    pub stacks: Vec<StackEntry>,
    pub services: Vec<ServiceEntry>,
    /// Public routes, in listener-rule priority order per routing group.
    pub routes: Vec<RouteEntry>,
    /// Service discovery: environment variable name to internal URL.
    pub internal_urls: BTreeMap<String, String>,
    /// Weights the formation's routing templates were compiled with.
    pub traffic: Vec<TrafficEntry>,
    /// Files the materializer uploads to the outputs bucket before creating the release's
    /// stacks (shared discovery document, runtime configs too large for userdata).
    pub uploads: Vec<UploadEntry>,
    /// The inputs, copied into the output directory so that the materializer can re-render
    /// routing templates for other traffic weights with the same compiler.
    pub inputs: InputFiles,
    /// Things that compile but deserve attention.
    pub warnings: Vec<String>,
    /// The auxiliaries' credentials in Secrets Manager, which the materializer keeps (makes,
    /// adopts when one was left by an earlier formation, restores when scheduled for deletion)
    /// before the formation stack reads them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretEntry {
    /// `gilliam/FORMATION/AUXILIARY`.
    pub name: String,
    pub auxiliary: String,
    /// The user name the secret holds beside its generated password.
    pub username: String,
    /// For a cache: the formation stack's outputs whose address and port the materializer
    /// writes into the secret (`host`, `port`), so that TLS clients connect to the name the
    /// service's certificate covers. (A database's are written by CloudFormation.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_outputs: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FormationInfo {
    pub name: String,
    pub region: String,
    pub vpc: String,
    /// Bucket for templates, artifacts and published outputs.
    pub outputs_bucket: String,
    /// S3 key prefix of this formation's objects in the bucket.
    pub s3_prefix: String,
    /// Private DNS zone in which services and auxiliaries are named.
    pub internal_domain: String,
    pub keep_releases: u32,
    /// Releases that can be live at once: the serving one, those kept, one being deployed.
    pub max_live_releases: u32,
    pub routing_groups: u32,
    pub https: bool,
    pub public_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseInfo {
    pub number: u32,
    pub revision: String,
    pub created: String,
    pub artifact_url: String,
    pub artifact_sha256: String,
    pub runtime_image: String,
    /// Release config (environment for every service). Not for secrets.
    pub config: BTreeMap<String, String>,
    /// Secret config: variable to the Secrets Manager secret holding its value (never the value).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_config: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StackRole {
    /// Security groups, private zone, auxiliaries: lives as long as the formation.
    Formation,
    /// One group of load balancers, listeners, route rules and service DNS names.
    Routing,
    /// One release's launch templates, Auto Scaling groups and target groups.
    Release,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StackEntry {
    pub name: String,
    pub role: StackRole,
    /// Template path, relative to the output directory.
    pub template: String,
    pub sha256: String,
    pub bytes: usize,
    pub resources: usize,
    /// Over 51,200 bytes: must be uploaded and passed as TemplateURL.
    pub upload_required: bool,
    /// Where the materializer uploads the template.
    pub s3_key: String,
    /// Stacks that must exist first (their exports are imported).
    pub depends_on: Vec<String>,
    pub capabilities: Vec<String>,
    pub routing_group: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// Own code with a port: reachable over HTTP.
    Web,
    /// Own code without a port.
    Worker,
    /// Database, cache or coordination service in the formation stack.
    Auxiliary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    pub min: u32,
    pub desired: u32,
    pub max: u32,
    /// Target average CPU percentage; scaling is elastic when max > min.
    pub cpu: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    pub name: String,
    pub kind: ServiceKind,
    pub auxiliary_type: Option<String>,
    pub script: Option<String>,
    pub port: Option<u16>,
    pub health_path: Option<String>,
    pub scale: Option<Scale>,
    pub instance_type: String,
    pub internal: bool,
    /// Stack holding this service's resources for this release (or the formation stack).
    pub stack: String,
    /// Logical ID of the Auto Scaling group in `stack` (signalled on boot, scaled by `gilliam scale`).
    pub auto_scaling_group: Option<String>,
    pub routing_group: Option<u32>,
    pub internal_target_group_export: Option<String>,
    pub public_target_group_export: Option<String>,
    /// Environment variable other services read to reach this one.
    pub url_variable: Option<String>,
    pub internal_url: Option<String>,
    pub userdata: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub sha256: String,
    pub bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadEntry {
    /// Path relative to the output directory.
    pub path: String,
    pub s3_key: String,
    pub sha256: String,
    pub bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    pub service: String,
    pub route: String,
    pub host: Option<String>,
    pub path: Option<String>,
    /// What the request becomes before it reaches the service (`/api/{rest}`), when rewritten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<String>,
    pub routing_group: u32,
    pub priority: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficEntry {
    pub release: u32,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputFiles {
    pub app: FileEntry,
    pub release: FileEntry,
    pub stage: FileEntry,
}

/// The manifest's JSON Schema, as committed in `compiler/manifest.schema.json`.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(Manifest);
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}
