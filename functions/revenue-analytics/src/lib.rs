//! Feeds the revenue read models (`kassa_domain::revenue`): on a workspace's subscription
//! events, its row is rewritten from the workspace's state at its latest version (a view:
//! only over a row of an older version, so order and redelivery cannot move it back); on a
//! charge collected, the charge's row is written once, keyed by its event, and so is a
//! refund's on a cancellation at once.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_commerce::Clock;
use kassa_domain::revenue::{
    ChargeRow, RefundRow, SubscriptionRow, CHARGES_VIEW, REFUNDS_VIEW, SUBSCRIPTIONS_VIEW,
};
use kassa_domain::workspace::{Workspace, WorkspaceEvent};
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::inbox::Inbox;
use kassa_runtime::{Config, Function, SdkConfig, SqsFunction};
use kassa_store::view::{Over, ViewRow, Views};
use kassa_store::{EventStore, RecordedEvent};
use std::sync::Arc;
use time::macros::format_description;

pub const NAME: &str = "revenue-analytics";

pub struct RevenueAnalytics {
    store: EventStore,
    views: Views,
    inbox: Inbox,
    clock: Arc<dyn Clock>,
}

impl Function for RevenueAnalytics {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {
            store: EventStore::new(client.clone(), &config.events_table),
            views: Views::new(client, &config.state_table),
            inbox: Inbox::from_config(config, aws, NAME, clock.clone()),
            clock,
        })
    }
}

impl SqsFunction for RevenueAnalytics {
    async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        self.inbox
            .each(batch, |event| async move {
                self.project(&event).await.map(drop)
            })
            .await
    }
}

impl RevenueAnalytics {
    async fn project(&self, event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {
        let now = self.clock.now().unix_timestamp();
        let row = match event.decode::<WorkspaceEvent>()? {
            WorkspaceEvent::Charged {
                workspace_id,
                reason,
                amount,
                ..
            } => {
                let on = event
                    .time
                    .date()
                    .format(format_description!("[year]-[month]-[day]"))?;
                let body = ChargeRow {
                    workspace_id,
                    on: on.clone(),
                    reason,
                    amount,
                };
                ViewRow {
                    pk: CHARGES_VIEW.into(),
                    sk: format!("{on}#{}", event.event_id),
                    version: 1,
                    body: Some(serde_json::to_value(body)?),
                }
            }
            WorkspaceEvent::SubscriptionCancelled {
                workspace_id,
                refund,
                ..
            } => {
                if refund.amount.is_zero() {
                    return Ok(serde_json::json!({ "skipped": "nothing refunded" }));
                }
                let on = event
                    .time
                    .date()
                    .format(format_description!("[year]-[month]-[day]"))?;
                let body = RefundRow {
                    workspace_id,
                    on: on.clone(),
                    amount: refund,
                };
                ViewRow {
                    pk: REFUNDS_VIEW.into(),
                    sk: format!("{on}#{}", event.event_id),
                    version: 1,
                    body: Some(serde_json::to_value(body)?),
                }
            }
            WorkspaceEvent::Subscribed { workspace_id, .. }
            | WorkspaceEvent::TierChanged { workspace_id, .. }
            | WorkspaceEvent::Unsubscribed { workspace_id, .. } => {
                let loaded = self
                    .store
                    .load_aggregate::<Workspace>(&workspace_id)
                    .await?;
                let Some(row) = loaded.state.as_ref().and_then(SubscriptionRow::of) else {
                    return Ok(serde_json::json!({ "skipped": "never subscribed" }));
                };
                ViewRow {
                    pk: SUBSCRIPTIONS_VIEW.into(),
                    sk: workspace_id.to_string(),
                    version: loaded.version,
                    body: Some(serde_json::to_value(row)?),
                }
            }
            _ => return Ok(serde_json::json!({ "skipped": event.event_type })),
        };
        let written = self.views.write(&row, Over::Older, now).await?;
        Ok(serde_json::json!({ "written": written }))
    }
}
