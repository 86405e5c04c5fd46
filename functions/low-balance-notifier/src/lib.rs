//! On `credits.balance_low`: store a notification for the workspace and mail its billing
//! address. The notification's key and the mail's id derive from the event, so a repeat
//! delivery rewrites rather than duplicates; the idempotency record skips it altogether.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_commerce::Clock;
use kassa_domain::credits::CreditEvent;
use kassa_domain::workspace::Workspace;
use kassa_runtime::access::workspace_stream;
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::inbox::Inbox;
use kassa_runtime::mail::{ConfiguredMailer, Mail, Mailer};
use kassa_runtime::notice;
use kassa_runtime::{Config, Function, SdkConfig, SqsFunction};
use kassa_store::{EventStore, Notification, ReadModels, RecordedEvent};
use std::sync::Arc;

pub const NAME: &str = "low-balance-notifier";

pub struct LowBalanceNotifier<M> {
    store: EventStore,
    read_models: ReadModels,
    inbox: Inbox,
    mailer: M,
    mail_from: String,
}

impl<M: Mailer> LowBalanceNotifier<M> {
    /// With a mailer of the caller's choice (tests pass a failing one).
    pub fn with_mailer(config: &Config, aws: &SdkConfig, mailer: M, clock: Arc<dyn Clock>) -> Self {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Self {
            store: EventStore::new(client.clone(), &config.events_table),
            read_models: ReadModels::new(client, &config.state_table),
            inbox: Inbox::from_config(config, aws, NAME, clock),
            mailer,
            mail_from: config.mail_from.clone(),
        }
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
            .ok_or_else(|| EffectError::retry(format!("workspace {workspace_id} not found")))?;
        let ws: Workspace = head.state()?;
        let message = format!(
            "Workspace \"{}\" is low on credits: {balance} left, below the {} tier's threshold of {threshold}.",
            ws.name, ws.tier
        );
        let mail = ws.billing_email.as_ref().map(|to| Mail {
            id: format!("balance-low-{}", event.event_id),
            from: self.mail_from.clone(),
            to: to.clone(),
            subject: format!("kassa: {} is low on credits", ws.name),
            body: format!("{message}\n\nTop up or upgrade to keep using paid features."),
        });
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
        let stored = notice::deliver(
            &self.read_models,
            &self.mailer,
            &notification,
            mail.as_ref(),
        )
        .await?;
        Ok(serde_json::json!({ "stored": stored }))
    }
}

impl Function for LowBalanceNotifier<ConfiguredMailer> {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        Ok(Self::with_mailer(
            config,
            aws,
            ConfiguredMailer::from_config(config, aws),
            clock,
        ))
    }
}

impl<M: Mailer + 'static> SqsFunction for LowBalanceNotifier<M>
where
    Self: Function,
{
    async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        self.inbox
            .each_once(batch, |event| async move { self.notify(&event).await })
            .await
    }
}
