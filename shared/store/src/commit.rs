//! A commit: every event, head, lock and counter one command writes, as one transaction.

use crate::attribute::{n, s, Item};
use crate::event::{Metadata, RecordedEvent, StreamId};
use crate::store::EventItem;
use crate::{Refusal, StoreError, MAX_TRANSACTION_ITEMS};
use aws_sdk_dynamodb::types::{
    ConditionCheck, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use kassa_domain::event::DomainEvent;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use time::OffsetDateTime;
use uuid::Uuid;

/// What a transaction item guards, so a cancelled commit can say why it was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// The head's version: a failure is a concurrency conflict.
    Head(StreamId),
    /// An event slot; it cannot fail unless the head is bypassed, so it is a conflict too.
    Event(StreamId),
    /// A business guard (membership, a lock, a marker), refused for this reason.
    Check(Refusal),
    /// An item written without a condition (an index or a secret): it cannot refuse.
    Unconditional,
}

pub struct Commit {
    pub(crate) table: String,
    pub(crate) items: Vec<TransactWriteItem>,
    pub(crate) guards: Vec<Guard>,
    pub(crate) recorded: Vec<RecordedEvent>,
    /// Streams appended to so far: a transaction may touch an item once, so a second
    /// append to a stream continues its events and replaces its head.
    heads: HashMap<StreamId, HeadSlot>,
    /// Counter heads written so far, rebuilt whole on each further append.
    pub(crate) counters: HashMap<StreamId, crate::counter::CounterSlot>,
    /// Markers this commit writes, which it need not also require.
    pub(crate) marked: HashSet<String>,
    /// Counter heads moved or closed without a version condition (at most once each).
    pub(crate) moved: HashSet<StreamId>,
    pub(crate) metadata: Metadata,
    pub(crate) now: OffsetDateTime,
}

/// Where a stream's head sits in the commit and what it expects.
struct HeadSlot {
    index: usize,
    expected: u64,
    version: u64,
}

impl Commit {
    pub fn new(table: impl Into<String>, metadata: Metadata, now: OffsetDateTime) -> Self {
        Self {
            table: table.into(),
            items: Vec::new(),
            guards: Vec::new(),
            recorded: Vec::new(),
            heads: HashMap::new(),
            counters: HashMap::new(),
            marked: HashSet::new(),
            moved: HashSet::new(),
            metadata,
            now,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The events this commit will record, with their ids and versions.
    pub fn recorded(&self) -> &[RecordedEvent] {
        &self.recorded
    }

    /// Appends `events` to `stream` at `expected` (0 for a new stream) and writes its head
    /// with the new `state`. Nothing is added when there are no events. Appending to a
    /// stream this commit already appended to continues from where that left off
    /// (`expected` must be that version), and the head is written once, conditional on the
    /// first `expected`.
    pub fn append<E: DomainEvent>(
        &mut self,
        stream: &StreamId,
        expected: u64,
        events: &[E],
        state: &impl Serialize,
    ) -> Result<&mut Self, StoreError> {
        self.append_with(stream, expected, events, state, Item::new())
    }

    /// As [`Commit::append`], with extra attributes on the head that conditions elsewhere
    /// test (a workspace's member set, say).
    pub fn append_with<E: DomainEvent>(
        &mut self,
        stream: &StreamId,
        expected: u64,
        events: &[E],
        state: &impl Serialize,
        head_attributes: Item,
    ) -> Result<&mut Self, StoreError> {
        if events.is_empty() {
            return Ok(self);
        }
        let slot = self.heads.get(stream);
        if let Some(slot) = slot {
            if slot.version != expected {
                return Err(StoreError::Corrupt(format!(
                    "{stream} appended at {expected} in a commit that took it to {}",
                    slot.version
                )));
            }
        }
        let condition_on = slot.map_or(expected, |s| s.expected);
        let mut version = expected;
        for event in events {
            version += 1;
            let recorded = RecordedEvent {
                event_id: Uuid::now_v7(),
                stream: stream.clone(),
                version,
                event_type: event.event_type().to_owned(),
                context: E::CONTEXT.to_owned(),
                time: self.now,
                payload: event.payload(),
                metadata: self.metadata.clone(),
                schema: E::SCHEMA,
            };
            let item = EventItem::from_recorded(&recorded)?.into_item()?;
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(StoreError::dynamo)?;
            self.push(
                TransactWriteItem::builder().put(put).build(),
                Guard::Event(stream.clone()),
            );
            self.recorded.push(recorded);
        }
        let state = serde_json::to_string(state)
            .map_err(|e| StoreError::Corrupt(format!("state does not serialize: {e}")))?;
        let mut head = head_attributes;
        head.insert("pk".into(), s(stream.as_str()));
        head.insert("sk".into(), n(0));
        head.insert("kind".into(), s("head"));
        head.insert("version".into(), n(version));
        head.insert("state".into(), s(state));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(head))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let put = if condition_on == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("version = :expected")
                .expression_attribute_values(":expected", n(condition_on))
        };
        let item = TransactWriteItem::builder()
            .put(put.build().map_err(StoreError::dynamo)?)
            .build();
        match self.heads.get_mut(stream) {
            Some(slot) => {
                self.items[slot.index] = item;
                slot.version = version;
            }
            None => {
                self.heads.insert(
                    stream.clone(),
                    HeadSlot {
                        index: self.items.len(),
                        expected,
                        version,
                    },
                );
                self.push(item, Guard::Head(stream.clone()));
            }
        }
        Ok(self)
    }

    /// Refuses the commit ([`Refusal::NotMember`]) unless `user` is in the `members` set of
    /// the head of `stream`. The check is part of the transaction, so it cannot go stale.
    pub fn require_member(
        &mut self,
        stream: &StreamId,
        user: &str,
    ) -> Result<&mut Self, StoreError> {
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(stream.as_str()))
            .key("sk", n(0))
            .condition_expression("contains(members, :user)")
            .expression_attribute_values(":user", s(user))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(StoreError::dynamo)?;
        self.push(
            TransactWriteItem::builder().condition_check(check).build(),
            Guard::Check(Refusal::NotMember),
        );
        Ok(self)
    }

    /// A conditional update of a lock or counter item; its failure means `refusal`.
    pub fn update(&mut self, update: Update, refusal: Refusal) -> &mut Self {
        self.push(
            TransactWriteItem::builder().update(update).build(),
            Guard::Check(refusal),
        )
    }

    /// A conditional put of a lock, receipt or agenda item; its failure means `refusal`.
    pub fn put(&mut self, put: Put, refusal: Refusal) -> &mut Self {
        self.push(
            TransactWriteItem::builder().put(put).build(),
            Guard::Check(refusal),
        )
    }

    /// A put without a condition (an index entry, a secret), which cannot refuse.
    pub fn index(&mut self, put: Put) -> &mut Self {
        self.push(
            TransactWriteItem::builder().put(put).build(),
            Guard::Unconditional,
        )
    }

    /// A delete without a condition (an index entry that moves), which cannot refuse.
    pub fn unindex(&mut self, delete: Delete) -> &mut Self {
        self.push(
            TransactWriteItem::builder().delete(delete).build(),
            Guard::Unconditional,
        )
    }

    /// A conditional delete of a lock or agenda item; its failure means `refusal`.
    pub fn delete(&mut self, delete: Delete, refusal: Refusal) -> &mut Self {
        self.push(
            TransactWriteItem::builder().delete(delete).build(),
            Guard::Check(refusal),
        )
    }

    /// Refuses the commit as a conflict on `stream` unless its head is at `version`.
    pub fn require_version(
        &mut self,
        stream: &StreamId,
        version: u64,
    ) -> Result<&mut Self, StoreError> {
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(stream.as_str()))
            .key("sk", n(0))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", n(version))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(StoreError::dynamo)?;
        Ok(self.push(
            TransactWriteItem::builder().condition_check(check).build(),
            Guard::Head(stream.clone()),
        ))
    }

    pub(crate) fn push_guarded(&mut self, item: TransactWriteItem, guard: Guard) -> &mut Self {
        self.push(item, guard)
    }

    fn push(&mut self, item: TransactWriteItem, guard: Guard) -> &mut Self {
        self.items.push(item);
        self.guards.push(guard);
        self
    }

    pub(crate) fn check_size(&self) -> Result<(), StoreError> {
        if self.items.len() > MAX_TRANSACTION_ITEMS {
            return Err(StoreError::TooManyItems(self.items.len()));
        }
        Ok(())
    }
}
