//! An order's end settles its coupon usages (seed 002's redeem and release), decided by
//! the order's state as stored, whichever of its events brought the message:
//! - paid (`order.completed`): every usage is redeemed (`coupon.redeemed`) and stays
//!   counted. A later refund does not give it back: the discount was granted.
//! - canceled or expired unpaid: every locked usage is released (`coupon.released`) and
//!   the coupon's and the buyer's counts go back, in the same commit.
//!
//! A credit-pack order may be paid after it expired (the money is real). Reading the state
//! rather than the event makes the arrival order irrelevant: `order.expired` handled after
//! the payment finds the order paid and redeems; handled before, it releases, and
//! `order.completed` then redeems the released use, counting it again (past the limit if
//! need be). Either way the use ends redeemed and counted once. Redeliveries decide
//! nothing on the usages' state.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_commerce::coupon_ledger::CouponLedger;
use kassa_commerce::{Clock, Fail, Kernel, Tx};
use kassa_domain::coupon_usage::{
    OrderCoupons, ReleaseReason, UsageCommand, UsageEvent, UsageStatus,
};
use kassa_domain::order::{Order, OrderEvent, OrderStatus};
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
        let order_id = match event.decode::<OrderEvent>()? {
            OrderEvent::Completed { order_id, .. }
            | OrderEvent::Canceled { order_id, .. }
            | OrderEvent::Expired { order_id, .. } => order_id,
            _ => return Ok(serde_json::json!({ "skipped": event.event_type })),
        };
        let ledger = &self.ledger;
        let done = self
            .kernel
            .run(
                Metadata::caused_by(event, format!("system:{NAME}")),
                |tx: &mut Tx<'_>| {
                    Box::pin(async move {
                        let mut usages = tx.load::<OrderCoupons>(&order_id).await?;
                        let Some(before) = usages.state.clone() else {
                            // No coupon was ever locked for the order.
                            return Ok(0);
                        };
                        let order = tx.load::<Order>(&order_id).await?;
                        let Some(order) = order.state else {
                            return Err(Fail::Store(kassa_store::StoreError::Corrupt(format!(
                                "order {order_id} has coupon usages but no stream"
                            ))));
                        };
                        let command = match order.status {
                            s if s.is_paid() => UsageCommand::Redeem,
                            OrderStatus::Canceled => UsageCommand::Release {
                                coupon_id: None,
                                reason: ReleaseReason::OrderCanceled,
                            },
                            OrderStatus::Expired => UsageCommand::Release {
                                coupon_id: None,
                                reason: ReleaseReason::OrderExpired,
                            },
                            // Still open: nothing has ended (a coupon taken off is
                            // released by its own command).
                            _ => return Ok(0),
                        };
                        let events = tx.decide(&mut usages, command)?;
                        let user = before.user_id.as_str();
                        for event in &events {
                            match event {
                                UsageEvent::Released { coupon_id, .. } => {
                                    ledger.release(tx.commit(), *coupon_id, user)?;
                                }
                                UsageEvent::Redeemed { coupon_id, .. }
                                    if before.usages.get(coupon_id).map(|u| u.status)
                                        == Some(UsageStatus::Released) =>
                                {
                                    ledger.retake(tx.commit(), *coupon_id, user)?;
                                }
                                _ => {}
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
