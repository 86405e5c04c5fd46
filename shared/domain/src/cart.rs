//! Shopping carts (seed 003's shopping cart module): the tickets a user collects, from any
//! concerts and levels, before confirming them into a reservation and a payment.
//!
//! A user has one cart, whose id is theirs (`Cart#<user id>`), and only they change it. The
//! first item added opens it (`cart.created`); confirming or canceling it closes it, empty,
//! and the next item opens a new one in the same stream. A (concert, level) appears once: to
//! want more, update its quantity. A quantity is 1 to [`MAX_PER_LEVEL`] and never more than
//! the level has free when it is set; the caller reads that from the level's counter and
//! passes it in (`available`): a cart holds no seats, so the reservation made on confirming
//! checks again. Unit prices are the levels' when the item was added; one cart is paid in
//! one currency.

use crate::concert::{valid_level_id, valid_price};
use crate::event::DomainEvent;
use crate::identity::{Actor, Role, UserId};
use crate::money::Money;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Most tickets of one level in one cart.
pub const MAX_PER_LEVEL: u32 = 10;

/// Most (concert, level) items in one cart.
pub const MAX_ITEMS: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CartItem {
    pub concert_id: Uuid,
    pub level_id: String,
    pub quantity: u32,
    /// One ticket's price as it was when the item was added.
    pub unit_price: Money,
}

impl CartItem {
    pub fn amount(&self) -> Money {
        self.unit_price.times(u64::from(self.quantity))
    }

    fn is(&self, concert_id: Uuid, level_id: &str) -> bool {
        self.concert_id == concert_id && self.level_id == level_id
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cart {
    pub user_id: UserId,
    /// Whether a cart is open: between its first item and its confirmation or cancellation.
    pub open: bool,
    /// In the order they were added.
    pub items: Vec<CartItem>,
    /// Carts confirmed so far; the next confirmation is number `confirmed + 1`.
    pub confirmed: u32,
}

impl Cart {
    pub fn item(&self, concert_id: Uuid, level_id: &str) -> Option<&CartItem> {
        self.items.iter().find(|i| i.is(concert_id, level_id))
    }

    /// What the items cost together; `None` when the cart is empty.
    pub fn total(&self) -> Option<Money> {
        let mut items = self.items.iter();
        let first = items.next()?.amount();
        items.try_fold(first, |sum, item| sum.checked_add(item.amount()).ok())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CartCommand {
    /// Opens a cart first when none is open.
    AddItem {
        concert_id: Uuid,
        level_id: String,
        quantity: u32,
        /// The level's price now.
        unit_price: Money,
        /// Seats the level has free now.
        available: u32,
    },
    UpdateQuantity {
        concert_id: Uuid,
        level_id: String,
        quantity: u32,
        /// Seats the level has free now.
        available: u32,
    },
    RemoveItem {
        concert_id: Uuid,
        level_id: String,
    },
    /// Empties the cart, which stays open.
    Clear,
    /// Empties and closes the cart.
    Cancel,
    /// Hands the items on to be reserved and paid; empties and closes the cart.
    Confirm,
    /// Takes every item of a canceled concert out of the cart. Only the system does
    /// this (the concert's cancellation), never a user, the cart's own included.
    Withdraw {
        concert_id: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "payload")]
pub enum CartEvent {
    /// Seed 003's `ShoppingCartCreated`.
    #[serde(rename = "cart.created")]
    Created { user_id: UserId },
    /// Seed 003's `ShoppingCartItemAdded`.
    #[serde(rename = "cart.item_added")]
    ItemAdded {
        user_id: UserId,
        concert_id: Uuid,
        level_id: String,
        quantity: u32,
        unit_price: Money,
    },
    /// Seed 003's `ShoppingCartItemUpdated`: the item's new quantity.
    #[serde(rename = "cart.item_updated")]
    ItemUpdated {
        user_id: UserId,
        concert_id: Uuid,
        level_id: String,
        quantity: u32,
    },
    /// Seed 003's `ShoppingCartItemRemoved`.
    #[serde(rename = "cart.item_removed")]
    ItemRemoved {
        user_id: UserId,
        concert_id: Uuid,
        level_id: String,
    },
    /// Seed 003's `CartCleared`.
    #[serde(rename = "cart.cleared")]
    Cleared { user_id: UserId },
    /// Seed 003's `ShoppingCartCancelled`.
    #[serde(rename = "cart.canceled")]
    Canceled { user_id: UserId },
    /// Seed 003's `ShoppingCartConfirmed`: the items and prices as they stood.
    #[serde(rename = "cart.confirmed")]
    Confirmed {
        user_id: UserId,
        /// The user's how-manieth confirmed cart (from 1): with the user id, it names
        /// this confirmation for whatever it starts (an order, reservations).
        confirmation: u32,
        items: Vec<CartItem>,
        total: Money,
    },
}

impl DomainEvent for CartEvent {
    const CONTEXT: &'static str = "carts";
    const TYPES: &'static [&'static str] = &[
        "cart.created",
        "cart.item_added",
        "cart.item_updated",
        "cart.item_removed",
        "cart.cleared",
        "cart.canceled",
        "cart.confirmed",
    ];

    fn event_type(&self) -> &'static str {
        match self {
            Self::Created { .. } => "cart.created",
            Self::ItemAdded { .. } => "cart.item_added",
            Self::ItemUpdated { .. } => "cart.item_updated",
            Self::ItemRemoved { .. } => "cart.item_removed",
            Self::Cleared { .. } => "cart.cleared",
            Self::Canceled { .. } => "cart.canceled",
            Self::Confirmed { .. } => "cart.confirmed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CartError {
    #[error("you may not change this cart")]
    Forbidden,
    #[error("no cart is open; add a ticket to open one")]
    NotOpen,
    #[error("level `{level_id}` of concert {concert_id} is in the cart already; update its quantity instead")]
    AlreadyInCart { concert_id: Uuid, level_id: String },
    #[error("level `{level_id}` of concert {concert_id} is not in the cart")]
    NotInCart { concert_id: Uuid, level_id: String },
    #[error("level id `{0}` is not a ticket level's")]
    InvalidLevelId(String),
    #[error("a quantity is 1 to {MAX_PER_LEVEL} tickets")]
    InvalidQuantity,
    #[error("{requested} tickets asked, {available} available")]
    NotEnoughTickets { requested: u32, available: u32 },
    #[error("a ticket's price is zero or more, in whole cents")]
    InvalidPrice,
    #[error("the cart is in {cart}; this ticket is priced in {item}")]
    CurrencyMismatch {
        cart: &'static str,
        item: &'static str,
    },
    #[error("a cart holds at most {MAX_ITEMS} concert levels")]
    Full,
    #[error("the cart is empty")]
    Empty,
}

impl CartError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Forbidden => "forbidden",
            Self::NotOpen => "cart_not_open",
            Self::AlreadyInCart { .. } => "item_in_cart",
            Self::NotInCart { .. } => "item_not_in_cart",
            Self::InvalidLevelId(_) => "invalid_level_id",
            Self::InvalidQuantity => "invalid_quantity",
            Self::NotEnoughTickets { .. } => "not_enough_tickets",
            Self::InvalidPrice => "invalid_price",
            Self::CurrencyMismatch { .. } => "currency_mismatch",
            Self::Full => "cart_full",
            Self::Empty => "cart_empty",
        }
    }
}

pub fn decide(
    state: Option<&Cart>,
    command: CartCommand,
    actor: &Actor,
) -> Result<Vec<CartEvent>, CartError> {
    let withdrawal = matches!(command, CartCommand::Withdraw { .. });
    if withdrawal != (actor.role == Role::System)
        || (!withdrawal && state.is_some_and(|cart| cart.user_id != actor.user))
    {
        return Err(CartError::Forbidden);
    }
    let open = state.filter(|cart| cart.open);
    match (open, command) {
        (None, CartCommand::Withdraw { .. }) => Ok(vec![]),
        (Some(cart), CartCommand::Withdraw { concert_id }) => Ok(cart
            .items
            .iter()
            .filter(|item| item.concert_id == concert_id)
            .map(|item| CartEvent::ItemRemoved {
                user_id: cart.user_id.clone(),
                concert_id,
                level_id: item.level_id.clone(),
            })
            .collect()),
        (
            open,
            CartCommand::AddItem {
                concert_id,
                level_id,
                quantity,
                unit_price,
                available,
            },
        ) => {
            if !valid_level_id(&level_id) {
                return Err(CartError::InvalidLevelId(level_id));
            }
            valid_quantity(quantity, available)?;
            if !valid_price(unit_price) {
                return Err(CartError::InvalidPrice);
            }
            let items = open.map_or(&[][..], |cart| &cart.items);
            if items.iter().any(|i| i.is(concert_id, &level_id)) {
                return Err(CartError::AlreadyInCart {
                    concert_id,
                    level_id,
                });
            }
            if let Some(first) = items.first() {
                if first.unit_price.currency != unit_price.currency {
                    return Err(CartError::CurrencyMismatch {
                        cart: first.unit_price.currency.code(),
                        item: unit_price.currency.code(),
                    });
                }
            }
            if items.len() >= MAX_ITEMS {
                return Err(CartError::Full);
            }
            let user_id = state.map_or(&actor.user, |cart| &cart.user_id).clone();
            let mut events = Vec::with_capacity(2);
            if open.is_none() {
                events.push(CartEvent::Created {
                    user_id: user_id.clone(),
                });
            }
            events.push(CartEvent::ItemAdded {
                user_id,
                concert_id,
                level_id,
                quantity,
                unit_price,
            });
            Ok(events)
        }
        (None, _) => Err(CartError::NotOpen),
        (
            Some(cart),
            CartCommand::UpdateQuantity {
                concert_id,
                level_id,
                quantity,
                available,
            },
        ) => {
            let Some(item) = cart.item(concert_id, &level_id) else {
                return Err(CartError::NotInCart {
                    concert_id,
                    level_id,
                });
            };
            valid_quantity(quantity, available)?;
            if item.quantity == quantity {
                return Ok(vec![]);
            }
            Ok(vec![CartEvent::ItemUpdated {
                user_id: cart.user_id.clone(),
                concert_id,
                level_id,
                quantity,
            }])
        }
        (
            Some(cart),
            CartCommand::RemoveItem {
                concert_id,
                level_id,
            },
        ) => {
            if cart.item(concert_id, &level_id).is_none() {
                return Err(CartError::NotInCart {
                    concert_id,
                    level_id,
                });
            }
            Ok(vec![CartEvent::ItemRemoved {
                user_id: cart.user_id.clone(),
                concert_id,
                level_id,
            }])
        }
        // Clearing an empty cart leaves it as it is.
        (Some(cart), CartCommand::Clear) if cart.items.is_empty() => Ok(vec![]),
        (Some(cart), CartCommand::Clear) => Ok(vec![CartEvent::Cleared {
            user_id: cart.user_id.clone(),
        }]),
        (Some(cart), CartCommand::Cancel) => Ok(vec![CartEvent::Canceled {
            user_id: cart.user_id.clone(),
        }]),
        (Some(cart), CartCommand::Confirm) => {
            // Items share one currency (checked as they are added), so the sum exists
            // whenever there is an item.
            let Some(total) = cart.total() else {
                return Err(CartError::Empty);
            };
            Ok(vec![CartEvent::Confirmed {
                user_id: cart.user_id.clone(),
                confirmation: cart.confirmed.saturating_add(1),
                items: cart.items.clone(),
                total,
            }])
        }
    }
}

fn valid_quantity(quantity: u32, available: u32) -> Result<(), CartError> {
    if quantity == 0 || quantity > MAX_PER_LEVEL {
        return Err(CartError::InvalidQuantity);
    }
    if quantity > available {
        return Err(CartError::NotEnoughTickets {
            requested: quantity,
            available,
        });
    }
    Ok(())
}

pub fn evolve(state: Option<Cart>, event: &CartEvent) -> Option<Cart> {
    match (state, event) {
        (None, CartEvent::Created { user_id }) => Some(Cart {
            user_id: user_id.clone(),
            open: true,
            items: Vec::new(),
            confirmed: 0,
        }),
        (Some(mut cart), CartEvent::Created { .. }) => {
            cart.open = true;
            cart.items.clear();
            Some(cart)
        }
        (
            Some(mut cart),
            CartEvent::ItemAdded {
                concert_id,
                level_id,
                quantity,
                unit_price,
                ..
            },
        ) => {
            cart.items.push(CartItem {
                concert_id: *concert_id,
                level_id: level_id.clone(),
                quantity: *quantity,
                unit_price: *unit_price,
            });
            Some(cart)
        }
        (
            Some(mut cart),
            CartEvent::ItemUpdated {
                concert_id,
                level_id,
                quantity,
                ..
            },
        ) => {
            if let Some(item) = cart.items.iter_mut().find(|i| i.is(*concert_id, level_id)) {
                item.quantity = *quantity;
            }
            Some(cart)
        }
        (
            Some(mut cart),
            CartEvent::ItemRemoved {
                concert_id,
                level_id,
                ..
            },
        ) => {
            cart.items.retain(|i| !i.is(*concert_id, level_id));
            Some(cart)
        }
        (Some(mut cart), CartEvent::Cleared { .. }) => {
            cart.items.clear();
            Some(cart)
        }
        (Some(mut cart), CartEvent::Canceled { .. }) => {
            cart.items.clear();
            cart.open = false;
            Some(cart)
        }
        (Some(mut cart), CartEvent::Confirmed { confirmation, .. }) => {
            cart.items.clear();
            cart.open = false;
            cart.confirmed = *confirmation;
            Some(cart)
        }
        // Events that do not apply leave the state as it is: replay must not panic.
        (state, _) => state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::ByActor;
    use crate::money::Currency;
    use crate::scenario::given;
    use rust_decimal::Decimal;
    use std::collections::BTreeSet;
    use std::str::FromStr;

    const BEYONCE: Uuid = Uuid::from_u128(3);
    const COLDPLAY: Uuid = Uuid::from_u128(4);

    fn usd(amount: &str) -> Money {
        Money::new(Decimal::from_str(amount).unwrap(), Currency::Usd)
    }

    fn ann() -> UserId {
        UserId::new("ann")
    }

    fn by_ann(command: CartCommand) -> ByActor<CartCommand> {
        ByActor {
            command,
            actor: Actor::user("ann"),
        }
    }

    fn add(concert_id: Uuid, level: &str, quantity: u32, available: u32) -> CartCommand {
        CartCommand::AddItem {
            concert_id,
            level_id: level.into(),
            quantity,
            unit_price: usd("49.99"),
            available,
        }
    }

    fn update(concert_id: Uuid, level: &str, quantity: u32, available: u32) -> CartCommand {
        CartCommand::UpdateQuantity {
            concert_id,
            level_id: level.into(),
            quantity,
            available,
        }
    }

    fn remove(concert_id: Uuid, level: &str) -> CartCommand {
        CartCommand::RemoveItem {
            concert_id,
            level_id: level.into(),
        }
    }

    fn created() -> CartEvent {
        CartEvent::Created { user_id: ann() }
    }

    fn added(concert_id: Uuid, level: &str, quantity: u32, price: &str) -> CartEvent {
        CartEvent::ItemAdded {
            user_id: ann(),
            concert_id,
            level_id: level.into(),
            quantity,
            unit_price: usd(price),
        }
    }

    fn item(concert_id: Uuid, level: &str, quantity: u32, price: &str) -> CartItem {
        CartItem {
            concert_id,
            level_id: level.into(),
            quantity,
            unit_price: usd(price),
        }
    }

    fn two_items() -> [CartEvent; 3] {
        [
            created(),
            added(BEYONCE, "regular", 2, "49.99"),
            added(COLDPLAY, "vip", 1, "120.00"),
        ]
    }

    fn confirmed(confirmation: u32) -> CartEvent {
        CartEvent::Confirmed {
            user_id: ann(),
            confirmation,
            items: vec![
                item(BEYONCE, "regular", 2, "49.99"),
                item(COLDPLAY, "vip", 1, "120.00"),
            ],
            total: usd("219.98"),
        }
    }

    #[test]
    fn the_first_item_opens_the_cart() {
        let cart = given::<Cart>([])
            .when(by_ann(add(BEYONCE, "regular", 2, 100)))
            .then([created(), added(BEYONCE, "regular", 2, "49.99")])
            .unwrap();
        assert!(cart.open);
        assert_eq!(cart.user_id, ann());
        assert_eq!(cart.items, [item(BEYONCE, "regular", 2, "49.99")]);
    }

    #[test]
    fn items_come_from_any_concerts_and_levels() {
        let cart = given::<Cart>([created(), added(BEYONCE, "regular", 2, "49.99")])
            .when(by_ann(CartCommand::AddItem {
                concert_id: COLDPLAY,
                level_id: "vip".into(),
                quantity: 1,
                unit_price: usd("120.00"),
                available: 1,
            }))
            .then([added(COLDPLAY, "vip", 1, "120.00")])
            .unwrap();
        assert_eq!(cart.total(), Some(usd("219.98")));
        given::<Cart>([created(), added(BEYONCE, "regular", 2, "49.99")])
            .when(by_ann(add(BEYONCE, "golden-circle", 1, 5)))
            .then([added(BEYONCE, "golden-circle", 1, "49.99")]);
    }

    #[test]
    fn a_level_already_in_the_cart_is_updated_not_added_again() {
        given::<Cart>([created(), added(BEYONCE, "regular", 2, "49.99")])
            .when(by_ann(add(BEYONCE, "regular", 1, 100)))
            .then_refused(CartError::AlreadyInCart {
                concert_id: BEYONCE,
                level_id: "regular".into(),
            });
    }

    #[test]
    fn a_quantity_is_one_to_the_per_level_limit() {
        for quantity in [0, MAX_PER_LEVEL + 1] {
            given::<Cart>([])
                .when(by_ann(add(BEYONCE, "regular", quantity, 100)))
                .then_refused(CartError::InvalidQuantity);
            given::<Cart>([created(), added(BEYONCE, "regular", 2, "49.99")])
                .when(by_ann(update(BEYONCE, "regular", quantity, 100)))
                .then_refused(CartError::InvalidQuantity);
        }
        given::<Cart>([])
            .when(by_ann(add(BEYONCE, "regular", MAX_PER_LEVEL, 100)))
            .outcome()
            .unwrap();
    }

    #[test]
    fn a_quantity_never_exceeds_what_the_level_has_free() {
        given::<Cart>([])
            .when(by_ann(add(BEYONCE, "regular", 3, 2)))
            .then_refused(CartError::NotEnoughTickets {
                requested: 3,
                available: 2,
            });
        given::<Cart>([created(), added(BEYONCE, "regular", 2, "49.99")])
            .when(by_ann(update(BEYONCE, "regular", 5, 4)))
            .then_refused(CartError::NotEnoughTickets {
                requested: 5,
                available: 4,
            });
        // Exactly what is free is fine.
        given::<Cart>([])
            .when(by_ann(add(BEYONCE, "regular", 2, 2)))
            .outcome()
            .unwrap();
    }

    #[test]
    fn an_item_names_a_level_and_costs_zero_or_more() {
        given::<Cart>([])
            .when(by_ann(add(BEYONCE, "Regular Seats", 1, 10)))
            .then_refused(CartError::InvalidLevelId("Regular Seats".into()));
        for price in ["-1", "0.001"] {
            given::<Cart>([])
                .when(by_ann(CartCommand::AddItem {
                    concert_id: BEYONCE,
                    level_id: "regular".into(),
                    quantity: 1,
                    unit_price: usd(price),
                    available: 10,
                }))
                .then_refused(CartError::InvalidPrice);
        }
    }

    #[test]
    fn a_cart_is_paid_in_one_currency() {
        given::<Cart>([created(), added(BEYONCE, "regular", 2, "49.99")])
            .when(by_ann(CartCommand::AddItem {
                concert_id: COLDPLAY,
                level_id: "vip".into(),
                quantity: 1,
                unit_price: Money::new(Decimal::from(90), Currency::Eur),
                available: 10,
            }))
            .then_refused(CartError::CurrencyMismatch {
                cart: "USD",
                item: "EUR",
            });
    }

    #[test]
    fn a_cart_holds_at_most_max_items() {
        let mut history = vec![created()];
        history
            .extend((0..MAX_ITEMS).map(|i| added(Uuid::from_u128(i as u128), "regular", 1, "1")));
        given::<Cart>(history)
            .when(by_ann(add(Uuid::from_u128(99), "regular", 1, 10)))
            .then_refused(CartError::Full);
    }

    #[test]
    fn updating_a_quantity_records_the_new_one() {
        let cart = given::<Cart>(two_items())
            .when(by_ann(update(BEYONCE, "regular", 4, 10)))
            .then([CartEvent::ItemUpdated {
                user_id: ann(),
                concert_id: BEYONCE,
                level_id: "regular".into(),
                quantity: 4,
            }])
            .unwrap();
        assert_eq!(cart.item(BEYONCE, "regular").unwrap().quantity, 4);
        assert_eq!(cart.total(), Some(usd("319.96")));
    }

    #[test]
    fn the_same_quantity_records_nothing() {
        given::<Cart>(two_items())
            .when(by_ann(update(BEYONCE, "regular", 2, 10)))
            .then([]);
    }

    #[test]
    fn only_items_in_the_cart_are_updated_or_removed() {
        let missing = CartError::NotInCart {
            concert_id: COLDPLAY,
            level_id: "regular".into(),
        };
        given::<Cart>(two_items())
            .when(by_ann(update(COLDPLAY, "regular", 1, 10)))
            .then_refused(missing.clone());
        given::<Cart>(two_items())
            .when(by_ann(remove(COLDPLAY, "regular")))
            .then_refused(missing);
    }

    #[test]
    fn removing_an_item_leaves_the_others() {
        let cart = given::<Cart>(two_items())
            .when(by_ann(remove(BEYONCE, "regular")))
            .then([CartEvent::ItemRemoved {
                user_id: ann(),
                concert_id: BEYONCE,
                level_id: "regular".into(),
            }])
            .unwrap();
        assert_eq!(cart.items, [item(COLDPLAY, "vip", 1, "120.00")]);
        assert!(cart.open);
    }

    #[test]
    fn clearing_empties_the_cart_which_stays_open() {
        let cart = given::<Cart>(two_items())
            .when(by_ann(CartCommand::Clear))
            .then([CartEvent::Cleared { user_id: ann() }])
            .unwrap();
        assert!(cart.items.is_empty());
        assert!(cart.open);
        // The next item goes into the same cart.
        given::<Cart>([
            created(),
            added(BEYONCE, "regular", 2, "49.99"),
            CartEvent::Cleared { user_id: ann() },
        ])
        .when(by_ann(add(BEYONCE, "regular", 1, 10)))
        .then([added(BEYONCE, "regular", 1, "49.99")]);
    }

    #[test]
    fn clearing_an_empty_cart_records_nothing() {
        given::<Cart>([created(), CartEvent::Cleared { user_id: ann() }])
            .when(by_ann(CartCommand::Clear))
            .then([]);
    }

    #[test]
    fn canceling_empties_and_closes_the_cart() {
        let cart = given::<Cart>(two_items())
            .when(by_ann(CartCommand::Cancel))
            .then([CartEvent::Canceled { user_id: ann() }])
            .unwrap();
        assert!(cart.items.is_empty());
        assert!(!cart.open);
        // The next item opens a new cart.
        let mut history = two_items().to_vec();
        history.push(CartEvent::Canceled { user_id: ann() });
        given::<Cart>(history)
            .when(by_ann(add(BEYONCE, "regular", 1, 10)))
            .then([created(), added(BEYONCE, "regular", 1, "49.99")]);
    }

    #[test]
    fn confirming_hands_on_the_items_and_prices_and_empties_the_cart() {
        let cart = given::<Cart>(two_items())
            .when(by_ann(CartCommand::Confirm))
            .then([confirmed(1)])
            .unwrap();
        assert!(cart.items.is_empty());
        assert!(!cart.open);
        assert_eq!(cart.confirmed, 1);
    }

    #[test]
    fn the_next_cart_after_a_confirmation_is_confirmed_under_the_next_number() {
        let mut history = two_items().to_vec();
        history.push(confirmed(1));
        history.extend(two_items());
        given::<Cart>(history)
            .when(by_ann(CartCommand::Confirm))
            .then([confirmed(2)]);
    }

    #[test]
    fn an_empty_cart_is_not_confirmed() {
        given::<Cart>([created(), CartEvent::Cleared { user_id: ann() }])
            .when(by_ann(CartCommand::Confirm))
            .then_refused(CartError::Empty);
    }

    #[test]
    fn without_an_open_cart_only_adding_applies() {
        let mut closed = two_items().to_vec();
        closed.push(confirmed(1));
        for command in [
            update(BEYONCE, "regular", 1, 10),
            remove(BEYONCE, "regular"),
            CartCommand::Clear,
            CartCommand::Cancel,
            CartCommand::Confirm,
        ] {
            given::<Cart>([])
                .when(by_ann(command.clone()))
                .then_refused(CartError::NotOpen);
            given::<Cart>(closed.clone())
                .when(by_ann(command))
                .then_refused(CartError::NotOpen);
        }
    }

    #[test]
    fn a_canceled_concerts_items_are_withdrawn_by_the_system_only() {
        let withdraw = |actor| ByActor {
            command: CartCommand::Withdraw {
                concert_id: BEYONCE,
            },
            actor,
        };
        given::<Cart>(two_items())
            .when(withdraw(Actor::system("ticket-orders")))
            .then([CartEvent::ItemRemoved {
                user_id: ann(),
                concert_id: BEYONCE,
                level_id: "regular".into(),
            }]);
        given::<Cart>([created(), added(COLDPLAY, "vip", 1, "120.00")])
            .when(withdraw(Actor::system("ticket-orders")))
            .then([]);
        given::<Cart>([])
            .when(withdraw(Actor::system("ticket-orders")))
            .then([]);
        given::<Cart>(two_items())
            .when(withdraw(Actor::user("ann")))
            .then_refused(CartError::Forbidden);
    }

    #[test]
    fn only_its_user_changes_a_cart() {
        for actor in [Actor::user("bob"), Actor::system("x")] {
            given::<Cart>(two_items())
                .when(ByActor {
                    command: CartCommand::Clear,
                    actor,
                })
                .then_refused(CartError::Forbidden);
        }
    }

    #[test]
    fn every_error_has_a_distinct_code() {
        let errors = [
            CartError::Forbidden,
            CartError::NotOpen,
            CartError::AlreadyInCart {
                concert_id: BEYONCE,
                level_id: String::new(),
            },
            CartError::NotInCart {
                concert_id: BEYONCE,
                level_id: String::new(),
            },
            CartError::InvalidLevelId(String::new()),
            CartError::InvalidQuantity,
            CartError::NotEnoughTickets {
                requested: 1,
                available: 0,
            },
            CartError::InvalidPrice,
            CartError::CurrencyMismatch {
                cart: "USD",
                item: "EUR",
            },
            CartError::Full,
            CartError::Empty,
        ];
        let codes: BTreeSet<&str> = errors.iter().map(CartError::code).collect();
        assert_eq!(codes.len(), errors.len());
    }

    fn every_event() -> Vec<CartEvent> {
        vec![
            created(),
            added(BEYONCE, "regular", 2, "49.99"),
            CartEvent::ItemUpdated {
                user_id: ann(),
                concert_id: BEYONCE,
                level_id: "regular".into(),
                quantity: 3,
            },
            CartEvent::ItemRemoved {
                user_id: ann(),
                concert_id: BEYONCE,
                level_id: "regular".into(),
            },
            CartEvent::Cleared { user_id: ann() },
            CartEvent::Canceled { user_id: ann() },
            confirmed(1),
        ]
    }

    #[test]
    fn events_round_trip_through_type_and_payload() {
        let events = every_event();
        let types: Vec<&str> = events.iter().map(CartEvent::event_type).collect();
        assert_eq!(types, CartEvent::TYPES);
        for event in events {
            let back = CartEvent::from_parts(event.event_type(), event.payload()).unwrap();
            assert_eq!(back, event);
        }
    }

    #[test]
    fn the_type_list_matches_the_variants() {
        let mut from_schema = crate::catalog::schema_types::<CartEvent>();
        from_schema.sort();
        let mut declared: Vec<String> = CartEvent::TYPES.iter().map(|t| t.to_string()).collect();
        declared.sort();
        assert_eq!(from_schema, declared);
    }

    #[test]
    fn a_confirmation_carries_amounts_as_decimal_strings() {
        let payload = confirmed(1).payload();
        assert_eq!(payload["total"]["amount"], "219.98");
        assert_eq!(payload["items"][0]["unit_price"]["amount"], "49.99");
    }
}
