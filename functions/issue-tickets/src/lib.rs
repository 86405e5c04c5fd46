//! On `reservation.confirmed`.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_commerce::{Clock, Kernel};
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::inbox::Inbox;
use kassa_runtime::{Config, Function, SdkConfig, SqsFunction};
use kassa_store::{EventStore, RecordedEvent};
use std::sync::Arc;

pub const NAME: &str = "issue-tickets";

pub struct IssueTickets {
    kernel: Kernel,
    inbox: Inbox,
}

impl Function for IssueTickets {
    fn from_config(config: &Config, aws: &SdkConfig, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {
            kernel: Kernel::new(EventStore::new(client, &config.events_table), clock.clone()),
            inbox: Inbox::from_config(config, aws, NAME, clock),
        })
    }
}

impl SqsFunction for IssueTickets {
    async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        self.inbox
            .each_once(batch, |event| async move { self.react(&event).await })
            .await
    }
}

impl IssueTickets {
    async fn react(&self, event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {
        let _ = &self.kernel;
        Ok(serde_json::json!({ "skipped": event.event_type }))
    }
}
