//! Creates the template's tables, queues, bus and rules on the emulators, and resolves
//! `!Ref`/`!GetAtt`/`!Sub` to the local names.

use crate::template::{scalar, Template};
use anyhow::{anyhow, Context, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    StreamSpecification, StreamViewType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_norway::Value;
use std::collections::{BTreeMap, HashMap};

/// What the emulators call each resource of the template.
#[derive(Debug, Clone, Default)]
pub struct Names {
    pub prefix: String,
    /// Logical id → physical name (tables, buses, queues).
    pub physical: HashMap<String, String>,
    pub queue_urls: HashMap<String, String>,
    pub arns: HashMap<String, String>,
    pub stream_arns: HashMap<String, String>,
    /// Template parameters given locally (secrets, endpoints); others take their default.
    pub parameters: HashMap<String, String>,
}

const ACCOUNT: &str = "123456789012";

impl Names {
    fn name(&self, id: &str) -> String {
        format!("{}-{id}", self.prefix)
    }

    /// Resolves a template value (a scalar or an intrinsic) to a string.
    pub fn resolve(&self, template: &Template, v: &Value) -> Result<String> {
        match v {
            Value::Tagged(t) if t.tag == "Ref" => {
                let id = t.value.as_str().unwrap_or_default();
                self.reference(template, id)
            }
            Value::Tagged(t) if t.tag == "GetAtt" => {
                let s = scalar(&t.value).unwrap_or_default();
                let (id, attr) = s.split_once('.').unwrap_or((&s, "Arn"));
                match attr {
                    "StreamArn" => self.stream_arns.get(id).cloned(),
                    _ => self.arns.get(id).cloned(),
                }
                .ok_or_else(|| anyhow!("!GetAtt {s} has no local value"))
            }
            Value::Tagged(t) if t.tag == "Sub" => {
                let mut s = scalar(&t.value).unwrap_or_default();
                while let Some(start) = s.find("${") {
                    let end = s[start..]
                        .find('}')
                        .map(|e| start + e)
                        .ok_or_else(|| anyhow!("bad !Sub"))?;
                    let value = self.reference(template, &s[start + 2..end])?;
                    s.replace_range(start..=end, &value);
                }
                Ok(s)
            }
            other => scalar(other).ok_or_else(|| anyhow!("cannot resolve {other:?}")),
        }
    }

    fn reference(&self, template: &Template, id: &str) -> Result<String> {
        // CloudFormation's Ref of an SQS queue is its URL.
        if let Some(url) = self.queue_urls.get(id) {
            return Ok(url.clone());
        }
        if let Some(p) = self.physical.get(id) {
            return Ok(p.clone());
        }
        match id {
            "AWS::Region" => return Ok("us-east-1".into()),
            "AWS::AccountId" => return Ok(ACCOUNT.into()),
            "AWS::StackName" => return Ok(self.prefix.clone()),
            "AWS::URLSuffix" => return Ok("localhost".into()),
            _ => {}
        }
        if let Some(value) = self.parameters.get(id) {
            return Ok(value.clone());
        }
        if template.is_parameter(id) {
            return Ok(template.parameter_default(id).unwrap_or_default());
        }
        Err(anyhow!("!Ref {id} has no local value"))
    }

    /// A function's environment with every intrinsic resolved.
    pub fn environment(
        &self,
        template: &Template,
        vars: &BTreeMap<String, Value>,
    ) -> Result<HashMap<String, String>> {
        vars.iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    self.resolve(template, v).with_context(|| k.clone())?,
                ))
            })
            .collect()
    }
}

pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub eventbridge: aws_sdk_eventbridge::Client,
    pub sqs: aws_sdk_sqs::Client,
}

pub async fn provision(template: &Template, clients: &Clients, prefix: &str) -> Result<Names> {
    let mut names = Names {
        prefix: prefix.to_owned(),
        ..Names::default()
    };
    create_tables(template, &clients.dynamodb, &mut names).await?;
    create_queues_and_rules(template, clients, &mut names).await?;
    Ok(names)
}

/// Creates only the template's tables (what store-level tests need).
pub async fn tables_only(
    template: &Template,
    dynamodb: &aws_sdk_dynamodb::Client,
    prefix: &str,
) -> Result<Names> {
    let mut names = Names {
        prefix: prefix.to_owned(),
        ..Names::default()
    };
    create_tables(template, dynamodb, &mut names).await?;
    Ok(names)
}

async fn create_tables(
    template: &Template,
    dynamodb: &aws_sdk_dynamodb::Client,
    names: &mut Names,
) -> Result<()> {
    for table in template.tables()? {
        let name = names.name(&table.id);
        let attr = |(n, t): &(String, String)| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(ScalarAttributeType::from(t.as_str()))
                .build()
        };
        let key = |(n, _): &(String, String), kt| {
            KeySchemaElement::builder()
                .attribute_name(n)
                .key_type(kt)
                .build()
        };
        let mut create = dynamodb
            .create_table()
            .table_name(&name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr(&table.hash_key)?)
            .key_schema(key(&table.hash_key, KeyType::Hash)?);
        if let Some(range) = &table.range_key {
            create = create
                .attribute_definitions(attr(range)?)
                .key_schema(key(range, KeyType::Range)?);
        }
        if table.stream {
            create = create.stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewImage)
                    .build()?,
            );
        }
        let out = create
            .send()
            .await
            .with_context(|| format!("creating table {name}"))?;
        if let Some(arn) = out
            .table_description
            .as_ref()
            .and_then(|d| d.latest_stream_arn.clone())
        {
            names.stream_arns.insert(table.id.clone(), arn);
        }
        if let Some(attribute) = &table.ttl_attribute {
            dynamodb
                .update_time_to_live()
                .table_name(&name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(attribute)
                        .enabled(true)
                        .build()?,
                )
                .send()
                .await
                .with_context(|| format!("TTL on {name}"))?;
        }
        names.arns.insert(
            table.id.clone(),
            format!("arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/{name}"),
        );
        names.physical.insert(table.id, name);
    }
    Ok(())
}

async fn create_queues_and_rules(
    template: &Template,
    clients: &Clients,
    names: &mut Names,
) -> Result<()> {
    // Dead-letter queues first, so redrive policies can name them.
    let mut queues = template.queues()?;
    queues.sort_by_key(|q| q.redrive.is_some());
    for queue in queues {
        let name = names.name(&queue.id);
        let mut create = clients.sqs.create_queue().queue_name(&name);
        if let Some(v) = queue.visibility_timeout {
            create = create.attributes(QueueAttributeName::VisibilityTimeout, v.to_string());
        }
        if let Some(v) = queue.delay_seconds {
            create = create.attributes(QueueAttributeName::DelaySeconds, v.to_string());
        }
        if let Some((dlq, max)) = &queue.redrive {
            let dlq_arn = names
                .arns
                .get(dlq)
                .ok_or_else(|| anyhow!("{} redrives to unknown {dlq}", queue.id))?;
            create = create.attributes(
                QueueAttributeName::RedrivePolicy,
                serde_json::json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": max })
                    .to_string(),
            );
        }
        let url = create
            .send()
            .await
            .with_context(|| format!("creating queue {name}"))?
            .queue_url
            .unwrap_or_default();
        let arn = clients
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .ok_or_else(|| anyhow!("queue {name} has no ARN"))?;
        names.arns.insert(queue.id.clone(), arn);
        names.queue_urls.insert(queue.id.clone(), url);
        names.physical.insert(queue.id, name);
    }

    for bus in template.buses() {
        let name = names.name(&bus);
        let out = clients
            .eventbridge
            .create_event_bus()
            .name(&name)
            .send()
            .await
            .with_context(|| format!("creating bus {name}"))?;
        names
            .arns
            .insert(bus.clone(), out.event_bus_arn.unwrap_or_default());
        names.physical.insert(bus, name);
    }

    for rule in template.rules()? {
        let bus = names
            .physical
            .get(&rule.bus)
            .ok_or_else(|| anyhow!("{} on unknown bus {}", rule.id, rule.bus))?
            .clone();
        let name = names.name(&rule.id);
        let out = clients
            .eventbridge
            .put_rule()
            .name(&name)
            .event_bus_name(&bus)
            .event_pattern(rule.pattern.to_string())
            .send()
            .await
            .with_context(|| format!("creating rule {name}"))?;
        names
            .arns
            .insert(rule.id.clone(), out.rule_arn.unwrap_or_default());
        for (i, target) in rule.targets.iter().enumerate() {
            let arn = names
                .arns
                .get(target)
                .ok_or_else(|| anyhow!("{} targets unknown {target}", rule.id))?;
            clients
                .eventbridge
                .put_targets()
                .rule(&name)
                .event_bus_name(&bus)
                .targets(
                    aws_sdk_eventbridge::types::Target::builder()
                        .id(format!("t{i}"))
                        .arn(arn)
                        .build()?,
                )
                .send()
                .await
                .with_context(|| format!("targets of {name}"))?;
        }
    }
    Ok(())
}
