//! Leases: short, expiring claims on a key, for taking turns where optimistic races are
//! wasteful (a burst on one invoice series, a hot wallet). A lease is a conditional put;
//! its holder releases it inside the transaction it was taken for, so the turn passes the
//! moment the work commits. A holder that dies leaves a lease that expires on its own, and
//! the guarded work keeps its own conditions, so a holder that outlives its lease cannot
//! corrupt anything: it is only refused.

use crate::attribute::{n, s};
use crate::StoreError;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::Delete;
use aws_sdk_dynamodb::Client;
use std::time::Duration;
use time::OffsetDateTime;

#[derive(Clone)]
pub struct Leases {
    client: Client,
    table: String,
}

impl Leases {
    /// Lease items live in the events table (kind `lease`, never published).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Takes the lease on `key` for `holder` unless someone else holds an unexpired one.
    /// `now` is the clock read for this very try: a waiter that tries again must read the
    /// clock again, or it never sees a dead holder's lease run out (and any lease it then
    /// takes would be born expired).
    pub async fn acquire(
        &self,
        key: &str,
        holder: &str,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let until = now.unix_timestamp() + i64::try_from(ttl.as_secs()).unwrap_or(60).max(1);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(key))
            .item("sk", n(0))
            .item("kind", s("lease"))
            .item("holder", s(holder))
            .item("until", n(until))
            .condition_expression("attribute_not_exists(pk) OR #until < :now")
            .expression_attribute_names("#until", "until")
            .expression_attribute_values(":now", n(now.unix_timestamp()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(false)
            }
            Err(e) => Err(StoreError::sdk(e)),
        }
    }

    /// Releases `holder`'s lease as part of a commit, refused ([`crate::Refusal::LeaseLost`]) if it was lost.
    pub fn release(&self, key: &str, holder: &str) -> Result<Delete, StoreError> {
        Delete::builder()
            .table_name(&self.table)
            .key("pk", s(key))
            .key("sk", n(0))
            .condition_expression("holder = :me")
            .expression_attribute_values(":me", s(holder))
            .build()
            .map_err(StoreError::dynamo)
    }

    /// Releases `holder`'s lease after a commit that did not happen; a lease already lost
    /// or expired is left alone.
    pub async fn abandon(&self, key: &str, holder: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .key("sk", n(0))
            .condition_expression("holder = :me")
            .expression_attribute_values(":me", s(holder))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(())
            }
            Err(e) => Err(StoreError::sdk(e)),
        }
    }
}
