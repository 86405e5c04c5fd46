//! Issuing invoices: the next number of the series and the invoice's first events commit
//! in one transaction, so numbers have no gaps and no duplicates however many invoices of
//! one workspace are issued at once.

use kassa_domain::identity::UserId;
use kassa_domain::invoice::{self, Draft, Invoice, InvoiceCommand, InvoiceEvent};
use kassa_store::{stream_of, EventStore, Metadata, RecordedEvent, Refusal, Sequences, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

/// Contention on a series is expected (a burst of purchases): a contender waits for the
/// series' lease until this much time has passed.
const PATIENCE: Duration = Duration::from_secs(120);

/// How long a holder may keep a series' lease; a crashed holder blocks it no longer.
const LEASE: Duration = Duration::from_secs(10);

/// The agenda partition of open invoices, by due date.
pub const OVERDUE_AGENDA: &str = "invoices-due";

/// Invoice ids derive from what they bill, so issuing twice issues once.
pub fn invoice_id(of: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("kassa:invoice:{of}").as_bytes(),
    )
}

/// Numbers run per workspace, or per user when the invoice belongs to no workspace.
pub fn series(workspace: Option<Uuid>, user: &UserId) -> String {
    match workspace {
        Some(ws) => format!("workspace-{ws}"),
        None => format!("user-{user}"),
    }
}

/// The list of a series' invoices, newest number last, in the state table.
pub fn index_key(series: &str) -> String {
    format!("invoices#{series}")
}

pub struct Issued {
    pub invoice: Invoice,
    pub recorded: Vec<RecordedEvent>,
}

#[derive(Clone)]
pub struct Invoicing {
    store: EventStore,
    sequences: Sequences,
    state_table: String,
    /// Issues of one series within this instance queue here instead of polling the lease.
    local: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Invoicing {
    pub fn new(store: EventStore, state_table: impl Into<String>) -> Self {
        let sequences = Sequences::new(store.client().clone(), store.table());
        Self {
            store,
            sequences,
            state_table: state_table.into(),
            local: Arc::default(),
        }
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// Issues `draft` (paid at once when `paid` names the payment and day), or returns the
    /// invoice already issued under its id. `open_until` puts an unpaid invoice on the
    /// overdue agenda through `agenda`.
    pub async fn issue(
        &self,
        draft: Draft,
        paid: Option<(String, Date)>,
        agenda: Option<&kassa_store::Agenda>,
        metadata: Metadata,
        now: OffsetDateTime,
    ) -> Result<Issued, StoreError> {
        let stream = stream_of::<Invoice>(&draft.invoice_id);
        let name = format!("{}#{}", draft.series, draft.issued_on.year());
        let turn = {
            let mut queues = self.local.lock().unwrap_or_else(|p| p.into_inner());
            queues.entry(name.clone()).or_default().clone()
        };
        let _turn = turn.lock().await;
        let started = std::time::Instant::now();
        let deadline = started + PATIENCE;
        let holder = Uuid::now_v7().to_string();
        let mut tries = 0u32;
        loop {
            tries += 1;
            if let Some(head) = self.store.load(&stream).await? {
                return Ok(Issued {
                    invoice: head.state()?,
                    recorded: Vec::new(),
                });
            }
            if std::time::Instant::now() >= deadline {
                return Err(StoreError::Conflict {
                    stream,
                    current: None,
                });
            }
            // The clock as of this try: a lease is judged against the time it is asked
            // for, or a dead holder's lease would never be seen to expire.
            let asked_at = now + started.elapsed();
            if !self
                .sequences
                .lease(&name, &holder, asked_at, LEASE)
                .await?
            {
                // Someone is issuing in this series right now: wait a moment, cheaply.
                let cap_ms = (1u64 << tries.min(5)).clamp(2, 25);
                tokio::time::sleep(Duration::from_millis(fastrand::u64(1..=cap_ms))).await;
                continue;
            }
            let last = self.sequences.last(&name).await?;
            let mut events = invoice::decide(
                None,
                InvoiceCommand::Issue {
                    draft: draft.clone(),
                    sequence: last + 1,
                },
            )
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let mut state = events.iter().fold(None, invoice::evolve);
            if let Some((payment_id, paid_on)) = &paid {
                let pay = invoice::decide(
                    state.as_ref(),
                    InvoiceCommand::Pay {
                        payment_id: payment_id.clone(),
                        paid_on: *paid_on,
                    },
                )
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                state = pay.iter().fold(state, invoice::evolve);
                events.extend(pay);
            }
            let invoice = state.ok_or_else(|| StoreError::Corrupt("no invoice".into()))?;
            let mut commit = self.store.commit_builder(metadata.clone(), now);
            commit.append::<InvoiceEvent>(&stream, 0, &events, &invoice)?;
            commit.update(
                self.sequences.take_next(&name, last)?,
                Refusal::SequenceMoved,
            );
            commit.delete(self.sequences.release(&name, &holder)?, Refusal::LeaseLost);
            commit.index(self.index_entry(&draft.series, &invoice)?);
            if let (Some(agenda), true) = (agenda, paid.is_none()) {
                commit.put(
                    agenda.schedule(&day(invoice.due_date), &invoice.invoice_id.to_string())?,
                    Refusal::AlreadyScheduled,
                );
            }
            match self.store.commit(commit).await {
                Ok(recorded) => return Ok(Issued { invoice, recorded }),
                Err(
                    StoreError::Refused(Refusal::SequenceMoved | Refusal::LeaseLost)
                    | StoreError::Conflict { .. },
                ) => {
                    self.sequences.abandon(&name, &holder).await?;
                }
                Err(e) => {
                    self.sequences.abandon(&name, &holder).await?;
                    return Err(e);
                }
            }
        }
    }

    fn index_entry(
        &self,
        series: &str,
        invoice: &Invoice,
    ) -> Result<aws_sdk_dynamodb::types::Put, StoreError> {
        use aws_sdk_dynamodb::types::AttributeValue::S;
        aws_sdk_dynamodb::types::Put::builder()
            .table_name(&self.state_table)
            .item("pk", S(index_key(series)))
            .item("sk", S(invoice.number.clone()))
            .item("invoice_id", S(invoice.invoice_id.to_string()))
            .build()
            .map_err(StoreError::dynamo)
    }

    /// Invoice ids of a series, oldest number first.
    pub async fn list(&self, series: &str, limit: i32) -> Result<Vec<Uuid>, StoreError> {
        use aws_sdk_dynamodb::types::AttributeValue::S;
        let out = self
            .store
            .client()
            .query()
            .table_name(&self.state_table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", S(index_key(series)))
            .scan_index_forward(false)
            .limit(limit)
            .send()
            .await
            .map_err(StoreError::dynamo)?;
        let mut ids: Vec<Uuid> = out
            .items()
            .iter()
            .filter_map(|item| match item.get("invoice_id") {
                Some(S(id)) => Uuid::parse_str(id).ok(),
                _ => None,
            })
            .collect();
        ids.reverse();
        Ok(ids)
    }
}

/// `YYYY-MM-DD`, the form agendas sort by.
pub fn day(date: Date) -> String {
    date.format(time::macros::format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}
