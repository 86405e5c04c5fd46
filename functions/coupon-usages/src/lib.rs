//! An order's end settles its coupon usages (seed 002's redeem and release):
//! - `order.completed` (paid): every locked usage is redeemed (`coupon.redeemed`); the use
//!   stays counted. A later refund does not give it back: the discount was granted.
//! - `order.canceled` and `order.expired`: every locked usage is released
//!   (`coupon.released`) and the coupon's and buyer's counts go back, in the same commit.
//!
//! Each is decided on the usages' state, so a redelivery, or the other event arriving
//! second, changes nothing: a redeemed use is never released and a released one never
//! redeemed. (A credit-pack order paid after it expired keeps its discount, its use
//! having gone back at expiry; a ticket order paid late is refunded whole.)

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_commerce::coupon_ledger::CouponLedger;
use kassa_commerce::{Clock, Fail, Kernel, Tx};
use kassa_domain::coupon_usage::{OrderCoupons, ReleaseReason, UsageCommand, UsageEvent};
use kassa_domain::order::OrderEvent;
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::inbox::Inbox;
use kassa_runtime::{Config, Function, SdkConfig, SqsFunction};
use kassa_store::{EventStore, Metadata, RecordedEvent};
use std::sync::Arc;

pub const NAME: &str = "coupon-usages";

pub struct CouponUsages {
    kernel: Kernel,
    ledger: CouponLedger,
    inbox: Inbox,
}

impl Function for CouponUsages {
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

impl SqsFunction for CouponUsages {
    async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        self.inbox
            .each(
                batch,
                |event| async move { self.react(&event).await.map(drop) },
            )
            .await
    }
}

impl CouponUsages {
    async fn react(&self, event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {
        let (order_id, command) = match event.decode::<OrderEvent>()? {
            OrderEvent::Completed { order_id, .. } => (order_id, UsageCommand::Redeem),
            OrderEvent::Canceled { order_id, .. } => (
                order_id,
                UsageCommand::Release {
                    coupon_id: None,
                    reason: ReleaseReason::OrderCanceled,
                },
            ),
            OrderEvent::Expired { order_id, .. } => (
                order_id,
                UsageCommand::Release {
                    coupon_id: None,
                    reason: ReleaseReason::OrderExpired,
                },
            ),
            _ => return Ok(serde_json::json!({ "skipped": event.event_type })),
        };
        let (ledger, command) = (&self.ledger, &command);
        let done = self
            .kernel
            .run(
                Metadata::caused_by(event, format!("system:{NAME}")),
                |tx: &mut Tx<'_>| {
                    Box::pin(async move {
                        let mut usages = tx.load::<OrderCoupons>(&order_id).await?;
                        let Some(user) = usages.state.as_ref().map(|u| u.user_id.clone()) else {
                            // No coupon was ever locked for the order.
                            return Ok(0);
                        };
                        let events = tx.decide(&mut usages, command.clone())?;
                        for released in &events {
                            if let UsageEvent::Released { coupon_id, .. } = released {
                                ledger.release(tx.commit(), *coupon_id, user.as_str())?;
                            }
                        }
                        ledger.audit(tx.commit())?;
                        Ok(events.len())
                    })
                },
            )
            .await
            .map_err(|fail| match fail {
                Fail::Refused(e) => EffectError::poison(format!("usages of order {order_id}: {e}")),
                Fail::Store(e) => EffectError::from(e),
            })?;
        Ok(serde_json::json!({ "order_id": order_id, "settled": done.value }))
    }
}
