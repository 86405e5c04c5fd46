//! Gapless sequences (invoice numbers): a counter item per sequence, advanced by a
//! conditional update inside the transaction that uses the number. Either both commit or
//! neither does, so no number is skipped or used twice; a concurrent taker makes the
//! condition fail and the caller retries with the new value.

use crate::attribute::{get_u64, n, s};
use crate::StoreError;
use aws_sdk_dynamodb::types::Update;
use aws_sdk_dynamodb::Client;

#[derive(Clone)]
pub struct Sequences {
    client: Client,
    table: String,
}

/// Label of the counter's guard in a commit.
pub const SEQUENCE: &str = "sequence";

impl Sequences {
    /// Counters live in the events table beside the streams whose commits advance them.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn key(name: &str) -> String {
        format!("Sequence#{name}")
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
            .map_err(StoreError::dynamo)?;
        match out.item {
            Some(item) => get_u64(&item, "last"),
            None => Ok(0),
        }
    }

    /// Takes `last + 1`, refused (as [`SEQUENCE`]) if someone took it first.
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
