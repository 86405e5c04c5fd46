//! The reclaim-coupon-uses Lambda: on `coupon.use_taken`, delivered a while after the
//! take (the queue's DelaySeconds), gives the use back if no commit settled it.
//!
//! apply-coupon takes a coupon's use with one conditional step on the coupon's use
//! counter, then locks it and reprices the order in a commit that settles the take under
//! its marker, or gives it back under the same marker when it cannot lock. An invocation
//! that stops in between (a timeout, a crash) leaves the use taken by nobody: without
//! this check it would be lost to the coupon's limit for good. Asked once apply-coupon's
//! invocation can no longer commit, the answer is final: the take was settled (locked, or
//! given back already), or it goes back now, once, under its marker.
//!
//! A use counted again for a payment that arrived after its release (`retaken`) was
//! counted by the redemption's own commit, so it is left alone.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_commerce::coupon_ledger::CouponLedger;
use kassa_commerce::{Clock, Kernel};
use kassa_domain::coupon_usage::UseEvent;
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::inbox::Inbox;
use kassa_runtime::{Config, Function, SdkConfig, SqsFunction};
use kassa_store::{EventStore, Metadata, RecordedEvent};
use std::sync::Arc;

pub const NAME: &str = "reclaim-coupon-uses";

/// How old a take must be before it is judged: well past apply-coupon's timeout (10 s,
/// the template's Globals), after which the invocation that took it cannot commit. The
/// queue delays each message longer than this, so a younger one is only seen when the
/// delay is missing; it is handed back for a later delivery.
pub const SETTLE: time::Duration = time::Duration::seconds(60);

/// Why a reclaimed use went back, on its `coupon.use_returned`.
pub const ABANDONED: &str = "abandoned";

pub struct ReclaimCouponUses {
    kernel: Kernel,
    ledger: CouponLedger,
    inbox: Inbox,
}

impl Function for ReclaimCouponUses {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {
            kernel: Kernel::new(
                EventStore::new(client.clone(), &config.events_table),
                clock.clone(),
            ),
            ledger: CouponLedger::new(client, &config.state_table),
            inbox: Inbox::from_config(config, aws, NAME, clock),
        })
    }
}

impl SqsFunction for ReclaimCouponUses {
    async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        self.inbox
            .each_once(batch, |event| async move { self.react(&event).await })
            .await
    }
}

impl ReclaimCouponUses {
    async fn react(&self, event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {
        let UseEvent::Taken {
            coupon_id,
            order_id,
            user_id,
            take_id,
            retaken: false,
            ..
        } = event.decode::<UseEvent>()?
        else {
            return Ok(serde_json::json!({ "skipped": event.event_type }));
        };
        let age = self.kernel.clock().now() - event.time;
        if age < SETTLE {
            return Err(EffectError::retry(format!(
                "take {take_id} is {age} old; it is judged after {SETTLE}"
            )));
        }
        let reclaimed = self
            .ledger
            .give_back_take(
                &self.kernel,
                Metadata::caused_by(event, format!("system:{NAME}")),
                coupon_id,
                order_id,
                user_id.as_str(),
                take_id,
                ABANDONED,
            )
            .await?;
        if reclaimed {
            tracing::warn!(%coupon_id, %order_id, %take_id, "an abandoned coupon use was given back");
        }
        Ok(serde_json::json!({ "take_id": take_id, "reclaimed": reclaimed }))
    }
}
