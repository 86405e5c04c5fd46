//! On `credits.consumed`: count the use in the per workspace, feature and day read model.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_commerce::Clock;
use kassa_domain::credits::CreditEvent;
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::inbox::Inbox;
use kassa_runtime::{Config, Function, SdkConfig, SqsFunction};
use kassa_store::{FeatureUse, ReadModels, RecordedEvent};
use std::sync::Arc;
use time::macros::format_description;

pub const NAME: &str = "usage-analytics";

pub struct UsageAnalytics {
    read_models: ReadModels,
    inbox: Inbox,
}

impl Function for UsageAnalytics {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {
            read_models: ReadModels::new(client, &config.state_table),
            inbox: Inbox::from_config(config, aws, NAME, clock),
        })
    }
}

impl SqsFunction for UsageAnalytics {
    async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        self.inbox
            .each_once(batch, |event| async move { self.count(&event).await })
            .await
    }
}

impl UsageAnalytics {
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
            .record_usage(&use_, self.inbox.clock().now().unix_timestamp())
            .await?;
        Ok(serde_json::json!({ "counted": counted }))
    }
}
