//! Scheduled daily: open invoices whose due date has passed become `invoice.overdue`, and
//! the workspace is notified (stored notification and a mail to its billing address). An
//! invoice leaves the overdue agenda only once its notice is out, so a failed mail is
//! retried by the next run.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use kassa_domain::invoice::{self, Invoice, InvoiceCommand, InvoiceEvent, InvoiceStatus};
use kassa_domain::workspace::Workspace;
use kassa_runtime::access::{invoice_stream, workspace_stream};
use kassa_runtime::config::ConfigError;
use kassa_runtime::events::EffectError;
use kassa_runtime::invoicing::{day, OVERDUE_AGENDA};
use kassa_runtime::mail::{ConfiguredMailer, Mail, Mailer};
use kassa_runtime::{Clock, Config, SdkConfig};
use kassa_store::{
    retry, Agenda, Entry, EventStore, Metadata, Notification, ReadModels, StoreError,
};
use serde::Serialize;
use std::sync::Arc;
use uuid::Uuid;

pub const NAME: &str = "overdue-invoices";

/// The label of the agenda entry's removal.
const TAKEN: &str = "overdue_taken";

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Run {
    pub due: usize,
    /// Overdue invoices whose notice went out in this run.
    pub overdue: usize,
    /// Paid (or gone) before a notice was owed.
    pub settled: usize,
    pub failed: usize,
}

pub struct OverdueInvoices {
    store: EventStore,
    agenda: Agenda,
    read_models: ReadModels,
    mailer: ConfiguredMailer,
    mail_from: String,
    clock: Arc<dyn Clock>,
}

impl OverdueInvoices {
    pub fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {
            store: EventStore::new(client.clone(), &config.events_table),
            agenda: Agenda::new(client.clone(), &config.state_table, OVERDUE_AGENDA),
            read_models: ReadModels::new(client, &config.state_table),
            mailer: ConfiguredMailer::from_config(config, aws),
            mail_from: config.mail_from.clone(),
            clock,
        })
    }

    pub async fn handle(&self, _schedule: EventBridgeEvent) -> Result<Run, EffectError> {
        let today = self.clock.now().date();
        // Due yesterday or earlier: an invoice is payable through its due date.
        let due = self
            .agenda
            .due_by(&day(today.previous_day().unwrap_or(today)))
            .await?;
        let mut run = Run {
            due: due.len(),
            ..Run::default()
        };
        let correlation = Uuid::now_v7();
        for entry in due {
            match self.settle(&entry, today, correlation).await {
                Ok(Some(_)) => run.overdue += 1,
                Ok(None) => run.settled += 1,
                Err(e) => {
                    tracing::error!(invoice = %entry.subject, error = %e, "overdue notice failed");
                    run.failed += 1;
                }
            }
        }
        tracing::info!(?run, "overdue run");
        if run.failed > 0 {
            return Err(format!("{} of {} invoices failed", run.failed, run.due).into());
        }
        Ok(run)
    }

    /// Marks the invoice overdue, notifies, and only then takes it off the agenda: the
    /// entry is the record of a notice owed, so a notice that fails is sent by the next
    /// run, and one sent is not sent again. `None` when the invoice was paid meanwhile.
    async fn settle(
        &self,
        entry: &Entry,
        today: time::Date,
        correlation: Uuid,
    ) -> Result<Option<Invoice>, EffectError> {
        let invoice = self.mark(entry, today, correlation).await?;
        let owed = invoice.filter(|i| i.overdue && i.status != InvoiceStatus::Paid);
        if let Some(invoice) = &owed {
            self.notify(invoice, today).await?;
        }
        let metadata = Metadata::origin(correlation, format!("system:{NAME}"));
        let mut commit = self.store.commit_builder(metadata, self.clock.now());
        commit.delete(self.agenda.take(entry)?, TAKEN);
        match self.store.commit(commit).await {
            // Another run took it: it had sent the notice too, or it found nothing owed.
            Ok(_) | Err(StoreError::Refused(TAKEN)) => Ok(owed),
            Err(e) => Err(e.into()),
        }
    }

    /// The invoice, marked overdue if it was not yet (and is neither paid nor missing).
    async fn mark(
        &self,
        entry: &Entry,
        today: time::Date,
        correlation: Uuid,
    ) -> Result<Option<Invoice>, EffectError> {
        let stream = invoice_stream(Uuid::parse_str(&entry.subject)?);
        let metadata = Metadata::origin(correlation, format!("system:{NAME}"));
        let invoice = retry::on_conflict(retry::DEFAULT_ATTEMPTS, |_| {
            let (metadata, stream) = (metadata.clone(), &stream);
            async move {
                let Some(head) = self.store.load(stream).await? else {
                    return Ok(None);
                };
                let invoice: Invoice = head.state()?;
                let events = invoice::decide(Some(&invoice), InvoiceCommand::MarkOverdue { today })
                    .unwrap_or_default();
                if events.is_empty() {
                    return Ok(Some(invoice));
                }
                let next = events.iter().fold(Some(invoice), invoice::evolve);
                let mut commit = self.store.commit_builder(metadata, self.clock.now());
                commit.append::<InvoiceEvent>(stream, head.version, &events, &next)?;
                self.store.commit(commit).await?;
                Ok(next)
            }
        })
        .await?;
        Ok(invoice)
    }

    async fn notify(&self, invoice: &Invoice, today: time::Date) -> Result<(), EffectError> {
        let Some(workspace_id) = invoice.workspace_id else {
            return Ok(());
        };
        let Some(head) = self.store.load(&workspace_stream(workspace_id)).await? else {
            return Ok(());
        };
        let ws: Workspace = head.state()?;
        let days = (today - invoice.due_date).whole_days();
        let message = format!(
            "Invoice {} of {} was due on {} and is {days} day(s) overdue.",
            invoice.number,
            invoice.total,
            day(invoice.due_date)
        );
        if let Some(to) = &ws.billing_email {
            self.mailer
                .send(&Mail {
                    id: format!("invoice-overdue-{}", invoice.invoice_id),
                    from: self.mail_from.clone(),
                    to: to.clone(),
                    subject: format!("kassa: invoice {} is overdue", invoice.number),
                    body: format!("{message}\n\nPlease pay it to keep your subscription active."),
                })
                .await?;
        }
        // Keyed by the invoice, so a retried run stores it once.
        let id = Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("overdue:{}", invoice.invoice_id).as_bytes(),
        );
        self.read_models
            .add_notification(&Notification {
                id,
                workspace_id,
                kind: "invoice.overdue".into(),
                message,
                created_at: day(today),
                mailed_to: ws.billing_email.clone(),
            })
            .await?;
        Ok(())
    }
}
