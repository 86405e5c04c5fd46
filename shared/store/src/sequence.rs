//! Gapless sequences (invoice numbers): a counter item per sequence, advanced by a
//! conditional update inside the transaction that uses the number. Either both commit or
//! neither does, so no number is skipped or used twice; a concurrent taker makes the
//! condition fail and the caller retries with the new value.
//!
//! Under a burst, contenders racing whole transactions for one counter cost O(n²)
//! transactions. A short lease in front of the counter turns the race into cheap
//! conditional puts: only the lease holder runs the transaction, and the transaction
//! releases the lease. A holder that dies leaves a lease that expires on its own; the
//! counter's condition still guards against a holder that outlived its lease.

use crate::attribute::{get_u64, n, s};
use crate::lease::Leases;
use crate::StoreError;
use aws_sdk_dynamodb::types::{Delete, Update};
use aws_sdk_dynamodb::Client;
use std::time::Duration;
use time::OffsetDateTime;

#[derive(Clone)]
pub struct Sequences {
    client: Client,
    table: String,
    leases: Leases,
}

impl Sequences {
    /// Counters live in the events table beside the streams whose commits advance them.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        let table = table.into();
        Self {
            leases: Leases::new(client.clone(), &table),
            client,
            table,
        }
    }

    fn key(name: &str) -> String {
        format!("Sequence#{name}")
    }

    fn lease_key(name: &str) -> String {
        format!("Sequence#{name}#lease")
    }

    /// Takes the lease on `name` for `holder` unless someone else holds an unexpired one.
    pub async fn lease(
        &self,
        name: &str,
        holder: &str,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.leases
            .acquire(&Self::lease_key(name), holder, now, ttl)
            .await
    }

    /// Releases `holder`'s lease as part of a commit, refused ([`crate::Refusal::LeaseLost`]) if it was lost.
    pub fn release(&self, name: &str, holder: &str) -> Result<Delete, StoreError> {
        self.leases.release(&Self::lease_key(name), holder)
    }

    /// Releases `holder`'s lease after a commit that did not happen.
    pub async fn abandon(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.leases.abandon(&Self::lease_key(name), holder).await
    }

    /// The last number taken from `name` (0 when none was), read consistently.
    pub async fn last(&self, name: &str) -> Result<u64, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(Self::key(name)))
            .key("sk", n(0))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::sdk)?;
        match out.item {
            Some(item) => get_u64(&item, "last"),
            None => Ok(0),
        }
    }

    /// Takes `last + 1`, refused ([`crate::Refusal::SequenceMoved`]) if someone took it first.
    pub fn take_next(&self, name: &str, last: u64) -> Result<Update, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(Self::key(name)))
            .key("sk", n(0))
            .update_expression("SET #last = :next, kind = :kind")
            .expression_attribute_names("#last", "last")
            .expression_attribute_values(":next", n(last + 1))
            .expression_attribute_values(":kind", s("sequence"));
        let update = if last == 0 {
            update.condition_expression("attribute_not_exists(pk)")
        } else {
            update
                .condition_expression("#last = :last")
                .expression_attribute_values(":last", n(last))
        };
        update.build().map_err(StoreError::dynamo)
    }
}
