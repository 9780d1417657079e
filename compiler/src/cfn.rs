//! A minimal CloudFormation template builder: intrinsic-function helpers, a resource map that
//! refuses duplicate logical IDs, and the checks of CloudFormation's per-template limits.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub const MAX_RESOURCES: usize = 500;
pub const MAX_PARAMETERS: usize = 200;
pub const MAX_OUTPUTS: usize = 200;
/// Largest template body passed inline; larger ones go through S3 (TemplateURL).
pub const MAX_INLINE_BYTES: usize = 51_200;
/// Largest template body CloudFormation accepts from S3.
pub const MAX_TEMPLATE_BYTES: usize = 1_000_000;
/// Largest raw (before base64) EC2 user data.
pub const MAX_USERDATA_BYTES: usize = 16 * 1024;

/// Builds a JSON object by moving each value in (`Value::from`). Unlike `serde_json::json!`,
/// which serializes every embedded expression into a fresh copy, nothing is copied: this is
/// the hot path of large formations.
#[macro_export]
macro_rules! obj {
    ($($k:literal : $v:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut m = serde_json::Map::new();
        $( m.insert($k.to_string(), serde_json::Value::from($v)); )*
        serde_json::Value::Object(m)
    }};
}

pub fn r#ref(id: &str) -> Value {
    obj! { "Ref": id }
}
pub fn get_att(id: &str, attr: &str) -> Value {
    obj! { "Fn::GetAtt": vec![id, attr] }
}
pub fn import(name: &str) -> Value {
    obj! { "Fn::ImportValue": name }
}
pub fn sub(s: &str) -> Value {
    obj! { "Fn::Sub": s }
}
pub fn tags(pairs: &[(&str, &str)]) -> Value {
    Value::Array(pairs.iter().map(|(k, v)| obj! { "Key": *k, "Value": *v }).collect())
}

#[derive(Debug, Default)]
pub struct Template {
    pub description: String,
    pub resources: BTreeMap<String, Value>,
    pub outputs: BTreeMap<String, Value>,
}

impl Template {
    pub fn new(description: impl Into<String>) -> Self {
        Template { description: description.into(), ..Default::default() }
    }

    /// Adds a resource. Logical IDs are derived from validated names, so a duplicate is a bug in
    /// the compiler, reported as an internal error rather than a silently overwritten resource.
    pub fn add(&mut self, id: impl Into<String>, ty: &str, props: Value) -> Result<&mut Map<String, Value>, String> {
        let id = id.into();
        if self.resources.contains_key(&id) {
            return Err(format!("internal error: duplicate logical ID {id}"));
        }
        let mut r = Map::new();
        r.insert("Type".into(), Value::String(ty.into()));
        r.insert("Properties".into(), props);
        let slot = self.resources.entry(id).or_insert(Value::Object(r));
        match slot {
            Value::Object(m) => Ok(m),
            _ => Err("internal error: resource is not an object".into()),
        }
    }

    pub fn output(&mut self, id: &str, value: Value, export: Option<&str>, description: &str) {
        let mut o = obj! { "Description": description, "Value": value };
        if let Some(e) = export {
            o["Export"] = obj! { "Name": e };
        }
        self.outputs.insert(id.to_string(), o);
    }

    /// Serialized template text: compact JSON with sorted keys and a trailing newline. Templates
    /// are CloudFormation's input, not reading matter (`jq .` shows them): compact keeps them a
    /// third smaller, so more go inline under 51,200 bytes. Written straight from the resource
    /// map, with no intermediate copy of the template.
    pub fn render(&self) -> Vec<u8> {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Doc<'a> {
            #[serde(rename = "AWSTemplateFormatVersion")]
            version: &'static str,
            description: &'a str,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            outputs: &'a BTreeMap<String, Value>,
            resources: &'a BTreeMap<String, Value>,
        }
        let doc = Doc { version: "2010-09-09", description: &self.description, outputs: &self.outputs, resources: &self.resources };
        let mut out = Vec::with_capacity(64 * 1024);
        let _ = serde_json::to_writer(&mut out, &doc);
        out.push(b'\n');
        out
    }

    /// Every CloudFormation per-template limit, checked on the rendered bytes.
    pub fn check_limits(&self, stack: &str, bytes: usize) -> Result<(), String> {
        let fail = |what: String| Err(format!("stack {stack}: {what}"));
        if self.resources.len() > MAX_RESOURCES {
            return fail(format!("{} resources, over CloudFormation's limit of {MAX_RESOURCES} per stack", self.resources.len()));
        }
        if self.outputs.len() > MAX_OUTPUTS {
            return fail(format!("{} outputs, over CloudFormation's limit of {MAX_OUTPUTS} per stack", self.outputs.len()));
        }
        if bytes > MAX_TEMPLATE_BYTES {
            return fail(format!("template is {bytes} bytes, over CloudFormation's limit of {MAX_TEMPLATE_BYTES} bytes"));
        }
        for id in self.resources.keys().chain(self.outputs.keys()) {
            if id.is_empty() || id.len() > 255 || !id.bytes().all(|c| c.is_ascii_alphanumeric()) {
                return fail(format!("logical ID `{id}` is not 1-255 alphanumeric characters"));
            }
        }
        if stack.len() > 128 || !stack.starts_with(|c: char| c.is_ascii_alphabetic()) || !stack.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
            return fail("stack name breaks CloudFormation's rule [A-Za-z][-A-Za-z0-9]{0,127}".into());
        }
        Ok(())
    }
}

/// A rendered template against CloudFormation's limits: past one is a compiler bug.
pub(crate) fn template_limits(t: &Template, stack: &str, bytes: usize) -> Result<(), String> {
    t.check_limits(stack, bytes).map_err(|e| format!("internal error: {e}"))
}
