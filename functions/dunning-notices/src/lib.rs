//! Dunning's notices: on a failed charge, each failed retry (the one before the last warns
//! of suspension), the suspension and the reactivation, a notification is stored for the
//! workspace and mailed to its billing address; so is a free trial's reminder, the other
//! notice that asks the owner to pay. The notification's key and the mail's id
//! derive from the event, so a repeat delivery rewrites rather than duplicates; the
//! idempotency record skips it altogether.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_commerce::Clock;
use kassa_domain::workspace::{Workspace, WorkspaceEvent};
use kassa_runtime::access::workspace_stream;
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::inbox::Inbox;
use kassa_runtime::mail::{ConfiguredMailer, Mail, Mailer};
use kassa_runtime::notice;
use kassa_runtime::{Config, Function, SdkConfig, SqsFunction};
use kassa_store::{EventStore, Notification, ReadModels, RecordedEvent};
use std::sync::Arc;

pub const NAME: &str = "dunning-notices";

pub struct DunningNotices<M> {
    store: EventStore,
    read_models: ReadModels,
    inbox: Inbox,
    mailer: M,
    mail_from: String,
}

/// What to tell the owner: the notification's kind, the mail's subject and its text.
fn notice(ws: &Workspace, event: &WorkspaceEvent) -> Option<(&'static str, String, String)> {
    let name = &ws.name;
    Some(match event {
        WorkspaceEvent::ChargeFailed {
            amount,
            error,
            next_retry_on,
            ..
        } => (
            "payment.failed",
            format!("kassa: a payment for {name} failed"),
            format!(
                "Charging {amount} to the card of workspace \"{name}\" failed ({error}). We will try again on {}. Update the payment method to settle it now.",
                next_retry_on.as_deref().unwrap_or("the next retry day")
            ),
        ),
        WorkspaceEvent::RetryFailed {
            amount,
            error,
            next_retry_on,
            final_notice,
            failures,
            ..
        } => match (final_notice, next_retry_on) {
            (true, Some(last)) => (
                "payment.suspension_warning",
                format!("kassa: {name} will be suspended"),
                format!(
                    "Charging {amount} for workspace \"{name}\" failed again ({error}, attempt {failures}). The last attempt is on {last}: if it fails, the workspace is suspended. Update the payment method to avoid it."
                ),
            ),
            (_, next) => (
                "payment.retry_failed",
                format!("kassa: a payment for {name} failed again"),
                format!(
                    "Charging {amount} for workspace \"{name}\" failed again ({error}, attempt {failures}).{}",
                    next.as_ref()
                        .map(|d| format!(" We will try again on {d}."))
                        .unwrap_or_default()
                ),
            ),
        },
        WorkspaceEvent::Suspended { owed, .. } => (
            "workspace.suspended",
            format!("kassa: {name} is suspended"),
            format!(
                "Workspace \"{name}\" is suspended: {owed} is unpaid. Its data stays and can be read; spending credits is refused until the payment method is updated and the payment goes through."
            ),
        ),
        WorkspaceEvent::Reactivated { .. } => (
            "workspace.reactivated",
            format!("kassa: {name} is active again"),
            format!("Workspace \"{name}\" is paid up and active again."),
        ),
        WorkspaceEvent::TrialEnding {
            tier,
            ends_on,
            subscribed,
            ..
        } => (
            "free_trial.ending",
            format!("kassa: the {tier} trial of {name} ends on {ends_on}"),
            if *subscribed {
                format!("The {tier} trial of workspace \"{name}\" ends on {ends_on}; your subscription carries it on from then.")
            } else {
                format!("The {tier} trial of workspace \"{name}\" ends on {ends_on}. Subscribe (POST /workspaces/{}/subscription with a card) to stay on {tier}; otherwise it goes back to the {} tier then.", ws.id, ws.trial.as_ref().map_or(kassa_domain::tier::TierId::Free, |t| t.previous))
            },
        ),
        _ => return None,
    })
}

impl<M: Mailer> DunningNotices<M> {
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
        let decoded = event.decode::<WorkspaceEvent>()?;
        let workspace_id = match &decoded {
            WorkspaceEvent::ChargeFailed { workspace_id, .. }
            | WorkspaceEvent::RetryFailed { workspace_id, .. }
            | WorkspaceEvent::Suspended { workspace_id, .. }
            | WorkspaceEvent::TrialEnding { workspace_id, .. }
            | WorkspaceEvent::Reactivated { workspace_id } => *workspace_id,
            _ => return Ok(serde_json::json!({ "skipped": event.event_type })),
        };
        let head = self
            .store
            .load(&workspace_stream(workspace_id))
            .await?
            .ok_or_else(|| EffectError::retry(format!("workspace {workspace_id} not found")))?;
        let ws: Workspace = head.state()?;
        let Some((kind, subject, message)) = notice(&ws, &decoded) else {
            return Ok(serde_json::json!({ "skipped": event.event_type }));
        };
        let mail = ws.billing_email.as_ref().map(|to| Mail {
            id: format!("{kind}-{}", event.event_id),
            from: self.mail_from.clone(),
            to: to.clone(),
            subject,
            body: message.clone(),
        });
        let notification = Notification {
            id: event.event_id,
            workspace_id,
            kind: kind.into(),
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

impl Function for DunningNotices<ConfiguredMailer> {
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

impl<M: Mailer + 'static> SqsFunction for DunningNotices<M>
where
    Self: Function,
{
    async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        self.inbox
            .each_once(batch, |event| async move { self.notify(&event).await })
            .await
    }
}
