//! On `order.created`: create the order's PaymentIntent (seed 001's payment flow), then
//! record `payment.intent.created` and `order.payment_pending` in one commit, with the
//! client secret kept for the buyer beside them.
//!
//! The intent is created with the order id as its idempotency key, so a retry gets the
//! same intent back from Stripe. A redelivery that finds the order already holding its
//! intent does nothing (the buyer may be paying it). An order canceled before its intent
//! existed gets the intent canceled instead of waiting for a payment; the intent an order
//! holds is never canceled here.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_commerce::order_book::{OrderBook, ORDER_KEY, USER_KEY, WORKSPACE_KEY};
use kassa_commerce::{Clock, Fail, Kernel};
use kassa_domain::order::{Order, OrderCommand, OrderEvent};
use kassa_domain::payment::{IntentOrigin, Payment, PaymentCommand};
use kassa_payments::gateway::{GatewayError, IntentRequest, PaymentGateway};
use kassa_payments::stripe::StripeGateway;
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::inbox::Inbox;
use kassa_runtime::{Config, Function, SdkConfig, SqsFunction};
use kassa_store::{EventStore, Metadata, RecordedEvent};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const NAME: &str = "payment-intents";

pub struct PaymentIntents {
    kernel: Kernel,
    book: OrderBook,
    inbox: Inbox,
    gateway: StripeGateway,
}

impl Function for PaymentIntents {
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

impl SqsFunction for PaymentIntents {
    async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        self.inbox
            .each_once(batch, |event| async move { self.create(&event).await })
            .await
    }
}

impl PaymentIntents {
    async fn create(&self, event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {
        let OrderEvent::Created {
            order_id,
            user_id,
            purpose,
            ..
        } = event.decode::<OrderEvent>()?
        else {
            return Ok(serde_json::json!({ "skipped": event.event_type }));
        };
        let held = |order: &Order| order.payment_intent_id.clone();
        let order = self
            .kernel
            .store()
            .load_aggregate::<Order>(&order_id)
            .await?
            .state
            // The order's own `order.created` is here: its stream cannot be missing for
            // long, and a read that lags is worth another delivery.
            .ok_or_else(|| EffectError::retry(format!("order {order_id} is not there yet")))?;
        if order.owes_nothing() {
            return self.settle_free(event, &order).await;
        }
        // The total as stored: a coupon may have changed it since `order.created`.
        let total_amount = order.total;
        if let Some(intent) = held(&order) {
            // A redelivery after the intent was recorded: it is not created again (its
            // idempotency key lapses after a day, and an intent created anew would then
            // look like a stray one). Its amount is made to follow the total once more,
            // which is what a delivery that failed after recording it had left to do.
            let created_with = self
                .kernel
                .store()
                .load_aggregate::<Payment>(intent.as_str())
                .await?
                .state
                .map_or(total_amount, |p| p.amount);
            self.follow_total(order_id, &intent, created_with).await?;
            return Ok(serde_json::json!({ "payment_intent_id": intent, "pending": false }));
        }
        let mut metadata = BTreeMap::from([
            (ORDER_KEY.to_owned(), order_id.to_string()),
            (USER_KEY.to_owned(), user_id.to_string()),
        ]);
        if let Some(ws) = purpose.workspace_id() {
            metadata.insert(WORKSPACE_KEY.to_owned(), ws.to_string());
        }
        let intent = self
            .gateway
            .create_payment_intent(
                &IntentRequest {
                    amount: total_amount,
                    customer: None,
                    metadata,
                },
                // The amount is part of the key: a delivery retried after a coupon changed
                // the total asks for a new intent rather than meeting Stripe's refusal of a
                // key reused with other parameters. The one created before holds no
                // client secret anyone was given, so nobody can pay it.
                &format!("order-{order_id}-{}", total_amount.shown()),
            )
            .await?;
        let origin = IntentOrigin {
            payment_intent_id: intent.id.clone(),
            order_id,
            user_id,
            amount: total_amount,
        };
        let client_secret = intent.client_secret.clone().unwrap_or_default();
        let (origin, intent_id, client_secret) = (&origin, intent.id.as_str(), &client_secret);
        let outcome = self
            .kernel
            .run(Metadata::caused_by(event, format!("system:{NAME}")), |tx| {
                Box::pin(async move {
                    let mut order = tx.load::<Order>(&order_id).await?;
                    let Some(current) = order.state.as_ref() else {
                        return Err(Fail::Store(kassa_store::StoreError::Corrupt(format!(
                            "{} is missing",
                            order.stream
                        ))));
                    };
                    let already = held(current).as_deref() == Some(intent_id);
                    let awaiting = OrderCommand::AwaitPayment {
                        payment_intent_id: intent_id.to_owned(),
                    };
                    let order_events = tx.decide(&mut order, awaiting)?;
                    if order_events.is_empty() {
                        return Ok(if already {
                            Awaiting::Already
                        } else {
                            Awaiting::Stray
                        });
                    }
                    let mut payment = tx.load::<Payment>(intent_id).await?;
                    tx.decide(&mut payment, PaymentCommand::RecordIntent(origin.clone()))
                        .map_err(|fail| fail.map(|never| match never {}))?;
                    if let Some(order) = &order.state {
                        tx.commit().index(self.book.secret(order, client_secret)?);
                    }
                    Ok(Awaiting::Recorded)
                })
            })
            .await
            // An order that refuses to await this payment was decided on a state that will
            // not change by itself: it stays refused, so the message is parked.
            .map_err(EffectError::from)?
            .value;
        if outcome == Awaiting::Recorded {
            self.follow_total(order_id, &intent.id, total_amount)
                .await?;
        }
        if outcome == Awaiting::Stray {
            // The order was canceled or expired before this intent existed, or holds
            // another one: nobody may pay this one. The intent the order holds is never
            // canceled here; a redelivery finds it and changes nothing.
            if let Err(e) = self
                .gateway
                .cancel_payment_intent(&intent.id, &format!("cancel-{order_id}"))
                .await
            {
                // Stripe cancels unconfirmed intents on its own after a while; nobody
                // holds its client secret, so this is tidying rather than a risk.
                tracing::warn!(%order_id, intent = %intent.id, error = %e, "intent not canceled");
            }
        }
        Ok(serde_json::json!({
            "payment_intent_id": intent.id,
            "pending": outcome == Awaiting::Recorded,
        }))
    }
}

impl PaymentIntents {
    /// An order that owes nothing asks Stripe for nothing (it charges no zero amount): a
    /// credit pack completes at once; a ticket order completes when its seats are held
    /// (ticket-orders, on `reservation.created`).
    async fn settle_free(
        &self,
        event: &RecordedEvent,
        order: &Order,
    ) -> Result<serde_json::Value, EffectError> {
        if !matches!(
            order.purpose,
            kassa_domain::order::Purpose::CreditPack { .. }
        ) {
            return Ok(serde_json::json!({ "free": true, "waits_for": "reservation" }));
        }
        let order_id = order.order_id;
        let done = self
            .kernel
            .run(Metadata::caused_by(event, format!("system:{NAME}")), |tx| {
                Box::pin(async move {
                    let mut order = tx.load::<Order>(&order_id).await?;
                    if let Some(complete) = order.state.as_ref().and_then(Order::complete_free) {
                        tx.decide(&mut order, complete)?;
                    }
                    Ok(())
                })
            })
            .await
            .map_err(EffectError::from)?;
        Ok(serde_json::json!({ "free": true, "completed": !done.recorded.is_empty() }))
    }

    /// A coupon applied between reading the order and recording its intent found no intent
    /// to update: the intent follows the order's total now, keyed by the order's version.
    async fn follow_total(
        &self,
        order_id: uuid::Uuid,
        intent: &str,
        created_with: kassa_domain::money::Money,
    ) -> Result<(), EffectError> {
        let loaded = self
            .kernel
            .store()
            .load_aggregate::<Order>(&order_id)
            .await?;
        let Some(order) = loaded.state else {
            return Ok(());
        };
        if order.total == created_with || !order.status.is_open() || order.total.amount.is_zero() {
            return Ok(());
        }
        let key = format!("amount-{order_id}-{}", loaded.version);
        match self
            .gateway
            .update_payment_intent_amount(intent, order.total, &key)
            .await
        {
            Ok(_) => Ok(()),
            // Paid, processing or canceled meanwhile: the payment's own events decide
            // (a payment of another amount is recorded as mismatched and alerted).
            Err(e @ GatewayError::Refused { .. }) => {
                tracing::warn!(%order_id, %intent, error = %e, "intent amount not updated");
                Ok(())
            }
            // Not known to have changed: the event is delivered again.
            Err(e) => Err(e.into()),
        }
    }
}

/// What became of the intent just created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    /// Recorded: the order now waits for its payment.
    Recorded,
    /// The order already holds this very intent (a redelivery raced the first delivery).
    Already,
    /// The order is no longer open for it, or holds another intent.
    Stray,
}
