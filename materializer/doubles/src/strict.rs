//! A stricter AWS for tests: the rules real CloudFormation and ELBv2 enforce and the emulator
//! (moto) does not, checked at the seam before a call reaches it. A converge that would fail on
//! the real service fails here too, with the error the service would give.
//!
//! Encoded (each from the service's documentation):
//! - a template must define at least one resource;
//! - ELBv2 names: load balancers and target groups at most 32 characters of letters, digits and
//!   `-`, not starting or ending with `-`; a load balancer name never starts with `internal-`;
//! - listener rules: priority 1..50,000 and unique per listener, host-header values of letters,
//!   digits, `-`, `.`, `*`, `?` (no `_`), at most 5 target groups per forward, weights 0..999;
//! - an update creates and modifies rules in parallel before it deletes any (and rolls back the
//!   same way): a created or re-prioritised rule must not take a number a deployed rule holds
//!   (`PriorityInUse`), and the deployed and created rules together must fit the rules quota
//!   (100 per load balancer, default rules not counted: `TooManyRules`);
//! - an export cannot be removed, nor its value changed, while another stack imports it, and a
//!   stack whose exports are imported cannot be deleted; an import must name an existing export;
//! - a target group that a listener rule forwards to cannot be deleted (`ResourceInUse`);
//! - a target group that no listener rule forwards to is not health-checked: its targets are
//!   reported `unused`;
//! - an ElastiCache `AuthToken` (resolved from Secrets Manager, as CloudFormation does) is 16 to
//!   128 printable characters whose only punctuation is `! & # $ ^ < > -`
//!   ("Authenticating with the Valkey and Redis OSS AUTH command").
//! - EC2 RunInstances: a client token of at most 64 ASCII characters, and one used again with
//!   other parameters is `IdempotentParameterMismatch` ("Ensuring idempotency"); userdata of at
//!   most 16 KB before base64; at most 50 tags of an instance, keys of at most 128 characters
//!   and values of 256, no key starting with `aws:` ("Tag restrictions").
//!
//! What it cannot model is said in ARCHITECTURE.md ("What the strict layer cannot show").

use gilliam_compiler::priority::{transition_conflict, MAX_PRIORITY};
use gilliam_materializer::aws::prelude::*;
use gilliam_materializer::aws::{Aws, AwsError, AwsResult, MetricQuery, Rule, Stack, StackEvent, StackRequest, TemplateSource};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

const LISTENER_RULE: &str = "AWS::ElasticLoadBalancingV2::ListenerRule";

fn resources(t: &Value) -> impl Iterator<Item = (&String, &Value)> {
    t.get("Resources").and_then(Value::as_object).into_iter().flatten()
}

fn elb_name_problem(what: &str, name: &str) -> Option<String> {
    let bad =
        name.is_empty() || name.len() > 32 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') || name.starts_with('-') || name.ends_with('-');
    if bad {
        return Some(format!("{what} name `{name}`: at most 32 letters, digits and hyphens, not starting or ending with a hyphen"));
    }
    None
}

/// What real CloudFormation or ELBv2 would refuse in one template on its own.
/// `{{resolve:secretsmanager:NAME:SecretString:KEY}}` as (NAME, KEY).
fn dynamic_reference(s: &str) -> Option<(String, String)> {
    let inner = s.strip_prefix("{{resolve:secretsmanager:")?.strip_suffix("}}")?;
    let (name, rest) = inner.split_once(":SecretString:")?;
    let key = rest.split(':').next().unwrap_or(rest);
    Some((name.to_string(), key.to_string()))
}

/// What ElastiCache refuses in an AUTH token, or `None`.
pub fn auth_token_problem(token: &str) -> Option<String> {
    let n = token.chars().count();
    if !(16..=128).contains(&n) {
        return Some(format!("{n} characters; 16 to 128 are allowed"));
    }
    let bad: String = token.chars().filter(|c| !(c.is_ascii_alphanumeric() || "!&#$^<>-".contains(*c))).collect();
    (!bad.is_empty()).then(|| format!("characters {bad:?}; only letters, digits and ! & # $ ^ < > - are allowed"))
}

pub fn template_problems(t: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if resources(t).next().is_none() {
        out.push("Template format error: At least one Resources member must be defined.".to_string());
    }
    let mut priorities: BTreeMap<(String, u64), &str> = BTreeMap::new();
    for (id, r) in resources(t) {
        let props = &r["Properties"];
        match r["Type"].as_str().unwrap_or_default() {
            "AWS::ElasticLoadBalancingV2::LoadBalancer" => {
                if let Some(name) = props["Name"].as_str() {
                    out.extend(elb_name_problem("load balancer", name));
                    if name.starts_with("internal-") {
                        out.push(format!("load balancer name `{name}`: must not begin with `internal-`"));
                    }
                }
            }
            "AWS::ElasticLoadBalancingV2::TargetGroup" => {
                if let Some(name) = props["Name"].as_str() {
                    out.extend(elb_name_problem("target group", name));
                }
            }
            LISTENER_RULE => {
                let listener = props["ListenerArn"].to_string();
                match props["Priority"].as_u64() {
                    Some(p) if (1..=u64::from(MAX_PRIORITY)).contains(&p) => {
                        if let Some(other) = priorities.insert((listener, p), id) {
                            out.push(format!("PriorityInUse: rules {other} and {id} both have priority {p}"));
                        }
                    }
                    p => out.push(format!("rule {id}: priority {p:?} is not a number from 1 to {MAX_PRIORITY}")),
                }
                for c in props["Conditions"].as_array().into_iter().flatten() {
                    let (values, ok): (&Value, fn(u8) -> bool) = match c["Field"].as_str() {
                        Some("host-header") => (&c["HostHeaderConfig"]["Values"], |b| b.is_ascii_alphanumeric() || b"-.*?".contains(&b)),
                        Some("path-pattern") => (&c["PathPatternConfig"]["Values"], |b| b.is_ascii_alphanumeric() || b"_-.$/~\"'@:+&*?".contains(&b)),
                        _ => continue,
                    };
                    for v in values.as_array().into_iter().flatten().filter_map(Value::as_str) {
                        if v.is_empty() || v.len() > 128 || !v.bytes().all(ok) {
                            out.push(format!("rule {id}: condition value `{v}` has characters ELBv2 does not accept, or is longer than 128"));
                        }
                    }
                }
                for a in props["Actions"].as_array().into_iter().flatten() {
                    let groups = a["ForwardConfig"]["TargetGroups"].as_array().map(Vec::as_slice).unwrap_or_default();
                    if groups.len() > 5 {
                        out.push(format!("rule {id}: {} target groups in one forward, over ELBv2's 5", groups.len()));
                    }
                    if groups.iter().any(|g| g["Weight"].as_u64().is_some_and(|w| w > 999)) {
                        out.push(format!("rule {id}: a weight over 999"));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Listener rule priorities of a template: listener (as written) to rule ID to priority.
/// ELBv2's default quota of rules per Application Load Balancer (default rules not counted).
pub const RULES_QUOTA: usize = 100;

fn rule_priorities(t: &Value) -> BTreeMap<String, BTreeMap<String, u32>> {
    let mut out: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
    for (id, r) in resources(t).filter(|(_, r)| r["Type"] == LISTENER_RULE) {
        let p = r["Properties"]["Priority"].as_u64().and_then(|p| u32::try_from(p).ok()).unwrap_or(0);
        out.entry(r["Properties"]["ListenerArn"].to_string()).or_default().insert(id.clone(), p);
    }
    out
}

/// Export name to its value expression.
fn exports(t: &Value) -> BTreeMap<String, Value> {
    t.get("Outputs")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(_, o)| o["Export"]["Name"].as_str().map(|n| (n.to_string(), o["Value"].clone())))
        .collect()
}

/// Every export name a template imports (literal names only, which is all gilliam writes).
fn imports(t: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(name)) = m.get("Fn::ImportValue") {
                    out.insert(name.clone());
                }
                m.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(t, &mut out);
    out
}

/// What real CloudFormation would refuse in replacing stack `name`'s template `before` with
/// `after` (`None`: a create), given every other stack's template.
pub fn change_problems(name: &str, before: Option<&Value>, after: &Value, others: &BTreeMap<String, Value>) -> Vec<String> {
    let mut out = template_problems(after);
    if before.is_none() {
        for (listener, rules) in rule_priorities(after) {
            if rules.len() > RULES_QUOTA {
                out.push(format!("stack {name}: TooManyRules: listener {listener} would hold {} rules; the quota is {RULES_QUOTA}", rules.len()));
            }
        }
    }
    let importers = |export: &str| -> Vec<&str> { others.iter().filter(|(_, t)| imports(t).contains(export)).map(|(n, _)| n.as_str()).collect() };
    let available: BTreeSet<String> = others.values().flat_map(|t| exports(t).into_keys()).chain(exports(after).into_keys()).collect();
    for i in imports(after) {
        if !available.contains(&i) {
            out.push(format!("No export named {i} found"));
        }
    }
    let Some(before) = before else { return out };
    let new_exports = exports(after);
    for (export, value) in exports(before) {
        let users = importers(&export);
        if users.is_empty() {
            continue;
        }
        match new_exports.get(&export) {
            None => out.push(format!("Export {export} cannot be deleted as it is in use by {}", users.join(", "))),
            Some(v) if *v != value => out.push(format!("Cannot update export {export} as it is in use by {}", users.join(", "))),
            Some(_) => {}
        }
    }
    let old = rule_priorities(before);
    for (listener, rules) in rule_priorities(after) {
        let deployed = old.get(&listener).cloned().unwrap_or_default();
        // Created before the replaced ones are deleted: both count at the update's peak.
        let peak = deployed.keys().chain(rules.keys()).collect::<BTreeSet<_>>().len();
        if peak > RULES_QUOTA {
            out.push(format!("stack {name}: TooManyRules: listener {listener} would hold {peak} rules while the update runs; the quota is {RULES_QUOTA}"));
        }
        let b: BTreeMap<&str, u32> = deployed.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let a: BTreeMap<&str, u32> = rules.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        if let Some(why) = transition_conflict(&b, &a) {
            out.push(format!("stack {name}: {why}"));
        }
        // The rollback runs the same race the other way.
        if let Some(why) = transition_conflict(&a, &b) {
            out.push(format!("stack {name}, on rollback: {why}"));
        }
    }
    out
}

/// What real CloudFormation would refuse in deleting a stack with template `t`.
pub fn delete_problems(t: &Value, others: &BTreeMap<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for export in exports(t).into_keys() {
        let users: Vec<&str> = others.iter().filter(|(_, o)| imports(o).contains(&export)).map(|(n, _)| n.as_str()).collect();
        if !users.is_empty() {
            out.push(format!("Export {export} cannot be deleted as it is in use by {}", users.join(", ")));
        }
    }
    out
}

/// The stricter AWS: the templates of the stacks made through it, checked on every change.
#[derive(Debug)]
pub struct Strict<A> {
    pub inner: A,
    templates: Mutex<BTreeMap<String, Value>>,
    /// RunInstances by client token: a token is one launch.
    launches: Mutex<BTreeMap<String, gilliam_materializer::aws::InstanceLaunch>>,
}

/// What EC2 refuses in a RunInstances of one instance, or `None`.
pub fn launch_problem(req: &gilliam_materializer::aws::InstanceLaunch) -> Option<String> {
    if req.client_token.len() > 64 || !req.client_token.is_ascii() {
        return Some(format!("InvalidParameterValue: client token `{}` is over 64 ASCII characters", req.client_token));
    }
    if req.user_data.len() > 16 * 1024 {
        return Some(format!("InvalidParameterValue: User data is limited to 16384 bytes ({} given)", req.user_data.len()));
    }
    if req.tags.len() > 50 {
        return Some(format!("TagLimitExceeded: {} tags, at most 50 per resource", req.tags.len()));
    }
    if let Some((k, _)) =
        req.tags.iter().find(|(k, v)| k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 || k.to_ascii_lowercase().starts_with("aws:"))
    {
        return Some(format!("InvalidParameterValue: tag key `{k}`: 1 to 128 characters, values at most 256, no `aws:` prefix"));
    }
    if req.subnet.is_empty() || req.launch_template_id.is_empty() {
        return Some("MissingParameter: a launch template and a subnet".into());
    }
    None
}

impl<A> Strict<A> {
    pub fn new(inner: A) -> Self {
        Strict { inner, templates: Mutex::new(BTreeMap::new()), launches: Mutex::new(BTreeMap::new()) }
    }

    fn templates(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Value>> {
        self.templates.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<A: Aws> Strict<A> {
    async fn body(&self, req: &StackRequest) -> AwsResult<Value> {
        let text = match &req.template {
            TemplateSource::Body(b) => b.clone(),
            TemplateSource::Url(url) => {
                // https://BUCKET.s3.REGION.amazonaws.com/KEY
                let rest = url.strip_prefix("https://").ok_or_else(|| AwsError::Invalid(format!("TemplateURL {url} is not https")))?;
                let (host, key) = rest.split_once('/').ok_or_else(|| AwsError::Invalid(format!("TemplateURL {url} has no key")))?;
                let bucket = host.split(".s3.").next().unwrap_or(host);
                let o = self.inner.get_object(bucket, key).await?.ok_or_else(|| AwsError::Invalid(format!("TemplateURL {url}: no such object")))?;
                String::from_utf8(o.body).map_err(|_| AwsError::Invalid("template is not UTF-8".into()))?
            }
        };
        serde_json::from_str(&text).map_err(|e| AwsError::Invalid(format!("Template format error: {e}")))
    }

    /// Values CloudFormation resolves from Secrets Manager (`{{resolve:secretsmanager:NAME:
    /// SecretString:KEY}}`) checked as the service receiving them would: a cache's AuthToken.
    async fn resolved_problems(&self, t: &Value) -> AwsResult<Vec<String>> {
        let mut out = Vec::new();
        for (id, r) in resources(t) {
            if r["Type"].as_str() != Some("AWS::ElastiCache::ReplicationGroup") {
                continue;
            }
            let Some(token) = r["Properties"]["AuthToken"].as_str() else { continue };
            let value = match dynamic_reference(token) {
                Some((secret, key)) => match self.inner.secret_value(&secret).await? {
                    Some(v) => serde_json::from_str::<Value>(&v).ok().and_then(|v| v[key.as_str()].as_str().map(str::to_string)).unwrap_or_default(),
                    None => {
                        out.push(format!("{id}: Secrets Manager can't find the specified secret {secret}"));
                        continue;
                    }
                },
                None => token.to_string(),
            };
            if let Some(why) = auth_token_problem(&value) {
                out.push(format!("{id}: InvalidParameterValue: Invalid AuthToken provided ({why})"));
            }
        }
        Ok(out)
    }

    fn refuse(problems: Vec<String>) -> AwsResult<()> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(AwsError::Invalid(problems.join("; ")))
        }
    }

    /// Target group ARNs some listener rule of a stack made here forwards to.
    async fn routed_target_groups(&self) -> AwsResult<BTreeSet<String>> {
        let stacks: Vec<String> = self.templates().keys().cloned().collect();
        let mut out = BTreeSet::new();
        for s in stacks {
            if self.inner.describe_stack(&s).await?.is_none() {
                continue;
            }
            let arns: Vec<String> = self.inner.stack_resources(&s).await?.into_iter().filter(|r| r.2 == LISTENER_RULE).map(|r| r.1).collect();
            if !arns.is_empty() {
                out.extend(self.inner.describe_rules(&arns).await?.into_iter().flat_map(|r| r.forward.into_iter().map(|(tg, _)| tg)));
            }
        }
        Ok(out)
    }
}

gilliam_materializer::forward!(impl[A: Aws] Aws for Strict<A> => inner, except CloudFormation Elbv2 CloudWatch Sns EventBridge Ec2);

impl<A: Aws> Ec2 for Strict<A> {
    async fn describe_network(&self, vpc: &str, subnets: &[String]) -> AwsResult<Option<gilliam_materializer::aws::Network>> {
        self.inner.describe_network(vpc, subnets).await
    }
    async fn launch_times(&self, ids: &[String]) -> AwsResult<BTreeMap<String, String>> {
        self.inner.launch_times(ids).await
    }
    async fn run_instance(&self, req: &gilliam_materializer::aws::InstanceLaunch) -> AwsResult<String> {
        if let Some(p) = launch_problem(req) {
            return Err(AwsError::Invalid(p));
        }
        {
            let mut seen = self.launches.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match seen.get(&req.client_token) {
                Some(earlier) if earlier != req => {
                    return Err(AwsError::Invalid(format!("IdempotentParameterMismatch: client token {} was used for another launch", req.client_token)));
                }
                _ => {
                    seen.insert(req.client_token.clone(), req.clone());
                }
            }
        }
        self.inner.run_instance(req).await
    }
    async fn instance_states(&self, ids: &[String]) -> AwsResult<BTreeMap<String, gilliam_materializer::aws::InstanceState>> {
        self.inner.instance_states(ids).await
    }
    async fn terminate_instances(&self, ids: &[String]) -> AwsResult<()> {
        self.inner.terminate_instances(ids).await
    }
    async fn task_instances(&self, formation: &str) -> AwsResult<Vec<gilliam_materializer::aws::TaskInstance>> {
        self.inner.task_instances(formation).await
    }
}

impl<A: Aws> CloudFormation for Strict<A> {
    async fn describe_stack(&self, name: &str) -> AwsResult<Option<Stack>> {
        self.inner.describe_stack(name).await
    }
    async fn create_stack(&self, req: &StackRequest) -> AwsResult<String> {
        let t = self.body(req).await?;
        let others: BTreeMap<String, Value> = self.templates().iter().filter(|(n, _)| **n != req.name).map(|(n, v)| (n.clone(), v.clone())).collect();
        Self::refuse(change_problems(&req.name, None, &t, &others))?;
        Self::refuse(self.resolved_problems(&t).await?)?;
        let id = self.inner.create_stack(req).await?;
        self.templates().insert(req.name.clone(), t);
        Ok(id)
    }
    async fn update_stack(&self, req: &StackRequest) -> AwsResult<()> {
        let t = self.body(req).await?;
        let (before, others) = {
            let all = self.templates();
            let others: BTreeMap<String, Value> = all.iter().filter(|(n, _)| **n != req.name).map(|(n, v)| (n.clone(), v.clone())).collect();
            (all.get(&req.name).cloned(), others)
        };
        let before = match before {
            Some(b) => b,
            None => serde_json::from_str(&self.inner.get_template(&req.name).await?).map_err(|e| AwsError::Other(e.to_string()))?,
        };
        Self::refuse(change_problems(&req.name, Some(&before), &t, &others))?;
        Self::refuse(self.resolved_problems(&t).await?)?;
        self.inner.update_stack(req).await?;
        self.templates().insert(req.name.clone(), t);
        Ok(())
    }
    async fn delete_stack(&self, name: &str) -> AwsResult<()> {
        let (mine, others) = {
            let all = self.templates();
            (all.get(name).cloned(), all.iter().filter(|(n, _)| n.as_str() != name).map(|(n, v)| (n.clone(), v.clone())).collect::<BTreeMap<_, _>>())
        };
        if let Some(t) = &mine {
            Self::refuse(delete_problems(t, &others))?;
        }
        // ELBv2 refuses to delete a target group a listener rule still forwards to.
        if self.inner.describe_stack(name).await?.is_some() {
            let routed = self.routed_target_groups().await?;
            let in_use: Vec<String> = self
                .inner
                .stack_resources(name)
                .await?
                .into_iter()
                .filter(|(_, arn, ty)| ty == "AWS::ElasticLoadBalancingV2::TargetGroup" && routed.contains(arn))
                .map(|(id, _, _)| id)
                .collect();
            if !in_use.is_empty() {
                return Err(AwsError::Invalid(format!("ResourceInUse: target groups {in_use:?} of stack {name} are in use by a listener rule")));
            }
        }
        self.inner.delete_stack(name).await?;
        self.templates().remove(name);
        Ok(())
    }
    async fn continue_update_rollback(&self, name: &str) -> AwsResult<()> {
        self.inner.continue_update_rollback(name).await
    }
    async fn stack_events(&self, name: &str) -> AwsResult<Vec<StackEvent>> {
        self.inner.stack_events(name).await
    }
    async fn get_template(&self, name: &str) -> AwsResult<String> {
        self.inner.get_template(name).await
    }
    async fn stack_resources(&self, name: &str) -> AwsResult<Vec<(String, String, String)>> {
        self.inner.stack_resources(name).await
    }
    async fn list_exports(&self) -> AwsResult<Vec<(String, String)>> {
        self.inner.list_exports().await
    }
    async fn stack_limit(&self) -> AwsResult<Option<u32>> {
        self.inner.stack_limit().await
    }
    async fn stack_names(&self) -> AwsResult<Vec<String>> {
        self.inner.stack_names().await
    }
}

impl<A: Aws> Elbv2 for Strict<A> {
    async fn targets(&self, target_group_arn: &str) -> AwsResult<Vec<(String, String)>> {
        self.inner.targets(target_group_arn).await
    }
    async fn describe_rules(&self, arns: &[String]) -> AwsResult<Vec<Rule>> {
        self.inner.describe_rules(arns).await
    }
    async fn set_rule_weights(&self, arn: &str, forward: &[(String, u32)], stickiness: Option<u32>) -> AwsResult<()> {
        if forward.len() > 5 || forward.iter().any(|(_, w)| *w > 999) {
            return Err(AwsError::Invalid(format!("rule {arn}: at most 5 target groups, weights 0..999")));
        }
        if stickiness.is_some_and(|s| !(1..=604_800).contains(&s)) {
            return Err(AwsError::Invalid(format!("rule {arn}: target group stickiness lasts 1 to 604800 seconds")));
        }
        self.inner.set_rule_weights(arn, forward, stickiness).await
    }
    async fn deregistration_delay(&self, target_group_arn: &str) -> AwsResult<u32> {
        self.inner.deregistration_delay(target_group_arn).await
    }
    async fn elb_limits(&self) -> AwsResult<BTreeMap<String, u32>> {
        self.inner.elb_limits().await
    }
    async fn target_group_arns(&self) -> AwsResult<Vec<String>> {
        self.inner.target_group_arns().await
    }
    async fn load_balancer_arns(&self) -> AwsResult<Vec<String>> {
        self.inner.load_balancer_arns().await
    }
    async fn target_health(&self, target_group_arn: &str) -> AwsResult<Vec<String>> {
        let states = self.inner.target_health(target_group_arn).await?;
        if self.routed_target_groups().await?.contains(target_group_arn) {
            Ok(states)
        } else {
            Ok(states.into_iter().map(|_| "unused".to_string()).collect())
        }
    }
}

impl<A: Aws> CloudWatch for Strict<A> {
    async fn metric_data(&self, queries: &[MetricQuery], start: i64, end: i64) -> AwsResult<std::collections::BTreeMap<String, Vec<f64>>> {
        // GetMetricData's own rules: at most 500 queries, ids start with a lowercase letter,
        // periods are multiples of 60 (for data older than three hours) and StartTime < EndTime.
        if queries.len() > 500 || start >= end {
            return Err(AwsError::Invalid("GetMetricData: at most 500 queries, and StartTime before EndTime".into()));
        }
        for q in queries {
            let ok_id = q.id.starts_with(|c: char| c.is_ascii_lowercase()) && q.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok_id || q.period == 0 || q.period % 60 != 0 || q.dimensions.len() > 30 {
                return Err(AwsError::Invalid(format!("GetMetricData: bad query {q:?}")));
            }
        }
        self.inner.metric_data(queries, start, end).await
    }
    async fn alarm_states(&self, names: &[String]) -> AwsResult<Vec<(String, String)>> {
        if names.len() > 100 {
            return Err(AwsError::Invalid("DescribeAlarms: at most 100 alarm names".into()));
        }
        self.inner.alarm_states(names).await
    }
    async fn log_events(&self, group: &str, stream_prefix: Option<&str>, start_ms: i64, next: Option<&str>) -> AwsResult<gilliam_materializer::aws::LogPage> {
        // FilterLogEvents: a log group name of 1 to 512 characters of [.-_/#A-Za-z0-9], a
        // start time that is not negative.
        let ok = !group.is_empty() && group.len() <= 512 && group.chars().all(|c| c.is_ascii_alphanumeric() || "._-/#".contains(c));
        if !ok || start_ms < 0 {
            return Err(AwsError::Invalid(format!("FilterLogEvents: bad log group {group:?} or start time {start_ms}")));
        }
        self.inner.log_events(group, stream_prefix, start_ms, next).await
    }
}

impl<A: Aws> Sns for Strict<A> {
    async fn publish(&self, topic: &str, subject: &str, message: &str) -> AwsResult<()> {
        // SNS: a subject of printable ASCII "less than 100 characters long", a message under 256 KiB.
        if subject.len() >= 100 || !subject.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) || message.len() > 256 * 1024 {
            return Err(AwsError::Invalid("Publish: subject under 100 printable ASCII characters, message under 256 KiB".into()));
        }
        self.inner.publish(topic, subject, message).await
    }
}

impl<A: Aws> EventBridge for Strict<A> {
    async fn put_event(&self, bus: &str, detail_type: &str, detail: &str) -> AwsResult<()> {
        // EventBridge: an entry under 256 KiB, a detail that is a JSON object.
        if detail.len() + detail_type.len() > 256 * 1024 || !detail.trim_start().starts_with('{') {
            return Err(AwsError::Invalid("PutEvents: an entry under 256 KiB whose detail is a JSON object".into()));
        }
        self.inner.put_event(bus, detail_type, detail).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(listener: &str, p: u64, host: &str) -> Value {
        json!({"Type": LISTENER_RULE, "Properties": {"ListenerArn": {"Ref": listener}, "Priority": p,
            "Conditions": [{"Field": "host-header", "HostHeaderConfig": {"Values": [host]}}], "Actions": []}})
    }

    #[test]
    fn empty_templates_and_bad_names_are_refused() {
        assert!(template_problems(&json!({"Resources": {}}))[0].contains("At least one Resources"));
        let t = json!({"Resources": {
            "Lb": {"Type": "AWS::ElasticLoadBalancingV2::LoadBalancer", "Properties": {"Name": "internal-public-1"}},
            "Tg": {"Type": "AWS::ElasticLoadBalancingV2::TargetGroup", "Properties": {"Name": "shop-r1-my_api-i"}},
            "R": rule("L", 1, "my_api.shop.internal"),
        }});
        let p = template_problems(&t).join("\n");
        assert!(p.contains("must not begin with `internal-`"), "{p}");
        assert!(p.contains("target group name `shop-r1-my_api-i`"), "{p}");
        assert!(p.contains("condition value `my_api.shop.internal`"), "{p}");
    }

    #[test]
    fn a_renumbering_update_and_an_export_in_use_are_refused() {
        let before = json!({"Resources": {"A": rule("L", 1, "a.example.com"), "B": rule("L", 2, "b.example.com")},
            "Outputs": {"Sg": {"Value": {"Ref": "Sg"}, "Export": {"Name": "shop-Sg"}}}});
        let after = json!({"Resources": {"X": rule("L", 1, "x.example.com"), "A": rule("L", 2, "a.example.com"), "B": rule("L", 3, "b.example.com")}});
        let others =
            BTreeMap::from([("shop-routing-1".to_string(), json!({"Resources": {"Lb": {"Type": "X", "Properties": {"Sg": {"Fn::ImportValue": "shop-Sg"}}}}}))]);
        let p = change_problems("shop", Some(&before), &after, &others).join("\n");
        assert!(p.contains("PriorityInUse"), "{p}");
        assert!(p.contains("Export shop-Sg cannot be deleted as it is in use by shop-routing-1"), "{p}");
        assert!(delete_problems(&before, &others)[0].contains("in use by shop-routing-1"));
        let fine = json!({"Resources": {"X": rule("L", 5, "x.example.com"), "A": rule("L", 1, "a.example.com"), "B": rule("L", 2, "b.example.com")},
            "Outputs": {"Sg": {"Value": {"Ref": "Sg"}, "Export": {"Name": "shop-Sg"}}}});
        assert_eq!(change_problems("shop", Some(&before), &fine, &others), Vec::<String>::new());
    }

    #[test]
    fn an_update_whose_created_and_deployed_rules_overflow_the_quota_is_refused() {
        let many = |prefix: &str, n: usize, from: u32| -> serde_json::Map<String, Value> {
            (0..n).map(|i| (format!("{prefix}{i}"), rule("L", u64::from(from) + i as u64, &format!("{prefix}{i}.example.com")))).collect()
        };
        let before = json!({"Resources": many("a", 99, 1)});
        // Two renamed: created before the two they replace are deleted, 101 at the peak.
        let mut renamed = many("a", 97, 1);
        renamed.extend(many("b", 2, 200));
        let p = change_problems("shop", Some(&before), &json!({"Resources": renamed}), &BTreeMap::new()).join("\n");
        assert!(p.contains("TooManyRules") && p.contains("101 rules"), "{p}");
        // One renamed: 100 at the peak, which fits.
        let mut one = many("a", 98, 1);
        one.extend(many("b", 1, 200));
        assert_eq!(change_problems("shop", Some(&before), &json!({"Resources": one}), &BTreeMap::new()), Vec::<String>::new());
        // A new stack with 101 rules is refused as such.
        let p = change_problems("shop", None, &json!({"Resources": many("a", 101, 1)}), &BTreeMap::new()).join("\n");
        assert!(p.contains("TooManyRules"), "{p}");
    }

    #[test]
    fn auth_tokens_as_elasticache_takes_them() {
        assert_eq!(auth_token_problem("Abcdefgh12345678xyz-!&#$^<>"), None);
        assert!(auth_token_problem("short-1A").expect("too short").contains("16 to 128"));
        assert!(auth_token_problem(&"a".repeat(129)).is_some());
        // What GetRandomPassword gave by default after the old exclusions: refused.
        for c in ['(', ')', '*', '.', '_', '@', '/', '"', ' ', '%'] {
            let token = format!("Abcdefgh12345678{c}");
            assert!(auth_token_problem(&token).expect("refused").contains(c), "{token}");
        }
        assert_eq!(
            dynamic_reference("{{resolve:secretsmanager:gilliam/shop/cache:SecretString:password}}"),
            Some(("gilliam/shop/cache".into(), "password".into()))
        );
        assert_eq!(dynamic_reference("plain"), None);
    }
}
