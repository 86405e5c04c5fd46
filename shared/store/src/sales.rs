//! The organizer's sales figures: one row per concert and level in the state table,
//! moved by the events that change them (seats reserved, released, sold, checked in;
//! money taken and given back).
//!
//! Every figure is a sum, and sums commute, so the rows end the same whatever order the
//! events arrive in (a `reservation.confirmed` before its `reservation.created` leaves
//! `reserved` at -n for a moment, then 0). A marker per event commits with the sums it
//! moves, so a redelivered event counts once. Amounts are DynamoDB numbers, which are
//! exact decimals: money is added as written, never through a float.

use crate::attribute::{get_s, n, s, Item};
use crate::StoreError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use rust_decimal::Decimal;
use std::str::FromStr;
use uuid::Uuid;

/// How long a marker outlives the event it counted: past SQS's longest retention.
const MARKER_LIFETIME_SECS: i64 = 15 * 86_400;

/// What one event changes on one level's row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Movement {
    pub level_id: String,
    pub reserved: i64,
    pub sold: i64,
    pub checked_in: i64,
    pub revenue: Decimal,
    pub refunds: Decimal,
}

/// One level's row as it stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LevelSales {
    pub level_id: String,
    /// Seats held by reservations not yet paid.
    pub reserved: i64,
    pub sold: i64,
    pub checked_in: i64,
    /// Money taken for the level's seats, before refunds, in the concert's currency.
    pub revenue: Decimal,
    /// Money given back for the level's seats.
    pub refunds: Decimal,
}

#[derive(Clone)]
pub struct Sales {
    client: Client,
    table: String,
}

fn pk(concert: Uuid) -> String {
    format!("sales#{concert}")
}

impl Sales {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Adds `movements` to `concert`'s rows, once for `event_id`. Returns false when the
    /// event was counted before.
    pub async fn count(
        &self,
        event_id: Uuid,
        concert: Uuid,
        movements: &[Movement],
        now_unix: i64,
    ) -> Result<bool, StoreError> {
        if movements.is_empty() {
            return Ok(true);
        }
        let marker = Put::builder()
            .table_name(&self.table)
            .item("pk", s(format!("sales-counted#{event_id}")))
            .item("sk", s(concert.to_string()))
            .item("expires_at", n(now_unix + MARKER_LIFETIME_SECS))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(StoreError::dynamo)?;
        let mut write = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(marker).build());
        for m in movements {
            let update = Update::builder()
                .table_name(&self.table)
                .key("pk", s(pk(concert)))
                .key("sk", s(&m.level_id))
                .update_expression(
                    "ADD reserved :r, sold :s, checked_in :c, revenue :m, refunds :f",
                )
                .expression_attribute_values(":r", n(m.reserved))
                .expression_attribute_values(":s", n(m.sold))
                .expression_attribute_values(":c", n(m.checked_in))
                .expression_attribute_values(":m", n(m.revenue))
                .expression_attribute_values(":f", n(m.refunds))
                .build()
                .map_err(StoreError::dynamo)?;
            write = write.transact_items(TransactWriteItem::builder().update(update).build());
        }
        crate::read_model::once(write).await
    }

    /// Every level row of `concert` that an event has touched, by level id.
    pub async fn of(&self, concert: Uuid) -> Result<Vec<LevelSales>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(pk(concert)))
            .consistent_read(true);
        crate::attribute::query_all(query, row).await
    }
}

fn row(item: &Item) -> Result<LevelSales, StoreError> {
    let int = |name: &str| -> Result<i64, StoreError> {
        number(item, name)?
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("sales `{name}` is not a whole number")))
    };
    Ok(LevelSales {
        level_id: get_s(item, "sk")?.to_owned(),
        reserved: int("reserved")?,
        sold: int("sold")?,
        checked_in: int("checked_in")?,
        revenue: number(item, "revenue")?,
        refunds: number(item, "refunds")?,
    })
}

fn number(item: &Item, name: &str) -> Result<Decimal, StoreError> {
    match item.get(name) {
        None => Ok(Decimal::ZERO),
        Some(value) => {
            let raw = value
                .as_n()
                .map_err(|_| StoreError::Corrupt(format!("sales `{name}` is not a number")))?;
            Decimal::from_str(raw)
                .or_else(|_| Decimal::from_scientific(raw))
                .map_err(|_| StoreError::Corrupt(format!("sales `{name}` reads `{raw}`")))
        }
    }
}
