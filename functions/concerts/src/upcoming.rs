//! The upcoming-concerts index: one item per concert not yet started nor canceled, keyed by
//! its start, so listing what is on sale is one query, oldest start first. The index is
//! written in the commit that creates, moves or cancels the concert, so it never lags.

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put};
use aws_sdk_dynamodb::Client;
use kassa_domain::concert::Concert;
use kassa_store::StoreError;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

const PARTITION: &str = "Concerts#upcoming";

/// What the list shows of a concert.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Listed {
    pub concert_id: Uuid,
    pub artist: String,
    pub venue: String,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    pub currency: String,
}

#[derive(Clone)]
pub struct Upcoming {
    client: Client,
    table: String,
}

/// Sorts by start; the id breaks ties. Seconds since the epoch, zero-padded, sort as text.
fn sort_key(starts_at: OffsetDateTime, id: Uuid) -> String {
    format!("{:012}#{id}", starts_at.unix_timestamp().max(0))
}

impl Upcoming {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The entry of `concert` as it now is.
    pub fn entry(&self, concert: &Concert) -> Result<Put, StoreError> {
        let listed = Listed {
            concert_id: concert.concert_id,
            artist: concert.artist.clone(),
            venue: concert.venue.clone(),
            starts_at: concert.starts_at,
            currency: concert.currency.code().to_owned(),
        };
        let json =
            serde_json::to_string(&listed).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Put::builder()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(PARTITION.into()))
            .item(
                "sk",
                AttributeValue::S(sort_key(concert.starts_at, concert.concert_id)),
            )
            .item("listed", AttributeValue::S(json))
            .build()
            .map_err(StoreError::dynamo)
    }

    /// Removes the entry `concert` had (its start as it was).
    pub fn removal(&self, concert: &Concert) -> Result<Delete, StoreError> {
        Delete::builder()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(PARTITION.into()))
            .key(
                "sk",
                AttributeValue::S(sort_key(concert.starts_at, concert.concert_id)),
            )
            .build()
            .map_err(StoreError::dynamo)
    }

    /// Up to `limit` concerts starting after `now`, after the cursor `after` (a sort key a
    /// previous page returned); and the cursor of the next page, if there may be one.
    pub async fn page(
        &self,
        now: OffsetDateTime,
        after: Option<&str>,
        limit: i32,
    ) -> Result<(Vec<Listed>, Option<String>), StoreError> {
        let from = sort_key(now, Uuid::nil());
        let start = match after {
            Some(cursor) if cursor > from.as_str() => cursor.to_owned(),
            _ => from,
        };
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk > :start")
            .expression_attribute_values(":pk", AttributeValue::S(PARTITION.into()))
            .expression_attribute_values(":start", AttributeValue::S(start))
            .limit(limit)
            .send()
            .await
            .map_err(StoreError::sdk)?;
        let mut listed = Vec::new();
        for item in out.items() {
            let Some(AttributeValue::S(json)) = item.get("listed") else {
                continue;
            };
            listed
                .push(serde_json::from_str(json).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
        let next = out
            .last_evaluated_key()
            .and_then(|k| k.get("sk"))
            .and_then(|v| v.as_s().ok())
            .cloned();
        Ok((listed, next))
    }
}
