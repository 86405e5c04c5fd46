//! The outbox relay: DynamoDB stream records of committed events → EventBridge.
//!
//! Events come from two kinds of record: event items newly inserted, and images of hot
//! counter heads that carry the events their write recorded (`kassa_store::counter`). The
//! latter are first persisted as event items of their stream (conditional on the slot, so
//! a redelivered batch writes nothing twice), and only then published; the persisted items
//! are marked as carried and not published again. So every event is durable before it is
//! on the bus, once, and a subscriber cannot tell where it came from. A record whose events
//! cannot be persisted is handed back with everything after it, like a failed publish.
//!
//! Heads, locks and markers share the table but are not events. Records go out in stream
//! order, in `PutEvents` calls of at most 10 entries;
//! entries EventBridge reports as failed are retried a few times with backoff.
//!
//! A record that still fails is either handed back or parked:
//! - **Handed back**: the relay stops there and reports that record and every record after
//!   it (ReportBatchItemFailures), so Lambda retries from it and nothing behind it has been
//!   published ahead of it. Only the rest of the failed record's own `PutEvents` call may
//!   already be out; it goes out again, which side effects shrug off (they are idempotent
//!   by event id).
//! - **Parked**: a record that no retry will publish (EventBridge refuses the entry for
//!   what it is, or it is not readable as an event), or one that has failed for
//!   [`PARK_AFTER`] already, goes to the relay's failure queue with its whole envelope, and
//!   the relay moves on. So a poison record does not block its shard, and it does not
//!   vanish either: the queue keeps it 14 days, an alarm watches the queue, and
//!   [`redrive::Redrive`] (`cargo xtask redrive`) publishes it once the cause is fixed.
//!
//! A record that can be neither published nor parked is handed back.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use kassa_commerce::Clock;
use kassa_runtime::function::StartError;
use kassa_runtime::{Config, Function, SdkConfig, StreamFunction};
use kassa_store::counter::{derive, HeadImage, CARRIED, CARRIED_BY};
use kassa_store::store::EventItem;
use kassa_store::{EventStore, RecordedEvent};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

pub mod redrive;

/// EventBridge's limit of entries per `PutEvents`.
pub const MAX_ENTRIES: usize = 10;
/// Attempts per entry within one invocation before it is handed back to Lambda.
pub const ATTEMPTS: u32 = 3;
/// How long a record may keep failing (by its age in the stream) before it is parked
/// rather than handed back again: long enough to ride out a blip of EventBridge, short
/// enough that a shard is not held up for long. The stream mapping's own limits
/// (template.yaml) leave it ample time to act.
pub const PARK_AFTER: Duration = Duration::from_secs(300);

/// Entry error codes that say "not now" rather than "not this entry".
const PASSING_FAILURES: [&str; 3] = [
    "ThrottlingException",
    "InternalFailure",
    "InternalException",
];

pub struct EventRelay {
    client: aws_sdk_eventbridge::Client,
    bus: String,
    failures: Option<FailureQueue>,
    /// Where events carried by counter heads are persisted.
    store: Option<EventStore>,
}

/// Where records that cannot be published are parked.
struct FailureQueue {
    sqs: aws_sdk_sqs::Client,
    /// As configured: a queue URL (on AWS) or a queue name (the local runner's `!Ref`).
    queue: String,
    url: OnceCell<String>,
}

/// What became of a batch's records.
#[derive(Debug, Default)]
pub(crate) struct Relayed {
    pub published: usize,
    pub parked: usize,
    /// The first record that could be neither published nor parked.
    pub stop: Option<usize>,
}

/// One event on its way to the bus, with its record's place in the batch.
struct Outgoing {
    index: usize,
    event: RecordedEvent,
    entry: PutEventsRequestEntry,
    /// Carried by a counter head's image, so to be persisted before it is published.
    carried: bool,
}

/// An entry EventBridge did not take.
struct Refusal {
    /// EventBridge's error code for the entry; `None` when the whole call failed.
    code: Option<String>,
    message: String,
}

impl Refusal {
    /// Whether retrying can never publish the entry.
    fn is_lasting(&self) -> bool {
        self.code
            .as_deref()
            .is_some_and(|c| !PASSING_FAILURES.contains(&c))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayConfigError {
    #[error("KASSA_EVENT_BUS must be set for the relay")]
    NoBus,
}

impl Function for EventRelay {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        _clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let bus = config.event_bus.clone().ok_or(RelayConfigError::NoBus)?;
        let relay = Self::new(aws_sdk_eventbridge::Client::new(aws), bus).persisting(
            EventStore::new(aws_sdk_dynamodb::Client::new(aws), &config.events_table),
        );
        Ok(match &config.relay_failure_queue {
            Some(queue) => relay.with_failure_queue(aws_sdk_sqs::Client::new(aws), queue),
            None => relay,
        })
    }
}

impl StreamFunction for EventRelay {
    async fn handle(&self, batch: Event) -> DynamoDbEventResponse {
        let records = batch.records;
        let relayed = self.relay(&records).await;
        let mut response = DynamoDbEventResponse::default();
        response.batch_item_failures = records[relayed.stop.unwrap_or(records.len())..]
            .iter()
            .map(|r| {
                let mut f = DynamoDbBatchItemFailure::default();
                f.item_identifier = Some(r.change.sequence_number.clone().unwrap_or_default());
                f
            })
            .collect();
        response
    }
}

impl EventRelay {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
            failures: None,
            store: None,
        }
    }

    /// Persists events carried by counter heads to `store`. Without one, a record carrying
    /// events is handed back: they must not be published before they are durable.
    pub fn persisting(mut self, store: EventStore) -> Self {
        self.store = Some(store);
        self
    }

    /// Parks what cannot be published on `queue` (a URL or a name). Without one, every
    /// failure is handed back to Lambda.
    pub fn with_failure_queue(
        mut self,
        sqs: aws_sdk_sqs::Client,
        queue: impl Into<String>,
    ) -> Self {
        self.failures = Some(FailureQueue {
            sqs,
            queue: queue.into(),
            url: OnceCell::new(),
        });
        self
    }

    /// Publishes or parks `records` in order, up to the first record that could be neither.
    pub(crate) async fn relay(&self, records: &[EventRecord]) -> Relayed {
        let mut relayed = Relayed::default();
        let prepared: Vec<Result<Vec<Outgoing>, String>> = records
            .iter()
            .enumerate()
            .map(|(index, record)| self.outgoing(index, record))
            .collect();
        let durable = self.persist_carried(&prepared).await;
        let mut chunk: Vec<Outgoing> = Vec::with_capacity(MAX_ENTRIES);
        for (index, prepared) in prepared.into_iter().enumerate().take(durable) {
            let record = &records[index];
            match prepared {
                Ok(outgoing) => {
                    for o in outgoing {
                        chunk.push(o);
                        if chunk.len() == MAX_ENTRIES {
                            self.flush(&mut chunk, records, &mut relayed).await;
                            if relayed.stop.is_some() {
                                return relayed;
                            }
                        }
                    }
                }
                Err(reason) => {
                    // What precedes it goes first, so the order holds.
                    self.flush(&mut chunk, records, &mut relayed).await;
                    if relayed.stop.is_some() {
                        return relayed;
                    }
                    tracing::error!(sequence_number = ?record.change.sequence_number, %reason, "stream record is not a kassa event");
                    let body = json!({
                        "sequence_number": record.change.sequence_number,
                        "reason": reason,
                        "image": record.change.new_image,
                    });
                    if !self.park(body).await {
                        relayed.stop = Some(index);
                        return relayed;
                    }
                    relayed.parked += 1;
                }
            }
        }
        self.flush(&mut chunk, records, &mut relayed).await;
        if durable < records.len() && relayed.stop.is_none() {
            relayed.stop = Some(durable);
        }
        relayed
    }

    /// Persists the events counter heads carry; how many records, from the first, have
    /// every carried event durable (all of them, unless a write failed).
    async fn persist_carried(&self, prepared: &[Result<Vec<Outgoing>, String>]) -> usize {
        let carried: Vec<&Outgoing> = prepared
            .iter()
            .flatten()
            .flatten()
            .filter(|o| o.carried)
            .collect();
        let Some(first) = carried.first() else {
            return prepared.len();
        };
        let Some(store) = &self.store else {
            tracing::error!(
                "a counter head carries events but the relay has no store to persist them"
            );
            return first.index;
        };
        let events: Vec<RecordedEvent> = carried.iter().map(|o| o.event.clone()).collect();
        let outcomes = store.persist(&events).await;
        let mut durable = prepared.len();
        for (o, outcome) in carried.iter().zip(outcomes) {
            if let Err(e) = outcome {
                tracing::warn!(stream = %o.event.stream, version = o.event.version, error = %e, "carried event not persisted; handing its record back");
                durable = durable.min(o.index);
            }
        }
        durable
    }

    /// The outgoing events of a stream record: the event a newly inserted event item holds
    /// (unless it was persisted from a head, whose image published it), or those a counter
    /// head's image carries; an error for a record that cannot be read.
    fn outgoing(&self, index: usize, record: &EventRecord) -> Result<Vec<Outgoing>, String> {
        let image = &record.change.new_image;
        let kind = match image.get("kind") {
            Some(serde_dynamo::AttributeValue::S(kind)) => kind.as_str(),
            _ => return Ok(Vec::new()),
        };
        match kind {
            "event" if record.event_name == "INSERT" && !image.contains_key(CARRIED_BY) => {
                let item: EventItem =
                    serde_dynamo::from_item(image.clone()).map_err(|e| e.to_string())?;
                let Some(event) = item.into_recorded().map_err(|e| e.to_string())? else {
                    return Ok(Vec::new());
                };
                Ok(vec![Outgoing {
                    entry: self.to_entry(&event).map_err(|e| e.to_string())?,
                    event,
                    index,
                    carried: false,
                }])
            }
            "head" if record.event_name != "REMOVE" && image.contains_key(CARRIED) => {
                let head: HeadImage =
                    serde_dynamo::from_item(image.clone()).map_err(|e| e.to_string())?;
                derive(&head)
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|event| {
                        Ok(Outgoing {
                            entry: self.to_entry(&event).map_err(|e| e.to_string())?,
                            event,
                            index,
                            carried: true,
                        })
                    })
                    .collect()
            }
            _ => Ok(Vec::new()),
        }
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

    /// Publishes the chunk and empties it, parking what should be parked, and notes in
    /// `relayed` what happened.
    async fn flush(
        &self,
        chunk: &mut Vec<Outgoing>,
        records: &[EventRecord],
        relayed: &mut Relayed,
    ) {
        if chunk.is_empty() {
            return;
        }
        let outgoing = std::mem::take(chunk);
        let refused = self.publish(&outgoing).await;
        relayed.published += outgoing.len() - refused.len();
        for (o, refusal) in refused {
            let record = &records[o.index];
            let overdue = age(record).is_some_and(|a| a >= PARK_AFTER);
            if !(refusal.is_lasting() || overdue) {
                relayed.stop = Some(o.index);
                return;
            }
            tracing::error!(
                sequence_number = ?record.change.sequence_number,
                event_id = %o.event.event_id,
                code = ?refusal.code,
                message = %refusal.message,
                "event cannot be published; parking it"
            );
            let body = json!({
                "sequence_number": record.change.sequence_number,
                "reason": refusal.to_string(),
                "event": o.event,
            });
            if !self.park(body).await {
                relayed.stop = Some(o.index);
                return;
            }
            relayed.parked += 1;
        }
    }

    /// Publishes up to 10 entries; the ones that could not be published, in order, with
    /// the last refusal of each.
    async fn publish<'a>(&self, chunk: &'a [Outgoing]) -> Vec<(&'a Outgoing, Refusal)> {
        let mut pending: Vec<(&Outgoing, Refusal)> = chunk
            .iter()
            .map(|o| {
                (
                    o,
                    Refusal {
                        code: None,
                        message: "not sent".into(),
                    },
                )
            })
            .collect();
        for attempt in 1..=ATTEMPTS {
            let entries = pending.iter().map(|(o, _)| o.entry.clone()).collect();
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
                        .filter_map(|((o, refusal), result)| match result {
                            Some(r) if r.error_code.is_none() => None,
                            Some(r) => {
                                tracing::warn!(attempt, code = ?r.error_code, message = ?r.error_message, "entry not accepted");
                                Some((
                                    o,
                                    Refusal {
                                        code: r.error_code.clone(),
                                        message: r.error_message.clone().unwrap_or_default(),
                                    },
                                ))
                            }
                            None => Some((o, refusal)),
                        })
                        .collect();
                }
                Err(e) => {
                    let message = aws_sdk_eventbridge::error::DisplayErrorContext(&e).to_string();
                    tracing::warn!(attempt, error = %message, "PutEvents failed");
                    for (_, refusal) in &mut pending {
                        *refusal = Refusal {
                            code: None,
                            message: message.clone(),
                        };
                    }
                }
            }
            if pending.is_empty() {
                return Vec::new();
            }
            // A refusal for what the entry is will not change on a retry.
            if pending.iter().all(|(_, r)| r.is_lasting()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
        pending
    }

    /// Publishes one event (a parked one, on redrive); the refusal if it could not be.
    pub(crate) async fn publish_event(&self, event: RecordedEvent) -> Result<(), String> {
        let entry = self.to_entry(&event).map_err(|e| e.to_string())?;
        let outgoing = [Outgoing {
            index: 0,
            event,
            entry,
            carried: false,
        }];
        match self.publish(&outgoing).await.into_iter().next() {
            None => Ok(()),
            Some((_, refusal)) => Err(refusal.to_string()),
        }
    }

    /// Sends `body` to the failure queue; false if there is none or it cannot be reached.
    async fn park(&self, body: serde_json::Value) -> bool {
        let Some(failures) = &self.failures else {
            return false;
        };
        match failures.park(&body.to_string()).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "parking failed; handing the record back");
                false
            }
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "EventBridge refused the entry: {code}: {}", self.message),
            None => write!(f, "EventBridge could not be reached: {}", self.message),
        }
    }
}

impl FailureQueue {
    async fn url(&self) -> Result<&str, String> {
        self.url
            .get_or_try_init(|| async {
                if self.queue.starts_with("https://") || self.queue.starts_with("http://") {
                    return Ok(self.queue.clone());
                }
                self.sqs
                    .get_queue_url()
                    .queue_name(&self.queue)
                    .send()
                    .await
                    .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?
                    .queue_url
                    .ok_or_else(|| format!("queue {} has no URL", self.queue))
            })
            .await
            .map(String::as_str)
    }

    async fn park(&self, body: &str) -> Result<(), String> {
        self.sqs
            .send_message()
            .queue_url(self.url().await?)
            .message_body(body)
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
        Ok(())
    }
}

/// How long ago the record entered the stream; `None` when the record does not say.
fn age(record: &EventRecord) -> Option<Duration> {
    let created = record.change.approximate_creation_date_time.timestamp();
    if created <= 0 {
        return None;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(Duration::from_secs(
        now.saturating_sub(u64::try_from(created).ok()?),
    ))
}
