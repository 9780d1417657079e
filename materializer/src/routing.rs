//! Routing: the formation and routing templates re-rendered with the compiler for the weights
//! ELBv2 holds and the deployed rules' priorities, and applied; a routing update that
//! CloudFormation rolls back gets the observed weights written back. What converge, warm and
//! retire use to change which releases the load balancers forward to.

use crate::aws::{Aws, PutCondition, TemplateSource};
use crate::bundle::{Bundle, BundleError};
use crate::error::Error;
use crate::formation::Formation;
use crate::observe::ObservedTraffic;
use crate::plan::{Observed, Share};
use crate::retry::retry;
use crate::stacks::{canonical_sha, template_url, Deployed, Stacks};
use crate::state::State;
use crate::traffic::Traffic;
use gilliam_compiler::manifest::{Manifest, StackEntry, StackRole};
use gilliam_compiler::priority::DeployedRules;
use gilliam_compiler::TrafficShare;
use std::collections::BTreeMap;

/// Renders and applies the routing of one compiled bundle (its inputs are re-compiled with the
/// traffic observed).
pub struct Router<'a, A: Aws> {
    aws: &'a A,
    bundle: &'a Bundle,
    pub stacks: Stacks<'a, A>,
    say: &'a (dyn Fn(&str) + Sync),
    /// Older releases' gilliam.yml as published (`None`: not published), read once.
    apps: std::sync::Mutex<BTreeMap<u32, Option<String>>>,
}

impl<A: Aws> std::fmt::Debug for Router<'_, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("formation", &self.bundle.manifest.formation.name).field("release", &self.bundle.manifest.release.number).finish()
    }
}

impl<'a, A: Aws> Router<'a, A> {
    pub fn new(aws: &'a A, bundle: &'a Bundle, stacks: Stacks<'a, A>, say: &'a (dyn Fn(&str) + Sync)) -> Self {
        Router { aws, bundle, stacks, say, apps: std::sync::Mutex::new(BTreeMap::new()) }
    }

    fn m(&self) -> &'a Manifest {
        &self.bundle.manifest
    }

    /// The manifest of the bundle rendered from.
    pub fn manifest(&self) -> &'a Manifest {
        self.m()
    }

    pub fn aws(&self) -> &'a A {
        self.aws
    }

    pub fn say(&self) -> &'a (dyn Fn(&str) + Sync) {
        self.say
    }

    /// Renders the formation and routing stacks for these shares (and the deployed rules'
    /// priorities) with the compiler: stack name to template.
    /// The published gilliam.yml of each older release in `shares` with traffic: the compile
    /// keeps the HTTP services this release dropped routed while such a release still has them.
    async fn carried(&self, shares: &[TrafficShare]) -> Result<Vec<(u32, String)>, Error> {
        let m = self.m();
        let mut out = Vec::new();
        for s in shares.iter().filter(|s| s.weight > 0 && s.release != m.release.number) {
            let cached = self.apps.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&s.release).cloned();
            let text = match cached {
                Some(t) => t,
                None => {
                    let key = gilliam_contract::keys::release_file(&m.formation.s3_prefix, s.release, &m.inputs.app.path);
                    let bucket = &m.formation.outputs_bucket;
                    let t =
                        retry("read an older release's gilliam.yml", || self.aws.get_object(bucket, &key)).await?.and_then(|o| String::from_utf8(o.body).ok());
                    self.apps.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(s.release, t.clone());
                    t
                }
            };
            out.extend(text.map(|t| (s.release, t)));
        }
        Ok(out)
    }

    /// Every template for `shares`, around the deployed rules' priorities and with the cold
    /// releases' ports kept open, as `observed` holds them; an HTTP service this release
    /// dropped stays routed while an older release that has it carries traffic.
    pub async fn render(&self, shares: &[TrafficShare], observed: &Observed) -> Result<BTreeMap<String, Vec<u8>>, Error> {
        let carried = self.carried(shares).await?;
        let [app, rel, stage] = self.bundle.inputs()?;
        let inputs = gilliam_compiler::Inputs {
            app: gilliam_compiler::Source { name: "gilliam.yml", text: &app },
            release: gilliam_compiler::Source { name: "release.json", text: &rel },
            stage: gilliam_compiler::Source { name: "stage.yml", text: &stage },
        };
        let options = gilliam_compiler::Options {
            traffic: Some(shares.to_vec()),
            workers: 2,
            deployed_rules: observed.rules.clone(),
            standby: from_plan(&observed.standby, self.m()),
            carried,
            sink: None,
        };
        let compiled =
            gilliam_compiler::compile_with(&inputs, &options).map_err(|e| Error::Compile(format!("re-rendering routing for the observed traffic: {e}")))?;
        Ok(compiled
            .manifest
            .stacks
            .iter()
            .filter(|s| s.role != StackRole::Release)
            .map(|s| (s.name.clone(), compiled.files.get(&s.template).cloned().unwrap_or_default()))
            .collect())
    }

    /// Creates or updates a stack rendered for these shares (a routing stack, or the formation
    /// stack), after checking it renders as planned. A routing update that fails is rolled back
    /// by CloudFormation to the deployed template, whose weights may be older than ELBv2's (a
    /// flip writes ELBv2 only): the weights the plan observed are put back before the error
    /// is returned, so that a failed update never moves traffic.
    /// `observed` is what the plan saw: the deployed rules' priorities, and the weights.
    pub async fn rendered(&self, stack: &str, shares: &[Share], template_sha256: &str, observed: &Observed, changes: &mut Vec<String>) -> Result<(), Error> {
        let rendered = self.render(&from_plan(shares, self.m()), observed).await?;
        let body = rendered.get(stack).ok_or_else(|| Error::Compile(format!("stack {stack} is not in this compile")))?;
        if canonical_sha(body) != template_sha256 {
            return Err(Error::Compile(format!("stack {stack} rendered differently than when planned: plan again")));
        }
        let entry = self.entry(stack)?.clone();
        if body.len() > gilliam_compiler::cfn::MAX_INLINE_BYTES {
            let key = format!("{}.traffic-{}", entry.s3_key, crate::sha256_hex(body));
            retry("upload", || self.aws.put_object(&self.m().formation.outputs_bucket, &key, body.clone(), PutCondition::Always)).await?;
        }
        let text = String::from_utf8(body.clone()).map_err(|_| Error::Compile("routing template is not UTF-8".into()))?;
        let mut req = crate::stacks::request(self.m(), &entry, text);
        if let TemplateSource::Url(_) = req.template {
            req.template = TemplateSource::Url(template_url(self.m(), &format!("{}.traffic-{}", entry.s3_key, crate::sha256_hex(body))));
        }
        if retry("describe stack", || self.aws.describe_stack(stack)).await?.is_none() {
            return self.stacks.create(&req, changes).await;
        }
        if entry.role != StackRole::Routing {
            return self.stacks.update(&req, changes).await;
        }
        (self.say)(&format!("stack {stack}: updating routes and weights"));
        let result = self.stacks.update(&req, changes).await;
        let Err(Error::StackFailed { status, .. }) = &result else { return result };
        if status == "UPDATE_ROLLBACK_FAILED" {
            self.stacks.continue_rollback(stack).await?;
        }
        let before: BTreeMap<u32, u32> = observed.weights.iter().filter_map(|(n, w)| w.map(|w| (*n, w))).collect();
        if before.values().any(|w| *w > 0) {
            let traffic = Traffic::new(self.aws, Formation::from_manifest(self.m()), self.say);
            let writes = traffic.reassert(self.m(), &before).await?;
            (self.say)(&format!("stack {stack}: rolled back; {writes} rule(s) given back the weights ELBv2 held before the update"));
        }
        result
    }

    /// Renders and applies the routing stacks for the releases routed now (cold ones left out)
    /// plus `include`, at the weights ELBv2 holds: how a warmed release rejoins the forwards.
    pub async fn route_with(&self, include: u32) -> Result<Vec<String>, Error> {
        self.reroute(Some(include), None).await
    }

    /// Renders and applies the routing without `release` (at the weights ELBv2 holds): how a
    /// retired release leaves the forwards before its stacks go.
    pub async fn route_without(&self, release: u32) -> Result<Vec<String>, Error> {
        self.reroute(None, Some(release)).await
    }

    /// Renders and applies the routing stacks at the weights ELBv2 holds, for the releases
    /// routed now (cold ones left out) plus `include`, less `exclude`.
    async fn reroute(&self, include: Option<u32>, exclude: Option<u32>) -> Result<Vec<String>, Error> {
        let m = self.m();
        let traffic = crate::observe::traffic(self.aws, m).await?;
        let (state, _) = crate::state::read(self.aws, &m.formation.outputs_bucket, &m.formation.s3_prefix, &m.formation.name).await?;
        let shares: Vec<TrafficShare> = routed_shares(&traffic, m, &state, include).into_iter().filter(|s| Some(s.release) != exclude).collect();
        if let Some(n) = include.filter(|n| !shares.iter().any(|s| s.release == *n)) {
            return Err(Error::Refused(format!("release {n} has no stack exports: its stacks are gone; deploy it again")));
        }
        let mut changes = Vec::new();
        // What a plan would observe: the weights, and the deployed rules' priorities.
        let observed = Observed {
            weights: traffic.releases.iter().map(|(n, l)| (*n, l.weight)).collect(),
            rules: self.deployed_routing(&traffic.routing_stacks).await?.1,
            standby: to_plan(&standby_shares(&traffic, m, &shares)),
            ..Observed::default()
        };
        for (stack, body) in routing_only(m, self.render(&shares, &observed).await?) {
            self.rendered(&stack, &to_plan(&shares), &canonical_sha(&body), &observed, &mut changes).await?;
        }
        Ok(changes)
    }

    /// The formation's routing stacks as deployed (status and template, by name, `None` where
    /// there is none), and the priorities their listener rules hold. `seen`: the statuses read
    /// already in this run (`ObservedTraffic::routing_stacks`), each stack described again
    /// only when it is not there.
    pub async fn deployed_routing(
        &self,
        seen: &BTreeMap<String, Option<String>>,
    ) -> Result<(BTreeMap<String, Deployed>, BTreeMap<String, DeployedRules>), Error> {
        let m = self.m();
        let (mut stacks, mut rules) = (BTreeMap::new(), BTreeMap::new());
        for g in 1..=m.formation.routing_groups {
            let name = gilliam_compiler::names::routing_stack(&m.formation.name, g);
            let deployed = match seen.get(&name) {
                Some(status) => self.stacks.template_of(&name, status.clone()).await?,
                None => self.stacks.stack_with_template(&name).await?,
            };
            if let Some((_, Some(body))) = &deployed {
                rules.insert(name.clone(), DeployedRules::from_template(body));
            }
            stacks.insert(name, deployed);
        }
        Ok((stacks, rules))
    }

    pub fn entry(&self, stack: &str) -> Result<&StackEntry, Error> {
        self.m()
            .stacks
            .iter()
            .find(|s| s.name == stack)
            .ok_or_else(|| Error::Bundle(BundleError(format!("the plan names stack {stack}, which this compile does not have"))))
    }
}

/// A routing template with every forward weight removed: what it routes where, not how much.
pub fn routing_shape(bytes: &[u8]) -> Option<serde_json::Value> {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                if m.contains_key("TargetGroupArn") {
                    m.remove("Weight");
                }
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    strip(&mut v);
    Some(v)
}

/// One load balancer's rules while CloudFormation updates a routing stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulePeak {
    /// The load balancer's logical ID in the routing stack.
    pub load_balancer: String,
    /// Rules deployed now.
    pub deployed: usize,
    /// Rules the update creates (new logical IDs), before it deletes the ones it replaces.
    pub created: usize,
}

impl RulePeak {
    /// Rules the load balancer holds at the update's peak.
    pub fn peak(&self) -> usize {
        self.deployed + self.created
    }
}

/// Per load balancer, the rules a routing update holds at its peak: CloudFormation creates the
/// new rules (a renamed route, a new service, their test-header twins) before it deletes the
/// ones they replace, so both count against ELBv2's rules quota for a while.
pub fn rule_peaks(deployed: Option<&[u8]>, rendered: &[u8]) -> Vec<RulePeak> {
    fn rules(bytes: &[u8]) -> BTreeMap<String, std::collections::BTreeSet<String>> {
        let Ok(t) = serde_json::from_slice::<serde_json::Value>(bytes) else { return BTreeMap::new() };
        let Some(res) = t["Resources"].as_object() else { return BTreeMap::new() };
        let lb_of_listener: BTreeMap<&str, &str> = res
            .iter()
            .filter(|(_, r)| r["Type"] == "AWS::ElasticLoadBalancingV2::Listener")
            .filter_map(|(id, r)| r["Properties"]["LoadBalancerArn"]["Ref"].as_str().map(|lb| (id.as_str(), lb)))
            .collect();
        let mut out: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
        for (id, r) in res.iter().filter(|(_, r)| r["Type"] == "AWS::ElasticLoadBalancingV2::ListenerRule") {
            let listener = r["Properties"]["ListenerArn"]["Ref"].as_str().unwrap_or_default();
            let lb = lb_of_listener.get(listener).copied().unwrap_or(listener);
            out.entry(lb.to_string()).or_default().insert(id.clone());
        }
        out
    }
    let before = deployed.map(rules).unwrap_or_default();
    rules(rendered)
        .into_iter()
        .map(|(lb, after)| {
            let had = before.get(&lb).cloned().unwrap_or_default();
            RulePeak { created: after.difference(&had).count(), deployed: had.len(), load_balancer: lb }
        })
        .collect()
}

/// The releases the routing renders for: every release whose stacks export target groups, but
/// the cold ones (out of routing by design) unless `include` names one or ELBv2 still gives one
/// traffic (someone routed it by hand: leaving it out would cut that traffic).
pub fn routed_shares(traffic: &ObservedTraffic, m: &Manifest, state: &State, include: Option<u32>) -> Vec<TrafficShare> {
    traffic
        .shares(m)
        .into_iter()
        .filter(|s| Some(s.release) == include || s.weight > 0 || state.releases.get(&s.release).is_none_or(|r| r.status != "cold"))
        .collect()
}

/// The releases that hold stacks but no place in the routing: the cold ones.
pub fn standby_shares(traffic: &ObservedTraffic, m: &Manifest, routed: &[TrafficShare]) -> Vec<TrafficShare> {
    traffic.shares(m).into_iter().filter(|s| !routed.iter().any(|r| r.release == s.release)).collect()
}

/// The routing stacks among rendered ones.
pub fn routing_only(m: &Manifest, rendered: BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    rendered.into_iter().filter(|(name, _)| m.stacks.iter().any(|s| &s.name == name && s.role == StackRole::Routing)).collect()
}

/// Shares as the plan records them.
pub fn to_plan(shares: &[TrafficShare]) -> Vec<Share> {
    shares
        .iter()
        .map(|s| Share { release: s.release, weight: s.weight, internal: s.internal.clone(), public: s.public.clone(), ports: s.ports.clone() })
        .collect()
}

/// Shares from the plan, as the compiler takes them.
pub fn from_plan(shares: &[Share], m: &Manifest) -> Vec<TrafficShare> {
    shares
        .iter()
        .map(|s| TrafficShare {
            release: s.release,
            weight: s.weight,
            routing_groups: m.formation.routing_groups,
            internal: s.internal.clone(),
            public: s.public.clone(),
            ports: s.ports.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(rules: &[(&str, &str)]) -> Vec<u8> {
        let mut res = serde_json::json!({
            "PublicLoadBalancer": {"Type": "AWS::ElasticLoadBalancingV2::LoadBalancer"},
            "PublicHttpsListener": {"Type": "AWS::ElasticLoadBalancingV2::Listener", "Properties": {"LoadBalancerArn": {"Ref": "PublicLoadBalancer"}}},
            "InternalLoadBalancer": {"Type": "AWS::ElasticLoadBalancingV2::LoadBalancer"},
            "InternalListener": {"Type": "AWS::ElasticLoadBalancingV2::Listener", "Properties": {"LoadBalancerArn": {"Ref": "InternalLoadBalancer"}}},
        });
        for (id, listener) in rules {
            res[*id] = serde_json::json!({"Type": "AWS::ElasticLoadBalancingV2::ListenerRule", "Properties": {"ListenerArn": {"Ref": listener}}});
        }
        serde_json::to_vec(&serde_json::json!({ "Resources": res })).expect("json")
    }

    #[test]
    fn the_rules_created_before_the_replaced_ones_go_count_at_the_peak() {
        let deployed = template(&[("A", "PublicHttpsListener"), ("ATest", "PublicHttpsListener"), ("X", "InternalListener")]);
        let rendered = template(&[("B", "PublicHttpsListener"), ("BTest", "PublicHttpsListener"), ("X", "InternalListener")]);
        let peaks = rule_peaks(Some(&deployed), &rendered);
        let public = peaks.iter().find(|p| p.load_balancer == "PublicLoadBalancer").expect("public");
        assert_eq!((public.deployed, public.created, public.peak()), (2, 2, 4));
        let internal = peaks.iter().find(|p| p.load_balancer == "InternalLoadBalancer").expect("internal");
        assert_eq!(internal.peak(), 1);
        // A stack created from nothing holds what it renders.
        assert_eq!(rule_peaks(None, &rendered).iter().map(RulePeak::peak).sum::<usize>(), 3);
    }
}
