//! Scheduled daily: open invoices whose due date has passed become `invoice.overdue`, and
//! the workspace is notified (stored notification and a mail to its billing address). An
//! invoice leaves the overdue agenda only once its notice is out, so a failed mail is
//! retried by the next run.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use kassa_commerce::invoicing::{day, OVERDUE_AGENDA};
use kassa_commerce::{Clock, Fail, Kernel};
use kassa_domain::invoice::{self, Invoice, InvoiceCommand, InvoiceStatus};
use kassa_domain::workspace::Workspace;
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::mail::{ConfiguredMailer, Mail};
use kassa_runtime::notice;
use kassa_runtime::sweep::{sweep, Fate, Sweep};
use kassa_runtime::{Config, Function, ScheduledFunction, SdkConfig};
use kassa_store::{
    Agenda, Entry, EventStore, Metadata, Notification, ReadModels, Refusal, StoreError,
};
use std::convert::Infallible;
use std::sync::Arc;
use uuid::Uuid;

pub const NAME: &str = "overdue-invoices";

pub struct OverdueInvoices {
    kernel: Kernel,
    agenda: Agenda,
    read_models: ReadModels,
    mailer: ConfiguredMailer,
    mail_from: String,
}

impl Function for OverdueInvoices {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {
            kernel: Kernel::new(EventStore::new(client.clone(), &config.events_table), clock),
            agenda: Agenda::new(client.clone(), &config.state_table, OVERDUE_AGENDA),
            read_models: ReadModels::new(client, &config.state_table),
            mailer: ConfiguredMailer::from_config(config, aws),
            mail_from: config.mail_from.clone(),
        })
    }
}

/// One daily run: `done` counts the invoices whose notice went out, `settled` those paid
/// (or gone) before a notice was owed.
impl ScheduledFunction for OverdueInvoices {
    type Run = Sweep;

    async fn handle(&self, _schedule: EventBridgeEvent) -> Result<Sweep, EffectError> {
        let today = self.kernel.clock().now().date();
        let correlation = Uuid::now_v7();
        // Due yesterday or earlier: an invoice is payable through its due date.
        let when = day(today.previous_day().unwrap_or(today));
        sweep(&self.agenda, &when, "overdue notice", |entry| async move {
            Ok(match self.settle(&entry, today, correlation).await? {
                Some(_) => Fate::Done,
                None => Fate::Settled,
            })
        })
        .await
    }
}

impl OverdueInvoices {
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
        let taken = self
            .kernel
            .run(metadata, |tx| {
                Box::pin(async move {
                    tx.commit()
                        .delete(self.agenda.take(entry)?, Refusal::EntryTaken);
                    Ok::<_, Fail<Infallible>>(())
                })
            })
            .await;
        match taken {
            // Another run took it: it had sent the notice too, or it found nothing owed.
            Ok(_) | Err(Fail::Store(StoreError::Refused(Refusal::EntryTaken))) => Ok(owed),
            Err(fail) => Err(fail.into()),
        }
    }

    /// The invoice, marked overdue if it was not yet (and is neither paid nor missing).
    async fn mark(
        &self,
        entry: &Entry,
        today: time::Date,
        correlation: Uuid,
    ) -> Result<Option<Invoice>, EffectError> {
        let invoice_id = Uuid::parse_str(&entry.subject)?;
        let metadata = Metadata::origin(correlation, format!("system:{NAME}"));
        let marked = self
            .kernel
            .run(metadata, |tx| {
                Box::pin(async move {
                    let mut loaded = tx.load::<Invoice>(&invoice_id).await?;
                    if let Some(current) = &loaded.state {
                        // A paid or canceled invoice is not owed: nothing to mark.
                        let events =
                            invoice::decide(Some(current), InvoiceCommand::MarkOverdue { today })
                                .unwrap_or_default();
                        tx.record(&mut loaded, &events)?;
                    }
                    Ok::<_, Fail<Infallible>>(loaded.state)
                })
            })
            .await?;
        Ok(marked.value)
    }

    async fn notify(&self, invoice: &Invoice, today: time::Date) -> Result<(), EffectError> {
        let Some(workspace_id) = invoice.workspace_id else {
            return Ok(());
        };
        let Some(ws) = self
            .kernel
            .store()
            .load_aggregate::<Workspace>(&workspace_id)
            .await?
            .state
        else {
            return Ok(());
        };
        let days = (today - invoice.due_date).whole_days();
        let message = format!(
            "Invoice {} of {} was due on {} and is {days} day(s) overdue.",
            invoice.number,
            invoice.total,
            day(invoice.due_date)
        );
        let mail = ws.billing_email.as_ref().map(|to| Mail {
            id: format!("invoice-overdue-{}", invoice.invoice_id),
            from: self.mail_from.clone(),
            to: to.clone(),
            subject: format!("kassa: invoice {} is overdue", invoice.number),
            body: format!("{message}\n\nPlease pay it to keep your subscription active."),
        });
        // Keyed by the invoice, so a retried run stores it once.
        let id = Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("overdue:{}", invoice.invoice_id).as_bytes(),
        );
        let notification = Notification {
            id,
            workspace_id,
            kind: "invoice.overdue".into(),
            message,
            created_at: day(today),
            mailed_to: ws.billing_email.clone(),
        };
        notice::deliver(
            &self.read_models,
            &self.mailer,
            &notification,
            mail.as_ref(),
        )
        .await?;
        Ok(())
    }
}
