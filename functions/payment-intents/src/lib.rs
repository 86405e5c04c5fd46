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
use kassa_domain::order::{self, Order, OrderCommand, OrderEvent};
use kassa_domain::payment::{self, IntentOrigin, Payment, PaymentCommand, PaymentEvent};
use kassa_payments::gateway::{IntentRequest, PaymentGateway};
use kassa_payments::stripe::StripeGateway;
use kassa_runtime::access::{order_stream, payment_stream};
use kassa_runtime::config::ConfigError;
use kassa_runtime::events::{self, EffectError};
use kassa_runtime::orders::{OrderBook, ORDER_KEY, USER_KEY, WORKSPACE_KEY};
use kassa_runtime::{Clock, Config, SdkConfig};
use kassa_store::{retry, EventStore, Idempotency, Metadata, RecordedEvent, StoreError};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const NAME: &str = "payment-intents";

pub struct PaymentIntents {
    store: EventStore,
    book: OrderBook,
    idempotency: Idempotency,
    gateway: StripeGateway,
    clock: Arc<dyn Clock>,
}

impl PaymentIntents {
    pub fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {
            store: EventStore::new(client.clone(), &config.events_table),
            book: OrderBook::new(client.clone(), &config.state_table),
            idempotency: Idempotency::new(client, &config.state_table, NAME),
            gateway: StripeGateway::new(&config.stripe.api_base, config.stripe.secret_key()?),
            clock,
        })
    }

    pub async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        events::each_once(
            batch,
            &self.idempotency,
            self.clock.as_ref(),
            |event| async move { self.create(&event).await },
        )
        .await
    }

    async fn create(&self, event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {
        let OrderEvent::Created {
            order_id,
            user_id,
            purpose,
            total_amount,
            ..
        } = event.decode::<OrderEvent>()?
        else {
            return Ok(serde_json::json!({ "skipped": event.event_type }));
        };
        let order_stream = order_stream(order_id);
        let held = |order: &Order| order.payment_intent_id.clone();
        let order: Order = self
            .store
            .load(&order_stream)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("{order_stream} is missing")))?
            .state()?;
        if let Some(intent) = held(&order) {
            // A redelivery after the intent was recorded: done already. Stripe is not asked
            // again (its idempotency key lapses after a day, and an intent it created anew
            // would then look like a stray one).
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
                &format!("order-{order_id}"),
            )
            .await?;
        let origin = IntentOrigin {
            payment_intent_id: intent.id.clone(),
            order_id,
            user_id,
            amount: total_amount,
        };
        let client_secret = intent.client_secret.clone().unwrap_or_default();
        let metadata = Metadata::caused_by(event, format!("system:{NAME}"));
        let payment_stream = payment_stream(&intent.id);
        let outcome = retry::on_conflict(retry::DEFAULT_ATTEMPTS, |_| async {
            let order_head = self
                .store
                .load(&order_stream)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("{order_stream} is missing")))?;
            let order: Order = order_head.state()?;
            let order_events = order::decide(
                Some(&order),
                OrderCommand::AwaitPayment {
                    payment_intent_id: intent.id.clone(),
                },
            )
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if order_events.is_empty() {
                return Ok(if held(&order).as_deref() == Some(intent.id.as_str()) {
                    Awaiting::Already
                } else {
                    Awaiting::Stray
                });
            }
            let payment_head = self.store.load(&payment_stream).await?;
            let (version, payment) = match &payment_head {
                Some(h) => (h.version, Some(h.state::<Payment>()?)),
                None => (0, None),
            };
            let payment_events = payment::decide(
                payment.as_ref(),
                PaymentCommand::RecordIntent(origin.clone()),
            );
            let next_order = order_events.iter().fold(Some(order), order::evolve);
            let next_payment = payment_events.iter().fold(payment, payment::evolve);
            let mut commit = self
                .store
                .commit_builder(metadata.clone(), self.clock.now());
            commit.append::<PaymentEvent>(
                &payment_stream,
                version,
                &payment_events,
                &next_payment,
            )?;
            commit.append::<OrderEvent>(
                &order_stream,
                order_head.version,
                &order_events,
                &next_order,
            )?;
            if let Some(order) = &next_order {
                commit.put(self.book.secret(order, &client_secret)?, "client_secret");
            }
            self.store.commit(commit).await?;
            Ok(Awaiting::Recorded)
        })
        .await?;
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
