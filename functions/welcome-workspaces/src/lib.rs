//! On `workspace.created`: store a welcome notification for the workspace and mail it to
//! the workspace's billing address, or, without one, to the owner's registered address
//! (seed 000: workspace creation → welcome email). The notification's key and the mail's
//! id derive from the workspace, so a repeat delivery rewrites rather than duplicates;
//! the idempotency record skips it altogether. A workspace whose owner gave kassa no
//! address still gets its notification, unmailed.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_commerce::Clock;
use kassa_domain::user::User;
use kassa_domain::workspace::{Workspace, WorkspaceEvent};
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::inbox::Inbox;
use kassa_runtime::mail::{ConfiguredMailer, Mail, Mailer};
use kassa_runtime::notice;
use kassa_runtime::{Config, Function, SdkConfig, SqsFunction};
use kassa_store::{EventStore, Notification, ReadModels, RecordedEvent};
use std::sync::Arc;

pub const NAME: &str = "welcome-workspaces";

/// The notification's kind, as `GET /workspaces/{id}/notifications` lists it.
pub const KIND: &str = "workspace.welcome";

pub struct WelcomeWorkspaces<M> {
    store: EventStore,
    read_models: ReadModels,
    inbox: Inbox,
    mailer: M,
    mail_from: String,
}

impl<M: Mailer> WelcomeWorkspaces<M> {
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

    async fn welcome(&self, event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {
        let WorkspaceEvent::Created {
            workspace_id,
            name,
            tier,
            owner,
            billing_email,
            ..
        } = event.decode::<WorkspaceEvent>()?
        else {
            return Ok(serde_json::json!({ "skipped": event.event_type }));
        };
        let to = match billing_email {
            Some(to) => Some(to),
            None => self
                .store
                .load_aggregate::<User>(owner.as_str())
                .await?
                .state
                .and_then(|u| u.profile)
                .map(|p| p.email),
        };
        let policy = tier.policy();
        let mut message = format!(
            "Workspace \"{name}\" is ready on the {tier} tier: {} credits a month, {} to start with.",
            policy.monthly_credits, policy.signup_bonus_credits
        );
        // Billing setup: a paid tier created unpaid moves to free with its first period.
        let ws = self
            .store
            .load_aggregate::<Workspace>(&workspace_id)
            .await?
            .state;
        if let Some(Workspace {
            billing: None,
            scheduled: Some(scheduled),
            ..
        }) = &ws
        {
            message.push_str(&format!(
                " Subscribe (POST /workspaces/{workspace_id}/subscription with a card) before {} to stay on {tier}; otherwise it moves to the {} tier then.",
                scheduled.effective_on, scheduled.tier
            ));
        }
        let mail = to.as_ref().map(|to| Mail {
            id: format!("welcome-{workspace_id}"),
            from: self.mail_from.clone(),
            to: to.clone(),
            subject: format!("kassa: welcome to {name}"),
            body: format!(
                "{message}\n\nInvite collaborators and start consuming credits; you will \
                 hear from us when the balance runs low."
            ),
        });
        let notification = Notification {
            id: event.event_id,
            workspace_id,
            kind: KIND.into(),
            message,
            created_at: event
                .time
                .format(&time::format_description::well_known::Rfc3339)?,
            mailed_to: to,
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

impl Function for WelcomeWorkspaces<ConfiguredMailer> {
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

impl<M: Mailer + 'static> SqsFunction for WelcomeWorkspaces<M>
where
    Self: Function,
{
    async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        self.inbox
            .each_once(batch, |event| async move { self.welcome(&event).await })
            .await
    }
}
