//! Read models side effects keep in the state table: usage per workspace, feature and day,
//! and the notifications shown to a workspace's members.

use crate::attribute::{get_s, get_u64, n, query_all, s, Item};
use crate::StoreError;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone)]
pub struct ReadModels {
    client: Client,
    table: String,
}

/// One consumption as the usage model counts it.
#[derive(Debug, Clone, Copy)]
pub struct FeatureUse<'a> {
    pub event_id: Uuid,
    pub workspace: Uuid,
    /// `YYYY-MM-DD`, UTC.
    pub day: &'a str,
    pub feature: &'a str,
    pub quantity: u64,
    pub credits: u64,
}

/// One row of the usage read model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub feature: String,
    pub quantity: u64,
    pub credits: u64,
    pub uses: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub kind: String,
    pub message: String,
    pub created_at: String,
    /// Whether a mail went out for it, and to whom.
    pub mailed_to: Option<String>,
}

/// A notification as listed: with what became of its mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub notification: Notification,
    /// `pending` (not mailed yet), `sent`, `failed` (retried with the event's
    /// redelivery) or `unmailed` (no address).
    pub delivery: String,
    /// Mail attempts so far.
    pub attempts: u64,
    pub last_error: Option<String>,
}

/// How long a usage marker outlives the event it counted.
const MARKER_LIFETIME_SECS: i64 = 15 * 86_400;

fn usage_pk(workspace: Uuid) -> String {
    format!("usage#{workspace}")
}

fn notifications_pk(workspace: Uuid) -> String {
    format!("notifications#{workspace}")
}

impl ReadModels {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Deletes every row the workspace's read models hold (usage, notifications); returns
    /// how many. Run again, it finds none.
    pub async fn purge(&self, workspace: Uuid) -> Result<usize, StoreError> {
        let mut purged = 0;
        for pk in [usage_pk(workspace), notifications_pk(workspace)] {
            let query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(&pk))
                .projection_expression("pk, sk")
                .consistent_read(true);
            let keys = query_all(query, |item| {
                Ok((get_s(item, "pk")?.to_owned(), get_s(item, "sk")?.to_owned()))
            })
            .await?;
            for (pk, sk) in keys {
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .key("pk", s(pk))
                    .key("sk", s(sk))
                    .send()
                    .await
                    .map_err(StoreError::sdk)?;
                purged += 1;
            }
        }
        Ok(purged)
    }

    /// Adds one consumption to its day's row. The marker item and the counter change
    /// commit together, so a redelivered event (even after a crash between the two) is
    /// counted once. Returns false when the event was already counted.
    pub async fn record_usage(
        &self,
        use_: &FeatureUse<'_>,
        now_unix: i64,
    ) -> Result<bool, StoreError> {
        let FeatureUse {
            event_id,
            workspace,
            day,
            feature,
            quantity,
            credits,
        } = *use_;
        let marker = Put::builder()
            .table_name(&self.table)
            .item("pk", s(format!("usage-counted#{event_id}")))
            .item("sk", s("-"))
            // Kept past SQS's longest retention (14 days), then left to TTL.
            .item("expires_at", n(now_unix + MARKER_LIFETIME_SECS))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(StoreError::dynamo)?;
        let counter = Update::builder()
            .table_name(&self.table)
            .key("pk", s(usage_pk(workspace)))
            .key("sk", s(format!("{day}#{feature}")))
            .update_expression(
                "SET #day = :day, feature = :feature ADD quantity :q, credits :c, uses :one",
            )
            .expression_attribute_names("#day", "day")
            .expression_attribute_values(":day", s(day))
            .expression_attribute_values(":feature", s(feature))
            .expression_attribute_values(":q", n(quantity))
            .expression_attribute_values(":c", n(credits))
            .expression_attribute_values(":one", n(1))
            .build()
            .map_err(StoreError::dynamo)?;
        once(
            self.client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(marker).build())
                .transact_items(TransactWriteItem::builder().update(counter).build()),
        )
        .await
    }

    /// Usage rows of a workspace between two days (inclusive), by day then feature.
    pub async fn usage(
        &self,
        workspace: Uuid,
        from_day: &str,
        to_day: &str,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
            .expression_attribute_values(":pk", s(usage_pk(workspace)))
            .expression_attribute_values(":from", s(format!("{from_day}#")))
            // '~' sorts after every feature code character.
            .expression_attribute_values(":to", s(format!("{to_day}#~")));
        query_all(query, usage_row).await
    }

    /// Stores a notification once: its key derives from the event that raised it.
    pub async fn add_notification(&self, n_: &Notification) -> Result<bool, StoreError> {
        let body = serde_json::to_string(n_).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(notifications_pk(n_.workspace_id)))
            .item("sk", s(format!("{}#{}", n_.created_at, n_.id)))
            .item("body", s(body))
            .item(
                "delivery",
                s(if n_.mailed_to.is_some() {
                    "pending"
                } else {
                    "unmailed"
                }),
            )
            .item("attempts", n(0))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(false)
            }
            Err(e) => Err(StoreError::dynamo(e)),
        }
    }

    /// Whether the notification's mail went out already.
    pub async fn mailed(&self, n_: &Notification) -> Result<bool, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(notifications_pk(n_.workspace_id)))
            .key("sk", s(format!("{}#{}", n_.created_at, n_.id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::dynamo)?;
        Ok(out
            .item
            .as_ref()
            .and_then(|item| get_s(item, "delivery").ok())
            == Some("sent"))
    }

    /// Records a mail attempt of the notification: sent, or failed and why. A sent
    /// notification stays sent.
    pub async fn record_delivery(
        &self,
        n_: &Notification,
        outcome: Result<(), String>,
    ) -> Result<(), StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(notifications_pk(n_.workspace_id)))
            .key("sk", s(format!("{}#{}", n_.created_at, n_.id)))
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(delivery) OR delivery <> :sent)",
            )
            .expression_attribute_values(":sent", s("sent"))
            .expression_attribute_values(":one", n(1));
        let update = match outcome {
            Ok(()) => {
                update.update_expression("SET delivery = :sent REMOVE last_error ADD attempts :one")
            }
            Err(error) => update
                .update_expression("SET delivery = :failed, last_error = :error ADD attempts :one")
                .expression_attribute_values(":failed", s("failed"))
                .expression_attribute_values(":error", s(error)),
        };
        match update.send().await {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(())
            }
            Err(e) => Err(StoreError::dynamo(e)),
        }
    }

    /// The newest notifications of a workspace first, with their delivery.
    pub async fn notifications(
        &self,
        workspace: Uuid,
        limit: i32,
    ) -> Result<Vec<Listed>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(notifications_pk(workspace)))
            .scan_index_forward(false)
            .limit(limit)
            .send()
            .await
            .map_err(StoreError::dynamo)?;
        out.items
            .unwrap_or_default()
            .iter()
            .map(|item| {
                let notification: Notification = serde_json::from_str(get_s(item, "body")?)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                // Rows from before delivery was tracked were stored once mailed.
                let delivery = get_s(item, "delivery")
                    .map(str::to_owned)
                    .unwrap_or_else(|_| {
                        if notification.mailed_to.is_some() {
                            "sent"
                        } else {
                            "unmailed"
                        }
                        .to_owned()
                    });
                Ok(Listed {
                    delivery,
                    attempts: get_u64(item, "attempts").unwrap_or(0),
                    last_error: get_s(item, "last_error").ok().map(str::to_owned),
                    notification,
                })
            })
            .collect()
    }
}

fn usage_row(item: &Item) -> Result<UsageRow, StoreError> {
    Ok(UsageRow {
        day: get_s(item, "day")?.to_owned(),
        feature: get_s(item, "feature")?.to_owned(),
        quantity: get_u64(item, "quantity")?,
        credits: get_u64(item, "credits")?,
        uses: get_u64(item, "uses")?,
    })
}

/// Sends `write`, whose first item is a marker put only if absent: false when the marker
/// was there (what it marks was done before), so nothing was written.
pub(crate) async fn once(
    write: aws_sdk_dynamodb::operation::transact_write_items::builders::TransactWriteItemsFluentBuilder,
) -> Result<bool, StoreError> {
    match write.send().await {
        Ok(_) => Ok(true),
        Err(SdkError::ServiceError(e)) => match e.into_err() {
            TransactWriteItemsError::TransactionCanceledException(c)
                if c.cancellation_reasons().first().and_then(|r| r.code())
                    == Some("ConditionalCheckFailed") =>
            {
                Ok(false)
            }
            other => Err(StoreError::dynamo(other)),
        },
        Err(e) => Err(StoreError::dynamo(e)),
    }
}
