//! The outbox relay: DynamoDB stream records of committed events → EventBridge.
//!
//! Only event items are published (heads, locks and counters share the table but are not
//! events). `PutEvents` takes at most 10 entries; entries EventBridge reports as failed are
//! retried a few times with backoff, and whatever still fails is reported by sequence number
//! (ReportBatchItemFailures), so Lambda retries from the first failure and, after its retry
//! budget, sends the batch to the on-failure destination. Downstream handlers are
//! idempotent by event id, so a republished event has no second effect.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use kassa_runtime::{Config, SdkConfig};
use kassa_store::store::EventItem;
use kassa_store::RecordedEvent;
use std::time::Duration;

/// EventBridge's limit of entries per `PutEvents`.
pub const MAX_ENTRIES: usize = 10;
/// Attempts per entry within one invocation before it is handed back to Lambda.
pub const ATTEMPTS: u32 = 3;

pub struct EventRelay {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

/// One event on its way to the bus, with the stream position it came from.
struct Outgoing {
    sequence_number: String,
    entry: PutEventsRequestEntry,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayConfigError {
    #[error("KASSA_EVENT_BUS must be set for the relay")]
    NoBus,
}

impl EventRelay {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
        }
    }

    pub fn from_config(config: &Config, aws: &SdkConfig) -> Result<Self, RelayConfigError> {
        let bus = config.event_bus.clone().ok_or(RelayConfigError::NoBus)?;
        Ok(Self::new(aws_sdk_eventbridge::Client::new(aws), bus))
    }

    pub async fn handle(&self, batch: Event) -> DynamoDbEventResponse {
        let mut failed: Vec<String> = Vec::new();
        let mut outgoing = Vec::new();
        for record in batch.records {
            match self.entry(record) {
                Ok(Some(o)) => outgoing.push(o),
                Ok(None) => {}
                Err((sequence_number, error)) => {
                    tracing::error!(%sequence_number, %error, "stream record is not a kassa event");
                    failed.push(sequence_number);
                }
            }
        }
        for chunk in outgoing.chunks(MAX_ENTRIES) {
            failed.extend(self.publish(chunk).await);
        }
        let mut response = DynamoDbEventResponse::default();
        response.batch_item_failures = failed
            .into_iter()
            .map(|seq| {
                let mut f = DynamoDbBatchItemFailure::default();
                f.item_identifier = Some(seq);
                f
            })
            .collect();
        response
    }

    /// The EventBridge entry for a stream record; `None` for records that are not newly
    /// inserted events.
    fn entry(&self, record: EventRecord) -> Result<Option<Outgoing>, (String, String)> {
        let sequence_number = record.change.sequence_number.clone().unwrap_or_default();
        if record.event_name != "INSERT" {
            return Ok(None);
        }
        let fail = |e: &dyn std::fmt::Display| (sequence_number.clone(), e.to_string());
        // Heads and locks have no `type`; read the kind before the full shape.
        if !matches!(record.change.new_image.get("kind"), Some(v) if *v == serde_dynamo::AttributeValue::S("event".into()))
        {
            return Ok(None);
        }
        let item: EventItem =
            serde_dynamo::from_item(record.change.new_image).map_err(|e| fail(&e))?;
        let Some(event) = item.into_recorded().map_err(|e| fail(&e))? else {
            return Ok(None);
        };
        Ok(Some(Outgoing {
            entry: self.to_entry(&event).map_err(|e| fail(&e))?,
            sequence_number,
        }))
    }

    fn to_entry(&self, event: &RecordedEvent) -> Result<PutEventsRequestEntry, serde_json::Error> {
        Ok(PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(format!("kassa.{}", event.context))
            .detail_type(&event.event_type)
            .detail(serde_json::to_string(event)?)
            .resources(event.stream.as_str())
            .time(aws_sdk_eventbridge::primitives::DateTime::from_secs(
                event.time.unix_timestamp(),
            ))
            .build())
    }

    /// Publishes up to 10 entries; returns the sequence numbers that could not be published.
    async fn publish(&self, chunk: &[Outgoing]) -> Vec<String> {
        let mut pending: Vec<&Outgoing> = chunk.iter().collect();
        for attempt in 1..=ATTEMPTS {
            let entries = pending.iter().map(|o| o.entry.clone()).collect();
            match self
                .client
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) if out.failed_entry_count == 0 => return Vec::new(),
                // Results come back in request order; keep the entries that failed.
                Ok(out) => {
                    let results = out.entries.unwrap_or_default();
                    pending = pending
                        .into_iter()
                        .zip(results.iter().map(Some).chain(std::iter::repeat(None)))
                        .filter(|(_, r)| r.is_none_or(|r| r.error_code.is_some()))
                        .map(|(o, r)| {
                            if let Some(r) = r {
                                tracing::warn!(attempt, code = ?r.error_code, message = ?r.error_message, "entry not accepted");
                            }
                            o
                        })
                        .collect();
                }
                Err(e) => tracing::warn!(attempt, error = ?e, "PutEvents failed"),
            }
            if pending.is_empty() {
                return Vec::new();
            }
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
        pending
            .into_iter()
            .map(|o| o.sequence_number.clone())
            .collect()
    }
}
