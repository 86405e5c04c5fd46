//! The baseline: the DynamoDB write a debit needs, issued raw with the SDK and no kassa
//! code, so a ratio against it shows what kassa adds on top of DynamoDB itself.

use anyhow::{bail, Context, Result};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A wallet head of its own, debited by one conditional `UpdateItem` of the shape kassa's
/// debit sends: `ADD counter :delta, version :k SET carried = :json` if
/// `schema = :schema AND counter >= :lo AND contains(members, :user)`, returning the item
/// as it is after the write (or as it was when the condition failed).
///
/// Its item is a copy of the bench wallet's head (state, `members` string set, `counter`,
/// `version`, `schema`, ...) under a key of its own, so DynamoDB reads, checks and writes
/// an item of the same size for both and the two never collide. The carried JSON is built
/// per debit, as kassa builds its own: one `credits.consumed` event with its payload and
/// metadata, in the same shape and so about the same size.
#[derive(Clone)]
pub struct BareHead {
    client: Client,
    table: String,
    pk: String,
    member: String,
    workspace: Uuid,
    schema: String,
    /// The counter after the last debit any clone saw, for the payload's `balance_after`.
    counter: Arc<AtomicI64>,
}

/// How one conditional debit ended.
pub enum Debit {
    Done,
    /// A condition failed: the counter below the floor, or the caller not a member.
    Refused,
}

impl BareHead {
    /// Copies the head `source` (the bench wallet's, `sk` 0) to a fresh key, checking it
    /// holds what the debit's condition reads.
    pub async fn copy(
        client: Client,
        table: &str,
        source: &str,
        member: &str,
        workspace: Uuid,
    ) -> Result<Self> {
        let mut item = client
            .get_item()
            .table_name(table)
            .key("pk", s(source))
            .key("sk", n(0))
            .consistent_read(true)
            .send()
            .await
            .context("reading the head the bare head copies")?
            .item
            .with_context(|| format!("{source} has no head to copy"))?;
        let number = |name: &str| -> Result<i64> {
            item.get(name)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("the head of {source} has no number `{name}`"))
        };
        let counter = number("counter")?;
        number("version")?;
        let schema = number("schema")?.to_string();
        let is_member = item
            .get("members")
            .and_then(|v| v.as_ss().ok())
            .is_some_and(|members| members.iter().any(|m| m == member));
        if !is_member {
            bail!("the head of {source} has no `members` set holding {member}");
        }
        let pk = format!("BareWallet#{}", Uuid::now_v7());
        item.insert("pk".to_owned(), s(&pk));
        client
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .context("seeding the bare head")?;
        Ok(Self {
            client,
            table: table.to_owned(),
            pk,
            member: member.to_owned(),
            workspace,
            schema,
            counter: Arc::new(AtomicI64::new(counter)),
        })
    }

    /// The same item through another client, as another Lambda sandbox would reach it.
    pub fn through(&self, client: Client) -> Self {
        Self {
            client,
            ..self.clone()
        }
    }

    pub fn pk(&self) -> &str {
        &self.pk
    }

    /// One debit of `credits`, its request and carried events built here as the handler
    /// builds its own, so building them is inside the timing for both.
    pub async fn debit(&self, credits: u64) -> Result<Debit> {
        let request = Uuid::now_v7();
        let balance_after = self.counter.load(Ordering::Relaxed) - credits as i64;
        let carried = json!([{
            "event_id": Uuid::now_v7(),
            "type": "credits.consumed",
            "context": "credits",
            "schema": 1,
            "time": OffsetDateTime::now_utc().format(&Rfc3339)?,
            "payload": {
                "workspace_id": self.workspace,
                "consumption_id": Uuid::now_v7(),
                "feature": "api.call",
                "quantity": 1,
                "credits": credits,
                "balance_after": balance_after,
            },
            "metadata": {
                "correlation_id": request,
                "causation_id": request,
                "actor": self.member,
            },
            "fill": ["balance_after"],
        }]);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&self.pk))
            .key("sk", n(0))
            .update_expression("ADD #c :delta, #v :k SET #carried = :carried")
            .condition_expression("#s = :schema AND #c >= :lo AND contains(#m, :user)")
            .expression_attribute_names("#c", "counter")
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#s", "schema")
            .expression_attribute_names("#carried", "carried")
            .expression_attribute_names("#m", "members")
            .expression_attribute_values(":delta", n(-(credits as i64)))
            .expression_attribute_values(":k", n(1))
            .expression_attribute_values(":schema", n(&self.schema))
            .expression_attribute_values(":lo", n(credits))
            .expression_attribute_values(":user", s(&self.member))
            .expression_attribute_values(":carried", s(carried.to_string()))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                if let Some(counter) = out
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get("counter"))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok())
                {
                    self.counter.store(counter, Ordering::Relaxed);
                }
                Ok(Debit::Done)
            }
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

/// The size of what the head `pk` of `table` carries now: the JSON its last write
/// recorded, to show that kassa's debit and the baseline's write about as much.
pub async fn carried_bytes(client: &Client, table: &str, pk: &str) -> Result<usize> {
    let item: HashMap<String, AttributeValue> = client
        .get_item()
        .table_name(table)
        .key("pk", s(pk))
        .key("sk", n(0))
        .consistent_read(true)
        .projection_expression("carried")
        .send()
        .await
        .with_context(|| format!("reading what {pk} carries"))?
        .item
        .unwrap_or_default();
    Ok(item
        .get("carried")
        .and_then(|v| v.as_s().ok())
        .map_or(0, String::len))
}
