//! Confirming the caller's cart: one commit for the cart's confirmation and the order it
//! makes. Every concert in the cart is read again first, and the commit requires each
//! concert's head as read, so a cancellation that lands meanwhile is seen on the retry:
//! items of a canceled or started concert make the confirmation a 409 that names them, and
//! nothing is written.

use crate::view::OrderView;
use crate::{tickets, ConfirmCart};
use kassa_commerce::{Fail, Tx};
use kassa_domain::aggregate::ByActor;
use kassa_domain::cart::{Cart, CartCommand, CartError, CartEvent};
use kassa_domain::concert::Concert;
use kassa_domain::delivery::{Address, Delivery};
use kassa_domain::money::Money;
use kassa_domain::order::{self, NewOrder, Order, OrderCommand, OrderError, Purpose};
use kassa_runtime::http::{json_body, request_id};
use kassa_runtime::problem::store_problem;
use kassa_runtime::{caller, Problem};
use kassa_store::{Metadata, StoreError};
use lambda_http::{Body, Request};
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};
use uuid::Uuid;

/// The body is optional: a confirmation needs nothing but the cart.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Confirmation {
    /// The buyer's own reference for the order (a purchase-order number).
    reference: Option<String>,
    /// `email` when absent.
    delivery: Option<Choice>,
    /// Where a courier takes printed tickets; only with `courier`.
    address: Option<Address>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Choice {
    Email,
    Courier,
}

impl Confirmation {
    /// The delivery asked for, judged before anything is read or written.
    fn delivery(&self) -> Result<Delivery, Problem> {
        match (self.delivery.unwrap_or(Choice::Email), &self.address) {
            (Choice::Email, None) => Ok(Delivery::Email),
            (Choice::Email, Some(_)) => Err(Problem::new(
                422,
                "invalid_delivery",
                "an address is only for `courier` delivery",
            )),
            (Choice::Courier, None) => Err(Problem::new(
                422,
                "invalid_address",
                "`courier` delivery needs an address",
            )),
            (Choice::Courier, Some(address)) => address
                .clone()
                .validate()
                .map(|address| Delivery::Courier {
                    address: Box::new(address),
                })
                .map_err(|e| Problem::new(422, e.code(), e.to_string())),
        }
    }
}

/// The order a user's `confirmation`-th cart makes: the same id whoever computes it and
/// however often, so a confirmation can only ever create one order.
pub fn order_id(user: &str, confirmation: u32) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("cart:{user}:{confirmation}").as_bytes(),
    )
}

impl ConfirmCart {
    pub(crate) async fn confirm(&self, request: &Request) -> Result<OrderView, Problem> {
        let actor = caller(request)?;
        let body = confirmation(request)?;
        order::validate_reference(&body.reference).map_err(order_refused)?;
        let delivery = body.delivery()?;
        let delivery = &delivery;
        let (actor, body) = (&actor, &body);
        let user = actor.user.as_str();
        let (book, tax_rate, window) = (&self.book, self.tax_rate, self.window);
        let courier_fee = self.courier_fee;
        let done = self
            .kernel
            .run(
                Metadata::origin(request_id(request), user),
                |tx: &mut Tx<'_>| {
                    Box::pin(async move {
                        let mut cart = tx.load::<Cart>(user).await?;
                        // A closed cart is an empty one to its user: the next item opens it.
                        let Some(items) = cart
                            .state
                            .as_ref()
                            .filter(|c| c.open && !c.items.is_empty())
                            .map(|c| c.items.clone())
                        else {
                            return Err(Fail::Refused(cart_refused(CartError::Empty)));
                        };
                        let now = tx.now();
                        let ids: BTreeSet<Uuid> = items.iter().map(|i| i.concert_id).collect();
                        let mut concerts = HashMap::new();
                        for id in ids {
                            let concert = tx.load::<Concert>(&id).await?;
                            if let Some(state) = concert.state {
                                tx.commit()
                                    .require_version(&concert.stream, concert.version)?;
                                concerts.insert(id, state);
                            }
                        }
                        let tickets = tickets::of(&items, &concerts, now)
                            .map_err(|names| Fail::Refused(unavailable(&names)))?;
                        let events = tx
                            .decide(
                                &mut cart,
                                ByActor {
                                    command: CartCommand::Confirm,
                                    actor: actor.clone(),
                                },
                            )
                            .map_err(|f| f.map(cart_refused))?;
                        let Some(CartEvent::Confirmed { confirmation, .. }) = events.first() else {
                            return Err(Fail::Store(StoreError::Corrupt(format!(
                                "confirming the cart of {user} recorded {events:?}"
                            ))));
                        };
                        let delivery_fee = match delivery {
                            Delivery::Courier { .. } if !courier_fee.is_zero() => tickets
                                .lines
                                .first()
                                .map(|line| Money::new(courier_fee, line.amount.currency)),
                            _ => None,
                        };
                        let new = NewOrder {
                            order_id: order_id(user, *confirmation),
                            user_id: actor.user.clone(),
                            purpose: Purpose::Tickets {
                                confirmation: *confirmation,
                                seats: tickets.seats,
                                delivery: delivery.clone(),
                            },
                            lines: tickets.lines,
                            delivery_fee,
                            tax_rate,
                            reference: body.reference.clone(),
                            now,
                            window,
                        };
                        let mut order = tx.load::<Order>(&new.order_id).await?;
                        tx.decide(&mut order, OrderCommand::Create(new))
                            .map_err(|f| f.map(order_refused))?;
                        let Some(created) = order.state else {
                            return Err(Fail::Store(StoreError::Corrupt(format!(
                                "the order of {user}'s cart was not created"
                            ))));
                        };
                        book.on_create(tx.commit(), &created)?;
                        Ok(created)
                    })
                },
            )
            .await
            .map_err(|fail| match fail {
                Fail::Refused(problem) => problem,
                Fail::Store(e) => store_problem(&e),
            })?;
        Ok(OrderView::of(&done.value))
    }
}

/// The body if there is one.
fn confirmation(request: &Request) -> Result<Confirmation, Problem> {
    let empty = match request.body() {
        Body::Text(text) => text.trim().is_empty(),
        Body::Binary(bytes) => bytes.iter().all(u8::is_ascii_whitespace),
        _ => true,
    };
    if empty {
        Ok(Confirmation::default())
    } else {
        json_body(request)
    }
}

fn unavailable(names: &[String]) -> Problem {
    Problem::conflict(
        "items_unavailable",
        format!(
            "these items are no longer sold; remove them from the cart: {}",
            names.join("; ")
        ),
    )
}

fn cart_refused(e: CartError) -> Problem {
    let status = match e {
        CartError::Forbidden => 403,
        _ => 409,
    };
    Problem::new(status, e.code(), e.to_string())
}

/// The order decider refuses a confirmation only for what the cart already ruled out, or
/// a reference, checked before: a 422 either way, bar an order that exists already.
fn order_refused(e: OrderError) -> Problem {
    let status = match e {
        OrderError::AlreadyExists => 409,
        _ => 422,
    };
    Problem::new(status, e.code(), e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confirmation_names_one_order_per_user_and_number() {
        assert_eq!(order_id("ann", 1), order_id("ann", 1));
        assert_ne!(order_id("ann", 1), order_id("ann", 2));
        assert_ne!(order_id("ann", 1), order_id("bob", 1));
        assert_eq!(order_id("ann", 1).get_version_num(), 5);
    }
}
