//! The order service's subscriptions (seed 001):
//! - `payment.completed` → `order.completed`;
//! - `payment.failed` → the intent is canceled at Stripe, then the open order with the
//!   reason (a failed attempt is not final there: another card could still pay it);
//! - `payment.canceled` → the open order is canceled;
//! - `payment.refunded` → `order.refunded`;
//! - `credits.purchased` (seed 001's `wallet.credits_added`) → the credit order is fulfilled;
//! - `user.deleted` → the user's open orders are canceled (their intents first) and their
//!   subscriptions canceled at Stripe.
//!
//! Every transition is decided by the order's state, so a late or repeated delivery
//! changes nothing it should not.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_commerce::order_book::OrderBook;
use kassa_commerce::{Clock, Fail, Kernel};
use kassa_domain::credits::CreditEvent;
use kassa_domain::order::{Order, OrderCommand, OrderError};
use kassa_domain::payment::PaymentEvent;
use kassa_domain::user::UserEvent;
use kassa_payments::gateway::{GatewayError, PaymentGateway};
use kassa_payments::stripe::StripeGateway;
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::inbox::Inbox;
use kassa_runtime::{Config, Function, SdkConfig, SqsFunction};
use kassa_store::{EventStore, Metadata, RecordedEvent};
use std::sync::Arc;
use uuid::Uuid;

pub const NAME: &str = "order-payments";

pub struct OrderPayments {
    kernel: Kernel,
    book: OrderBook,
    inbox: Inbox,
    gateway: StripeGateway,
}

impl Function for OrderPayments {
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
            book: OrderBook::new(client, &config.state_table),
            inbox: Inbox::from_config(config, aws, NAME, clock),
            gateway: StripeGateway::new(&config.stripe.api_base, config.stripe.secret_key()?),
        })
    }
}

impl SqsFunction for OrderPayments {
    async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        self.inbox
            .each_once(batch, |event| async move { self.react(&event).await })
            .await
    }
}

impl OrderPayments {
    async fn react(&self, event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {
        let (order_id, command) = match event.context.as_str() {
            "payments" => match event.decode::<PaymentEvent>()? {
                PaymentEvent::Completed {
                    payment_intent_id,
                    payment_id,
                    order_id,
                    ..
                } => (
                    order_id,
                    OrderCommand::Complete {
                        payment_intent_id,
                        payment_id,
                    },
                ),
                PaymentEvent::Failed {
                    order_id,
                    payment_intent_id,
                    error,
                    ..
                } => {
                    // A failed attempt is not final at Stripe: the buyer may try another
                    // card on the same intent. The intent is canceled first, so that the
                    // canceled order cannot be paid afterwards; if Stripe refuses (the
                    // intent succeeded meanwhile, or was canceled by whoever is ending the
                    // order), the payment's own events settle it.
                    match self
                        .gateway
                        .cancel_payment_intent(&payment_intent_id, &format!("cancel-{order_id}"))
                        .await
                    {
                        Ok(_) => {}
                        Err(GatewayError::Refused { .. }) => {
                            return Ok(serde_json::json!({
                                "order_id": order_id,
                                "recorded": 0,
                                "intent": "not cancelable",
                            }))
                        }
                        Err(e) => return Err(e.into()),
                    }
                    (
                        order_id,
                        OrderCommand::Cancel {
                            reason: format!(
                                "payment_failed: {}",
                                error.code.unwrap_or(error.message)
                            ),
                        },
                    )
                }
                PaymentEvent::Canceled { order_id, .. } => (
                    order_id,
                    OrderCommand::Cancel {
                        reason: "payment_canceled".into(),
                    },
                ),
                PaymentEvent::Refunded {
                    payment_id,
                    payment_intent_id,
                    refund_id,
                    order_id,
                    amount,
                    ..
                } => (
                    order_id,
                    OrderCommand::Refund {
                        payment_intent_id,
                        payment_id,
                        refund_id,
                        amount,
                    },
                ),
                PaymentEvent::IntentCreated { .. } | PaymentEvent::Mismatched { .. } => {
                    return skipped(event)
                }
            },
            "credits" => match event.decode::<CreditEvent>()? {
                CreditEvent::Purchased {
                    order_id,
                    credits,
                    balance_after,
                    workspace_id,
                    ..
                } => (
                    order_id,
                    OrderCommand::Fulfill {
                        details: serde_json::json!({
                            "workspace_id": workspace_id,
                            "credits": credits,
                            "balance_after": balance_after,
                        }),
                    },
                ),
                _ => return skipped(event),
            },
            "accounts" => {
                // The bus rule sends only `user.deleted`; anything else is not ours.
                let UserEvent::Deleted { user_id, .. } = event.decode::<UserEvent>()? else {
                    return skipped(event);
                };
                return self.forget_user(event, user_id.as_str()).await;
            }
            _ => return skipped(event),
        };
        let recorded = self.apply(event, order_id, command).await?;
        Ok(serde_json::json!({ "order_id": order_id, "recorded": recorded }))
    }

    /// Applies `command`; a transition the state no longer allows is reported, not retried
    /// (a failure after completion, a cancellation of an expired order). An order that is
    /// not paid yet when its fulfilment arrives fails, so SQS redelivers it later.
    async fn apply(
        &self,
        event: &RecordedEvent,
        order_id: Uuid,
        command: OrderCommand,
    ) -> Result<usize, EffectError> {
        let fulfil = matches!(command, OrderCommand::Fulfill { .. });
        let command = &command;
        let outcome = self
            .kernel
            .run(Metadata::caused_by(event, format!("system:{NAME}")), |tx| {
                Box::pin(async move {
                    let mut order = tx.load::<Order>(&order_id).await?;
                    tx.decide(&mut order, command.clone())?;
                    Ok(())
                })
            })
            .await;
        let refusal = match outcome {
            Ok(done) => return Ok(done.recorded.len()),
            Err(Fail::Store(e)) => return Err(e.into()),
            Err(Fail::Refused(refusal)) => refusal,
        };
        match refusal {
            // Not yet: the payment, or the order itself, is on its way.
            e @ OrderError::NotPaid(_) if fulfil => Err(EffectError::retry(e)),
            OrderError::NotFound => Err(EffectError::retry(format!(
                "order {order_id} not found yet"
            ))),
            // Never applied; the payment stream caps refunds first, so this is a bug or
            // tampering and someone must look.
            e @ OrderError::RefundExceedsPayment { .. } => {
                tracing::error!(alert = "payment_mismatched", %order_id, event_type = %event.event_type, reason = %e, "refund not applied to the order");
                Ok(0)
            }
            e => {
                tracing::info!(%order_id, event_type = %event.event_type, reason = %e, "order unchanged");
                Ok(0)
            }
        }
    }

    async fn forget_user(
        &self,
        event: &RecordedEvent,
        user: &str,
    ) -> Result<serde_json::Value, EffectError> {
        let mut canceled = 0;
        for order_id in self.book.orders_of(user).await? {
            let Some(order) = self
                .kernel
                .store()
                .load_aggregate::<Order>(&order_id)
                .await?
                .state
            else {
                continue;
            };
            if !order.status.is_open() {
                continue;
            }
            if let Some(intent) = &order.payment_intent_id {
                match self
                    .gateway
                    .cancel_payment_intent(intent, &format!("cancel-{order_id}"))
                    .await
                {
                    // Paid meanwhile: the payment's own events settle the order.
                    Ok(_) | Err(GatewayError::Refused { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            canceled += self
                .apply(
                    event,
                    order_id,
                    OrderCommand::Cancel {
                        reason: "user_deleted".into(),
                    },
                )
                .await?
                .min(1);
        }
        let mut subscriptions = 0;
        for subscription in self.book.subscriptions_of(user).await? {
            match self
                .gateway
                .cancel_subscription(&subscription, &format!("user-deleted-{subscription}"))
                .await
            {
                // Already canceled at Stripe: nothing left to stop.
                Ok(_) | Err(GatewayError::Refused { .. }) => subscriptions += 1,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(
            serde_json::json!({ "orders_canceled": canceled, "subscriptions_canceled": subscriptions }),
        )
    }
}

fn skipped(event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {
    Ok(serde_json::json!({ "skipped": event.event_type }))
}
