//! Agendas: what falls due when (monthly renewals, unpaid orders, open invoices).
//!
//! Each agenda is one partition of the state table sorted by `<when>#<subject>`, so a
//! scheduled job reads everything due with one paginated query. `when` is any string that
//! sorts chronologically (`YYYY-MM-DD`, or a UTC timestamp in one fixed format). Entries are
//! written and taken inside the commits that justify them.

use crate::attribute::{get_s, query_all, s, Item};
use crate::StoreError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put};
use aws_sdk_dynamodb::Client;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub when: String,
    pub subject: String,
}

#[derive(Clone)]
pub struct Agenda {
    client: Client,
    table: String,
    partition: &'static str,
}

fn sort_key(when: &str, subject: &str) -> String {
    format!("{when}#{subject}")
}

impl Agenda {
    pub fn new(client: Client, table: impl Into<String>, partition: &'static str) -> Self {
        Self {
            client,
            table: table.into(),
            partition,
        }
    }

    /// Puts `subject` on the agenda at `when`; refused if it is already there at that time.
    pub fn schedule(&self, when: &str, subject: &str) -> Result<Put, StoreError> {
        self.schedule_with(when, subject, [])
    }

    /// As [`Agenda::schedule`], with attributes of the entry's own (read back by
    /// [`Agenda::due_items`]).
    pub(crate) fn schedule_with(
        &self,
        when: &str,
        subject: &str,
        attributes: impl IntoIterator<Item = (&'static str, AttributeValue)>,
    ) -> Result<Put, StoreError> {
        attributes
            .into_iter()
            .fold(Put::builder(), |put, (name, value)| put.item(name, value))
            .table_name(&self.table)
            .item("pk", s(self.partition))
            .item("sk", s(sort_key(when, subject)))
            .item("subject", s(subject))
            .item("when", s(when))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(StoreError::dynamo)
    }

    /// Removes an entry; refused if another run already took it.
    pub fn take(&self, entry: &Entry) -> Result<Delete, StoreError> {
        Delete::builder()
            .table_name(&self.table)
            .key("pk", s(self.partition))
            .key("sk", s(sort_key(&entry.when, &entry.subject)))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(StoreError::dynamo)
    }

    /// Every entry due at or before `when`, oldest first.
    pub async fn due_by(&self, when: &str) -> Result<Vec<Entry>, StoreError> {
        self.due_items(when, entry).await
    }

    /// Every item due at or before `when`, oldest first, read by `parse`.
    pub(crate) async fn due_items<T>(
        &self,
        when: &str,
        parse: impl Fn(&Item) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk <= :last")
            .expression_attribute_values(":pk", s(self.partition))
            // '~' sorts after every character of the subjects kassa uses.
            .expression_attribute_values(":last", s(format!("{when}#~")))
            .consistent_read(true);
        query_all(query, parse).await
    }
}

pub(crate) fn entry(item: &Item) -> Result<Entry, StoreError> {
    Ok(Entry {
        when: get_s(item, "when")?.to_owned(),
        subject: get_s(item, "subject")?.to_owned(),
    })
}
