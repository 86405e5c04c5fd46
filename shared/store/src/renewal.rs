//! The renewal agenda: which wallets are due for their monthly credits on which day, and
//! on which day of the month each renews (its anchor), so that a short month clamping one
//! renewal does not move the ones after it.

use crate::agenda::{self, Agenda, Entry};
use crate::attribute::n;
use crate::StoreError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put};
use aws_sdk_dynamodb::Client;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueRenewal {
    pub workspace_id: Uuid,
    /// `YYYY-MM-DD`.
    pub due: String,
    /// The day of the month the wallet renews on; `None` on entries scheduled before
    /// anchors were kept, whose due day is then the best guess.
    pub anchor: Option<u8>,
}

#[derive(Clone)]
pub struct Renewals(Agenda);

impl Renewals {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self(Agenda::new(client, table, "renewals"))
    }

    /// Schedules `workspace` for `due`, renewing on day `anchor` of each month; refused if
    /// it is already scheduled that day.
    pub fn schedule(&self, workspace: Uuid, due: &str, anchor: u8) -> Result<Put, StoreError> {
        self.0
            .schedule_with(due, &workspace.to_string(), [("anchor", n(anchor))])
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
            .due_items(day, |item| {
                let e = agenda::entry(item)?;
                let anchor = match item.get("anchor") {
                    Some(AttributeValue::N(day)) => Some(day.parse().map_err(|_| {
                        StoreError::Corrupt(format!("renewal anchor `{day}` is not a day"))
                    })?),
                    _ => None,
                };
                Ok(DueRenewal {
                    workspace_id: Uuid::parse_str(&e.subject)
                        .map_err(|err| StoreError::Corrupt(err.to_string()))?,
                    due: e.when,
                    anchor,
                })
            })
            .await
    }
}
