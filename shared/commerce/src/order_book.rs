//! What the orders context keeps beside its streams, in the state table: the expiry
//! agenda, each user's orders and provider subscriptions (for `user.deleted`), and the
//! payment client secret, which is handed to the buyer but never published in an event.

use aws_sdk_dynamodb::types::{AttributeValue, Put};
use aws_sdk_dynamodb::Client;
use kassa_domain::order::Order;
use kassa_store::{Agenda, Commit, Refusal, StoreError};
use time::OffsetDateTime;
use uuid::Uuid;

/// Metadata keys kassa sets on the provider objects it creates (payment intents,
/// subscriptions), read back from webhooks to find what they belong to.
pub const ORDER_KEY: &str = "kassa_order_id";
pub const USER_KEY: &str = "kassa_user_id";
pub const WORKSPACE_KEY: &str = "kassa_workspace_id";

/// The agenda partition of unpaid orders, by expiry time.
pub const EXPIRY_AGENDA: &str = "orders-expiring";

/// Agenda times sort as strings: one fixed UTC format, to the second.
pub fn agenda_time(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .unwrap_or_default()
}

fn buyer_key(user: &str) -> String {
    format!("orders#{user}")
}

fn subscriber_key(user: &str) -> String {
    format!("subscriptions#{user}")
}

fn secret_key(order: Uuid) -> String {
    format!("order-secret#{order}")
}

#[derive(Clone)]
pub struct OrderBook {
    client: Client,
    table: String,
    expiry: Agenda,
}

impl OrderBook {
    pub fn new(client: Client, state_table: impl Into<String>) -> Self {
        let table = state_table.into();
        Self {
            expiry: Agenda::new(client.clone(), &table, EXPIRY_AGENDA),
            client,
            table,
        }
    }

    pub fn expiry(&self) -> &Agenda {
        &self.expiry
    }

    /// Adds a new order's agenda entry and buyer-list entry to its creating commit.
    pub fn on_create(&self, commit: &mut Commit, order: &Order) -> Result<(), StoreError> {
        commit.put(
            self.expiry
                .schedule(&agenda_time(order.expires_at), &order.order_id.to_string())?,
            Refusal::AlreadyScheduled,
        );
        let entry = Put::builder()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(buyer_key(order.user_id.as_str())))
            .item("sk", AttributeValue::S(order.order_id.to_string()))
            .build()
            .map_err(StoreError::dynamo)?;
        commit.index(entry);
        Ok(())
    }

    /// The client secret, kept until a day after the order would expire.
    pub fn secret(&self, order: &Order, client_secret: &str) -> Result<Put, StoreError> {
        let expires = order.expires_at + time::Duration::days(1);
        Put::builder()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(secret_key(order.order_id)))
            .item("sk", AttributeValue::S("-".into()))
            .item("client_secret", AttributeValue::S(client_secret.into()))
            .item(
                "expires_at",
                AttributeValue::N(expires.unix_timestamp().to_string()),
            )
            .build()
            .map_err(StoreError::dynamo)
    }

    pub async fn client_secret(&self, order: Uuid) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(secret_key(order)))
            .key("sk", AttributeValue::S("-".into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::dynamo)?;
        Ok(out.item.and_then(|i| match i.get("client_secret") {
            Some(AttributeValue::S(s)) => Some(s.clone()),
            _ => None,
        }))
    }

    /// Every order `user` placed.
    pub async fn orders_of(&self, user: &str) -> Result<Vec<Uuid>, StoreError> {
        self.list(buyer_key(user))
            .await?
            .iter()
            .map(|id| Uuid::parse_str(id).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }

    /// Records that provider subscription `subscription` belongs to `user`, in the commit
    /// that first announces it.
    pub fn subscriber(&self, user: &str, subscription: &str) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(subscriber_key(user)))
            .item("sk", AttributeValue::S(subscription.to_owned()))
            .build()
            .map_err(StoreError::dynamo)
    }

    /// Every provider subscription of `user`.
    pub async fn subscriptions_of(&self, user: &str) -> Result<Vec<String>, StoreError> {
        self.list(subscriber_key(user)).await
    }

    /// The sort keys of a list partition.
    async fn list(&self, partition: String) -> Result<Vec<String>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(partition))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut keys = Vec::new();
        while let Some(item) = pages.next().await {
            if let Some(AttributeValue::S(key)) = item.map_err(StoreError::dynamo)?.get("sk") {
                keys.push(key.clone());
            }
        }
        Ok(keys)
    }
}
