//! Hot counters: a figure many writers move at once (a wallet's balance today; a ticket
//! level's availability and a coupon's uses are the same shape), kept on an aggregate's head
//! and moved by ONE conditional `UpdateItem` that also carries the events the move records.
//!
//! Why not a transaction: one item takes about 1,000 write units a second on AWS, a
//! transaction costs two per item it writes, and DynamoDB refuses a transaction on an item
//! another transaction holds (`TransactionConflict`). Appending to a stream under a version
//! condition also makes concurrent writers refuse each other: they take turns. A step
//! instead states its invariant as a condition on the counter itself (`counter ≥ need`,
//! membership of the caller), so any number of writers whose condition holds all succeed,
//! each with one write unit, serialized by DynamoDB on the item.
//!
//! A counter head (`pk` = stream, `sk` = 0) holds:
//! - `counter`: the figure, moved with `ADD`; `version`: the stream's version, moved by the
//!   number of events each write records; `state`, `schema`, `kind = head` as any head;
//! - `members`: the member set of the aggregate it mirrors ([`Aggregate::MIRRORS`]), written
//!   in the same transaction as every membership change, so a step's condition can test it;
//! - `carried`: the events the last write recorded, as JSON, without their versions: the
//!   write added their count to `version`, so they are numbered back from the new version.
//!   Payload fields named in an event's `fill` take the counter's value after the write,
//!   which a step's writer does not know (it only knows a range the value was in).
//!
//! So the table's stream holds every write's events in order, in the head's images. The
//! relay derives them ([`derive`]), persists them as ordinary event items of the stream
//! ([`EventStore::persist`]: conditional on the slot, so a redelivered image writes nothing
//! twice) and publishes them; persisted items say `carried_by = head` and are not published
//! again. History, replay and rebuilds read one log; a subscriber cannot tell a carried
//! event from another. A write that records no events (a member mirror) removes
//! `carried`, so no image repeats the last write's events.
//!
//! Past one item's ~1,000 writes a second, a counter is split over N heads (`#0..#N-1`
//! suffixes), a writer picks one at random and moves to another when its condition fails
//! for want of headroom; readers sum the N. Each shard has its own version and carries its
//! own events, which stay ordered per shard.
//!
//! [`Aggregate::MIRRORS`]: kassa_domain::aggregate::Aggregate::MIRRORS

use crate::attribute::{get_u64, n, s, Item};
use crate::commit::{Commit, Guard};
use crate::event::{Metadata, RecordedEvent, StreamId};
use crate::store::{EventItem, EventStore, Head};
use crate::Refusal;
use crate::StoreError;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnConsumedCapacity, ReturnValue,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use kassa_domain::event::DomainEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// The counter's attribute on the head.
pub const COUNTER: &str = "counter";
/// The events the head's last write recorded.
pub const CARRIED: &str = "carried";
/// On an event item persisted from a head's image: it was published from that image.
pub const CARRIED_BY: &str = "carried_by";
/// The mirrored member set.
pub const MEMBERS: &str = "members";
/// What a counter's steps are decided on besides the figure (`Aggregate::terms`).
pub const TERMS: &str = "terms";
/// Present on a counter head closed to the steps that need it open (a canceled concert's
/// levels): moves back (releases) still apply to it.
pub const CLOSED: &str = "closed";

/// An event as a counter head carries it: everything but its version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Carried {
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub context: String,
    pub schema: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub payload: Value,
    pub metadata: Metadata,
    /// Payload fields that take the counter's value after the write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fill: Vec<String>,
}

impl Carried {
    pub fn new<E: DomainEvent>(
        event: &E,
        metadata: &Metadata,
        now: OffsetDateTime,
        fill: &[&str],
    ) -> Self {
        let payload = event.payload();
        Self {
            fill: fill
                .iter()
                .filter(|f| payload.get(**f).is_some())
                .map(|f| (*f).to_owned())
                .collect(),
            event_id: Uuid::now_v7(),
            event_type: event.event_type().to_owned(),
            context: E::CONTEXT.to_owned(),
            schema: E::SCHEMA,
            time: now,
            payload,
            metadata: metadata.clone(),
        }
    }

    /// The event as recorded at `version`, with the counter's value `counter` filled in.
    pub fn recorded(&self, stream: &StreamId, version: u64, counter: i64) -> RecordedEvent {
        let mut payload = self.payload.clone();
        for field in &self.fill {
            if let Some(slot) = payload.get_mut(field) {
                *slot = Value::from(counter);
            }
        }
        RecordedEvent {
            event_id: self.event_id,
            stream: stream.clone(),
            version,
            event_type: self.event_type.clone(),
            context: self.context.clone(),
            time: self.time,
            payload,
            metadata: self.metadata.clone(),
            schema: self.schema,
        }
    }
}

/// Numbers `carried` back from `version` (the head's version after the write).
fn number(
    carried: &[Carried],
    stream: &StreamId,
    version: u64,
    counter: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let first = (version + 1)
        .checked_sub(carried.len() as u64)
        .filter(|v| *v >= 1)
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "{stream}@{version} carries {} events",
                carried.len()
            ))
        })?;
    Ok(carried
        .iter()
        .enumerate()
        .map(|(i, c)| c.recorded(stream, first + i as u64, counter))
        .collect())
}

/// The parts of a stream image of a head that say what it carries.
#[derive(Debug, Clone, Deserialize)]
pub struct HeadImage {
    pub pk: String,
    pub kind: String,
    pub version: u64,
    #[serde(default)]
    pub counter: Option<i64>,
    #[serde(default)]
    pub carried: Option<String>,
}

/// The events a head's stream image carries, numbered and filled; none for a head that
/// carries none.
pub fn derive(image: &HeadImage) -> Result<Vec<RecordedEvent>, StoreError> {
    let Some(carried) = image.carried.as_deref().filter(|_| image.kind == "head") else {
        return Ok(Vec::new());
    };
    let carried: Vec<Carried> = serde_json::from_str(carried)
        .map_err(|e| StoreError::Corrupt(format!("{} carries unreadable events: {e}", image.pk)))?;
    number(
        &carried,
        &StreamId::from_stored(image.pk.clone()),
        image.version,
        image.counter.unwrap_or_default(),
    )
}

fn carried_json(carried: &[Carried]) -> Result<AttributeValue, StoreError> {
    serde_json::to_string(carried)
        .map(AttributeValue::S)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// `at_least ≤ counter < below`, either bound open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bounds {
    pub at_least: Option<i64>,
    pub below: Option<i64>,
}

/// One move of a counter: add `delta` if the counter is within `bounds` (and `member` is
/// in the mirrored member set), recording `carried`.
#[derive(Debug, Clone)]
pub struct Step<'a> {
    pub stream: &'a StreamId,
    /// The head must be written under this schema (an older one is upgraded first).
    pub schema: u32,
    pub delta: i64,
    pub bounds: Bounds,
    pub member: Option<&'a str>,
    /// The head's terms must be these (a head that never had terms takes any).
    pub terms: Option<&'a str>,
    /// The head must not be closed ([`Commit::close_counter`]).
    pub while_open: bool,
    pub carried: Vec<Carried>,
    /// Ask DynamoDB what the write cost (`ReturnConsumedCapacity`), for tests and benches.
    pub measure: bool,
}

/// What became of a step.
#[derive(Debug, Clone)]
pub enum Stepped {
    /// Written: the counter and version after it, the events as recorded, and the write
    /// units the write cost, as DynamoDB reported them.
    Moved {
        counter: i64,
        version: u64,
        recorded: Vec<RecordedEvent>,
        write_units: Option<f64>,
    },
    /// A condition failed; the head as it was (none when there is no head).
    Refused(Option<Box<Head>>),
}

impl EventStore {
    /// Moves a counter with one conditional `UpdateItem`.
    pub async fn step(&self, step: Step<'_>) -> Result<Stepped, StoreError> {
        let mut condition = vec!["#s = :schema".to_owned()];
        let mut update = self
            .client()
            .update_item()
            .table_name(self.table())
            .key("pk", s(step.stream.as_str()))
            .key("sk", n(0))
            .update_expression("ADD #c :delta, #v :k SET #carried = :carried")
            .expression_attribute_names("#c", COUNTER)
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#s", "schema")
            .expression_attribute_names("#carried", CARRIED)
            .expression_attribute_values(":delta", n(step.delta))
            .expression_attribute_values(":k", n(step.carried.len()))
            .expression_attribute_values(":schema", n(step.schema))
            .expression_attribute_values(":carried", carried_json(&step.carried)?)
            // Only what the step changed comes back: the counter and the version.
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if step.measure {
            update = update.return_consumed_capacity(ReturnConsumedCapacity::Total);
        }
        if let Some(lo) = step.bounds.at_least {
            condition.push("#c >= :lo".into());
            update = update.expression_attribute_values(":lo", n(lo));
        }
        if let Some(hi) = step.bounds.below {
            condition.push("#c < :hi".into());
            update = update.expression_attribute_values(":hi", n(hi));
        }
        if step.while_open {
            condition.push("attribute_not_exists(#closed)".into());
            update = update.expression_attribute_names("#closed", CLOSED);
        }
        if let Some(member) = step.member {
            condition.push("contains(#m, :member)".into());
            update = update
                .expression_attribute_names("#m", MEMBERS)
                .expression_attribute_values(":member", s(member));
        }
        if let Some(terms) = step.terms {
            condition.push("(attribute_not_exists(#t) OR #t = :terms)".into());
            update = update
                .expression_attribute_names("#t", TERMS)
                .expression_attribute_values(":terms", s(terms));
        }
        match update
            .condition_expression(condition.join(" AND "))
            .send()
            .await
        {
            Ok(out) => {
                let write_units = out.consumed_capacity.and_then(|c| c.capacity_units);
                let new = out.attributes.unwrap_or_default();
                let version = get_u64(&new, "version")?;
                let counter = match new.get(COUNTER) {
                    Some(AttributeValue::N(v)) => v
                        .parse()
                        .map_err(|_| StoreError::Corrupt(format!("counter {v}")))?,
                    _ => {
                        return Err(StoreError::Corrupt(format!(
                            "{} has no counter",
                            step.stream
                        )))
                    }
                };
                Ok(Stepped::Moved {
                    recorded: number(&step.carried, step.stream, version, counter)?,
                    counter,
                    version,
                    write_units,
                })
            }
            Err(SdkError::ServiceError(e)) => match e.into_err() {
                UpdateItemError::ConditionalCheckFailedException(failed) => {
                    Ok(Stepped::Refused(match failed.item {
                        Some(item) if !item.is_empty() => Some(Box::new(Head::from_item(&item)?)),
                        _ => None,
                    }))
                }
                // A transaction (a cold command) holds the head for a moment.
                UpdateItemError::TransactionConflictException(_) => Err(StoreError::Conflict {
                    stream: step.stream.clone(),
                    current: None,
                }),
                other => Err(StoreError::sdk(other)),
            },
            Err(other) => Err(StoreError::sdk(other)),
        }
    }

    /// Whether the apply-once marker `key` of `stream` exists (a consistent read).
    pub async fn is_marked(&self, stream: &StreamId, key: &str) -> Result<bool, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .key("pk", s(marker_pk(stream, key)))
            .key("sk", n(0))
            .consistent_read(true)
            .projection_expression("pk")
            .send()
            .await
            .map_err(StoreError::sdk)?;
        Ok(out.item.is_some())
    }

    /// Writes events derived from heads' images as event items, each in its slot unless
    /// it is there already (a redelivered image), concurrently. One outcome per event, in
    /// order.
    pub async fn persist(&self, events: &[RecordedEvent]) -> Vec<Result<(), StoreError>> {
        let mut writes = tokio::task::JoinSet::new();
        let mut outcomes: Vec<Result<(), StoreError>> = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            // Until its write says otherwise (a write task that panicked never does).
            outcomes.push(Err(StoreError::Dynamo(format!(
                "{}@{} was not persisted",
                event.stream, event.version
            ))));
            let item = match EventItem::from_recorded(event).and_then(EventItem::into_item) {
                Ok(item) => item,
                Err(e) => {
                    outcomes[index] = Err(e);
                    continue;
                }
            };
            let mut item = item;
            item.insert(CARRIED_BY.into(), s("head"));
            let put = self
                .client()
                .put_item()
                .table_name(self.table())
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
            let (stream, version, id) = (event.stream.clone(), event.version, event.event_id);
            writes.spawn(async move {
                let outcome = match put.send().await {
                    Ok(_) => Ok(()),
                    Err(SdkError::ServiceError(e)) => match e.into_err() {
                        aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(failed) => {
                            let there = failed
                                .item
                                .as_ref()
                                .and_then(|i| i.get("event_id"))
                                .and_then(|v| v.as_s().ok())
                                .cloned();
                            if there.as_deref() == Some(id.to_string().as_str()) {
                                Ok(())
                            } else {
                                Err(StoreError::Corrupt(format!(
                                    "{stream}@{version} holds {there:?}, not the carried event {id}"
                                )))
                            }
                        }
                        other => Err(StoreError::sdk(other)),
                    },
                    Err(other) => Err(StoreError::sdk(other)),
                };
                (index, outcome)
            });
        }
        while let Some(done) = writes.join_next().await {
            if let Ok((index, outcome)) = done {
                outcomes[index] = outcome;
            }
        }
        outcomes
    }
}

/// Where a counter head sits in a commit, and what it will hold.
pub(crate) struct CounterSlot {
    pub index: usize,
    pub expected: u64,
    pub version: u64,
    pub schema: u32,
    pub state: String,
    pub counter: i64,
    pub carried: Vec<Carried>,
    pub members: Option<Vec<String>>,
    pub terms: Option<String>,
}

impl CounterSlot {
    /// The head's write: everything it holds, conditional on the version it was read at.
    fn update(&self, table: &str, stream: &StreamId) -> Result<TransactWriteItem, StoreError> {
        let mut set = vec![
            "kind = :kind",
            "#v = :version",
            "#st = :state",
            "#s = :schema",
            "#c = :counter",
            "#carried = :carried",
        ];
        let mut update = Update::builder()
            .table_name(table)
            .key("pk", s(stream.as_str()))
            .key("sk", n(0))
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#st", "state")
            .expression_attribute_names("#s", "schema")
            .expression_attribute_names("#c", COUNTER)
            .expression_attribute_names("#carried", CARRIED)
            .expression_attribute_values(":kind", s("head"))
            .expression_attribute_values(":version", n(self.version))
            .expression_attribute_values(":state", s(&self.state))
            .expression_attribute_values(":schema", n(self.schema))
            .expression_attribute_values(":counter", n(self.counter))
            .expression_attribute_values(":carried", carried_json(&self.carried)?)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if let Some(members) = self.members.as_ref().filter(|m| !m.is_empty()) {
            set.push("#m = :members");
            update = update
                .expression_attribute_names("#m", MEMBERS)
                .expression_attribute_values(":members", AttributeValue::Ss(members.clone()));
        }
        if let Some(terms) = &self.terms {
            set.push("#t = :terms");
            update = update
                .expression_attribute_names("#t", TERMS)
                .expression_attribute_values(":terms", s(terms));
        }
        update = if self.expected == 0 {
            update.condition_expression("attribute_not_exists(pk)")
        } else {
            update
                .condition_expression("#v = :expected")
                .expression_attribute_values(":expected", n(self.expected))
        };
        let update = update
            .update_expression(format!("SET {}", set.join(", ")))
            .build()
            .map_err(StoreError::dynamo)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

/// The key of the apply-once marker `key` of `stream`.
pub fn marker_pk(stream: &StreamId, key: &str) -> String {
    format!("Marker#{stream}#{key}")
}

impl Commit {
    /// Stages `events` on the counter head of `stream` read at version `expected` (0 for a
    /// new stream): the head takes `state`, `counter` and the events, under a condition on
    /// `expected`. Cold commands (allocations, purchases) write this way; the events are
    /// exact, so nothing is filled.
    #[allow(clippy::too_many_arguments)]
    pub fn append_counter<E: DomainEvent>(
        &mut self,
        stream: &StreamId,
        expected: u64,
        events: &[E],
        state: &impl Serialize,
        counter: i64,
        schema: u32,
    ) -> Result<&mut Self, StoreError> {
        if events.is_empty() {
            return Ok(self);
        }
        let state = serde_json::to_string(state)
            .map_err(|e| StoreError::Corrupt(format!("state does not serialize: {e}")))?;
        let (metadata, now) = (self.metadata.clone(), self.now);
        let carried: Vec<Carried> = events
            .iter()
            .map(|e| Carried::new(e, &metadata, now, &[]))
            .collect();
        let (first_version, slot) = match self.counters.remove(stream) {
            Some(mut slot) => {
                if slot.version != expected {
                    return Err(StoreError::Corrupt(format!(
                        "{stream} appended at {expected} in a commit that took it to {}",
                        slot.version
                    )));
                }
                slot.version += events.len() as u64;
                slot.state = state;
                slot.counter = counter;
                slot.carried.extend(carried.iter().cloned());
                (expected + 1, slot)
            }
            None => (
                expected + 1,
                CounterSlot {
                    index: usize::MAX,
                    expected,
                    version: expected + events.len() as u64,
                    schema,
                    state,
                    counter,
                    carried: carried.clone(),
                    members: None,
                    terms: None,
                },
            ),
        };
        for (i, c) in carried.iter().enumerate() {
            self.recorded
                .push(c.recorded(stream, first_version + i as u64, counter));
        }
        self.place_counter(stream, slot)
    }

    /// Writes `members` as the mirrored member set of the counter head of `stream`, in
    /// this commit: with the head's own write when the commit has one, alone otherwise.
    pub fn mirror_members(
        &mut self,
        stream: &StreamId,
        members: Vec<String>,
    ) -> Result<&mut Self, StoreError> {
        if let Some(mut slot) = self.counters.remove(stream) {
            slot.members = Some(members);
            return self.place_counter(stream, slot);
        }
        if members.is_empty() {
            return Ok(self);
        }
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(stream.as_str()))
            .key("sk", n(0))
            // A write without events must not leave the last write's events in its image.
            .update_expression("SET #m = :members REMOVE #carried")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#m", MEMBERS)
            .expression_attribute_names("#carried", CARRIED)
            .expression_attribute_values(":members", AttributeValue::Ss(members))
            .build()
            .map_err(StoreError::dynamo)?;
        Ok(self.update(update, Refusal::HeadMissing))
    }

    /// Writes `terms` beside the state of the counter head of `stream`, which this commit
    /// writes already.
    pub fn counter_terms(
        &mut self,
        stream: &StreamId,
        terms: String,
    ) -> Result<&mut Self, StoreError> {
        let Some(mut slot) = self.counters.remove(stream) else {
            return Err(StoreError::Corrupt(format!(
                "terms for {stream}, which this commit does not write"
            )));
        };
        slot.terms = Some(terms);
        self.place_counter(stream, slot)
    }

    fn place_counter(
        &mut self,
        stream: &StreamId,
        mut slot: CounterSlot,
    ) -> Result<&mut Self, StoreError> {
        let item = slot.update(&self.table, stream)?;
        if slot.index == usize::MAX {
            slot.index = self.items.len();
            self.items.push(item);
            self.guards.push(Guard::Head(stream.clone()));
        } else {
            self.items[slot.index] = item;
        }
        self.counters.insert(stream.clone(), slot);
        Ok(self)
    }

    /// Creates the counter head of `stream` at `counter`, without events: its figure
    /// moves by steps from then on. A head that exists already makes it a conflict.
    pub fn open_counter(
        &mut self,
        stream: &StreamId,
        counter: i64,
        schema: u32,
        state: &impl Serialize,
    ) -> Result<&mut Self, StoreError> {
        let state = serde_json::to_string(state)
            .map_err(|e| StoreError::Corrupt(format!("state does not serialize: {e}")))?;
        let put = Put::builder()
            .table_name(&self.table)
            .item("pk", s(stream.as_str()))
            .item("sk", n(0))
            .item("kind", s("head"))
            .item("version", n(0))
            .item("state", s(state))
            .item("schema", n(schema))
            .item(COUNTER, n(counter))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(StoreError::dynamo)?;
        self.push_guarded(
            TransactWriteItem::builder().put(put).build(),
            Guard::Head(stream.clone()),
        );
        Ok(self)
    }

    /// Moves the counter of `stream` by `delta` within `bounds`, in this commit, recording
    /// `events` on it as a step does (carried, `fill` fields taking the counter's value).
    /// Unlike [`Commit::append_counter`] it holds no version condition, so it commits
    /// while steps keep moving the head (a releasing or resizing command during a sale);
    /// the commit is refused ([`Refusal::OutOfBounds`]) when the counter is outside
    /// `bounds`. Its events are numbered when the relay derives them from the head's
    /// image, so they are not among [`Commit::recorded`].
    pub fn move_counter<E: DomainEvent>(
        &mut self,
        stream: &StreamId,
        delta: i64,
        bounds: Bounds,
        events: &[E],
        fill: &[&str],
    ) -> Result<&mut Self, StoreError> {
        if self.counters.contains_key(stream) || !self.moved.insert(stream.clone()) {
            return Err(StoreError::Corrupt(format!(
                "{stream} is written twice in one commit"
            )));
        }
        let carried: Vec<Carried> = events
            .iter()
            .map(|e| Carried::new(e, &self.metadata, self.now, fill))
            .collect();
        let mut condition = vec!["attribute_exists(pk)".to_owned()];
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(stream.as_str()))
            .key("sk", n(0))
            .expression_attribute_names("#c", COUNTER)
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":delta", n(delta))
            .expression_attribute_values(":k", n(carried.len()));
        update = if carried.is_empty() {
            update
                .update_expression("ADD #c :delta, #v :k REMOVE #carried")
                .expression_attribute_names("#carried", CARRIED)
        } else {
            update
                .update_expression("ADD #c :delta, #v :k SET #carried = :carried")
                .expression_attribute_names("#carried", CARRIED)
                .expression_attribute_values(":carried", carried_json(&carried)?)
        };
        if let Some(lo) = bounds.at_least {
            condition.push("#c >= :lo".into());
            update = update.expression_attribute_values(":lo", n(lo));
        }
        if let Some(hi) = bounds.below {
            condition.push("#c < :hi".into());
            update = update.expression_attribute_values(":hi", n(hi));
        }
        let update = update
            .condition_expression(condition.join(" AND "))
            .build()
            .map_err(StoreError::dynamo)?;
        Ok(self.update(update, Refusal::OutOfBounds))
    }

    /// Closes the counter head of `stream` to steps that need it open, in this commit.
    pub fn close_counter(&mut self, stream: &StreamId) -> Result<&mut Self, StoreError> {
        if self.counters.contains_key(stream) || !self.moved.insert(stream.clone()) {
            return Err(StoreError::Corrupt(format!(
                "{stream} is written twice in one commit"
            )));
        }
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(stream.as_str()))
            .key("sk", n(0))
            // A write without events must not leave the last write's events in its image.
            .update_expression("SET #closed = :closed REMOVE #carried")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#closed", CLOSED)
            .expression_attribute_names("#carried", CARRIED)
            .expression_attribute_values(":closed", AttributeValue::Bool(true))
            .build()
            .map_err(StoreError::dynamo)?;
        Ok(self.update(update, Refusal::HeadMissing))
    }

    /// Writes the apply-once marker `key` of `stream`; the commit is refused as
    /// [`Refusal::AlreadyApplied`] when it exists.
    pub fn mark(&mut self, stream: &StreamId, key: &str) -> Result<&mut Self, StoreError> {
        let pk = marker_pk(stream, key);
        let put = Put::builder()
            .table_name(&self.table)
            .item("pk", s(&pk))
            .item("sk", n(0))
            .item("kind", s("marker"))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(StoreError::dynamo)?;
        self.marked.insert(pk);
        Ok(self.put(put, Refusal::AlreadyApplied))
    }

    /// Whether this commit writes the marker `key` of `stream`.
    pub fn marks(&self, stream: &StreamId, key: &str) -> bool {
        self.marked.contains(&marker_pk(stream, key))
    }

    /// Refuses the commit ([`Refusal::NotApplied`]) unless the marker `key` of `stream`
    /// exists or this commit writes it.
    pub fn require_mark(&mut self, stream: &StreamId, key: &str) -> Result<&mut Self, StoreError> {
        let pk = marker_pk(stream, key);
        if self.marked.contains(&pk) {
            return Ok(self);
        }
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", n(0))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(StoreError::dynamo)?;
        self.items
            .push(TransactWriteItem::builder().condition_check(check).build());
        self.guards.push(Guard::Check(Refusal::NotApplied));
        Ok(self)
    }
}

/// Items kept only while a head written under an older schema is upgraded.
pub(crate) fn marker_item(stream: &StreamId, key: &str) -> Item {
    Item::from([
        ("pk".to_owned(), s(marker_pk(stream, key))),
        ("sk".to_owned(), n(0)),
        ("kind".to_owned(), s("marker")),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn carried(fill: &[&str]) -> Carried {
        Carried {
            event_id: Uuid::from_u128(1),
            event_type: "credits.consumed".into(),
            context: "credits".into(),
            schema: 1,
            time: OffsetDateTime::UNIX_EPOCH,
            payload: serde_json::json!({"credits": 3, "balance_after": 0}),
            metadata: Metadata::origin(Uuid::from_u128(2), "u"),
            fill: fill.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    #[test]
    fn carried_events_are_numbered_back_from_the_version_and_filled() {
        let image = HeadImage {
            pk: "Wallet#w".into(),
            kind: "head".into(),
            version: 9,
            counter: Some(997),
            carried: Some(
                serde_json::to_string(&[carried(&["balance_after"]), carried(&[])]).unwrap(),
            ),
        };
        let events = derive(&image).unwrap();
        assert_eq!(events.iter().map(|e| e.version).collect::<Vec<_>>(), [8, 9]);
        assert_eq!(events[0].payload["balance_after"], 997);
        assert_eq!(events[1].payload["balance_after"], 0);
    }

    #[test]
    fn a_head_that_carries_nothing_derives_nothing() {
        let image = HeadImage {
            pk: "Wallet#w".into(),
            kind: "head".into(),
            version: 9,
            counter: Some(1),
            carried: None,
        };
        assert!(derive(&image).unwrap().is_empty());
    }
}
