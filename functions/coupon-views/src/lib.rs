//! Keeps the coupons context's read models (`kassa_commerce::coupon_views`): on any event
//! of a coupon's stream or of an order's coupon usages, the rows that stream yields are
//! rewritten from its latest state. Rows only move forward in version, so events may
//! arrive in any order and any number of times; nothing here needs an inbox record.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_commerce::coupon_views::CouponViews as Views;
use kassa_commerce::Clock;
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::inbox::Inbox;
use kassa_runtime::{Config, Function, SdkConfig, SqsFunction};
use kassa_store::{EventStore, RecordedEvent};
use std::sync::Arc;

pub const NAME: &str = "coupon-views";

pub struct CouponViews {
    views: Views,
    inbox: Inbox,
}

impl CouponViews {
    /// The read models over the configured tables (for `kassa-rebuild` too).
    pub fn views(config: &Config, aws: &SdkConfig) -> Views {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Views::new(
            EventStore::new(client.clone(), &config.events_table),
            kassa_store::Views::new(client, &config.state_table),
        )
    }
}

impl Function for CouponViews {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        Ok(Self {
            views: Self::views(config, aws),
            inbox: Inbox::from_config(config, aws, NAME, clock),
        })
    }
}

impl SqsFunction for CouponViews {
    async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        self.inbox
            .each(batch, |event| async move { self.react(&event).await })
            .await
    }
}

impl CouponViews {
    async fn react(&self, event: &RecordedEvent) -> Result<(), EffectError> {
        let now = self.inbox.clock().now().unix_timestamp();
        let written = self.views.follow(&event.stream, now).await?;
        tracing::debug!(stream = %event.stream, written, "coupon views followed");
        Ok(())
    }
}
