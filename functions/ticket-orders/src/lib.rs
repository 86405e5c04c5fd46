//! The ticket order saga's reactions:
//! - `order.completed` of a ticket order: its reservation is confirmed and its invoice
//!   issued, or, when its seats went back before the money arrived, it is refunded
//!   (`settling`);
//! - `concert.canceled`: every order holding its seats is canceled or refunded, and
//!   every buyer mailed (`recalling`);
//! - `reservation.failed` (a level ran out) and `reservation.expired` (the window passed
//!   unpaid): the order is canceled with the reason, its PaymentIntent first, so a payment
//!   that went through meanwhile stands (Stripe refuses the cancellation, and the order
//!   completes by its webhook instead);
//! - `reservation.created` of an order that owes nothing (free seats, or coupons that
//!   took the whole total): the order completes without a payment, as if paid;
//! - `order.canceled` and `order.expired` of a ticket order: its reservation is canceled and
//!   its seats go back in the same commit, once, whichever of expiry, cancellation or a
//!   failed payment came first.

mod recalling;
mod refunding;
mod settling;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_commerce::invoicing::Invoicing;
use kassa_commerce::rosters;
use kassa_commerce::{seats, Clock, Fail, Kernel, Tx};
use kassa_domain::concert::ConcertEvent;
use kassa_domain::order::{Order, OrderCommand, OrderEvent, Purpose};
use kassa_domain::reservation::{
    Reservation, ReservationCommand, ReservationError, ReservationEvent,
};
use kassa_payments::gateway::{GatewayError, PaymentGateway};
use kassa_payments::stripe::StripeGateway;
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::inbox::Inbox;
use kassa_runtime::mail::ConfiguredMailer;
use kassa_runtime::{Config, Function, SdkConfig, SqsFunction};
use kassa_store::{EventStore, Loaded, Metadata, RecordedEvent, Roster};
use std::sync::Arc;
use uuid::Uuid;

pub const NAME: &str = "ticket-orders";

pub struct TicketOrders {
    kernel: Kernel,
    gateway: StripeGateway,
    invoicing: Invoicing,
    concert_orders: Roster,
    concert_carts: Roster,
    inbox: Inbox,
    mailer: ConfiguredMailer,
    mail_from: String,
}

impl Function for TicketOrders {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        let store = EventStore::new(client.clone(), &config.events_table);
        Ok(Self {
            invoicing: Invoicing::new(store.clone(), &config.state_table),
            concert_orders: rosters::concert_orders(client.clone(), &config.state_table),
            concert_carts: rosters::concert_carts(client, &config.state_table),
            kernel: Kernel::new(store, clock.clone()),
            gateway: StripeGateway::new(&config.stripe.api_base, config.stripe.secret_key()?),
            inbox: Inbox::from_config(config, aws, NAME, clock),
            mailer: ConfiguredMailer::from_config(config, aws),
            mail_from: config.mail_from.clone(),
        })
    }
}

impl SqsFunction for TicketOrders {
    async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        self.inbox
            .each_once(batch, |event| async move { self.react(&event).await })
            .await
    }
}

impl TicketOrders {
    async fn react(&self, event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {
        let metadata = Metadata::caused_by(event, format!("system:{NAME}"));
        match event.event_type.as_str() {
            "concert.canceled" => match event.decode::<ConcertEvent>()? {
                ConcertEvent::Canceled { concert_id, .. } => {
                    self.recall(concert_id, metadata).await
                }
                _ => Ok(serde_json::json!({ "skipped": event.event_type })),
            },
            "order.completed" => match event.decode::<OrderEvent>()? {
                OrderEvent::Completed {
                    order_id,
                    purpose: Purpose::Tickets { .. },
                    ..
                } => self.settle(order_id, event.time.date(), metadata).await,
                _ => Ok(serde_json::json!({ "skipped": "not_a_ticket_order" })),
            },
            "reservation.created" => match event.decode::<ReservationEvent>()? {
                ReservationEvent::Created { order_id, .. } => {
                    self.complete_free(order_id, metadata).await
                }
                _ => Ok(serde_json::json!({ "skipped": event.event_type })),
            },
            "reservation.failed" | "reservation.expired" => {
                let (order_id, reason) = match event.decode::<ReservationEvent>()? {
                    ReservationEvent::Failed {
                        order_id,
                        level_id,
                        requested,
                        free,
                        ..
                    } => (
                        order_id,
                        format!(
                            "seats_unavailable: {requested} asked of level {level_id}, {free} free"
                        ),
                    ),
                    ReservationEvent::Expired { order_id, .. } => {
                        (order_id, "reservation_expired".to_owned())
                    }
                    _ => return Ok(serde_json::json!({ "skipped": event.event_type })),
                };
                self.cancel_order(order_id, reason, metadata).await
            }
            "order.canceled" | "order.expired" => {
                let (order_id, reason) = match event.decode::<OrderEvent>()? {
                    OrderEvent::Canceled {
                        order_id, reason, ..
                    } => (order_id, reason),
                    OrderEvent::Expired { order_id, .. } => (order_id, "order_expired".to_owned()),
                    _ => return Ok(serde_json::json!({ "skipped": event.event_type })),
                };
                self.release(order_id, reason, metadata).await
            }
            _ => Ok(serde_json::json!({ "skipped": event.event_type })),
        }
    }

    /// Cancels the open order `order_id`: its PaymentIntent first (same key on every try),
    /// then the order. A paid order is left to complete.
    async fn cancel_order(
        &self,
        order_id: Uuid,
        reason: String,
        metadata: Metadata,
    ) -> Result<serde_json::Value, EffectError> {
        let store = self.kernel.store();
        let Some(order) = store.load_aggregate::<Order>(&order_id).await?.state else {
            return Err(EffectError::retry(format!(
                "order {order_id} is not there yet"
            )));
        };
        if !order.status.is_open() {
            return Ok(serde_json::json!({ "order": order.status.as_str() }));
        }
        if let Some(intent) = &order.payment_intent_id {
            match self
                .gateway
                .cancel_payment_intent(intent, &format!("cancel-{order_id}"))
                .await
            {
                Ok(_) => {}
                // Paid meanwhile: the webhook completes the order, and a paid order
                // whose seats went back is refunded there.
                Err(GatewayError::Refused { .. }) => {
                    return Ok(serde_json::json!({ "order": "paid_meanwhile" }))
                }
                Err(e) => return Err(e.into()),
            }
        }
        let reason = &reason;
        let done = self
            .kernel
            .run(metadata, |tx| {
                Box::pin(async move {
                    let mut order = tx.load::<Order>(&order_id).await?;
                    if order.state.as_ref().is_some_and(|o| o.status.is_open()) {
                        tx.decide(
                            &mut order,
                            OrderCommand::Cancel {
                                reason: reason.clone(),
                            },
                        )?;
                    }
                    Ok(())
                })
            })
            .await?;
        Ok(serde_json::json!({ "canceled": !done.recorded.is_empty() }))
    }

    /// A ticket order that owes nothing (free seats, or coupons that took the whole
    /// total) completes once its seats are held, with the reservation's version a
    /// condition of the commit, so it never completes on seats that went back meanwhile.
    /// Completion then confirms the reservation and issues the tickets as a payment would.
    async fn complete_free(
        &self,
        order_id: Uuid,
        metadata: Metadata,
    ) -> Result<serde_json::Value, EffectError> {
        let done = self
            .kernel
            .run(metadata, |tx| {
                Box::pin(async move {
                    let mut order = tx.load::<Order>(&order_id).await?;
                    let Some(complete) = order.state.as_ref().and_then(Order::complete_free) else {
                        return Ok(());
                    };
                    let reservation = tx.load::<Reservation>(&order_id).await?;
                    let held = reservation.state.as_ref().is_some_and(|r| {
                        r.status == kassa_domain::reservation::ReservationStatus::Held
                    });
                    if !held {
                        return Ok(());
                    }
                    tx.commit()
                        .require_version(&reservation.stream, reservation.version)?;
                    tx.decide(&mut order, complete)?;
                    Ok(())
                })
            })
            .await?;
        Ok(serde_json::json!({ "completed_free": !done.recorded.is_empty() }))
    }

    /// Cancels the reservation of `order_id`, its seats back in the same commit.
    /// (A sold reservation is refused as [`ReservationError::Lapsed`].)
    async fn release(
        &self,
        order_id: Uuid,
        reason: String,
        metadata: Metadata,
    ) -> Result<serde_json::Value, EffectError> {
        let reason = &reason;
        let done = self
            .kernel
            .run(metadata, |tx| {
                Box::pin(async move {
                    let mut reservation = tx.load::<Reservation>(&order_id).await?;
                    if reservation.state.is_none() {
                        // Not a ticket order, or its reservation failed: nothing is held.
                        return Ok(false);
                    }
                    cancel_holding(tx, &mut reservation, order_id, reason)
                })
            })
            .await;
        match done {
            Ok(done) => Ok(serde_json::json!({ "released": done.value })),
            // Sold: a paid order is refunded, not released.
            Err(Fail::Refused(ReservationError::Lapsed(status))) => {
                Ok(serde_json::json!({ "released": false, "reservation": status }))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Stages the cancellation of `reservation` (of `order_id`) with its seats back in the
/// same commit; whether there was anything left to cancel.
pub(crate) fn cancel_holding(
    tx: &mut Tx<'_>,
    reservation: &mut Loaded<Reservation>,
    order_id: Uuid,
    reason: &str,
) -> Result<bool, Fail<ReservationError>> {
    let events = tx.decide(
        reservation,
        ReservationCommand::Cancel {
            reason: reason.to_owned(),
        },
    )?;
    if let Some(r) = reservation.state.as_ref().filter(|_| !events.is_empty()) {
        for hold in &r.holds {
            seats::release(tx.commit(), order_id, hold, reason, false)?;
        }
    }
    Ok(!events.is_empty())
}
