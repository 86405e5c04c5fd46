//! On `credits.consumed`: count the use in the per workspace, feature and day read model.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_domain::credits::CreditEvent;
use kassa_runtime::events::{self, EffectError};
use kassa_runtime::{Clock, Config, SdkConfig};
use kassa_store::{FeatureUse, Idempotency, ReadModels, RecordedEvent};
use std::sync::Arc;
use time::macros::format_description;

pub const NAME: &str = "usage-analytics";

pub struct UsageAnalytics {
    read_models: ReadModels,
    idempotency: Idempotency,
    clock: Arc<dyn Clock>,
}

impl UsageAnalytics {
    pub fn new(read_models: ReadModels, idempotency: Idempotency, clock: Arc<dyn Clock>) -> Self {
        Self {
            read_models,
            idempotency,
            clock,
        }
    }

    pub fn from_config(config: &Config, aws: &SdkConfig, clock: Arc<dyn Clock>) -> Self {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Self::new(
            ReadModels::new(client.clone(), &config.state_table),
            Idempotency::new(client, &config.state_table, NAME),
            clock,
        )
    }

    pub async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        events::each_once(
            batch,
            &self.idempotency,
            self.clock.as_ref(),
            |event| async move { self.count(&event).await },
        )
        .await
    }

    async fn count(&self, event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {
        let CreditEvent::Consumed {
            workspace_id,
            feature,
            quantity,
            credits,
            ..
        } = event.decode::<CreditEvent>()?
        else {
            return Ok(serde_json::json!({ "skipped": event.event_type }));
        };
        // The day the credits were consumed, not the day the event arrived.
        let day = event
            .time
            .date()
            .format(format_description!("[year]-[month]-[day]"))?;
        let use_ = FeatureUse {
            event_id: event.event_id,
            workspace: workspace_id,
            day: &day,
            feature: &feature,
            quantity,
            credits,
        };
        let counted = self
            .read_models
            .record_usage(&use_, self.clock.now().unix_timestamp())
            .await?;
        Ok(serde_json::json!({ "counted": counted }))
    }
}
