//! The renewal index: which wallets are due for their monthly credits on which day.
//! Items live in the state table under one partition (`renewals`) sorted by due day, so the
//! daily job reads everything due with one paginated query. Entries are written and
//! removed inside the same commit as the allocation that justifies them.

use crate::attribute::{get_s, query_all, s, Item};
use crate::StoreError;
use aws_sdk_dynamodb::types::{Delete, Put};
use aws_sdk_dynamodb::Client;
use uuid::Uuid;

const PARTITION: &str = "renewals";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueRenewal {
    pub workspace_id: Uuid,
    /// `YYYY-MM-DD`.
    pub due: String,
}

#[derive(Clone)]
pub struct Renewals {
    client: Client,
    table: String,
}

fn sort_key(due: &str, workspace: Uuid) -> String {
    format!("{due}#{workspace}")
}

impl Renewals {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Schedules `workspace` for `due`; refused if it is already scheduled that day.
    pub fn schedule(&self, workspace: Uuid, due: &str) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(&self.table)
            .item("pk", s(PARTITION))
            .item("sk", s(sort_key(due, workspace)))
            .item("workspace_id", s(workspace.to_string()))
            .item("due", s(due))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(StoreError::dynamo)
    }

    /// Removes a due entry; refused if another run already took it.
    pub fn take(&self, renewal: &DueRenewal) -> Result<Delete, StoreError> {
        Delete::builder()
            .table_name(&self.table)
            .key("pk", s(PARTITION))
            .key("sk", s(sort_key(&renewal.due, renewal.workspace_id)))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(StoreError::dynamo)
    }

    /// Every renewal due on or before `day`, oldest first.
    pub async fn due_by(&self, day: &str) -> Result<Vec<DueRenewal>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk <= :last")
            .expression_attribute_values(":pk", s(PARTITION))
            // '~' sorts after every UUID character.
            .expression_attribute_values(":last", s(format!("{day}#~")))
            .consistent_read(true);
        query_all(query, renewal).await
    }
}

fn renewal(item: &Item) -> Result<DueRenewal, StoreError> {
    Ok(DueRenewal {
        workspace_id: Uuid::parse_str(get_s(item, "workspace_id")?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        due: get_s(item, "due")?.to_owned(),
    })
}
