//! Scheduled: orders still unpaid when their payment window closes expire
//! (`order.expired`), which releases what they hold. The payment intent is canceled at
//! Stripe first: if the customer paid in the meantime, Stripe refuses and the payment's own
//! events complete the order instead.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use kassa_commerce::order_book::{agenda_time, OrderBook};
use kassa_commerce::{Clock, Fail, Kernel};
use kassa_domain::order::{self, Order, OrderCommand};
use kassa_payments::gateway::{GatewayError, PaymentGateway};
use kassa_payments::stripe::StripeGateway;
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::sweep::{self, Fate, Sweep};
use kassa_runtime::{Config, Function, ScheduledFunction, SdkConfig};
use kassa_store::{Entry, EventStore, Metadata, Refusal, StoreError};
use std::sync::Arc;
use uuid::Uuid;

pub const NAME: &str = "expire-orders";

pub struct ExpireOrders {
    kernel: Kernel,
    book: OrderBook,
    gateway: StripeGateway,
}

impl Function for ExpireOrders {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {
            kernel: Kernel::new(EventStore::new(client.clone(), &config.events_table), clock),
            book: OrderBook::new(client, &config.state_table),
            gateway: StripeGateway::new(&config.stripe.api_base, config.stripe.secret_key()?),
        })
    }
}

/// One scheduled run: `done` counts the orders expired, `settled` those paid, canceled or
/// taken by another run first. Fails (so the invocation is retried) only after trying
/// every due order.
impl ScheduledFunction for ExpireOrders {
    type Run = Sweep;

    async fn handle(&self, _schedule: EventBridgeEvent) -> Result<Sweep, EffectError> {
        let now = self.kernel.clock().now();
        let due = self.book.expiry().due_by(&agenda_time(now)).await?;
        self.run(due).await
    }
}

impl ExpireOrders {
    /// Expires the `due` agenda entries, as a run that read them from the agenda. Public
    /// so that two overlapping runs, which read the same entries, can be replayed exactly.
    pub async fn run(&self, due: Vec<Entry>) -> Result<Sweep, EffectError> {
        let correlation = Uuid::now_v7();
        sweep::work_through(due, "expiry", |entry| async move {
            self.expire(&entry, correlation).await
        })
        .await
    }

    async fn expire(&self, entry: &Entry, correlation: Uuid) -> Result<Fate, EffectError> {
        let order_id = Uuid::parse_str(&entry.subject)?;
        let metadata = Metadata::origin(correlation, format!("system:{NAME}"));
        let expired = self
            .kernel
            .run(metadata, |tx| {
                Box::pin(async move {
                    let mut loaded = tx.load::<Order>(&order_id).await?;
                    let mut fate = Fate::Settled;
                    if let Some(current) = loaded.state.clone() {
                        let expire = OrderCommand::Expire { now: tx.now() };
                        let events = order::decide(Some(&current), expire).unwrap_or_default();
                        let paid = match (&current.payment_intent_id, events.is_empty()) {
                            // Same idempotency key on every attempt: a retry replays the
                            // cancellation.
                            (Some(intent), false) => match self
                                .gateway
                                .cancel_payment_intent(intent, &format!("expire-{order_id}"))
                                .await
                            {
                                Ok(_) => false,
                                // Paid meanwhile: the order is not ours to expire.
                                Err(GatewayError::Refused { .. }) => true,
                                Err(e) => return Err(Fail::Refused(e)),
                            },
                            _ => false,
                        };
                        if !paid && !events.is_empty() {
                            tx.record(&mut loaded, &events)?;
                            fate = Fate::Done;
                        }
                    }
                    tx.commit()
                        .delete(self.book.expiry().take(entry)?, Refusal::EntryTaken);
                    Ok(fate)
                })
            })
            .await;
        match expired {
            Ok(done) => Ok(done.value),
            // Another run took the agenda entry first; whatever it decided stands.
            Err(Fail::Store(StoreError::Refused(Refusal::EntryTaken))) => Ok(Fate::Settled),
            Err(Fail::Store(e)) => Err(e.into()),
            Err(Fail::Refused(e)) => Err(e.into()),
        }
    }
}
