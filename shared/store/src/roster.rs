//! Rosters: who belongs to a group (the orders that hold seats of a concert, the carts
//! that hold its levels), one item per member in a partition of the state table, so
//! whoever must reach every member later (a concert's cancellation) reads them with a
//! paginated query instead of a scan.
//!
//! A member is entered in the commit that makes it one, without a condition: entering
//! twice is the same item, and a roster never says more than "look here", so a reader
//! re-checks each member's own state.

use crate::attribute::{get_s, s};
use crate::StoreError;
use aws_sdk_dynamodb::types::Put;
use aws_sdk_dynamodb::Client;

#[derive(Clone)]
pub struct Roster {
    client: Client,
    table: String,
    /// Names the kind of group (`concert-orders`), so rosters of several kinds share the
    /// table without meeting.
    kind: &'static str,
}

/// One page of a roster's members, and where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    pub members: Vec<String>,
    pub next: Option<String>,
}

impl Roster {
    pub fn new(client: Client, table: impl Into<String>, kind: &'static str) -> Self {
        Self {
            client,
            table: table.into(),
            kind,
        }
    }

    fn partition(&self, group: &str) -> String {
        format!("roster#{}#{group}", self.kind)
    }

    /// The item that enters `member` in `group`; stage it with `Commit::index`.
    pub fn enter(&self, group: &str, member: &str) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(&self.table)
            .item("pk", s(self.partition(group)))
            .item("sk", s(member))
            .build()
            .map_err(StoreError::dynamo)
    }

    /// Up to `limit` members of `group` after `after`, in member order.
    pub async fn members(
        &self,
        group: &str,
        after: Option<&str>,
        limit: i32,
    ) -> Result<Members, StoreError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(self.partition(group)))
            .consistent_read(true)
            .limit(limit);
        if let Some(after) = after {
            query = query
                .exclusive_start_key("pk", s(self.partition(group)))
                .exclusive_start_key("sk", s(after));
        }
        let page = query.send().await.map_err(StoreError::sdk)?;
        let members = page
            .items()
            .iter()
            .map(|item| get_s(item, "sk").map(str::to_owned))
            .collect::<Result<Vec<_>, _>>()?;
        let next = page
            .last_evaluated_key()
            .and_then(|key| key.get("sk"))
            .and_then(|v| v.as_s().ok())
            .cloned();
        Ok(Members { members, next })
    }
}
