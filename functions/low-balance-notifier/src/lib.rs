//! On `credits.balance_low`: store a notification for the workspace and mail its billing
//! address. The notification's key and the mail's id derive from the event, so a repeat
//! delivery rewrites rather than duplicates; the idempotency record skips it altogether.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_domain::credits::CreditEvent;
use kassa_domain::workspace::Workspace;
use kassa_runtime::access::workspace_stream;
use kassa_runtime::events::{self, EffectError};
use kassa_runtime::mail::{Mail, Mailer};
use kassa_runtime::{Clock, Config, SdkConfig};
use kassa_store::{EventStore, Idempotency, Notification, ReadModels, RecordedEvent};
use std::sync::Arc;

pub const NAME: &str = "low-balance-notifier";

pub struct LowBalanceNotifier<M> {
    store: EventStore,
    read_models: ReadModels,
    idempotency: Idempotency,
    mailer: M,
    mail_from: String,
    clock: Arc<dyn Clock>,
}

impl<M: Mailer> LowBalanceNotifier<M> {
    pub fn new(
        store: EventStore,
        read_models: ReadModels,
        idempotency: Idempotency,
        mailer: M,
        mail_from: String,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            read_models,
            idempotency,
            mailer,
            mail_from,
            clock,
        }
    }

    pub fn from_config(config: &Config, aws: &SdkConfig, mailer: M, clock: Arc<dyn Clock>) -> Self {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Self::new(
            EventStore::new(client.clone(), &config.events_table),
            ReadModels::new(client.clone(), &config.state_table),
            Idempotency::new(client, &config.state_table, NAME),
            mailer,
            config.mail_from.clone(),
            clock,
        )
    }

    pub async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        events::each_once(
            batch,
            &self.idempotency,
            self.clock.as_ref(),
            |event| async move { self.notify(&event).await },
        )
        .await
    }

    async fn notify(&self, event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {
        let CreditEvent::BalanceLow {
            workspace_id,
            balance,
            threshold,
        } = event.decode::<CreditEvent>()?
        else {
            return Ok(serde_json::json!({ "skipped": event.event_type }));
        };
        let head = self
            .store
            .load(&workspace_stream(workspace_id))
            .await?
            .ok_or_else(|| format!("workspace {workspace_id} not found"))?;
        let ws: Workspace = head.state()?;
        let message = format!(
            "Workspace \"{}\" is low on credits: {balance} left, below the {} tier's threshold of {threshold}.",
            ws.name, ws.tier
        );
        if let Some(to) = &ws.billing_email {
            let mail = Mail {
                id: format!("balance-low-{}", event.event_id),
                from: self.mail_from.clone(),
                to: to.clone(),
                subject: format!("kassa: {} is low on credits", ws.name),
                body: format!("{message}\n\nTop up or upgrade to keep using paid features."),
            };
            self.mailer.send(&mail).await?;
        }
        let notification = Notification {
            id: event.event_id,
            workspace_id,
            kind: "credits.balance_low".into(),
            message,
            created_at: event
                .time
                .format(&time::format_description::well_known::Rfc3339)?,
            mailed_to: ws.billing_email.clone(),
        };
        let stored = self.read_models.add_notification(&notification).await?;
        Ok(serde_json::json!({ "stored": stored }))
    }
}
