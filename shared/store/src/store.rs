//! The event store: load heads, read streams, commit.

use crate::attribute::{get_json, get_s, get_u64, n, s, Item};
use crate::commit::{Commit, Guard};
use crate::event::{Metadata, RecordedEvent, StreamId};
use crate::StoreError;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use time::OffsetDateTime;
use uuid::Uuid;

/// An event item exactly as stored; the relay reads stream images with this same type.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventItem {
    pub pk: String,
    pub sk: u64,
    pub kind: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub event_id: String,
    pub context: String,
    pub time: String,
    /// JSON text: DynamoDB maps would lose decimal precision and key order.
    pub payload: String,
    pub metadata: String,
    #[serde(default = "crate::event::first_schema")]
    pub schema: u32,
}

pub const EVENT_KIND: &str = "event";

impl EventItem {
    pub fn from_recorded(e: &RecordedEvent) -> Result<Self, StoreError> {
        Ok(Self {
            pk: e.stream.as_str().to_owned(),
            sk: e.version,
            kind: EVENT_KIND.to_owned(),
            event_type: e.event_type.clone(),
            event_id: e.event_id.to_string(),
            context: e.context.clone(),
            time: e
                .time
                .format(&time::format_description::well_known::Rfc3339)
                .map_err(|e| StoreError::Corrupt(format!("time does not format: {e}")))?,
            payload: to_json(&e.payload)?,
            metadata: to_json(&e.metadata)?,
            schema: e.schema,
        })
    }

    pub(crate) fn into_item(self) -> Result<Item, StoreError> {
        serde_dynamo::to_item(self).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Rebuilds the recorded event; `None` for heads, locks and counters.
    pub fn into_recorded(self) -> Result<Option<RecordedEvent>, StoreError> {
        if self.kind != EVENT_KIND {
            return Ok(None);
        }
        let corrupt = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Corrupt(format!("event {}@{}: {what}: {e}", self.pk, self.sk))
        };
        Ok(Some(RecordedEvent {
            event_id: Uuid::parse_str(&self.event_id).map_err(|e| corrupt("event_id", &e))?,
            stream: StreamId::from_stored(self.pk.clone()),
            version: self.sk,
            event_type: self.event_type.clone(),
            context: self.context.clone(),
            time: OffsetDateTime::parse(&self.time, &time::format_description::well_known::Rfc3339)
                .map_err(|e| corrupt("time", &e))?,
            payload: serde_json::from_str(&self.payload).map_err(|e| corrupt("payload", &e))?,
            metadata: serde_json::from_str::<Metadata>(&self.metadata)
                .map_err(|e| corrupt("metadata", &e))?,
            schema: self.schema,
        }))
    }
}

fn to_json(value: &impl Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A stream's head: its version and the state as of that version.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub stream: StreamId,
    pub version: u64,
    pub state: serde_json::Value,
    /// The schema the state was written under (`Aggregate::SCHEMA`); 1 for heads from
    /// before heads were versioned.
    pub schema: u32,
    /// A counter head's figure (see `counter`).
    pub counter: Option<i64>,
    /// The member set the head keeps for conditions elsewhere (or mirrors).
    pub members: Vec<String>,
    /// A counter head closed to steps that need it open.
    pub closed: bool,
}

impl Head {
    pub fn state<S: DeserializeOwned>(&self) -> Result<S, StoreError> {
        serde_json::from_value(self.state.clone())
            .map_err(|e| StoreError::Corrupt(format!("head of {}: {e}", self.stream)))
    }

    pub fn from_item(item: &Item) -> Result<Self, StoreError> {
        Ok(Self {
            stream: StreamId::from_stored(get_s(item, "pk")?.to_owned()),
            version: get_u64(item, "version")?,
            state: get_json(item, "state")?,
            schema: match item.get("schema") {
                Some(_) => u32::try_from(get_u64(item, "schema")?)
                    .map_err(|_| StoreError::Corrupt("head schema out of range".into()))?,
                None => crate::event::first_schema(),
            },
            counter: match item.get(crate::counter::COUNTER) {
                Some(AttributeValue::N(v)) => Some(
                    v.parse()
                        .map_err(|_| StoreError::Corrupt(format!("counter {v}")))?,
                ),
                _ => None,
            },
            members: match item.get(crate::counter::MEMBERS) {
                Some(AttributeValue::Ss(m)) => m.clone(),
                _ => Vec::new(),
            },
            closed: matches!(
                item.get(crate::counter::CLOSED),
                Some(AttributeValue::Bool(true))
            ),
        })
    }
}

/// A page of a stream, oldest first, with where the next page starts.
#[derive(Debug, Clone)]
pub struct Page {
    pub events: Vec<RecordedEvent>,
    /// The version after which the next page starts, if there may be more.
    pub next_after: Option<u64>,
}

#[derive(Clone)]
pub struct EventStore {
    client: Client,
    table: String,
    items_read: Arc<AtomicU64>,
}

impl EventStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            items_read: Arc::default(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// How many items this store has read from DynamoDB so far. Tests use it to prove that
    /// loading an aggregate does not grow with its history.
    pub fn items_read(&self) -> u64 {
        self.items_read.load(Ordering::Relaxed)
    }

    fn count_reads(&self, items: usize) {
        self.items_read.fetch_add(items as u64, Ordering::Relaxed);
    }

    /// A new, empty commit on this store's table.
    pub fn commit_builder(&self, metadata: Metadata, now: OffsetDateTime) -> Commit {
        Commit::new(&self.table, metadata, now)
    }

    /// The head of `stream`, or `None` for a stream with no events. One strongly
    /// consistent `GetItem`.
    pub async fn load(&self, stream: &StreamId) -> Result<Option<Head>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(stream.as_str()))
            .key("sk", n(0))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::sdk)?;
        match out.item {
            Some(item) => {
                self.count_reads(1);
                Head::from_item(&item).map(Some)
            }
            None => Ok(None),
        }
    }

    /// The heads of several streams in one round trip (`BatchGetItem`), keyed by stream.
    /// No streams read nothing: DynamoDB refuses a `BatchGetItem` without keys.
    pub async fn load_many(
        &self,
        streams: &[&StreamId],
    ) -> Result<HashMap<StreamId, Head>, StoreError> {
        if streams.is_empty() {
            return Ok(HashMap::new());
        }
        let mut keys: Vec<Item> = streams
            .iter()
            .map(|st| HashMap::from([("pk".into(), s(st.as_str())), ("sk".into(), n(0))]))
            .collect();
        keys.dedup();
        let mut heads = HashMap::new();
        let mut pending = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(StoreError::dynamo)?,
        );
        // BatchGetItem may return only part of the answer under load; ask again for the rest.
        while let Some(request) = pending.take() {
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(StoreError::sdk)?;
            for item in out
                .responses
                .unwrap_or_default()
                .remove(&self.table)
                .unwrap_or_default()
            {
                self.count_reads(1);
                let head = Head::from_item(&item)?;
                heads.insert(head.stream.clone(), head);
            }
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .filter(|k| !k.keys.is_empty());
        }
        Ok(heads)
    }

    /// Up to `limit` events of `stream` after version `after`, oldest first.
    pub async fn read_page(
        &self,
        stream: &StreamId,
        after: u64,
        limit: i32,
    ) -> Result<Page, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk > :after")
            .expression_attribute_values(":pk", s(stream.as_str()))
            .expression_attribute_values(":after", n(after))
            .consistent_read(true)
            .limit(limit)
            .send()
            .await
            .map_err(StoreError::sdk)?;
        let items = out.items.unwrap_or_default();
        self.count_reads(items.len());
        let mut events = Vec::with_capacity(items.len());
        for item in items {
            let stored: EventItem =
                serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if let Some(e) = stored.into_recorded()? {
                events.push(e);
            }
        }
        let next_after = out
            .last_evaluated_key
            .map(|k| match k.get("sk") {
                Some(AttributeValue::N(v)) => v
                    .parse::<u64>()
                    .map_err(|_| StoreError::Corrupt(format!("sk {v}"))),
                _ => Err(StoreError::Corrupt("last evaluated key without sk".into())),
            })
            .transpose()?;
        Ok(Page { events, next_after })
    }

    /// The whole stream, oldest first, following DynamoDB's pages (`page_size` items each).
    pub async fn read_stream(
        &self,
        stream: &StreamId,
        page_size: i32,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page = self.read_page(stream, after, page_size).await?;
            all.extend(page.events);
            match page.next_after {
                Some(next) => after = next,
                None => return Ok(all),
            }
        }
    }

    /// Every recorded event of every stream of aggregate `aggregate` (`Coupon`), grouped
    /// by stream, each stream oldest first: one scan of the whole table, for rebuilding a
    /// read model from the log, never for a request.
    pub async fn scan_events(
        &self,
        aggregate: &str,
    ) -> Result<std::collections::BTreeMap<StreamId, Vec<RecordedEvent>>, StoreError> {
        let scan = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .filter_expression("begins_with(pk, :prefix) AND sk > :head AND kind = :event")
            .expression_attribute_values(":prefix", s(format!("{aggregate}#")))
            .expression_attribute_values(":head", n(0))
            .expression_attribute_values(":event", s(EVENT_KIND));
        let mut pages = scan.into_paginator().items().send();
        let mut streams = std::collections::BTreeMap::<StreamId, Vec<RecordedEvent>>::new();
        while let Some(item) = pages.next().await {
            let stored: EventItem = serde_dynamo::from_item(item.map_err(StoreError::sdk)?)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if let Some(event) = stored.into_recorded()? {
                streams.entry(event.stream.clone()).or_default().push(event);
            }
        }
        for events in streams.values_mut() {
            events.sort_by_key(|e| e.version);
        }
        Ok(streams)
    }

    /// Writes the commit atomically and returns the events it recorded.
    pub async fn commit(&self, commit: Commit) -> Result<Vec<RecordedEvent>, StoreError> {
        if commit.is_empty() {
            return Ok(Vec::new());
        }
        commit.check_size()?;
        let Commit {
            mut items,
            guards,
            recorded,
            ..
        } = commit;
        if let ([item], [guard]) = (items.as_mut_slice(), guards.as_slice()) {
            if item.put.is_some() || item.update.is_some() {
                // A transaction of one item buys nothing and costs twice the writes: the
                // same write alone, with the same condition, decides the same way.
                self.write_one(
                    std::mem::replace(item, TransactWriteItem::builder().build()),
                    guard,
                )
                .await?;
                return Ok(recorded);
            }
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(recorded),
            Err(SdkError::ServiceError(e)) => match e.into_err() {
                TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                    Err(refusal(&guards, cancelled.cancellation_reasons()))
                }
                // Another transaction held one of our items: a conflict by another name.
                TransactWriteItemsError::TransactionInProgressException(_) => {
                    Err(first_head_conflict(&guards))
                }
                other => Err(StoreError::sdk(other)),
            },
            Err(other) => Err(StoreError::sdk(other)),
        }
    }
}

impl EventStore {
    /// One staged `Put` or `Update` sent on its own, its refusal mapped as a transaction's.
    async fn write_one(&self, item: TransactWriteItem, guard: &Guard) -> Result<(), StoreError> {
        let old = if let Some(put) = item.put {
            match self
                .client
                .put_item()
                .table_name(put.table_name)
                .set_item(Some(put.item))
                .set_condition_expression(put.condition_expression)
                .set_expression_attribute_names(put.expression_attribute_names)
                .set_expression_attribute_values(put.expression_attribute_values)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await
            {
                Ok(_) => return Ok(()),
                Err(SdkError::ServiceError(e)) => match e.into_err() {
                    PutItemError::ConditionalCheckFailedException(failed) => failed.item,
                    other => return Err(StoreError::sdk(other)),
                },
                Err(other) => return Err(StoreError::sdk(other)),
            }
        } else if let Some(update) = item.update {
            match self
                .client
                .update_item()
                .table_name(update.table_name)
                .set_key(Some(update.key))
                .update_expression(update.update_expression)
                .set_condition_expression(update.condition_expression)
                .set_expression_attribute_names(update.expression_attribute_names)
                .set_expression_attribute_values(update.expression_attribute_values)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await
            {
                Ok(_) => return Ok(()),
                Err(SdkError::ServiceError(e)) => match e.into_err() {
                    UpdateItemError::ConditionalCheckFailedException(failed) => failed.item,
                    other => return Err(StoreError::sdk(other)),
                },
                Err(other) => return Err(StoreError::sdk(other)),
            }
        } else {
            return Err(StoreError::Corrupt(
                "a lone write neither puts nor updates".into(),
            ));
        };
        Err(match guard {
            Guard::Check(refusal) => StoreError::Refused(*refusal),
            Guard::Head(stream) | Guard::Event(stream) => StoreError::Conflict {
                stream: stream.clone(),
                current: old
                    .filter(|i| !i.is_empty())
                    .and_then(|i| Head::from_item(&i).ok())
                    .map(Box::new),
            },
            Guard::Unconditional => StoreError::Dynamo("an unconditional write was refused".into()),
        })
    }
}

fn first_head_conflict(guards: &[Guard]) -> StoreError {
    let stream = guards
        .iter()
        .find_map(|g| match g {
            Guard::Head(s) | Guard::Event(s) => Some(s.clone()),
            Guard::Check(_) | Guard::Unconditional => None,
        })
        .unwrap_or_else(|| StreamId::new("Unknown", "-"));
    StoreError::Conflict {
        stream,
        current: None,
    }
}

/// Says which guard refused a cancelled transaction. A refused business check wins over
/// a version conflict, and a conflict over throttling: retrying would not change the
/// first's answer, and the second's retry decides again on the head it carries.
fn refusal(
    guards: &[Guard],
    reasons: &[aws_sdk_dynamodb::types::CancellationReason],
) -> StoreError {
    let mut conflict = None;
    for (guard, reason) in guards.iter().zip(reasons) {
        match reason.code() {
            Some("ConditionalCheckFailed") => match guard {
                Guard::Check(refusal) => return StoreError::Refused(*refusal),
                Guard::Unconditional => {}
                Guard::Head(stream) | Guard::Event(stream) => {
                    // The event slot fails too when a rival took the version, but only the
                    // head's failure carries the current head: keep looking for it.
                    let current = reason
                        .item()
                        .filter(|i| !i.is_empty())
                        .and_then(|i| Head::from_item(i).ok())
                        .map(Box::new);
                    let known = matches!(
                        conflict,
                        Some(StoreError::Conflict {
                            current: Some(_),
                            ..
                        })
                    );
                    if !known {
                        conflict = Some(StoreError::Conflict {
                            stream: stream.clone(),
                            current,
                        });
                    }
                }
            },
            // Capacity, not contention: the same transaction may pass after a pause.
            Some(code @ ("ThrottlingError" | "ProvisionedThroughputExceeded"))
                if !matches!(conflict, Some(StoreError::Conflict { .. })) =>
            {
                conflict = Some(StoreError::Throttled(code.to_owned()));
            }
            Some("TransactionConflict")
                if !matches!(conflict, Some(StoreError::Conflict { .. })) =>
            {
                conflict = Some(StoreError::Conflict {
                    stream: match guard {
                        Guard::Head(s) | Guard::Event(s) => s.clone(),
                        Guard::Check(_) | Guard::Unconditional => StreamId::new("Lock", "-"),
                    },
                    current: None,
                });
            }
            _ => {}
        }
    }
    conflict.unwrap_or_else(|| {
        let codes: Vec<_> = reasons.iter().map(|r| r.code().unwrap_or("None")).collect();
        StoreError::Dynamo(format!("transaction cancelled: {}", codes.join(", ")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Refusal;
    use aws_sdk_dynamodb::types::CancellationReason;

    fn reasons(codes: &[&str]) -> Vec<CancellationReason> {
        codes
            .iter()
            .map(|c| CancellationReason::builder().code(*c).build())
            .collect()
    }

    #[test]
    fn a_transaction_cancelled_for_capacity_is_throttled() {
        let guards = [
            Guard::Check(Refusal::NotMember),
            Guard::Head(StreamId::new("Wallet", "w")),
        ];
        for code in ["ThrottlingError", "ProvisionedThroughputExceeded"] {
            let error = refusal(&guards, &reasons(&["None", code]));
            assert!(
                matches!(error, StoreError::Throttled(_)),
                "{code}: {error:?}"
            );
        }
    }

    #[test]
    fn a_refused_guard_wins_over_throttling() {
        let guards = [
            Guard::Check(Refusal::NotMember),
            Guard::Head(StreamId::new("Wallet", "w")),
        ];
        let error = refusal(
            &guards,
            &reasons(&["ConditionalCheckFailed", "ThrottlingError"]),
        );
        assert!(
            matches!(error, StoreError::Refused(Refusal::NotMember)),
            "{error:?}"
        );
    }
}
