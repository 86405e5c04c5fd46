//! Commit → event on the bus: how long after a consume's 200 its `credits.consumed` event
//! is on EventBridge, locally. The path is the one the local runner wires from the
//! template: the events table's stream, polled by kassa-local's stream source into the
//! function the template triggers from it (the relay, which persists the events the
//! wallet's head carries, then publishes them), then a rule on the bus to an SQS queue the
//! bench long-polls.
//!
//! It runs on tables, a workspace and a bus of its own, so the relay starts on a stream
//! holding only the workspace's set-up rather than everything the other measurements
//! wrote, and its polling does not share the other measurements' tables.

use crate::api;
use crate::sample::Sample;
use crate::workspace::{self, BenchWorkspace};
use anyhow::{bail, Context, Result};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};
use kassa_commerce::SystemClock;
use kassa_consume_credits::ConsumeCredits;
use kassa_local::functions;
use kassa_local::stream::StreamSource;
use kassa_local::template::{Template, Trigger};
use kassa_runtime::{Config, HttpFunction, SdkConfig};
use kassa_store::EventStore;
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Consumes before the timed ones, each waited for, so the stream source has found the
/// shard and every connection is open.
const WARMUP: usize = 10;
/// How long one event may take before it counts as missing.
const DEADLINE: Duration = Duration::from_secs(30);
const EVENTS_TABLE: &str = "EventsTable";

pub struct ToBus {
    pub latency: Sample,
    /// Consumes whose event did not reach the queue within [`DEADLINE`].
    pub missing: usize,
    /// The relay as the template wires it: function id, batch size.
    pub relay: String,
    pub batch_size: usize,
}

/// A bus whose `credits.consumed` events land on a queue.
struct Bus {
    name: String,
    queue: String,
    sqs: aws_sdk_sqs::Client,
}

impl Bus {
    async fn create(aws: &SdkConfig) -> Result<Bus> {
        let events = aws_sdk_eventbridge::Client::new(aws);
        let sqs = aws_sdk_sqs::Client::new(aws);
        let name = format!("bench-bus-{}", &Uuid::now_v7().simple().to_string()[20..]);
        events
            .create_event_bus()
            .name(&name)
            .send()
            .await
            .context("creating the bench bus")?;
        let queue = sqs
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .context("creating the bench queue")?
            .queue_url
            .context("the bench queue has no URL")?;
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&queue)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .context("the bench queue has no ARN")?;
        let rule = "credits-consumed";
        events
            .put_rule()
            .name(rule)
            .event_bus_name(&name)
            .event_pattern(
                json!({ "source": ["kassa.credits"], "detail-type": ["credits.consumed"] })
                    .to_string(),
            )
            .send()
            .await
            .context("creating the bench rule")?;
        events
            .put_targets()
            .rule(rule)
            .event_bus_name(&name)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(arn)
                    .build()?,
            )
            .send()
            .await
            .context("pointing the bench rule at its queue")?;
        Ok(Bus { name, queue, sqs })
    }

    /// Waits for the event of `consumption`, taking every message it meets off the queue:
    /// how long after `since` it arrived, or `None` past the deadline.
    async fn arrival(&self, consumption: &str, since: Instant) -> Result<Option<Duration>> {
        loop {
            if since.elapsed() > DEADLINE {
                return Ok(None);
            }
            let messages = self
                .sqs
                .receive_message()
                .queue_url(&self.queue)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .context("receiving from the bench queue")?
                .messages
                .unwrap_or_default();
            let arrived = since.elapsed();
            let mut found = false;
            let mut receipts = Vec::new();
            for (i, message) in messages.into_iter().enumerate() {
                let event = kassa_runtime::events::decode(message.body().unwrap_or_default())
                    .context("a message on the bench queue is not a kassa event")?;
                found |= event.payload["consumption_id"].as_str() == Some(consumption);
                if let Some(receipt) = message.receipt_handle {
                    receipts.push(
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(receipt)
                            .build()?,
                    );
                }
            }
            if !receipts.is_empty() {
                self.sqs
                    .delete_message_batch()
                    .queue_url(&self.queue)
                    .set_entries(Some(receipts))
                    .send()
                    .await
                    .context("deleting from the bench queue")?;
            }
            if found {
                return Ok(Some(arrived));
            }
        }
    }
}

/// The stream source the local runner would start for the events table: the template's
/// function for it, built as the runner builds it, with the template's batch size.
fn relay_source(
    aws: &SdkConfig,
    template: &Path,
    workspace: &BenchWorkspace,
    bus: &str,
) -> Result<(StreamSource, String)> {
    let template = Template::load(template)?;
    let (id, batch_size, max_retries) = template
        .functions()?
        .into_iter()
        .find_map(|f| {
            f.triggers.iter().find_map(|t| match t {
                Trigger::Stream {
                    table,
                    batch_size,
                    max_retries,
                    ..
                } if table == EVENTS_TABLE => Some((f.id.clone(), *batch_size, *max_retries)),
                _ => None,
            })
        })
        .context("no function of the template reads the events table's stream")?;
    let config = Config::from_map(&HashMap::from([
        (
            "KASSA_EVENTS_TABLE".to_owned(),
            workspace.events_table.clone(),
        ),
        (
            "KASSA_STATE_TABLE".to_owned(),
            workspace.state_table.clone(),
        ),
        ("KASSA_EVENT_BUS".to_owned(), bus.to_owned()),
    ]))?;
    let lambda = functions::build(&id, &config, aws, Arc::new(SystemClock))?;
    let source = StreamSource {
        client: aws_sdk_dynamodbstreams::Client::new(aws),
        stream_arn: workspace
            .events_stream
            .clone()
            .context("the bench events table has no stream")?,
        batch_size,
        max_retries,
        on_failure: None,
        lambda,
    };
    Ok((source, id))
}

/// Stops the stream source when the measurement ends, however it ends.
struct Running(tokio::task::JoinHandle<()>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `consumes` sequential consumes, each timed from its 200 to its event on the queue.
pub async fn measure(aws: &SdkConfig, template: &Path, consumes: usize) -> Result<ToBus> {
    let workspace = workspace::open(aws, template).await?;
    let bus = Bus::create(aws).await?;
    let (source, relay) = relay_source(aws, template, &workspace, &bus.name)?;
    let batch_size = source.batch_size;
    let _running = Running(tokio::spawn(source.run()));

    let store = EventStore::new(aws_sdk_dynamodb::Client::new(aws), &workspace.events_table);
    let handler = ConsumeCredits::new(store, Arc::new(SystemClock));
    let mut latency = Sample::default();
    let mut missing = 0;
    for call in 0..WARMUP + consumes {
        let request = api::consume(workspace.id, &workspace.owner)?;
        let response = handler.handle(request).await;
        let answered = Instant::now();
        if response.status() != 200 {
            bail!("a consume answered {}", api::describe(&response));
        }
        let body: serde_json::Value =
            serde_json::from_str(&api::body(&response)).context("a consume's answer")?;
        let consumption = body["consumption_id"]
            .as_str()
            .context("a consume's answer has no consumption_id")?
            .to_owned();
        match bus.arrival(&consumption, answered).await? {
            Some(took) if call >= WARMUP => latency.record(took),
            Some(_) => {}
            None if call >= WARMUP => missing += 1,
            None => bail!("a warm-up consume's event never reached the bus"),
        }
    }
    Ok(ToBus {
        latency,
        missing,
        relay,
        batch_size,
    })
}
