//! A paid ticket order settles one of three ways, decided by its reservation's version
//! and its order's:
//! - its payment was refunded whole first: its held seats go back, and no ticket follows;
//! - its seats are still held: the reservation is confirmed (`reservation.confirmed`, the
//!   seats are sold and the tickets follow) and the order's invoice is issued, paid;
//! - its seats went back first (the reservation expired, was canceled or failed while the
//!   money was on its way): the whole payment is refunded at Stripe, recorded on the
//!   payment (`payment.refunded`, then `order.refunded`), and the buyer is told why. A
//!   ticket is never issued without a seat.
//!
//! Expiry and confirmation race on the reservation's head, so exactly one of them wins,
//! and a redelivered `order.completed` ends the same way: confirmation is idempotent, the
//! refund's key is the order's, and the invoice's id is the order's.

use crate::recalling::CONCERT_CANCELED;
use crate::refunding::Why;
use crate::TicketOrders;
use kassa_commerce::invoicing::{self, Issued};
use kassa_commerce::Fail;
use kassa_domain::concert::Concert;
use kassa_domain::invoice::Draft;
use kassa_domain::order::Order;
use kassa_domain::reservation::{
    Reservation, ReservationCommand, ReservationError, ReservationStatus,
};
use kassa_runtime::effect::EffectError;
use kassa_store::Metadata;
use time::Date;
use uuid::Uuid;

/// The reason the seats of an order refunded whole before its settlement go back under.
const REFUNDED: &str = "refunded";

/// How a paid order's seats were settled.
enum Settled {
    Confirmed,
    /// Its payment was all refunded first; `released` when its seats were still held.
    Refunded {
        released: bool,
    },
}

impl TicketOrders {
    pub(crate) async fn settle(
        &self,
        order_id: Uuid,
        paid_on: Date,
        metadata: Metadata,
    ) -> Result<serde_json::Value, EffectError> {
        let store = self.kernel.store();
        // reserve-tickets records a reservation (held or failed) for every ticket order
        // that was not canceled or expired, paid ones included, so waiting is bounded.
        let Some(recorded) = store.load_aggregate::<Reservation>(&order_id).await?.state else {
            return Err(EffectError::retry(format!(
                "the reservation of order {order_id} is not recorded yet"
            )));
        };
        // A reservation recorded after its concert's cancellation walked the roster was
        // not recalled there: its seats go back and its payment is refunded here. (The
        // cancellation commits before that walk, and the walk before such a record, so
        // this read sees it.)
        let mut concerts: Vec<Uuid> = recorded.holds.iter().map(|h| h.concert_id).collect();
        concerts.dedup();
        for concert_id in concerts {
            let concert = store.load_aggregate::<Concert>(&concert_id).await?.state;
            if let Some(concert) = concert.filter(Concert::is_canceled) {
                self.release(order_id, CONCERT_CANCELED.to_owned(), metadata.clone())
                    .await?;
                let order = self.paid_order(order_id).await?;
                return self
                    .refund_whole(
                        &order,
                        Why::ConcertCanceled {
                            concert: format!("{} at {}", concert.artist, concert.venue),
                        },
                        metadata,
                    )
                    .await;
            }
        }
        let confirmed = self
            .kernel
            .run(metadata.clone(), |tx| {
                Box::pin(async move {
                    let order = tx.load::<Order>(&order_id).await?;
                    let mut reservation = tx.load::<Reservation>(&order_id).await?;
                    if order.state.as_ref().is_some_and(Order::refunded_whole) {
                        // All of the money went back before the seats were sold (Stripe
                        // reported the refund before the success, or an operator refunded
                        // at once): the seats go back too, and no ticket is issued.
                        let held = reservation
                            .state
                            .as_ref()
                            .is_some_and(|r| r.status == ReservationStatus::Held);
                        if held {
                            crate::cancel_holding(tx, &mut reservation, order_id, REFUNDED)?;
                        }
                        return Ok(Settled::Refunded { released: held });
                    }
                    // A refund committed meanwhile fails this commit, and the next attempt
                    // sees it; one committed after it finds the seats sold and voids them.
                    tx.commit().require_version(&order.stream, order.version)?;
                    tx.decide(&mut reservation, ReservationCommand::Confirm)?;
                    Ok(Settled::Confirmed)
                })
            })
            .await;
        match confirmed {
            Ok(done) => match done.value {
                Settled::Refunded { released } => Ok(serde_json::json!({
                    "reservation": "refunded",
                    "released": released,
                })),
                Settled::Confirmed => {
                    let issued = self.invoice(order_id, paid_on, metadata).await?;
                    Ok(serde_json::json!({
                        "reservation": "confirmed",
                        "invoice": issued.invoice.number,
                    }))
                }
            },
            Err(Fail::Refused(ReservationError::Lapsed(status))) => {
                let order = self.paid_order(order_id).await?;
                self.refund_whole(&order, Why::Seatless(status), metadata)
                    .await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The paid order's invoice, in the buyer's series; its id is the order's, so a
    /// redelivery finds it issued.
    async fn invoice(
        &self,
        order_id: Uuid,
        paid_on: Date,
        metadata: Metadata,
    ) -> Result<Issued, EffectError> {
        let order = self.paid_order(order_id).await?;
        let payment_id = order
            .payment_id
            .clone()
            .ok_or_else(|| EffectError::retry(format!("order {order_id} has no payment yet")))?;
        let draft = Draft {
            invoice_id: invoicing::invoice_id(&format!("order:{order_id}")),
            series: invoicing::series(None, &order.user_id),
            user_id: order.user_id.clone(),
            workspace_id: None,
            order_id: Some(order_id),
            provider_invoice_id: None,
            lines: order.invoice_lines(),
            tax_rate: Some(order.tax_rate),
            tax: order.tax,
            issued_on: paid_on,
            due_date: paid_on,
        };
        Ok(self
            .invoicing
            .issue(
                draft,
                Some((payment_id, paid_on)),
                None,
                metadata,
                self.kernel.clock().now(),
            )
            .await?)
    }

    pub(crate) async fn paid_order(&self, order_id: Uuid) -> Result<Order, EffectError> {
        let order = self
            .kernel
            .store()
            .load_aggregate::<Order>(&order_id)
            .await?
            .state
            .ok_or_else(|| EffectError::retry(format!("order {order_id} is not there yet")))?;
        if !order.status.is_paid() {
            return Err(EffectError::retry(format!(
                "order {order_id} is {} here, but its completion was published",
                order.status.as_str()
            )));
        }
        Ok(order)
    }
}
