//! The renewal agenda: which wallets are due for their monthly credits on which day.

use crate::agenda::{Agenda, Entry};
use crate::StoreError;
use aws_sdk_dynamodb::types::{Delete, Put};
use aws_sdk_dynamodb::Client;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueRenewal {
    pub workspace_id: Uuid,
    /// `YYYY-MM-DD`.
    pub due: String,
}

#[derive(Clone)]
pub struct Renewals(Agenda);

impl Renewals {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self(Agenda::new(client, table, "renewals"))
    }

    /// Schedules `workspace` for `due`; refused if it is already scheduled that day.
    pub fn schedule(&self, workspace: Uuid, due: &str) -> Result<Put, StoreError> {
        self.0.schedule(due, &workspace.to_string())
    }

    /// Removes a due entry; refused if another run already took it.
    pub fn take(&self, renewal: &DueRenewal) -> Result<Delete, StoreError> {
        self.0.take(&Entry {
            when: renewal.due.clone(),
            subject: renewal.workspace_id.to_string(),
        })
    }

    /// Every renewal due on or before `day`, oldest first.
    pub async fn due_by(&self, day: &str) -> Result<Vec<DueRenewal>, StoreError> {
        self.0
            .due_by(day)
            .await?
            .into_iter()
            .map(|e| {
                Ok(DueRenewal {
                    workspace_id: Uuid::parse_str(&e.subject)
                        .map_err(|err| StoreError::Corrupt(err.to_string()))?,
                    due: e.when,
                })
            })
            .collect()
    }
}
