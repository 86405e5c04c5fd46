//! Publishing again what the relay could not: everything on the relay's failure queue.
//!
//! The queue holds two kinds of message:
//! - **parked records**, written by the relay itself: the whole event envelope (`event`),
//!   or the stream image of a record that was not readable as one (`image`);
//! - **batches the stream mapping gave up on** (Lambda's on-failure record,
//!   `DDBStreamBatchInfo`): only the shard and sequence range. Their records are read back
//!   from the table's stream, which keeps them for 24 hours, and relayed again.
//!
//! A message is deleted once what it names is on the bus (or parked again, in its own
//! message); one that still fails stays on the queue for the next redrive. Side effects
//! are idempotent by event id, so publishing an event twice is harmless.

use crate::EventRelay;
use aws_lambda_events::event::dynamodb::EventRecord;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use kassa_store::store::EventItem;
use kassa_store::RecordedEvent;
use serde::{Deserialize, Serialize};

/// What a redrive did.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Messages read off the failure queue.
    pub messages: usize,
    /// Events put on the bus again.
    pub republished: usize,
    /// Messages that still fail; they stay on the queue.
    pub left: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error("the failure queue cannot be read: {0}")]
    Queue(String),
}

/// How long a message being redriven stays hidden from other readers; one that still
/// fails comes back after it.
const VISIBILITY_SECS: i32 = 60;

/// GetRecords pages read for one range at most (each holds up to 1,000 records, and a
/// range is one batch of the mapping's, at most 100).
const MAX_PAGES: usize = 100;

pub struct Redrive {
    relay: EventRelay,
    sqs: aws_sdk_sqs::Client,
    streams: aws_sdk_dynamodbstreams::Client,
    /// A queue URL or name.
    queue: String,
}

/// A message on the failure queue.
#[derive(Debug, Deserialize)]
struct Message {
    #[serde(rename = "DDBStreamBatchInfo")]
    batch: Option<BatchInfo>,
    event: Option<RecordedEvent>,
    image: Option<serde_dynamo::Item>,
}

/// Lambda's description of a stream batch it gave up on.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchInfo {
    shard_id: String,
    start_sequence_number: String,
    end_sequence_number: String,
    stream_arn: String,
}

impl Redrive {
    /// `relay` publishes (give it the failure queue, so a record that fails again is
    /// parked in a message of its own); `queue` is the failure queue, a URL or a name.
    pub fn new(
        relay: EventRelay,
        sqs: aws_sdk_sqs::Client,
        streams: aws_sdk_dynamodbstreams::Client,
        queue: impl Into<String>,
    ) -> Self {
        Self {
            relay,
            sqs,
            streams,
            queue: queue.into(),
        }
    }

    /// Redrives every message on the queue, until it has none left to offer.
    pub async fn run(&self) -> Result<Summary, RedriveError> {
        let url = self.url().await?;
        let mut summary = Summary::default();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .visibility_timeout(VISIBILITY_SECS)
                .wait_time_seconds(1)
                .send()
                .await
                .map_err(|e| queue_error(&e))?;
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return Ok(summary);
            }
            for message in messages {
                summary.messages += 1;
                match self.replay(message.body().unwrap_or_default()).await {
                    Ok(published) => {
                        summary.republished += published;
                        if let Some(handle) = message.receipt_handle() {
                            self.sqs
                                .delete_message()
                                .queue_url(&url)
                                .receipt_handle(handle)
                                .send()
                                .await
                                .map_err(|e| queue_error(&e))?;
                        }
                    }
                    Err(e) => {
                        tracing::error!(message_id = ?message.message_id(), error = %e, "still failing; left on the queue");
                        summary.left += 1;
                    }
                }
            }
        }
    }

    async fn url(&self) -> Result<String, RedriveError> {
        if self.queue.starts_with("https://") || self.queue.starts_with("http://") {
            return Ok(self.queue.clone());
        }
        self.sqs
            .get_queue_url()
            .queue_name(&self.queue)
            .send()
            .await
            .map_err(|e| queue_error(&e))?
            .queue_url
            .ok_or_else(|| RedriveError::Queue(format!("{} has no URL", self.queue)))
    }

    /// Publishes what one message names; the number of events published.
    async fn replay(&self, body: &str) -> Result<usize, String> {
        let message: Message =
            serde_json::from_str(body).map_err(|e| format!("not a relay failure: {e}"))?;
        match message {
            Message {
                batch: Some(batch), ..
            } => self.replay_range(&batch).await,
            Message {
                event: Some(event), ..
            } => self.relay.publish_event(event).await.map(|()| 1),
            Message {
                image: Some(image), ..
            } => {
                let item: EventItem = serde_dynamo::from_item(image)
                    .map_err(|e| format!("still not an event: {e}"))?;
                let event = item
                    .into_recorded()
                    .map_err(|e| format!("still not an event: {e}"))?
                    .ok_or("not an event item")?;
                self.relay.publish_event(event).await.map(|()| 1)
            }
            _ => Err("names neither an event nor a stream batch".into()),
        }
    }

    /// Reads the batch's records back from the stream and relays them; a record that
    /// fails again is parked in a message of its own.
    async fn replay_range(&self, batch: &BatchInfo) -> Result<usize, String> {
        let records = self.read_range(batch).await?;
        let relayed = self.relay.relay(&records).await;
        match relayed.stop {
            None => Ok(relayed.published),
            Some(stop) => Err(format!(
                "{} of the batch's {} records still fail",
                records.len() - stop,
                records.len()
            )),
        }
    }

    async fn read_range(&self, batch: &BatchInfo) -> Result<Vec<EventRecord>, String> {
        let error = |e: &dyn std::fmt::Display| {
            format!(
                "records {}..{} of {} cannot be read back from the stream (it keeps them 24 hours): {e}",
                batch.start_sequence_number, batch.end_sequence_number, batch.shard_id
            )
        };
        let mut iterator = self
            .streams
            .get_shard_iterator()
            .stream_arn(&batch.stream_arn)
            .shard_id(&batch.shard_id)
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .sequence_number(&batch.start_sequence_number)
            .send()
            .await
            .map_err(|e| error(&aws_sdk_dynamodbstreams::error::DisplayErrorContext(e)))?
            .shard_iterator;
        let mut records = Vec::new();
        for _ in 0..MAX_PAGES {
            let Some(it) = iterator.take() else { break };
            let out = self
                .streams
                .get_records()
                .shard_iterator(it)
                .send()
                .await
                .map_err(|e| error(&aws_sdk_dynamodbstreams::error::DisplayErrorContext(e)))?;
            let page = out.records.unwrap_or_default();
            if page.is_empty() {
                break;
            }
            for record in page {
                let sequence = record
                    .dynamodb
                    .as_ref()
                    .and_then(|d| d.sequence_number.clone())
                    .unwrap_or_default();
                if later(&sequence, &batch.end_sequence_number) {
                    return Ok(records);
                }
                records.push(lambda_record(record, &batch.stream_arn).map_err(|e| error(&e))?);
            }
            iterator = out.next_shard_iterator;
        }
        Ok(records)
    }
}

/// Whether sequence number `a` comes after `b` (both decimal, of any length).
fn later(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    (a.len(), a) > (b.len(), b)
}

fn queue_error(e: &dyn std::error::Error) -> RedriveError {
    RedriveError::Queue(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
}

/// A record read from the stream, in the shape Lambda hands the relay.
fn lambda_record(r: Record, stream_arn: &str) -> Result<EventRecord, serde_json::Error> {
    let change = r
        .dynamodb
        .unwrap_or_else(|| aws_sdk_dynamodbstreams::types::StreamRecord::builder().build());
    let new_image: serde_dynamo::Item = change.new_image.unwrap_or_default().into();
    let keys: serde_dynamo::Item = change.keys.unwrap_or_default().into();
    serde_json::from_value(serde_json::json!({
        "eventID": r.event_id,
        "eventName": r.event_name.map(|n| n.as_str().to_owned()),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": r.aws_region,
        "eventSourceARN": stream_arn,
        "dynamodb": {
            "ApproximateCreationDateTime": change.approximate_creation_date_time.map(|t| t.secs()),
            "Keys": keys,
            "NewImage": new_image,
            "SequenceNumber": change.sequence_number,
            "SizeBytes": change.size_bytes.unwrap_or_default(),
            "StreamViewType": "NEW_IMAGE",
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::later;

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert!(later("100", "99"));
        assert!(later("000000000000000000100", "99"));
        assert!(!later("99", "100"));
        assert!(!later("42", "0042"));
    }
}
