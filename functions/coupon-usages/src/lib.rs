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
//!
//! A redemption also counts toward its coupon's velocity rule, in the same commit, by
//! the window of the order's event. Past the rule's limit the coupon is flagged
//! (`coupon.suspicious_usage_detected`, once per window) and, if the rule says so,
//! disabled; that event comes back here and its owner is mailed.
//!
//! A redemption paid by card also counts toward the coupon's shared-card rule: the
//! card's fingerprint is asked of Stripe (the payment recorded which payment method it
//! charged), and the account is added to the card's set. More accounts than the rule
//! allows behind one card flag the coupon the same way, once per card. Stripe not
//! answering fails the message, which comes back later: the signal is not lost.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_commerce::coupon_ledger::CouponLedger;
use kassa_commerce::{Clock, Fail, Kernel, Tx};
use kassa_domain::coupon::{Coupon, CouponCommand, CouponEvent, CouponStatus};
use kassa_domain::coupon_usage::{
    OrderCoupons, ReleaseReason, UsageCommand, UsageEvent, UsageStatus,
};
use kassa_domain::order::{Order, OrderEvent, OrderStatus};
use kassa_domain::payment::Payment;
use kassa_domain::user::User;
use kassa_payments::gateway::{GatewayError, PaymentGateway};
use kassa_payments::stripe::StripeGateway;
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::inbox::Inbox;
use kassa_runtime::mail::{ConfiguredMailer, Mail, Mailer};
use kassa_runtime::{Config, Function, SdkConfig, SqsFunction};
use kassa_store::{EventStore, Metadata, RecordedEvent};
use std::sync::Arc;
use uuid::Uuid;

pub const NAME: &str = "coupon-usages";

pub struct CouponUsages {
    kernel: Kernel,
    ledger: CouponLedger,
    inbox: Inbox,
    mailer: ConfiguredMailer,
    mail_from: String,
    gateway: StripeGateway,
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
            mailer: ConfiguredMailer::from_config(config, aws),
            mail_from: config.mail_from.clone(),
            gateway: StripeGateway::new(&config.stripe.api_base, config.stripe.secret_key()?),
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
        if event.event_type == "coupon.suspicious_usage_detected" {
            return self.alert(event).await;
        }
        let order_id = match event.decode::<OrderEvent>()? {
            OrderEvent::Completed { order_id, .. }
            | OrderEvent::Canceled { order_id, .. }
            | OrderEvent::Expired { order_id, .. } => order_id,
            _ => return Ok(serde_json::json!({ "skipped": event.event_type })),
        };
        let (ledger, event_time) = (&self.ledger, event.time);
        let done = self
            .kernel
            .run(
                Metadata::caused_by(event, format!("system:{NAME}")),
                |tx: &mut Tx<'_>| {
                    Box::pin(async move {
                        let mut usages = tx.load::<OrderCoupons>(&order_id).await?;
                        let Some(before) = usages.state.clone() else {
                            // No coupon was ever locked for the order.
                            return Ok(Vec::new());
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
                            _ => return Ok(Vec::new()),
                        };
                        let events = tx.decide(&mut usages, command)?;
                        let user = before.user_id.as_str();
                        for event in &events {
                            match event {
                                UsageEvent::Released {
                                    coupon_id, reason, ..
                                } => {
                                    ledger.release(
                                        tx.commit(),
                                        *coupon_id,
                                        order_id,
                                        user,
                                        reason.as_str(),
                                    )?;
                                }
                                UsageEvent::Redeemed { coupon_id, .. } => {
                                    if before.usages.get(coupon_id).map(|u| u.status)
                                        == Some(UsageStatus::Released)
                                    {
                                        ledger.retake(tx.commit(), *coupon_id, order_id, user)?;
                                    }
                                    let coupon = tx.load::<Coupon>(coupon_id).await?;
                                    if let Some(rule) =
                                        coupon.state.as_ref().and_then(|c| c.terms.velocity)
                                    {
                                        let window = rule.window_of(event_time);
                                        ledger.count_redemption(tx.commit(), *coupon_id, window)?;
                                    }
                                }
                                _ => {}
                            }
                        }
                        ledger.audit(tx.commit())?;
                        // Redeemed ones, this time or before: a redelivery after a
                        // commit whose velocity check did not run checks again.
                        Ok(usages
                            .state
                            .iter()
                            .flat_map(|u| u.usages.iter())
                            .filter(|(_, u)| u.status == UsageStatus::Redeemed)
                            .map(|(id, _)| *id)
                            .collect::<Vec<_>>())
                    })
                },
            )
            .await
            .map_err(|fail| match fail {
                Fail::Refused(e) => EffectError::poison(format!("usages of order {order_id}: {e}")),
                Fail::Store(e) => EffectError::from(e),
            })?;
        for coupon_id in &done.value {
            self.watch(*coupon_id, event).await?;
            self.watch_card(*coupon_id, order_id, event).await?;
        }
        Ok(serde_json::json!({ "order_id": order_id, "redeemed": done.value }))
    }

    /// The velocity rule: redemptions counted past the coupon's limit in the window of
    /// `event` flag it (`coupon.suspicious_usage_detected`, once per window) and, if the
    /// rule says so, disable it, in one commit. The owner's mail follows that event.
    async fn watch(&self, coupon_id: Uuid, event: &RecordedEvent) -> Result<(), EffectError> {
        let store = self.kernel.store();
        let Some(coupon) = store.load_aggregate::<Coupon>(&coupon_id).await?.state else {
            return Ok(());
        };
        let Some(rule) = coupon.terms.velocity else {
            return Ok(());
        };
        let window = rule.window_of(event.time);
        if coupon.flagged_window >= Some(window) {
            return Ok(());
        }
        let redemptions = self.ledger.redemptions(coupon_id, window).await?;
        if redemptions <= u64::from(rule.max_redemptions) {
            return Ok(());
        }
        let command = CouponCommand::FlagVelocity {
            redemptions,
            window,
        };
        self.flag(coupon_id, command, event).await
    }

    /// The shared-card rule: the account that redeemed `coupon_id` on `order_id` joins
    /// the set of accounts that paid with the same card; more than the rule allows flag
    /// the coupon (once per card) and, if it says so, disable it.
    async fn watch_card(
        &self,
        coupon_id: Uuid,
        order_id: Uuid,
        event: &RecordedEvent,
    ) -> Result<(), EffectError> {
        let store = self.kernel.store();
        let Some(coupon) = store.load_aggregate::<Coupon>(&coupon_id).await?.state else {
            return Ok(());
        };
        let Some(rule) = coupon.terms.shared_card else {
            return Ok(());
        };
        let Some(order) = store.load_aggregate::<Order>(&order_id).await?.state else {
            return Ok(());
        };
        // An order a coupon made free was paid by no card.
        let Some(intent) = order.payment_intent_id.as_deref() else {
            return Ok(());
        };
        let payment = store.load_aggregate::<Payment>(intent).await?.state;
        let Some(method) = payment.and_then(|p| p.payment_method) else {
            tracing::info!(%order_id, "the payment named no payment method; no card to count");
            return Ok(());
        };
        let card = match self.gateway.payment_method_fingerprint(&method).await {
            Ok(Some(card)) => card,
            Ok(None) => return Ok(()),
            // Stripe refusing to show the method (deleted, say) will not change on a
            // retry: the redemption stands, the card goes uncounted.
            Err(e @ GatewayError::Refused { .. }) => {
                tracing::warn!(%order_id, %method, error = %e, "no fingerprint for the payment method");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let accounts = self
            .ledger
            .card_accounts(coupon_id, &card, order.user_id.as_str())
            .await?;
        if accounts <= rule.max_accounts || coupon.flagged_cards.contains(&card) {
            return Ok(());
        }
        let command = CouponCommand::FlagSharedCard {
            fingerprint: card,
            accounts,
        };
        self.flag(coupon_id, command, event).await
    }

    /// A fraud rule's verdict on the coupon, decided on its state as stored (so a flag
    /// already recorded is not recorded again) and audited, by the system's fraud actor.
    async fn flag(
        &self,
        coupon_id: Uuid,
        command: CouponCommand,
        event: &RecordedEvent,
    ) -> Result<(), EffectError> {
        let (ledger, command) = (&self.ledger, &command);
        self.kernel
            .run(
                Metadata::caused_by(event, "system:fraud".to_owned()),
                |tx: &mut Tx<'_>| {
                    Box::pin(async move {
                        let mut coupon = tx.load::<Coupon>(&coupon_id).await?;
                        tx.decide(&mut coupon, command.clone())?;
                        ledger.audit(tx.commit())?;
                        Ok(())
                    })
                },
            )
            .await
            .map_err(|fail| match fail {
                Fail::Refused(e) => EffectError::poison(format!("coupon {coupon_id}: {e}")),
                Fail::Store(e) => EffectError::from(e),
            })?;
        Ok(())
    }

    /// `coupon.suspicious_usage_detected`: the coupon's owner is mailed, once per flag
    /// (the mail's id is the event's).
    async fn alert(&self, event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {
        let CouponEvent::SuspiciousUsageDetected {
            coupon_id,
            owner,
            reason,
            ..
        } = event.decode::<CouponEvent>()?
        else {
            return Ok(serde_json::json!({ "skipped": event.event_type }));
        };
        let user = self
            .kernel
            .store()
            .load_aggregate::<User>(owner.as_str())
            .await?
            .state;
        let Some(profile) = user.and_then(|u| u.profile.filter(|_| !u.deleted)) else {
            return Ok(serde_json::json!({ "mailed": false, "why": "the owner has no address" }));
        };
        let disabled = self
            .kernel
            .store()
            .load_aggregate::<Coupon>(&coupon_id)
            .await?
            .state
            .is_some_and(|c| c.status == CouponStatus::Disabled);
        let mail = Mail {
            id: format!("coupon-suspicious-{}", event.event_id),
            from: self.mail_from.clone(),
            to: profile.email,
            subject: format!("Suspicious use of coupon {coupon_id}"),
            body: format!(
                "Hello {},\n\nYour coupon {coupon_id} was flagged: {reason}.{}",
                profile.name,
                if disabled {
                    " It was disabled; review it and activate a new one if the use was genuine."
                } else {
                    " It stays active; disable it if the use is not genuine."
                }
            ),
        };
        self.mailer.send(&mail).await?;
        Ok(serde_json::json!({ "mailed": true }))
    }
}
