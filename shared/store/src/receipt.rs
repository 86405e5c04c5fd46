//! Receipts of inbound deliveries (a payment provider's webhook events): a conditional put
//! of the delivery's id, committed in the same transaction as the events it causes. A
//! repeated delivery is refused by the condition, so it has no second effect even when
//! copies arrive at once.

use crate::attribute::{n, s};
use crate::StoreError;
use aws_sdk_dynamodb::types::Put;
use time::OffsetDateTime;

/// A put that records delivery `id` from `source` in the events table, refused when
/// already recorded. The relay ignores it (its kind is not `event`).
pub fn receipt(
    table: &str,
    source: &str,
    id: &str,
    event_type: &str,
    received: OffsetDateTime,
) -> Result<Put, StoreError> {
    Put::builder()
        .table_name(table)
        .item("pk", s(format!("Receipt#{source}#{id}")))
        .item("sk", n(0))
        .item("kind", s("receipt"))
        .item("event_type", s(event_type))
        .item("received", n(received.unix_timestamp()))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(StoreError::dynamo)
}
