//! Scheduled: orders still unpaid when their payment window closes expire
//! (`order.expired`), which releases what they hold. The payment intent is canceled at
//! Stripe first: if the customer paid in the meantime, Stripe refuses and the payment's own
//! events complete the order instead.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use kassa_domain::order::{self, Order, OrderCommand, OrderEvent};
use kassa_payments::gateway::{GatewayError, PaymentGateway};
use kassa_payments::stripe::StripeGateway;
use kassa_runtime::access::order_stream;
use kassa_runtime::config::ConfigError;
use kassa_runtime::events::EffectError;
use kassa_runtime::orders::{agenda_time, OrderBook};
use kassa_runtime::{Clock, Config, SdkConfig};
use kassa_store::{retry, Entry, EventStore, Metadata, StoreError};
use serde::Serialize;
use std::sync::Arc;
use uuid::Uuid;

pub const NAME: &str = "expire-orders";

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Run {
    pub due: usize,
    pub expired: usize,
    /// Paid, canceled or otherwise settled before their window closed.
    pub settled: usize,
    /// Taken off the agenda by another run while this one was at it.
    pub already_settled: usize,
    pub failed: usize,
}

pub struct ExpireOrders {
    store: EventStore,
    book: OrderBook,
    gateway: StripeGateway,
    clock: Arc<dyn Clock>,
}

enum Fate {
    Expired,
    Settled,
    /// Another run took the agenda entry first; whatever it decided stands.
    AlreadySettled,
}

/// The label of the agenda entry's removal in an expiry commit.
const TAKEN: &str = "expiry_taken";

impl ExpireOrders {
    pub fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {
            store: EventStore::new(client.clone(), &config.events_table),
            book: OrderBook::new(client, &config.state_table),
            gateway: StripeGateway::new(&config.stripe.api_base, config.stripe.secret_key()?),
            clock,
        })
    }

    /// One scheduled run. Fails (so the invocation is retried) only after trying every
    /// due order.
    pub async fn handle(&self, _schedule: EventBridgeEvent) -> Result<Run, EffectError> {
        let now = self.clock.now();
        let due = self.book.expiry().due_by(&agenda_time(now)).await?;
        self.run(due).await
    }

    /// Expires the `due` agenda entries, as a run that read them from the agenda. Public
    /// so that two overlapping runs, which read the same entries, can be replayed exactly.
    pub async fn run(&self, due: Vec<Entry>) -> Result<Run, EffectError> {
        let mut run = Run {
            due: due.len(),
            ..Run::default()
        };
        let correlation = Uuid::now_v7();
        for entry in due {
            match self.expire(&entry, correlation).await {
                Ok(Fate::Expired) => run.expired += 1,
                Ok(Fate::Settled) => run.settled += 1,
                Ok(Fate::AlreadySettled) => run.already_settled += 1,
                Err(e) => {
                    tracing::error!(order = %entry.subject, error = %e, "expiry failed");
                    run.failed += 1;
                }
            }
        }
        tracing::info!(?run, "expiry run");
        if run.failed > 0 {
            return Err(format!("{} of {} expiries failed", run.failed, run.due).into());
        }
        Ok(run)
    }

    async fn expire(&self, entry: &Entry, correlation: Uuid) -> Result<Fate, EffectError> {
        let order_id = Uuid::parse_str(&entry.subject)?;
        let stream = order_stream(order_id);
        let metadata = Metadata::origin(correlation, format!("system:{NAME}"));
        let now = self.clock.now();
        let fate = retry::on_conflict(retry::DEFAULT_ATTEMPTS, |_| {
            let (metadata, stream) = (metadata.clone(), &stream);
            async move {
                let head = self.store.load(stream).await?;
                let order: Option<Order> = head.as_ref().map(|h| h.state()).transpose()?;
                let events = match &order {
                    Some(o) => {
                        order::decide(Some(o), OrderCommand::Expire { now }).unwrap_or_default()
                    }
                    None => Vec::new(),
                };
                let mut commit = self.store.commit_builder(metadata, now);
                if let (Some(head), Some(order), false) = (&head, &order, events.is_empty()) {
                    // Same idempotency key on every attempt: a retry replays the cancellation.
                    if let Some(intent) = &order.payment_intent_id {
                        match self
                            .gateway
                            .cancel_payment_intent(intent, &format!("expire-{order_id}"))
                            .await
                        {
                            Ok(_) => {}
                            // Paid meanwhile: the order is not ours to expire.
                            Err(GatewayError::Refused { .. }) => {
                                commit.delete(self.book.expiry().take(entry)?, TAKEN);
                                return match self.store.commit(commit).await {
                                    Ok(_) => Ok(Fate::Settled),
                                    Err(StoreError::Refused(TAKEN)) => Ok(Fate::AlreadySettled),
                                    Err(e) => Err(e),
                                };
                            }
                            Err(e) => return Err(StoreError::Dynamo(e.to_string())),
                        }
                    }
                    let next = events.iter().fold(Some(order.clone()), order::evolve);
                    commit.append::<OrderEvent>(stream, head.version, &events, &next)?;
                }
                commit.delete(self.book.expiry().take(entry)?, TAKEN);
                let expired = !events.is_empty();
                match self.store.commit(commit).await {
                    Ok(_) => Ok(if expired {
                        Fate::Expired
                    } else {
                        Fate::Settled
                    }),
                    Err(StoreError::Refused(TAKEN)) => Ok(Fate::AlreadySettled),
                    Err(e) => Err(e),
                }
            }
        })
        .await?;
        Ok(fate)
    }
}
