//! A canceled concert takes back what was held or sold for it. Its cancellation already
//! closed the levels' counters, so no new seat is held; this walks the roster of orders
//! whose reservation holds its seats (entered in the commit that recorded each
//! reservation) and ends each by the reservation's state:
//! - held (unpaid): the reservation is canceled with its seats back, then the order,
//!   PaymentIntent first. Should the payment win that race, the order's settlement finds
//!   the reservation canceled and refunds it;
//! - confirmed (paid): the whole payment is refunded and booked, and the order's tickets
//!   are voided when `order.refunded` follows;
//! - anything else was ended before and is left alone.
//!
//! Then every cart holding one of its levels (the concert's roster of carts) has them
//! withdrawn (`cart.item_removed`). Every buyer is mailed once per order. Each step is idempotent on its own, so a run cut
//! short (a concert with more orders than one invocation can settle) hands the message
//! back and the redelivery walks the roster again, passing over what is done.

use crate::refunding::Why;
use crate::TicketOrders;
use kassa_domain::aggregate::ByActor;
use kassa_domain::cart::{Cart, CartCommand};
use kassa_domain::concert::Concert;
use kassa_domain::identity::Actor;
use kassa_domain::reservation::{Reservation, ReservationStatus};
use kassa_runtime::effect::EffectError;
use kassa_runtime::mail::Mail;
use kassa_store::Metadata;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Why the orders of a canceled concert end.
pub(crate) const CONCERT_CANCELED: &str = "concert_canceled";

/// How long one invocation works through the roster before handing the rest to a
/// redelivery: well inside the function's timeout and the queue's visibility timeout.
const BUDGET: Duration = Duration::from_secs(40);

/// Orders read from the roster per query.
const PAGE: i32 = 100;

#[derive(Default, serde::Serialize)]
struct Recalled {
    released: usize,
    refunded: usize,
    untouched: usize,
    carts: usize,
}

impl TicketOrders {
    pub(crate) async fn recall(
        &self,
        concert_id: Uuid,
        metadata: Metadata,
    ) -> Result<serde_json::Value, EffectError> {
        let started = Instant::now();
        let concert = self
            .kernel
            .store()
            .load_aggregate::<Concert>(&concert_id)
            .await?
            .state
            .ok_or_else(|| EffectError::poison(format!("concert {concert_id} does not exist")))?;
        let name = format!("{} at {}", concert.artist, concert.venue);
        let group = concert_id.to_string();
        let mut recalled = Recalled::default();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .concert_orders
                .members(&group, after.as_deref(), PAGE)
                .await?;
            for member in &page.members {
                let order_id: Uuid = member.parse().map_err(|_| {
                    EffectError::poison(format!("`{member}` on the roster is not an order id"))
                })?;
                self.recall_order(order_id, &name, &metadata, &mut recalled)
                    .await?;
                if started.elapsed() > BUDGET {
                    return Err(EffectError::retry(format!(
                        "recalled up to order {order_id} of concert {concert_id}; a redelivery goes on"
                    )));
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let mut after: Option<String> = None;
        loop {
            let page = self
                .concert_carts
                .members(&group, after.as_deref(), PAGE)
                .await?;
            for user in &page.members {
                recalled.carts += self.withdraw(concert_id, user, &metadata).await?;
                if started.elapsed() > BUDGET {
                    return Err(EffectError::retry(format!(
                        "recalled up to the cart of {user} for concert {concert_id}; a redelivery goes on"
                    )));
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(serde_json::to_value(recalled).unwrap_or_default())
    }

    /// Takes the concert's levels out of `user`'s cart: counts 1 when there were any.
    async fn withdraw(
        &self,
        concert_id: Uuid,
        user: &str,
        metadata: &Metadata,
    ) -> Result<usize, EffectError> {
        let done = self
            .kernel
            .run(metadata.clone(), |tx| {
                Box::pin(async move {
                    let mut cart = tx.load::<Cart>(user).await?;
                    let removed = tx.decide(
                        &mut cart,
                        ByActor {
                            command: CartCommand::Withdraw { concert_id },
                            actor: Actor::system(crate::NAME),
                        },
                    )?;
                    Ok(usize::from(!removed.is_empty()))
                })
            })
            .await?;
        Ok(done.value)
    }

    async fn recall_order(
        &self,
        order_id: Uuid,
        concert: &str,
        metadata: &Metadata,
        recalled: &mut Recalled,
    ) -> Result<(), EffectError> {
        let Some(reservation) = self
            .kernel
            .store()
            .load_aggregate::<Reservation>(&order_id)
            .await?
            .state
        else {
            recalled.untouched += 1;
            return Ok(());
        };
        let mut status = reservation.status;
        if status == ReservationStatus::Held {
            let released = self
                .release(order_id, CONCERT_CANCELED.to_owned(), metadata.clone())
                .await?;
            if released["reservation"] == "confirmed" {
                // Paid between the read and the release: refunded below.
                status = ReservationStatus::Confirmed;
            } else {
                self.cancel_order(order_id, CONCERT_CANCELED.to_owned(), metadata.clone())
                    .await?;
                self.tell_buyer(
                    &reservation.user_id,
                    Mail {
                        id: format!("{CONCERT_CANCELED}-{order_id}"),
                        from: self.mail_from.clone(),
                        to: String::new(),
                        subject: format!("{concert} is canceled"),
                        body: format!(
                            "{concert} was canceled. Your order {order_id} is canceled with it \
                             and nothing was charged."
                        ),
                    },
                )
                .await?;
                recalled.released += 1;
                return Ok(());
            }
        }
        if status == ReservationStatus::Confirmed {
            let order = self.paid_order(order_id).await?;
            self.refund_whole(
                &order,
                Why::ConcertCanceled {
                    concert: concert.to_owned(),
                },
                metadata.clone(),
            )
            .await?;
            recalled.refunded += 1;
        } else {
            recalled.untouched += 1;
        }
        Ok(())
    }
}
