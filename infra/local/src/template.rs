//! template.yaml as the runner needs it: functions with their environment and event
//! sources, rules, queues, tables and the bus. Intrinsics (`!Ref`, `!GetAtt`, `!Sub`) are
//! resolved against the names the runner gives resources locally.

use crate::queues::DEFAULT_CONCURRENCY;
use anyhow::{anyhow, bail, Context, Result};
use serde_norway::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Template {
    resources: BTreeMap<String, Value>,
    parameters: BTreeMap<String, Value>,
    globals_env: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: String,
    pub path: String,
    /// `Auth: {Authorizer: NONE}`: the function authenticates the call itself (a signed
    /// webhook), so the gateway passes it through without a token.
    pub public: bool,
    /// The HTTP API it belongs to (`ApiId: !Ref <id>`); `None` for SAM's implicit API.
    pub api: Option<String>,
}

impl Route {
    /// API Gateway's route key, e.g. `GET /workspaces/{workspaceId}`.
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Debug, Clone)]
pub enum Trigger {
    Http(Route),
    Sqs {
        queue: String,
        batch_size: usize,
        /// MaximumBatchingWindowInSeconds, zero when unset.
        batching_window: Duration,
        /// ScalingConfig.MaximumConcurrency, or the runner's default.
        concurrency: usize,
    },
    Stream {
        table: String,
        batch_size: usize,
        max_retries: u32,
        on_failure: Option<String>,
    },
    Schedule {
        expression: String,
    },
}

#[derive(Debug, Clone)]
pub struct Function {
    pub id: String,
    pub environment: BTreeMap<String, Value>,
    pub triggers: Vec<Trigger>,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub id: String,
    pub hash_key: (String, String),
    pub range_key: Option<(String, String)>,
    pub stream: bool,
    pub ttl_attribute: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Queue {
    pub id: String,
    pub visibility_timeout: Option<i64>,
    /// DelaySeconds: how long each new message stays invisible.
    pub delay_seconds: Option<i64>,
    /// Dead-letter queue id and maxReceiveCount.
    pub redrive: Option<(String, i64)>,
}

/// An `AWS::Serverless::HttpApi` as far as the runner plays its stage.
#[derive(Debug, Clone)]
pub struct HttpApi {
    pub id: String,
    /// `DefaultRouteSettings` when it sets both throttling limits.
    pub throttling: Option<RouteThrottling>,
}

/// Throttling limits as written in the template: numbers or `!Ref` to parameters.
#[derive(Debug, Clone)]
pub struct RouteThrottling {
    pub rate: Value,
    pub burst: Value,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub bus: String,
    pub pattern: serde_json::Value,
    /// Target queue ids.
    pub targets: Vec<String>,
}

impl Template {
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self> {
        let doc: Value = serde_norway::from_str(text).context("template.yaml is not YAML")?;
        let map = |v: Option<&Value>| -> BTreeMap<String, Value> {
            v.and_then(Value::as_mapping)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.clone())))
                        .collect()
                })
                .unwrap_or_default()
        };
        let resources = map(doc.get("Resources"));
        if resources.is_empty() {
            bail!("template.yaml has no Resources");
        }
        let globals_env = map(doc
            .get("Globals")
            .and_then(|g| g.get("Function"))
            .and_then(|f| f.get("Environment"))
            .and_then(|e| e.get("Variables")));
        Ok(Self {
            resources,
            parameters: map(doc.get("Parameters")),
            globals_env,
        })
    }

    fn of_type<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = (&'a String, &'a Value)> + 'a {
        self.resources
            .iter()
            .filter(move |(_, r)| r.get("Type").and_then(Value::as_str) == Some(ty))
    }

    pub fn resource_type(&self, id: &str) -> Option<&str> {
        self.resources.get(id)?.get("Type")?.as_str()
    }

    pub fn parameter_default(&self, id: &str) -> Option<String> {
        let d = self.parameters.get(id)?.get("Default")?;
        scalar(d)
    }

    pub fn is_parameter(&self, id: &str) -> bool {
        self.parameters.contains_key(id)
    }

    pub fn functions(&self) -> Result<Vec<Function>> {
        let mut out = Vec::new();
        for (id, r) in self.of_type("AWS::Serverless::Function") {
            let props = r
                .get("Properties")
                .ok_or_else(|| anyhow!("{id} has no Properties"))?;
            let mut environment = self.globals_env.clone();
            if let Some(vars) = props
                .get("Environment")
                .and_then(|e| e.get("Variables"))
                .and_then(Value::as_mapping)
            {
                for (k, v) in vars {
                    if let Some(k) = k.as_str() {
                        environment.insert(k.to_owned(), v.clone());
                    }
                }
            }
            let mut triggers = Vec::new();
            if let Some(events) = props.get("Events").and_then(Value::as_mapping) {
                for (name, event) in events {
                    let name = name.as_str().unwrap_or_default();
                    let p = event.get("Properties");
                    let get = |k: &str| p.and_then(|p| p.get(k));
                    let trigger = match event.get("Type").and_then(Value::as_str) {
                        Some("HttpApi") => Trigger::Http(Route {
                            method: get("Method")
                                .and_then(scalar)
                                .unwrap_or_default()
                                .to_uppercase(),
                            path: get("Path").and_then(scalar).unwrap_or_default(),
                            public: get("Auth")
                                .and_then(|a| a.get("Authorizer"))
                                .and_then(scalar)
                                .is_some_and(|a| a == "NONE"),
                            api: ref_target(get("ApiId")),
                        }),
                        Some("SQS") => Trigger::Sqs {
                            queue: get_att_target(get("Queue"))
                                .with_context(|| format!("{id}.{name}.Queue"))?,
                            batch_size: get("BatchSize").and_then(Value::as_u64).unwrap_or(10)
                                as usize,
                            batching_window: Duration::from_secs(
                                get("MaximumBatchingWindowInSeconds")
                                    .and_then(Value::as_u64)
                                    .unwrap_or(0),
                            ),
                            concurrency: get("ScalingConfig")
                                .and_then(|s| s.get("MaximumConcurrency"))
                                .and_then(Value::as_u64)
                                .map_or(DEFAULT_CONCURRENCY, |n| n as usize),
                        },
                        Some("DynamoDB") => Trigger::Stream {
                            table: get_att_target(get("Stream"))
                                .with_context(|| format!("{id}.{name}.Stream"))?,
                            batch_size: get("BatchSize").and_then(Value::as_u64).unwrap_or(100)
                                as usize,
                            max_retries: get("MaximumRetryAttempts")
                                .and_then(Value::as_u64)
                                .unwrap_or(10) as u32,
                            on_failure: get("DestinationConfig")
                                .and_then(|d| d.get("OnFailure"))
                                .and_then(|o| o.get("Destination"))
                                .and_then(|d| get_att_target(Some(d)).ok()),
                        },
                        Some("Schedule") | Some("ScheduleV2") => Trigger::Schedule {
                            expression: get("Schedule")
                                .or_else(|| get("ScheduleExpression"))
                                .and_then(scalar)
                                .unwrap_or_default(),
                        },
                        other => {
                            bail!("{id}.{name}: event type {other:?} is not supported locally")
                        }
                    };
                    triggers.push(trigger);
                }
            }
            out.push(Function {
                id: id.clone(),
                environment,
                triggers,
            });
        }
        Ok(out)
    }

    pub fn tables(&self) -> Result<Vec<Table>> {
        let mut out = Vec::new();
        for (id, r) in self.of_type("AWS::DynamoDB::Table") {
            let props = r
                .get("Properties")
                .ok_or_else(|| anyhow!("{id} has no Properties"))?;
            let types: HashMap<String, String> = props
                .get("AttributeDefinitions")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(|d| {
                    Some((
                        d.get("AttributeName")?.as_str()?.to_owned(),
                        d.get("AttributeType")?.as_str()?.to_owned(),
                    ))
                })
                .collect();
            let key = |kind: &str| -> Option<(String, String)> {
                props
                    .get("KeySchema")?
                    .as_sequence()?
                    .iter()
                    .find(|k| k.get("KeyType").and_then(Value::as_str) == Some(kind))
                    .and_then(|k| k.get("AttributeName")?.as_str())
                    .map(|n| {
                        (
                            n.to_owned(),
                            types.get(n).cloned().unwrap_or_else(|| "S".into()),
                        )
                    })
            };
            out.push(Table {
                id: id.clone(),
                hash_key: key("HASH").ok_or_else(|| anyhow!("{id} has no HASH key"))?,
                range_key: key("RANGE"),
                stream: props.get("StreamSpecification").is_some(),
                ttl_attribute: props
                    .get("TimeToLiveSpecification")
                    .and_then(|t| t.get("AttributeName"))
                    .and_then(scalar),
            });
        }
        Ok(out)
    }

    pub fn queues(&self) -> Result<Vec<Queue>> {
        let mut out = Vec::new();
        for (id, r) in self.of_type("AWS::SQS::Queue") {
            let props = r.get("Properties");
            let redrive = match props.and_then(|p| p.get("RedrivePolicy")) {
                Some(rp) => Some((
                    get_att_target(rp.get("deadLetterTargetArn"))
                        .with_context(|| format!("{id} redrive"))?,
                    rp.get("maxReceiveCount")
                        .and_then(Value::as_i64)
                        .unwrap_or(5),
                )),
                None => None,
            };
            out.push(Queue {
                id: id.clone(),
                visibility_timeout: props
                    .and_then(|p| p.get("VisibilityTimeout"))
                    .and_then(Value::as_i64),
                delay_seconds: props
                    .and_then(|p| p.get("DelaySeconds"))
                    .and_then(Value::as_i64),
                redrive,
            });
        }
        Ok(out)
    }

    pub fn http_apis(&self) -> Vec<HttpApi> {
        self.of_type("AWS::Serverless::HttpApi")
            .map(|(id, r)| {
                let settings = r
                    .get("Properties")
                    .and_then(|p| p.get("DefaultRouteSettings"));
                let limit = |k: &str| settings.and_then(|s| s.get(k)).cloned();
                HttpApi {
                    id: id.clone(),
                    throttling: limit("ThrottlingRateLimit")
                        .zip(limit("ThrottlingBurstLimit"))
                        .map(|(rate, burst)| RouteThrottling { rate, burst }),
                }
            })
            .collect()
    }

    pub fn buses(&self) -> Vec<String> {
        self.of_type("AWS::Events::EventBus")
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub fn rules(&self) -> Result<Vec<Rule>> {
        let mut out = Vec::new();
        for (id, r) in self.of_type("AWS::Events::Rule") {
            let props = r
                .get("Properties")
                .ok_or_else(|| anyhow!("{id} has no Properties"))?;
            let bus = match props.get("EventBusName") {
                Some(Value::Tagged(t)) if t.tag == "Ref" => {
                    t.value.as_str().unwrap_or_default().to_owned()
                }
                Some(other) => bail!("{id}: EventBusName must be !Ref to a bus, found {other:?}"),
                None => bail!("{id}: rules on the default bus are not used by kassa"),
            };
            let pattern = props
                .get("EventPattern")
                .ok_or_else(|| anyhow!("{id} has no EventPattern"))?;
            let pattern = serde_json::to_value(pattern).context("EventPattern as JSON")?;
            let targets = props
                .get("Targets")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .map(|t| get_att_target(t.get("Arn")))
                .collect::<Result<Vec<_>>>()
                .with_context(|| format!("{id} targets"))?;
            out.push(Rule {
                id: id.clone(),
                bus,
                pattern,
                targets,
            });
        }
        Ok(out)
    }
}

/// A scalar as a string (YAML numbers and booleans included).
pub fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The resource or parameter a `!Ref X` (or `Ref: X`) names.
fn ref_target(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Tagged(t) if t.tag == "Ref" => scalar(&t.value),
        Value::Mapping(m) => m.get("Ref").and_then(scalar),
        _ => None,
    }
}

/// The resource a `!GetAtt X.Attr` (or `Fn::GetAtt: [X, Attr]`) points at.
pub fn get_att_target(v: Option<&Value>) -> Result<String> {
    match v {
        Some(Value::Tagged(t)) if t.tag == "GetAtt" => match &t.value {
            Value::String(s) => Ok(s.split('.').next().unwrap_or_default().to_owned()),
            Value::Sequence(seq) => seq
                .first()
                .and_then(scalar)
                .ok_or_else(|| anyhow!("empty GetAtt")),
            other => bail!("unexpected GetAtt {other:?}"),
        },
        Some(Value::Mapping(m)) => m
            .get("Fn::GetAtt")
            .and_then(Value::as_sequence)
            .and_then(|s| s.first())
            .and_then(scalar)
            .ok_or_else(|| anyhow!("expected Fn::GetAtt")),
        other => bail!("expected !GetAtt <Resource>.Arn, found {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Template {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        Template::load(&path).unwrap()
    }

    #[test]
    fn every_function_has_a_trigger_and_the_tables_environment() {
        let functions = template().functions().unwrap();
        assert!(functions.len() >= 7);
        for f in &functions {
            assert!(!f.triggers.is_empty(), "{} has no trigger", f.id);
            assert!(f.environment.contains_key("KASSA_EVENTS_TABLE"), "{}", f.id);
        }
    }

    #[test]
    fn rules_target_queues_that_exist() {
        let t = template();
        let queues: Vec<_> = t.queues().unwrap().into_iter().map(|q| q.id).collect();
        let rules = t.rules().unwrap();
        assert!(!rules.is_empty());
        for rule in rules {
            let sources = rule.pattern["source"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert!(!sources.is_empty(), "{} has no source", rule.id);
            for source in sources {
                assert!(
                    source.as_str().is_some_and(|s| s.starts_with("kassa.")),
                    "{} listens to {source}, not a kassa context",
                    rule.id
                );
            }
            for target in &rule.targets {
                assert!(
                    queues.contains(target),
                    "{} targets unknown {target}",
                    rule.id
                );
            }
        }
    }

    #[test]
    fn routes_are_unique() {
        let mut keys: Vec<_> = template()
            .functions()
            .unwrap()
            .into_iter()
            .flat_map(|f| f.triggers)
            .filter_map(|t| match t {
                Trigger::Http(r) => Some(r.key()),
                _ => None,
            })
            .collect();
        let n = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), n);
    }

    #[test]
    fn sqs_mappings_take_their_batching_and_concurrency_from_the_event_source() {
        let template = Template::parse(
            r#"
Resources:
  Queue:
    Type: AWS::SQS::Queue
  Scaled:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt Queue.Arn
            BatchSize: 25
            MaximumBatchingWindowInSeconds: 2
            ScalingConfig:
              MaximumConcurrency: 3
  Plain:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt Queue.Arn
"#,
        )
        .unwrap();
        let mappings: BTreeMap<String, (usize, Duration, usize)> = template
            .functions()
            .unwrap()
            .into_iter()
            .flat_map(|f| f.triggers.into_iter().map(move |t| (f.id.clone(), t)))
            .filter_map(|(id, t)| match t {
                Trigger::Sqs {
                    batch_size,
                    batching_window,
                    concurrency,
                    ..
                } => Some((id, (batch_size, batching_window, concurrency))),
                _ => None,
            })
            .collect();
        assert_eq!(mappings["Scaled"], (25, Duration::from_secs(2), 3));
        assert_eq!(
            mappings["Plain"],
            (10, Duration::ZERO, crate::queues::DEFAULT_CONCURRENCY)
        );
    }
}
