//! Views: read models whose every row is a function of ONE stream as of a version.
//!
//! A view's projector, on any event of a stream, rewrites the rows that stream yields
//! from the stream's state at its latest version, and a row is only ever written over a
//! row of an older version. So the arrival order and redeliveries of the events cannot
//! leave a row behind or move it back, and a rebuild from the event log writes exactly
//! what the live projector wrote.
//!
//! A row the stream no longer yields (a coupon that is no longer active) is kept as a
//! tombstone (no body) for [`TOMBSTONE_LIFETIME_SECS`], so a late write of an older
//! version cannot bring it back; readers skip tombstones, and TTL removes them.

use crate::attribute::{get_s, get_u64, n, s, Item};
use crate::StoreError;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

/// How long a tombstone outlives the row it replaced: far beyond any redelivery.
pub const TOMBSTONE_LIFETIME_SECS: i64 = 7 * 86_400;

/// One row of a view.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewRow {
    pub pk: String,
    pub sk: String,
    /// The version of the source stream the row was derived from.
    pub version: u64,
    /// `None`: a tombstone.
    pub body: Option<serde_json::Value>,
}

/// Which rows a write may replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// Only rows of an older version: the live projector's writes.
    Older,
    /// Rows of the same version too: a rebuild repairs a row its version vouches for.
    NotNewer,
}

#[derive(Clone)]
pub struct Views {
    client: Client,
    table: String,
}

impl Views {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Writes `row` unless a row of a newer version (or, with [`Over::Older`], the same
    /// version) is there. Returns whether it was written.
    pub async fn write(
        &self,
        row: &ViewRow,
        over: Over,
        now_unix: i64,
    ) -> Result<bool, StoreError> {
        let condition = match over {
            Over::Older => "attribute_not_exists(pk) OR version < :v",
            Over::NotNewer => "attribute_not_exists(pk) OR version <= :v",
        };
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&row.pk))
            .item("sk", s(&row.sk))
            .item("version", n(row.version))
            .condition_expression(condition)
            .expression_attribute_values(":v", n(row.version));
        put = match &row.body {
            Some(body) => put.item("body", s(body.to_string())),
            None => put.item("expires_at", n(now_unix + TOMBSTONE_LIFETIME_SECS)),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(false)
            }
            Err(e) => Err(StoreError::sdk(e)),
        }
    }

    /// Deletes a row unless it was rewritten from a newer version than `version`.
    pub async fn remove(&self, pk: &str, sk: &str, version: u64) -> Result<bool, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .condition_expression("attribute_not_exists(pk) OR version <= :v")
            .expression_attribute_values(":v", n(version))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), DeleteItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(false)
            }
            Err(e) => Err(StoreError::sdk(e)),
        }
    }

    /// The live rows of one partition (tombstones skipped), by sort key.
    pub async fn rows(&self, pk: &str) -> Result<Vec<ViewRow>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(pk))
            .consistent_read(true);
        let rows = crate::attribute::query_all(query, row).await?;
        Ok(rows.into_iter().filter(|r| r.body.is_some()).collect())
    }

    /// Up to `limit` live rows of partition `pk` that `keep` keeps, in key order, after
    /// the row keyed `after`, and the key to pass as `after` for the next page (none once
    /// the partition is read to its end). A page may come back short of `limit` only at
    /// the end; a full last page is followed by an empty one.
    pub async fn page(
        &self,
        pk: &str,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&ViewRow) -> bool,
    ) -> Result<(Vec<ViewRow>, Option<String>), StoreError> {
        let mut kept = Vec::new();
        let mut start = after.map(str::to_owned);
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                // Tombstones and rows `keep` drops are read too: ask for what is still
                // missing, and more pages if they take up room.
                .limit(i32::try_from(limit - kept.len()).unwrap_or(i32::MAX).max(1));
            if let Some(start) = &start {
                query = query.set_exclusive_start_key(Some(
                    [("pk".to_owned(), s(pk)), ("sk".to_owned(), s(start))].into(),
                ));
            }
            let out = query.send().await.map_err(StoreError::sdk)?;
            for item in out.items() {
                let row = row(item)?;
                start = Some(row.sk.clone());
                if row.body.is_some() && keep(&row) {
                    kept.push(row);
                    if kept.len() == limit {
                        return Ok((kept, start));
                    }
                }
            }
            if out.last_evaluated_key().is_none() {
                return Ok((kept, None));
            }
        }
    }

    /// Every row, tombstones included, of the partitions whose key starts with each of
    /// `prefixes`: one scan of the table, for rebuilds and comparisons, never for a
    /// request.
    pub async fn scan(&self, prefixes: &[&str]) -> Result<Vec<ViewRow>, StoreError> {
        let mut filter = Vec::new();
        let mut scan = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .expression_attribute_names("#v", "version");
        for (i, prefix) in prefixes.iter().enumerate() {
            filter.push(format!("begins_with(pk, :p{i})"));
            scan = scan.expression_attribute_values(format!(":p{i}"), s(*prefix));
        }
        // Only view rows carry a version beside a body or a TTL.
        scan = scan.filter_expression(format!(
            "attribute_exists(#v) AND ({})",
            filter.join(" OR ")
        ));
        let mut pages = scan.into_paginator().items().send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            out.push(row(&item.map_err(StoreError::sdk)?)?);
        }
        out.sort_by(|a, b| (&a.pk, &a.sk).cmp(&(&b.pk, &b.sk)));
        Ok(out)
    }
}

fn row(item: &Item) -> Result<ViewRow, StoreError> {
    Ok(ViewRow {
        pk: get_s(item, "pk")?.to_owned(),
        sk: get_s(item, "sk")?.to_owned(),
        version: get_u64(item, "version")?,
        body: match item.get("body") {
            Some(AttributeValue::S(text)) => Some(
                serde_json::from_str(text)
                    .map_err(|e| StoreError::Corrupt(format!("view row body is not JSON: {e}")))?,
            ),
            _ => None,
        },
    })
}
