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
    /// Resources rendered already (type, compact JSON with sorted keys), from typed structs
    /// instead of JSON trees: what a release stack holds a thousand times. Rendered in one
    /// logical-ID order with `resources`.
    pub rendered: BTreeMap<String, (&'static str, String)>,
    /// Outputs rendered already, likewise.
    pub rendered_outputs: BTreeMap<String, String>,
}

impl Template {
    pub fn new(description: impl Into<String>) -> Self {
        Template { description: description.into(), ..Default::default() }
    }

    /// Adds a resource. Logical IDs are derived from validated names, so a duplicate is a bug in
    /// the compiler, reported as an internal error rather than a silently overwritten resource.
    pub fn add(&mut self, id: impl Into<String>, ty: &str, props: Value) -> Result<&mut Map<String, Value>, String> {
        let id = id.into();
        self.fresh(&id)?;
        let mut r = Map::new();
        r.insert("Type".into(), Value::String(ty.into()));
        r.insert("Properties".into(), props);
        let slot = self.resources.entry(id).or_insert(Value::Object(r));
        match slot {
            Value::Object(m) => Ok(m),
            _ => Err("internal error: resource is not an object".into()),
        }
    }

    /// Adds a resource from a typed struct (`Resource`), rendered at once: no JSON tree is
    /// built for it. Its fields must be declared in sorted order, as a tree would render them.
    pub fn add_typed<P: serde::Serialize>(&mut self, id: String, resource: &Resource<P>) -> Result<(), String> {
        let json = resource_json(resource)?;
        self.add_rendered(id, resource.ty, json)
    }

    /// A logical ID no resource of the template has yet: a duplicate is a compiler bug.
    fn fresh(&self, id: &str) -> Result<(), String> {
        if self.resources.contains_key(id) || self.rendered.contains_key(id) {
            return Err(format!("internal error: duplicate logical ID {id}"));
        }
        Ok(())
    }

    fn add_rendered(&mut self, id: String, ty: &'static str, json: String) -> Result<(), String> {
        self.fresh(&id)?;
        self.rendered.insert(id, (ty, json));
        Ok(())
    }

    /// Adds a typed resource one of whose strings is [`RAW_SLOT`], rendered with `raw` (JSON
    /// rendered already: a string literal, quotes and escapes included) in its place. What a
    /// launch template's userdata is, escaped from pieces escaped once for all services
    /// rather than a thousand times.
    pub fn add_typed_with<P: serde::Serialize>(&mut self, id: String, resource: &Resource<P>, raw: &str) -> Result<(), String> {
        let json = resource_json(resource)?;
        let at = match (json.find(RAW_SLOT_JSON), json.rfind(RAW_SLOT_JSON)) {
            (Some(a), Some(b)) if a == b => a,
            _ => return Err(format!("internal error: resource {id} must hold the raw slot once")),
        };
        // Not `replace_range`: it splices char by char, a tenth of the whole compile at 1,000
        // services (callgrind); three copies of whole slices are the cheap way.
        let mut out = String::with_capacity(json.len() - RAW_SLOT_JSON.len() + raw.len());
        out.push_str(&json[..at]);
        out.push_str(raw);
        out.push_str(&json[at + RAW_SLOT_JSON.len()..]);
        self.add_rendered(id, resource.ty, out)
    }

    /// Adds an output from its parts, rendered at once.
    pub fn output_typed(&mut self, id: String, value: &impl serde::Serialize, export: Option<&str>, description: &str) -> Result<(), String> {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Output<'a, V> {
            description: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            export: Option<Name<'a>>,
            value: V,
        }
        #[derive(serde::Serialize)]
        struct Name<'a> {
            #[serde(rename = "Name")]
            name: &'a str,
        }
        let json =
            serde_json::to_string(&Output { description, export: export.map(|name| Name { name }), value }).map_err(|e| format!("internal error: {e}"))?;
        self.outputs.remove(&id);
        self.rendered_outputs.insert(id, json);
        Ok(())
    }

    /// Every resource's logical ID and type, trees and rendered ones.
    pub fn resource_types(&self) -> impl Iterator<Item = (&str, &str)> {
        let trees = self.resources.iter().map(|(id, r)| (id.as_str(), r["Type"].as_str().unwrap_or_default()));
        trees.chain(self.rendered.iter().map(|(id, (ty, _))| (id.as_str(), *ty)))
    }

    pub fn resource_count(&self) -> usize {
        self.resources.len() + self.rendered.len()
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
    /// maps, trees and rendered resources merged in logical-ID order, with no intermediate copy.
    pub fn render(&self) -> Vec<u8> {
        let rendered: usize =
            self.rendered.values().map(|(_, j)| j.len() + 64).sum::<usize>() + self.rendered_outputs.values().map(|j| j.len() + 64).sum::<usize>();
        let mut out = Vec::with_capacity(64 * 1024 + rendered);
        out.extend_from_slice(b"{\"AWSTemplateFormatVersion\":\"2010-09-09\",\"Description\":");
        let _ = serde_json::to_writer(&mut out, &self.description);
        if !self.outputs.is_empty() || !self.rendered_outputs.is_empty() {
            out.extend_from_slice(b",\"Outputs\":");
            merged(&mut out, &self.outputs, self.rendered_outputs.iter().map(|(k, j)| (k, j.as_str())));
        }
        out.extend_from_slice(b",\"Resources\":");
        merged(&mut out, &self.resources, self.rendered.iter().map(|(k, (_, j))| (k, j.as_str())));
        out.extend_from_slice(b"}\n");
        out
    }

    /// Every CloudFormation per-template limit, checked on the rendered bytes.
    pub fn check_limits(&self, stack: &str, bytes: usize) -> Result<(), String> {
        let fail = |what: String| Err(format!("stack {stack}: {what}"));
        if self.resource_count() > MAX_RESOURCES {
            return fail(format!("{} resources, over CloudFormation's limit of {MAX_RESOURCES} per stack", self.resource_count()));
        }
        let outputs = self.outputs.len() + self.rendered_outputs.len();
        if outputs > MAX_OUTPUTS {
            return fail(format!("{outputs} outputs, over CloudFormation's limit of {MAX_OUTPUTS} per stack"));
        }
        if bytes > MAX_TEMPLATE_BYTES {
            return fail(format!("template is {bytes} bytes, over CloudFormation's limit of {MAX_TEMPLATE_BYTES} bytes"));
        }
        for id in self.resources.keys().chain(self.outputs.keys()).chain(self.rendered.keys()).chain(self.rendered_outputs.keys()) {
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

/// One JSON object from a map of trees and a sorted run of rendered values, in key order.
fn merged<'a>(out: &mut Vec<u8>, trees: &BTreeMap<String, Value>, rendered: impl Iterator<Item = (&'a String, &'a str)>) {
    let mut trees = trees.iter().peekable();
    let mut rendered = rendered.peekable();
    out.push(b'{');
    let mut first = true;
    loop {
        let take_tree = match (trees.peek(), rendered.peek()) {
            (Some((a, _)), Some((b, _))) => a < b,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        if !first {
            out.push(b',');
        }
        first = false;
        if take_tree {
            if let Some((k, v)) = trees.next() {
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                let _ = serde_json::to_writer(&mut *out, v);
            }
        } else if let Some((k, j)) = rendered.next() {
            let _ = serde_json::to_writer(&mut *out, k);
            out.push(b':');
            out.extend_from_slice(j.as_bytes());
        }
    }
    out.push(b'}');
}

/// Stands in a typed resource for JSON rendered already (`Template::add_typed_with`). No
/// value of the compiler's holds a NUL: names are validated, and text from the inputs is in
/// runtime configs, JSON whose control characters are escaped.
pub const RAW_SLOT: &str = "\u{0}gilliam-raw\u{0}";
/// [`RAW_SLOT`] as serde_json renders it.
const RAW_SLOT_JSON: &str = "\"\\u0000gilliam-raw\\u0000\"";

/// Appends `s` escaped as the inside of a JSON string, byte for byte as serde_json escapes
/// it: `"`, `\\`, and control characters (`\n`, `\t` and the like by name, others as `\u00XX`).
/// Runs that need no escape are copied whole; one table lookup a byte finds their ends.
pub fn escape_json_into(out: &mut String, s: &str) {
    // What follows the backslash, by byte: 0 for none (copied as it is), `u` for `\u00XX`.
    const ESCAPE: [u8; 256] = {
        let mut t = [0u8; 256];
        let mut b = 0;
        while b < 0x20 {
            t[b] = b'u';
            b += 1;
        }
        t[b'"' as usize] = b'"';
        t[b'\\' as usize] = b'\\';
        t[b'\n' as usize] = b'n';
        t[b'\t' as usize] = b't';
        t[b'\r' as usize] = b'r';
        t[0x08] = b'b';
        t[0x0c] = b'f';
        t
    };
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 16);
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let e = ESCAPE[usize::from(b)];
        if e == 0 {
            continue;
        }
        // Every byte escaped is ASCII: `start` and `i` are on character boundaries.
        out.push_str(&s[start..i]);
        out.push('\\');
        out.push(char::from(e));
        if e == b'u' {
            out.push_str("00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

/// A typed resource rendered as compact JSON.
fn resource_json<P: serde::Serialize>(resource: &Resource<P>) -> Result<String, String> {
    serde_json::to_string(resource).map_err(|e| format!("internal error: {e}"))
}

/// A resource as CloudFormation reads it, for `Template::add_typed`: fields in sorted order.
#[derive(Debug, serde::Serialize)]
pub struct Resource<P> {
    #[serde(rename = "CreationPolicy", skip_serializing_if = "Option::is_none")]
    pub creation_policy: Option<serde_json::Value>,
    #[serde(rename = "Properties")]
    pub properties: P,
    #[serde(rename = "Type")]
    pub ty: &'static str,
}

/// `{"Ref": id}`.
#[derive(Debug, serde::Serialize)]
pub struct Ref<'a> {
    #[serde(rename = "Ref")]
    pub id: &'a str,
}

/// `{"Fn::GetAtt": [id, attribute]}`.
#[derive(Debug, serde::Serialize)]
pub struct GetAtt<'a> {
    #[serde(rename = "Fn::GetAtt")]
    pub of: [&'a str; 2],
}

/// `{"Fn::ImportValue": name}`.
#[derive(Debug, serde::Serialize)]
pub struct Import<'a> {
    #[serde(rename = "Fn::ImportValue")]
    pub name: &'a str,
}

/// `{"Fn::Base64": text}`.
#[derive(Debug, serde::Serialize)]
pub struct Base64<'a> {
    #[serde(rename = "Fn::Base64")]
    pub text: &'a str,
}

/// A tag: `{"Key": k, "Value": v}`.
#[derive(Debug, serde::Serialize)]
pub struct Tag<'a> {
    #[serde(rename = "Key")]
    pub key: &'a str,
    #[serde(rename = "Value")]
    pub value: &'a str,
}

/// A rendered template against CloudFormation's limits: past one is a compiler bug.
pub(crate) fn template_limits(t: &Template, stack: &str, bytes: usize) -> Result<(), String> {
    t.check_limits(stack, bytes).map_err(|e| format!("internal error: {e}"))
}
