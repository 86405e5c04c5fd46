//! The cart as the routes answer it: its items with what they cost, and each item's artist
//! and level name as its concert now shows them (read in one batch), for the buyer to
//! recognise. Prices stay those the items were added at.

use crate::{failed, Carts};
use kassa_commerce::Fail;
use kassa_domain::cart::{Cart, CartItem};
use kassa_domain::concert::Concert;
use kassa_domain::identity::Actor;
use kassa_domain::money::Money;
use kassa_runtime::Problem;
use kassa_store::{stream_of, StreamId};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use uuid::Uuid;

#[derive(Debug, Serialize)]
pub struct CartView {
    pub user_id: String,
    /// Between the first item added and the cart's confirmation or cancellation.
    pub open: bool,
    pub items: Vec<ItemView>,
    /// What the items cost together; `null` while the cart is empty (it has no currency).
    pub total: Option<Money>,
    /// Carts this user has confirmed so far.
    pub confirmed: u32,
}

#[derive(Debug, Serialize)]
pub struct ItemView {
    pub concert_id: Uuid,
    /// `null` if the concert cannot be read.
    pub artist: Option<String>,
    pub level_id: String,
    /// `null` if the level was removed from the concert since.
    pub level_name: Option<String>,
    pub quantity: u32,
    pub unit_price: Money,
    pub amount: Money,
}

impl Carts {
    pub(crate) async fn view(
        &self,
        actor: &Actor,
        cart: Option<&Cart>,
    ) -> Result<CartView, Problem> {
        let Some(cart) = cart else {
            return Ok(CartView {
                user_id: actor.user.as_str().to_owned(),
                open: false,
                items: Vec::new(),
                total: None,
                confirmed: 0,
            });
        };
        let concerts = self
            .concerts(&cart.items)
            .await
            .map_err(|e| failed(Fail::Store(e)))?;
        Ok(CartView {
            user_id: cart.user_id.as_str().to_owned(),
            open: cart.open,
            items: cart
                .items
                .iter()
                .map(|item| {
                    let concert = concerts.get(&item.concert_id);
                    ItemView {
                        concert_id: item.concert_id,
                        artist: concert.map(|c| c.artist.clone()),
                        level_id: item.level_id.clone(),
                        level_name: concert
                            .and_then(|c| c.level(&item.level_id))
                            .map(|l| l.name.clone()),
                        quantity: item.quantity,
                        unit_price: item.unit_price,
                        amount: item.amount(),
                    }
                })
                .collect(),
            total: cart.total(),
            confirmed: cart.confirmed,
        })
    }

    /// The concerts of `items`, as they now are.
    async fn concerts(
        &self,
        items: &[CartItem],
    ) -> Result<HashMap<Uuid, Concert>, kassa_store::StoreError> {
        let ids: BTreeSet<Uuid> = items.iter().map(|i| i.concert_id).collect();
        let streams: Vec<StreamId> = ids.iter().map(stream_of::<Concert>).collect();
        let store = self.kernel.store();
        let heads = store.load_many(&streams.iter().collect::<Vec<_>>()).await?;
        let mut concerts = HashMap::new();
        for head in heads.into_values() {
            if let Some(concert) = store.state_of::<Concert>(head).await?.state {
                concerts.insert(concert.concert_id, concert);
            }
        }
        Ok(concerts)
    }
}
