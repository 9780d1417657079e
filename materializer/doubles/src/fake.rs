//! An in-memory AWS behind the seam, for what moto cannot show: CloudFormation's asynchronous
//! state machine (scripted status sequences, failures with resource events), "No updates",
//! throttling and server errors. Only what the converge touches is modelled.

use gilliam_materializer::aws::prelude::*;
use gilliam_materializer::aws::{
    AwsError, AwsResult, EcrImage, Group, Object, ObjectHead, PutCondition, Rule, Stack, StackEvent, StackRequest, TemplateSource,
};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct FakeStack {
    pub status: String,
    pub template: String,
    /// Statuses the next describe calls report, then the last one stays.
    pub script: VecDeque<String>,
    pub events: Vec<StackEvent>,
}

/// An image in a fake ECR repository: its digest and tags.
pub type FakeImage = (String, std::collections::BTreeSet<String>);

/// A repository's URI in the fake's account.
pub fn fake_repository_uri(region: &str, name: &str) -> String {
    format!("123456789012.dkr.ecr.{region}.amazonaws.com/{name}")
}

#[derive(Debug, Default)]
pub struct World {
    pub objects: BTreeMap<(String, String), (Vec<u8>, String)>,
    pub buckets: Vec<String>,
    pub stacks: BTreeMap<String, FakeStack>,
    /// What a create or update of a stack goes through (default: straight to *_COMPLETE).
    pub on_create: BTreeMap<String, Vec<(String, Option<StackEvent>)>>,
    pub on_update: BTreeMap<String, Vec<(String, Option<StackEvent>)>>,
    /// Errors the next calls of an operation return, in order.
    pub faults: BTreeMap<&'static str, VecDeque<AwsError>>,
    pub calls: Vec<&'static str>,
    /// Secrets: name to (value, scheduled for deletion).
    pub secrets: BTreeMap<String, (String, bool)>,
    /// Outputs each stack reports.
    pub outputs: BTreeMap<String, Vec<(String, String)>>,
    /// Each stack's resources: (logical id, physical id, type).
    pub resources: BTreeMap<String, Vec<(String, String, String)>>,
    /// The region's exports: name to value.
    pub exports: BTreeMap<String, String>,
    /// Listener rules by ARN. A rule with scripted forwards reports the next of them on each
    /// describe (then the last stays): how ELBv2's eventual consistency looks.
    pub rules: BTreeMap<String, VecDeque<Vec<(String, u32)>>>,
    /// Target group ARN to its deregistration delay (seconds); ELBv2's 300 by default.
    pub delays: BTreeMap<String, u32>,
    /// The account's quotas as ELBv2 and CloudFormation report them (`None`: the call fails
    /// as access denied), and the target groups and load balancers of the region.
    pub elb_limits: Option<BTreeMap<String, u32>>,
    pub stack_limit: Option<u32>,
    pub target_groups: Vec<String>,
    pub load_balancers: Vec<String>,
    /// ECR images by (region, repository): each a digest with its tags. A tag is on one image
    /// at most; an image whose last tag is removed is deleted, as ECR does.
    pub images: BTreeMap<(String, String), Vec<FakeImage>>,
    /// CloudWatch Logs events by log group.
    pub log_events: BTreeMap<String, Vec<gilliam_materializer::aws::LogEvent>>,
    /// ECR repositories by (region, name): their lifecycle policy text, when they have one.
    pub repositories: BTreeMap<(String, String), Option<String>>,
    /// Instances launched (one-off tasks), by id: the launch and the state.
    pub instances: BTreeMap<String, (gilliam_materializer::aws::InstanceLaunch, gilliam_materializer::aws::InstanceState)>,
    etags: u64,
}

#[derive(Debug, Default)]
pub struct Fake {
    pub world: Mutex<World>,
}

pub fn event(logical: &str, ty: &str, status: &str, reason: &str) -> StackEvent {
    StackEvent {
        id: format!("{logical}-{status}-{reason}"),
        logical_id: logical.into(),
        resource_type: ty.into(),
        status: status.into(),
        reason: Some(reason.into()),
    }
}

impl Fake {
    pub fn with<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        f(&mut self.world.lock().expect("world"))
    }
    fn enter(&self, op: &'static str) -> AwsResult<()> {
        self.with(|w| {
            w.calls.push(op);
            match w.faults.get_mut(op).and_then(VecDeque::pop_front) {
                Some(e) => Err(e),
                None => Ok(()),
            }
        })
    }
    fn run_script(w: &mut World, name: &str, steps: Vec<(String, Option<StackEvent>)>, done: &str) {
        let st = w.stacks.get_mut(name).expect("stack");
        if steps.is_empty() {
            st.status = done.into();
            return;
        }
        for (status, ev) in steps {
            st.script.push_back(status);
            if let Some(e) = ev {
                st.events.insert(0, e);
            }
        }
    }
}

impl S3 for Fake {
    async fn bucket_exists(&self, bucket: &str) -> AwsResult<bool> {
        self.enter("bucket_exists")?;
        Ok(self.with(|w| w.buckets.iter().any(|b| b == bucket)))
    }
    async fn create_secure_bucket(&self, bucket: &str, _region: &str) -> AwsResult<()> {
        self.enter("create_secure_bucket")?;
        self.with(|w| w.buckets.push(bucket.into()));
        Ok(())
    }
    async fn get_object(&self, bucket: &str, key: &str) -> AwsResult<Option<Object>> {
        self.enter("get_object")?;
        Ok(self.with(|w| w.objects.get(&(bucket.into(), key.into())).map(|(b, e)| Object { body: b.clone(), etag: e.clone() })))
    }
    async fn head_object(&self, bucket: &str, key: &str) -> AwsResult<Option<ObjectHead>> {
        self.enter("head_object")?;
        Ok(self.with(|w| {
            w.objects.get(&(bucket.into(), key.into())).map(|(b, _)| ObjectHead { size: b.len() as u64, sha256: Some(gilliam_materializer::sha256_hex(b)) })
        }))
    }
    async fn put_object(&self, bucket: &str, key: &str, body: Vec<u8>, cond: PutCondition) -> AwsResult<String> {
        self.enter("put_object")?;
        self.with(|w| {
            let k = (bucket.to_string(), key.to_string());
            let ok = match (&cond, w.objects.get(&k)) {
                (PutCondition::Always, _) | (PutCondition::Absent, None) => true,
                (PutCondition::Matches(e), Some((_, have))) => e == have,
                _ => false,
            };
            if !ok {
                return Err(AwsError::PreconditionFailed);
            }
            w.etags += 1;
            let etag = format!("\"e{}\"", w.etags);
            w.objects.insert(k, (body, etag.clone()));
            Ok(etag)
        })
    }
}

impl CloudFormation for Fake {
    async fn describe_stack(&self, name: &str) -> AwsResult<Option<Stack>> {
        self.enter("describe_stack")?;
        Ok(self.with(|w| {
            w.stacks
                .get_mut(name)
                .map(|st| {
                    if let Some(next) = st.script.pop_front() {
                        st.status = next;
                    }
                    Stack { name: name.into(), id: format!("id/{name}"), status: st.status.clone(), reason: None, outputs: vec![] }
                })
                .map(|mut st| {
                    st.outputs = w.outputs.get(name).cloned().unwrap_or_default();
                    st
                })
        }))
    }
    async fn create_stack(&self, req: &StackRequest) -> AwsResult<String> {
        self.enter("create_stack")?;
        self.with(|w| {
            let TemplateSource::Body(t) = &req.template else { return Err(AwsError::Invalid("fake takes bodies only".into())) };
            if w.stacks.contains_key(&req.name) {
                return Err(AwsError::Invalid(format!("AlreadyExistsException: Stack [{}] already exists", req.name)));
            }
            w.stacks.insert(req.name.clone(), FakeStack { status: "CREATE_IN_PROGRESS".into(), template: t.clone(), ..FakeStack::default() });
            let steps = w.on_create.remove(&req.name).unwrap_or_default();
            Fake::run_script(w, &req.name, steps, "CREATE_COMPLETE");
            Ok(format!("id/{}", req.name))
        })
    }
    async fn update_stack(&self, req: &StackRequest) -> AwsResult<()> {
        self.enter("update_stack")?;
        self.with(|w| {
            let TemplateSource::Body(t) = &req.template else { return Err(AwsError::Invalid("fake takes bodies only".into())) };
            let st = w.stacks.get_mut(&req.name).ok_or_else(|| AwsError::Invalid("does not exist".into()))?;
            if st.template == *t {
                return Err(AwsError::NoUpdates);
            }
            st.template = t.clone();
            st.status = "UPDATE_IN_PROGRESS".into();
            let steps = w.on_update.remove(&req.name).unwrap_or_default();
            Fake::run_script(w, &req.name, steps, "UPDATE_COMPLETE");
            Ok(())
        })
    }
    async fn delete_stack(&self, name: &str) -> AwsResult<()> {
        self.enter("delete_stack")?;
        self.with(|w| w.stacks.remove(name));
        Ok(())
    }
    async fn continue_update_rollback(&self, name: &str) -> AwsResult<()> {
        self.enter("continue_update_rollback")?;
        self.with(|w| {
            if let Some(st) = w.stacks.get_mut(name) {
                st.status = "UPDATE_ROLLBACK_COMPLETE".into();
            }
        });
        Ok(())
    }
    async fn stack_events(&self, name: &str) -> AwsResult<Vec<StackEvent>> {
        self.enter("stack_events")?;
        Ok(self.with(|w| w.stacks.get(name).map(|s| s.events.clone()).unwrap_or_default()))
    }
    async fn get_template(&self, name: &str) -> AwsResult<String> {
        self.enter("get_template")?;
        self.with(|w| w.stacks.get(name).map(|s| s.template.clone()).ok_or_else(|| AwsError::Invalid("does not exist".into())))
    }
    async fn stack_resources(&self, name: &str) -> AwsResult<Vec<(String, String, String)>> {
        self.enter("stack_resources")?;
        Ok(self.with(|w| w.resources.get(name).cloned().unwrap_or_default()))
    }
    async fn list_exports(&self) -> AwsResult<Vec<(String, String)>> {
        self.enter("list_exports")?;
        Ok(self.with(|w| w.exports.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
    }
    async fn stack_limit(&self) -> AwsResult<Option<u32>> {
        self.enter("stack_limit")?;
        Ok(self.with(|w| w.stack_limit))
    }
    async fn stack_names(&self) -> AwsResult<Vec<String>> {
        self.enter("stack_names")?;
        Ok(self.with(|w| w.stacks.keys().cloned().collect()))
    }
}

impl Elbv2 for Fake {
    async fn targets(&self, _arn: &str) -> AwsResult<Vec<(String, String)>> {
        self.enter("targets")?;
        Ok(vec![])
    }
    async fn describe_rules(&self, arns: &[String]) -> AwsResult<Vec<Rule>> {
        self.enter("describe_rules")?;
        Ok(self.with(|w| {
            arns.iter()
                .filter_map(|arn| {
                    let script = w.rules.get_mut(arn)?;
                    let forward = if script.len() > 1 { script.pop_front().unwrap_or_default() } else { script.front().cloned().unwrap_or_default() };
                    Some(Rule { arn: arn.clone(), forward, stickiness: None })
                })
                .collect()
        }))
    }
    async fn set_rule_weights(&self, arn: &str, forward: &[(String, u32)], _stickiness: Option<u32>) -> AwsResult<()> {
        self.enter("set_rule_weights")?;
        self.with(|w| w.rules.insert(arn.to_string(), VecDeque::from([forward.to_vec()])));
        Ok(())
    }
    async fn target_health(&self, _arn: &str) -> AwsResult<Vec<String>> {
        self.enter("target_health")?;
        Ok(vec![])
    }
    async fn deregistration_delay(&self, arn: &str) -> AwsResult<u32> {
        self.enter("deregistration_delay")?;
        Ok(self.with(|w| w.delays.get(arn).copied().unwrap_or(300)))
    }
    async fn elb_limits(&self) -> AwsResult<BTreeMap<String, u32>> {
        self.enter("elb_limits")?;
        self.with(|w| w.elb_limits.clone())
            .ok_or_else(|| AwsError::Other("AccessDenied: not authorized to perform elasticloadbalancing:DescribeAccountLimits".into()))
    }
    async fn target_group_arns(&self) -> AwsResult<Vec<String>> {
        self.enter("target_group_arns")?;
        Ok(self.with(|w| w.target_groups.clone()))
    }
    async fn load_balancer_arns(&self) -> AwsResult<Vec<String>> {
        self.enter("load_balancer_arns")?;
        Ok(self.with(|w| w.load_balancers.clone()))
    }
}

impl Ecr for Fake {
    async fn describe_image(&self, region: &str, repository: &str, reference: &str) -> AwsResult<Option<EcrImage>> {
        self.enter("describe_image")?;
        Ok(self.with(|w| {
            let images = w.images.get(&(region.to_string(), repository.to_string()))?;
            images
                .iter()
                .find(|(d, tags)| d == reference || tags.contains(reference))
                .map(|(d, tags)| EcrImage { digest: d.clone(), tags: tags.iter().cloned().collect() })
        }))
    }
    async fn tag_image(&self, region: &str, repository: &str, digest: &str, tag: &str) -> AwsResult<()> {
        self.enter("tag_image")?;
        self.with(|w| {
            let images = w
                .images
                .get_mut(&(region.to_string(), repository.to_string()))
                .ok_or_else(|| AwsError::Invalid(format!("RepositoryNotFoundException: {repository}")))?;
            if images.iter().any(|(d, tags)| d != digest && tags.contains(tag)) {
                return Err(AwsError::Invalid(format!(
                    "ImageTagAlreadyExistsException: tag {tag} is on another image of the immutable repository {repository}"
                )));
            }
            let (_, tags) = images.iter_mut().find(|(d, _)| d == digest).ok_or_else(|| AwsError::Invalid(format!("ImageNotFoundException: {digest}")))?;
            tags.insert(tag.to_string());
            Ok(())
        })
    }
    async fn describe_repository(&self, region: &str, name: &str) -> AwsResult<Option<String>> {
        self.enter("describe_repository")?;
        Ok(self.with(|w| w.repositories.contains_key(&(region.to_string(), name.to_string())).then(|| fake_repository_uri(region, name))))
    }
    async fn create_repository(&self, region: &str, name: &str, _formation: &str) -> AwsResult<String> {
        self.enter("create_repository")?;
        self.with(|w| {
            let key = (region.to_string(), name.to_string());
            if w.repositories.contains_key(&key) {
                return Err(AwsError::Invalid(format!("RepositoryAlreadyExistsException: {name}")));
            }
            w.repositories.insert(key.clone(), None);
            w.images.entry(key).or_default();
            Ok(fake_repository_uri(region, name))
        })
    }
    async fn lifecycle_policy(&self, region: &str, name: &str) -> AwsResult<Option<String>> {
        self.enter("lifecycle_policy")?;
        Ok(self.with(|w| w.repositories.get(&(region.to_string(), name.to_string())).cloned().flatten()))
    }
    async fn put_lifecycle_policy(&self, region: &str, name: &str, text: &str) -> AwsResult<()> {
        self.enter("put_lifecycle_policy")?;
        self.with(|w| match w.repositories.get_mut(&(region.to_string(), name.to_string())) {
            Some(p) => {
                *p = Some(text.to_string());
                Ok(())
            }
            None => Err(AwsError::Invalid(format!("RepositoryNotFoundException: {name}"))),
        })
    }
    async fn registry_login(&self, _region: &str) -> AwsResult<gilliam_materializer::aws::RegistryLogin> {
        self.enter("registry_login")?;
        Ok(gilliam_materializer::aws::RegistryLogin { username: "AWS".into(), password: "fake".into() })
    }
    async fn untag_image(&self, region: &str, repository: &str, tag: &str) -> AwsResult<()> {
        self.enter("untag_image")?;
        self.with(|w| {
            if let Some(images) = w.images.get_mut(&(region.to_string(), repository.to_string())) {
                // The image whose last tag this was is deleted with it.
                images.retain_mut(|(_, tags)| !(tags.remove(tag) && tags.is_empty()));
            }
        });
        Ok(())
    }
}

impl AutoScaling for Fake {
    async fn describe_groups(&self, _names: &[String]) -> AwsResult<Vec<Group>> {
        self.enter("describe_groups")?;
        Ok(vec![])
    }
    async fn set_capacity(&self, _name: &str, _min: u32, _desired: u32, _max: u32) -> AwsResult<()> {
        self.enter("set_capacity")?;
        Ok(())
    }
}

impl SecretsManager for Fake {
    async fn delete_secret(&self, _name: &str) -> AwsResult<()> {
        Err(AwsError::Other("this fake cannot delete secrets".into()))
    }
    async fn describe_secret(&self, name: &str) -> AwsResult<Option<bool>> {
        self.enter("describe_secret")?;
        Ok(self.with(|w| w.secrets.get(name).map(|(_, deleted)| *deleted)))
    }
    async fn restore_secret(&self, name: &str) -> AwsResult<()> {
        self.enter("restore_secret")?;
        self.with(|w| w.secrets.get_mut(name).map(|s| s.1 = false).ok_or_else(|| AwsError::Invalid("ResourceNotFoundException".into())))
    }
    async fn random_password(&self) -> AwsResult<String> {
        self.enter("random_password")?;
        Ok("generated-password-0123456789abc".into())
    }
    async fn secret_value(&self, name: &str) -> AwsResult<Option<String>> {
        self.enter("secret_value")?;
        Ok(self.with(|w| w.secrets.get(name).filter(|s| !s.1).map(|s| s.0.clone())))
    }
    async fn put_secret_value(&self, name: &str, value: &str) -> AwsResult<()> {
        self.enter("put_secret_value")?;
        self.with(|w| w.secrets.get_mut(name).map(|s| s.0 = value.to_string()).ok_or_else(|| AwsError::Invalid("ResourceNotFoundException".into())))
    }
    async fn put_secret(&self, name: &str, value: &str, _formation: &str) -> AwsResult<String> {
        self.enter("put_secret")?;
        self.with(|w| {
            if w.secrets.contains_key(name) {
                return Err(AwsError::Invalid(format!("ResourceExistsException: the secret {name} already exists")));
            }
            w.secrets.insert(name.to_string(), (value.to_string(), false));
            Ok(format!("arn:secret:{name}"))
        })
    }
}

impl CloudWatch for Fake {
    async fn metric_data(
        &self,
        _queries: &[gilliam_materializer::aws::MetricQuery],
        _start: i64,
        _end: i64,
    ) -> AwsResult<std::collections::BTreeMap<String, Vec<f64>>> {
        self.enter("metric_data")?;
        Ok(Default::default())
    }
    async fn alarm_states(&self, _names: &[String]) -> AwsResult<Vec<(String, String)>> {
        self.enter("alarm_states")?;
        Ok(vec![])
    }
    async fn log_events(&self, group: &str, stream_prefix: Option<&str>, start_ms: i64, next: Option<&str>) -> AwsResult<gilliam_materializer::aws::LogPage> {
        self.enter("log_events")?;
        // Pages of 2 events, the token the offset: enough to prove callers follow pages.
        let from: usize = next.and_then(|t| t.parse().ok()).unwrap_or(0);
        let all: Vec<gilliam_materializer::aws::LogEvent> = self.with(|w| {
            let mut v: Vec<_> = w
                .log_events
                .get(group)
                .into_iter()
                .flatten()
                .filter(|e| e.ts_ms >= start_ms && stream_prefix.is_none_or(|p| e.stream.starts_with(p)))
                .cloned()
                .collect();
            v.sort_by_key(|e| e.ts_ms);
            v
        });
        let page: Vec<_> = all.iter().skip(from).take(2).cloned().collect();
        let next = (from + page.len() < all.len()).then(|| (from + page.len()).to_string());
        Ok(gilliam_materializer::aws::LogPage { events: page, next })
    }
}

impl Sns for Fake {
    async fn publish(&self, _topic: &str, _subject: &str, _message: &str) -> AwsResult<()> {
        self.enter("publish")?;
        Ok(())
    }
}

impl EventBridge for Fake {
    async fn put_event(&self, _bus: &str, _detail_type: &str, _detail: &str) -> AwsResult<()> {
        self.enter("put_event")?;
        Ok(())
    }
}

impl Ec2 for Fake {
    /// The fake has no network to describe: the preflight is skipped.
    async fn describe_network(&self, _vpc: &str, _subnets: &[String]) -> AwsResult<Option<gilliam_materializer::aws::Network>> {
        self.enter("describe_network")?;
        Ok(None)
    }
    async fn launch_times(&self, _ids: &[String]) -> AwsResult<BTreeMap<String, String>> {
        self.enter("launch_times")?;
        Ok(BTreeMap::new())
    }
    /// A launch is `running` at once; a second launch with the same client token is the first.
    async fn run_instance(&self, req: &gilliam_materializer::aws::InstanceLaunch) -> AwsResult<String> {
        self.enter("run_instance")?;
        Ok(self.with(|w| {
            if let Some((id, _)) = w.instances.iter().find(|(_, (l, _))| l.client_token == req.client_token) {
                return id.clone();
            }
            let id = format!("i-fake{:012}", w.instances.len() + 1);
            w.instances.insert(id.clone(), (req.clone(), gilliam_materializer::aws::InstanceState { name: "running".into(), reason: String::new() }));
            id
        }))
    }
    async fn instance_states(&self, ids: &[String]) -> AwsResult<BTreeMap<String, gilliam_materializer::aws::InstanceState>> {
        self.enter("instance_states")?;
        Ok(self.with(|w| ids.iter().filter_map(|id| w.instances.get(id).map(|(_, s)| (id.clone(), s.clone()))).collect()))
    }
    async fn task_instances(&self, formation: &str) -> AwsResult<Vec<gilliam_materializer::aws::TaskInstance>> {
        self.enter("task_instances")?;
        Ok(self.with(|w| {
            w.instances
                .iter()
                .filter(|(_, (l, s))| s.name != "terminated" && l.tags.iter().any(|(k, v)| k == "gilliam:formation" && v == formation))
                .map(|(id, (l, s))| {
                    let tag = |k: &str| l.tags.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone()).unwrap_or_default();
                    gilliam_materializer::aws::TaskInstance {
                        id: id.clone(),
                        release: tag("gilliam:release").parse().ok(),
                        service: tag("gilliam:service"),
                        purpose: tag("gilliam:task"),
                        state: s.name.clone(),
                        zone: String::new(),
                        launched: String::new(),
                    }
                })
                .collect()
        }))
    }
    async fn terminate_instances(&self, ids: &[String]) -> AwsResult<()> {
        self.enter("terminate_instances")?;
        self.with(|w| {
            for id in ids {
                if let Some((_, s)) = w.instances.get_mut(id) {
                    *s = gilliam_materializer::aws::InstanceState { name: "terminated".into(), reason: "Client.UserInitiatedShutdown".into() };
                }
            }
        });
        Ok(())
    }
}
