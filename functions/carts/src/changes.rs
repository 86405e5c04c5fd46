//! The commands on the caller's cart. Each loads the cart, decides, and commits its events;
//! a lost race with the same user's other tab decides again on the cart as it now is.

use crate::view::CartView;
use crate::{failed, offer, refused, Carts};
use kassa_commerce::{Fail, Tx};
use kassa_domain::aggregate::ByActor;
use kassa_domain::cart::{Cart, CartCommand};
use kassa_domain::identity::Actor;
use kassa_runtime::http::{json_body, request_id, string_param, uuid_param};
use kassa_runtime::{caller, Problem};
use kassa_store::Metadata;
use lambda_http::Request;
use serde::Deserialize;
use std::future::Future;
use uuid::Uuid;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewItem {
    concert_id: Uuid,
    level_id: String,
    quantity: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Quantity {
    quantity: u32,
}

impl Carts {
    pub(crate) async fn add(&self, request: &Request) -> Result<CartView, Problem> {
        let actor = caller(request)?;
        let body: NewItem = json_body(request)?;
        let now = self.kernel.clock().now();
        let offer = offer::of(self.kernel.store(), body.concert_id, &body.level_id, now).await?;
        let command = CartCommand::AddItem {
            concert_id: body.concert_id,
            level_id: body.level_id,
            quantity: body.quantity,
            unit_price: offer.price,
            available: offer.free,
        };
        let command = &command;
        self.change(request, &actor, move |_| async move { Ok(command.clone()) })
            .await
    }

    pub(crate) async fn update(&self, request: &Request) -> Result<CartView, Problem> {
        let actor = caller(request)?;
        let (concert_id, level_id) = item_path(request)?;
        let body: Quantity = json_body(request)?;
        let (store, now) = (self.kernel.store(), self.kernel.clock().now());
        let level_id = &level_id;
        self.change(request, &actor, move |cart| {
            // Only an item the cart holds is checked against its concert again: any other
            // is refused by the cart itself, whatever its concert has become.
            let held = cart.is_some_and(|c| c.item(concert_id, level_id).is_some());
            async move {
                let available = if held {
                    offer::of(store, concert_id, level_id, now).await?.free
                } else {
                    0
                };
                Ok(CartCommand::UpdateQuantity {
                    concert_id,
                    level_id: level_id.clone(),
                    quantity: body.quantity,
                    available,
                })
            }
        })
        .await
    }

    pub(crate) async fn remove(&self, request: &Request) -> Result<CartView, Problem> {
        let actor = caller(request)?;
        let (concert_id, level_id) = item_path(request)?;
        let level_id = &level_id;
        self.change(request, &actor, move |_| async move {
            Ok(CartCommand::RemoveItem {
                concert_id,
                level_id: level_id.clone(),
            })
        })
        .await
    }

    pub(crate) async fn clear(&self, request: &Request) -> Result<CartView, Problem> {
        let actor = caller(request)?;
        self.change(request, &actor, |_| async { Ok(CartCommand::Clear) })
            .await
    }

    pub(crate) async fn cancel(&self, request: &Request) -> Result<CartView, Problem> {
        let actor = caller(request)?;
        self.change(request, &actor, |_| async { Ok(CartCommand::Cancel) })
            .await
    }

    pub(crate) async fn get(&self, request: &Request) -> Result<CartView, Problem> {
        let actor = caller(request)?;
        let cart = self
            .kernel
            .store()
            .load_aggregate::<Cart>(actor.user.as_str())
            .await
            .map_err(|e| failed(Fail::Store(e)))?;
        self.view(&actor, cart.state.as_ref()).await
    }

    /// Decides the command `make` builds from the caller's cart as loaded, and commits it.
    async fn change<F, Fut>(
        &self,
        request: &Request,
        actor: &Actor,
        make: F,
    ) -> Result<CartView, Problem>
    where
        F: Fn(Option<&Cart>) -> Fut + Sync,
        Fut: Future<Output = Result<CartCommand, Problem>> + Send,
    {
        let (make, roster) = (&make, &self.concert_carts);
        let user = actor.user.as_str();
        let done = self
            .kernel
            .run(
                Metadata::origin(request_id(request), user),
                |tx: &mut Tx<'_>| {
                    Box::pin(async move {
                        let mut cart = tx.load::<Cart>(user).await?;
                        let command = make(cart.state.as_ref()).await.map_err(Fail::Refused)?;
                        // A concert's cancellation must find every cart holding its levels.
                        if let CartCommand::AddItem { concert_id, .. } = &command {
                            tx.commit()
                                .index(roster.enter(&concert_id.to_string(), user)?);
                        }
                        tx.decide(
                            &mut cart,
                            ByActor {
                                command,
                                actor: actor.clone(),
                            },
                        )
                        .map_err(|f| f.map(refused))?;
                        Ok(cart.state)
                    })
                },
            )
            .await
            .map_err(failed)?;
        self.view(actor, done.value.as_ref()).await
    }
}

/// The item a path names: `/cart/items/{concertId}/{levelId}`. A concert id that is no
/// UUID names no item of the cart.
fn item_path(request: &Request) -> Result<(Uuid, String), Problem> {
    let concert_id = uuid_param(request, "concertId", "item_not_in_cart")?;
    let level_id = string_param(request, "levelId")?;
    Ok((concert_id, level_id))
}
