//! The baselines: the DynamoDB writes a debit needs, issued raw with the SDK and no kassa
//! code, so a ratio against them shows what kassa adds on top of DynamoDB itself.

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A wallet-shaped stream of its own, appended to with the three items a debit commits:
/// the membership check on the workspace head, the event, and the wallet head at the
/// version it expects. Items carry the attributes and about the sizes kassa writes, so
/// DynamoDB does the same work for both; the stream is separate so the two never collide.
pub struct BareStream {
    client: Client,
    table: String,
    workspace_pk: String,
    member: String,
    wallet: Uuid,
    stream_pk: String,
    version: u64,
    balance: i64,
}

const BARE_START_BALANCE: i64 = 10_000_000;

impl BareStream {
    /// Writes the stream's head at version 1, as if the wallet had just been opened.
    pub async fn open(client: Client, table: &str, workspace: Uuid, member: &str) -> Result<Self> {
        let wallet = Uuid::now_v7();
        let stream = Self {
            client,
            table: table.to_owned(),
            workspace_pk: format!("Workspace#{workspace}"),
            member: member.to_owned(),
            wallet,
            stream_pk: format!("BareWallet#{wallet}"),
            version: 1,
            balance: BARE_START_BALANCE,
        };
        stream
            .client
            .put_item()
            .table_name(&stream.table)
            .set_item(Some(stream.head_item(1)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .context("seeding the bare stream's head")?;
        Ok(stream)
    }

    fn head_item(&self, version: u64) -> std::collections::HashMap<String, AttributeValue> {
        let state = json!({
            "workspace_id": self.wallet,
            "tier": "enterprise",
            "balance": self.balance,
            "low_balance_armed": true,
            "allocations": ["bench"],
        });
        std::collections::HashMap::from([
            ("pk".to_owned(), s(&self.stream_pk)),
            ("sk".to_owned(), n(0)),
            ("kind".to_owned(), s("head")),
            ("version".to_owned(), n(version)),
            ("state".to_owned(), s(state.to_string())),
        ])
    }

    /// One debit's `TransactWriteItems`, built here as the handler builds its commit, so
    /// building the request is inside the timing for both.
    pub async fn append(&mut self) -> Result<()> {
        let version = self.version + 1;
        self.balance -= 1;
        let request = Uuid::now_v7();
        let payload = json!({
            "workspace_id": self.wallet,
            "consumption_id": Uuid::now_v7(),
            "feature": "api.call",
            "quantity": 1,
            "credits": 1,
            "balance_after": self.balance,
        });
        let metadata = json!({
            "correlation_id": request,
            "causation_id": request,
            "actor": self.member,
        });
        let membership = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(&self.workspace_pk))
            .key("sk", n(0))
            .condition_expression("contains(members, :user)")
            .expression_attribute_values(":user", s(&self.member))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()?;
        let event = Put::builder()
            .table_name(&self.table)
            .item("pk", s(&self.stream_pk))
            .item("sk", n(version))
            .item("kind", s("event"))
            .item("type", s("credits.consumed"))
            .item("event_id", s(Uuid::now_v7().to_string()))
            .item("context", s("credits"))
            .item("time", s(OffsetDateTime::now_utc().format(&Rfc3339)?))
            .item("payload", s(payload.to_string()))
            .item("metadata", s(metadata.to_string()))
            .condition_expression("attribute_not_exists(pk)")
            .build()?;
        let head = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.head_item(version)))
            .condition_expression("version = :expected")
            .expression_attribute_values(":expected", n(self.version))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()?;
        self.client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .condition_check(membership)
                    .build(),
            )
            .transact_items(TransactWriteItem::builder().put(event).build())
            .transact_items(TransactWriteItem::builder().put(head).build())
            .send()
            .await
            .context("bare TransactWriteItems")?;
        self.version = version;
        Ok(())
    }
}

/// One item holding a balance, spent by a conditional `UpdateItem`: the least DynamoDB
/// can do to debit a shared balance without overdrawing it, so the hot-wallet baseline.
#[derive(Clone)]
pub struct BareCounter {
    client: Client,
    table: String,
    pk: String,
}

/// How one conditional debit ended.
pub enum Debit {
    Done,
    /// The balance was below the amount; the condition refused it.
    Refused,
}

impl BareCounter {
    pub async fn open(client: Client, table: &str, balance: u64) -> Result<Self> {
        let counter = Self {
            client,
            table: table.to_owned(),
            pk: format!("BareCounter#{}", Uuid::now_v7()),
        };
        counter
            .client
            .put_item()
            .table_name(&counter.table)
            .item("pk", s(&counter.pk))
            .item("sk", n(0))
            .item("balance", n(balance))
            .send()
            .await
            .context("seeding the bare counter")?;
        Ok(counter)
    }

    /// The same item through another client, as another Lambda sandbox would reach it.
    pub fn through(&self, client: Client) -> Self {
        Self {
            client,
            ..self.clone()
        }
    }

    pub async fn debit(&self, credits: u64) -> Result<Debit> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&self.pk))
            .key("sk", n(0))
            .update_expression("SET balance = balance - :n")
            .condition_expression("balance >= :n")
            .expression_attribute_values(":n", n(credits))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Debit::Done),
            Err(error) => {
                let service = error.into_service_error();
                if service.is_conditional_check_failed_exception() {
                    Ok(Debit::Refused)
                } else {
                    Err(service).context("bare UpdateItem")
                }
            }
        }
    }
}
