//! The shape every aggregate shares, so that one kernel can load, decide, commit and retry
//! any of them, and one test helper can state any decider's rules as given/when/then.
//!
//! An aggregate's stream is `<NAME>#<id>`; its head holds the state as of the latest event,
//! written under [`Aggregate::SCHEMA`]. A head written under another schema, or one that
//! no longer decodes, is rebuilt from the stream's events, so changing a state's shape
//! needs no migration.

use crate::cart::{self, Cart, CartCommand, CartError, CartEvent};
use crate::concert::{self, Concert, ConcertCommand, ConcertError, ConcertEvent};
use crate::coupon::{self, Coupon, CouponCommand, CouponError, CouponEvent};
use crate::coupon_usage::{
    self, AttemptEvent, Attempts, OrderCoupons, Reject, UsageCommand, UsageError, UsageEvent,
};
use crate::credits::{self, CreditCommand, CreditError, CreditEvent, Wallet};
use crate::event::DomainEvent;
use crate::identity::Actor;
use crate::invoice::{self, Invoice, InvoiceCommand, InvoiceError, InvoiceEvent};
use crate::order::{self, Order, OrderCommand, OrderError, OrderEvent};
use crate::payment::{self, Mismatches, Payment, PaymentCommand, PaymentEvent};
use crate::reservation::{
    self, Reservation, ReservationCommand, ReservationError, ReservationEvent,
};
use crate::subscription::{self, Subscription, SubscriptionCommand, SubscriptionEvent};
use crate::ticket::{self, Ticket, TicketCommand, TicketError, TicketEvent};
/// Callers named it from here before the user module owned its commands.
pub use crate::user::UserCommand;
use crate::user::{self, User, UserError, UserEvent};
use crate::workspace::{self, Workspace, WorkspaceCommand, WorkspaceError, WorkspaceEvent};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::convert::Infallible;
use std::fmt::Display;
use uuid::Uuid;

pub trait Aggregate: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The stream's prefix: `Wallet` in `Wallet#<workspace id>`.
    const NAME: &'static str;

    /// The shape of the state kept in the head. Bump it when that shape changes.
    const SCHEMA: u32 = 1;

    /// What names one instance: a UUID, or a provider's id (`pi_...`).
    type Id: Display + ?Sized + Sync;
    type Command: Clone + Send + Sync;
    type Event: DomainEvent + Send + Sync;
    type Error: std::error::Error + Send + Sync;

    fn decide(
        state: Option<&Self>,
        command: Self::Command,
    ) -> Result<Vec<Self::Event>, Self::Error>;

    fn evolve(state: Option<Self>, event: &Self::Event) -> Option<Self>;

    /// String sets written beside the state on the head, so that a commit elsewhere can
    /// test them inside its own transaction (a workspace's members, say). Never empty
    /// sets: DynamoDB has none.
    fn head_sets(&self) -> Vec<(&'static str, Vec<String>)> {
        Vec::new()
    }

    /// Whether the head is a hot counter: the state's figure (a balance) kept as a number
    /// beside the state, so a debit moves it with one conditional update, and the head
    /// carrying the events each write records (kassa_store's `counter` module).
    const COUNTER: bool = false;

    /// The figure a counter head keeps beside the state.
    fn counter(&self) -> i64 {
        0
    }

    /// What a counter's steps are decided on besides the figure (a wallet's tier: its
    /// prices and limits), written beside the state so a step decided on a remembered
    /// state can require it unchanged.
    fn terms(&self) -> Option<String> {
        None
    }

    /// Puts the counter's current value into a state read from the head.
    fn set_counter(&mut self, _value: i64) {}

    /// The aggregate (same id) whose member set a counter head mirrors, so that a debit's
    /// one condition can test membership.
    const MIRRORS: Option<&'static str> = None;

    /// The apply-once markers a head written under an earlier schema kept in its state.
    fn legacy_markers(_state: &serde_json::Value) -> Vec<String> {
        Vec::new()
    }
}

/// Schema 2: the balance is the head's counter, and applied allocations are marker items
/// rather than a set in the state (schema 1).
impl Aggregate for Wallet {
    const NAME: &'static str = "Wallet";
    const SCHEMA: u32 = 2;
    const COUNTER: bool = true;
    const MIRRORS: Option<&'static str> = Some("Workspace");
    type Id = Uuid;
    type Command = CreditCommand;
    type Event = CreditEvent;
    type Error = CreditError;

    fn decide(
        state: Option<&Self>,
        command: CreditCommand,
    ) -> Result<Vec<CreditEvent>, CreditError> {
        credits::decide(state, command)
    }

    fn evolve(state: Option<Self>, event: &CreditEvent) -> Option<Self> {
        credits::evolve(state, event)
    }

    fn counter(&self) -> i64 {
        self.balance
    }

    fn terms(&self) -> Option<String> {
        Some(match (self.closed, self.suspended) {
            (true, _) => format!("{}:closed", self.tier),
            (false, true) => format!("{}:suspended", self.tier),
            (false, false) => self.tier.as_str().to_owned(),
        })
    }

    fn set_counter(&mut self, value: i64) {
        self.balance = value;
    }

    fn legacy_markers(state: &serde_json::Value) -> Vec<String> {
        state["allocations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|key| key.as_str().map(str::to_owned))
            .collect()
    }
}

/// A workspace command and who gives it: the decider checks rights itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByActor<C> {
    pub command: C,
    pub actor: Actor,
}

/// The head's member set, tested by `contains(members, :user)` in other commits.
pub const MEMBERS: &str = "members";

impl Aggregate for Workspace {
    const NAME: &'static str = "Workspace";
    type Id = Uuid;
    type Command = ByActor<WorkspaceCommand>;
    type Event = WorkspaceEvent;
    type Error = WorkspaceError;

    fn decide(
        state: Option<&Self>,
        command: ByActor<WorkspaceCommand>,
    ) -> Result<Vec<WorkspaceEvent>, WorkspaceError> {
        workspace::decide(state, command.command, &command.actor)
    }

    fn evolve(state: Option<Self>, event: &WorkspaceEvent) -> Option<Self> {
        workspace::evolve(state, event)
    }

    fn head_sets(&self) -> Vec<(&'static str, Vec<String>)> {
        vec![(
            MEMBERS,
            self.members().map(|u| u.as_str().to_owned()).collect(),
        )]
    }
}

impl Aggregate for Order {
    const NAME: &'static str = "Order";
    type Id = Uuid;
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;

    fn decide(state: Option<&Self>, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        order::decide(state, command)
    }

    fn evolve(state: Option<Self>, event: &OrderEvent) -> Option<Self> {
        order::evolve(state, event)
    }
}

/// One stream per provider payment intent (`Payment#pi_...`).
impl Aggregate for Payment {
    const NAME: &'static str = "Payment";
    type Id = str;
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = Infallible;

    fn decide(
        state: Option<&Self>,
        command: PaymentCommand,
    ) -> Result<Vec<PaymentEvent>, Infallible> {
        Ok(payment::decide(state, command))
    }

    fn evolve(state: Option<Self>, event: &PaymentEvent) -> Option<Self> {
        payment::evolve(state, event)
    }
}

/// Reports about a provider payment intent that contradict kassa's record of its order
/// (`PaymentMismatch#pi_...`): each command is a `payment.mismatched` to record as it is.
impl Aggregate for Mismatches {
    const NAME: &'static str = "PaymentMismatch";
    type Id = str;
    type Command = PaymentEvent;
    type Event = PaymentEvent;
    type Error = Infallible;

    fn decide(_: Option<&Self>, mismatch: PaymentEvent) -> Result<Vec<PaymentEvent>, Infallible> {
        Ok(vec![mismatch])
    }

    fn evolve(state: Option<Self>, event: &PaymentEvent) -> Option<Self> {
        payment::tally(state, event)
    }
}

/// One stream per provider subscription (`Subscription#sub_...`).
impl Aggregate for Subscription {
    const NAME: &'static str = "Subscription";
    type Id = str;
    type Command = SubscriptionCommand;
    type Event = SubscriptionEvent;
    type Error = Infallible;

    fn decide(
        state: Option<&Self>,
        command: SubscriptionCommand,
    ) -> Result<Vec<SubscriptionEvent>, Infallible> {
        Ok(subscription::decide(state, command))
    }

    fn evolve(state: Option<Self>, event: &SubscriptionEvent) -> Option<Self> {
        subscription::evolve(state, event)
    }
}

impl Aggregate for Invoice {
    const NAME: &'static str = "Invoice";
    type Id = Uuid;
    type Command = InvoiceCommand;
    type Event = InvoiceEvent;
    type Error = InvoiceError;

    fn decide(
        state: Option<&Self>,
        command: InvoiceCommand,
    ) -> Result<Vec<InvoiceEvent>, InvoiceError> {
        invoice::decide(state, command)
    }

    fn evolve(state: Option<Self>, event: &InvoiceEvent) -> Option<Self> {
        invoice::evolve(state, event)
    }
}

/// A concert's organizer or an operator changes it; the decider checks who.
impl Aggregate for Concert {
    const NAME: &'static str = "Concert";
    type Id = Uuid;
    type Command = ByActor<ConcertCommand>;
    type Event = ConcertEvent;
    type Error = ConcertError;

    fn decide(
        state: Option<&Self>,
        command: ByActor<ConcertCommand>,
    ) -> Result<Vec<ConcertEvent>, ConcertError> {
        concert::decide(state, command.command, &command.actor)
    }

    fn evolve(state: Option<Self>, event: &ConcertEvent) -> Option<Self> {
        concert::evolve(state, event)
    }
}

/// A ticket order's reservation, named by the order's id.
impl Aggregate for Reservation {
    const NAME: &'static str = "Reservation";
    type Id = Uuid;
    type Command = ReservationCommand;
    type Event = ReservationEvent;
    type Error = ReservationError;

    fn decide(
        state: Option<&Self>,
        command: ReservationCommand,
    ) -> Result<Vec<ReservationEvent>, ReservationError> {
        reservation::decide(state, command)
    }

    fn evolve(state: Option<Self>, event: &ReservationEvent) -> Option<Self> {
        reservation::evolve(state, event)
    }
}

/// One cart per user, named by the user's id (`Cart#<user id>`): confirming or canceling
/// empties it and the stream goes on with the next.
impl Aggregate for Cart {
    const NAME: &'static str = "Cart";
    type Id = str;
    type Command = ByActor<CartCommand>;
    type Event = CartEvent;
    type Error = CartError;

    fn decide(
        state: Option<&Self>,
        command: ByActor<CartCommand>,
    ) -> Result<Vec<CartEvent>, CartError> {
        cart::decide(state, command.command, &command.actor)
    }

    fn evolve(state: Option<Self>, event: &CartEvent) -> Option<Self> {
        cart::evolve(state, event)
    }
}

/// A promotion, named by its code as kassa keeps it (`Promotion#TRY-PRO`).
impl Aggregate for crate::promotion::Promotion {
    const NAME: &'static str = "Promotion";
    type Id = str;
    type Command = ByActor<crate::promotion::PromotionCommand>;
    type Event = crate::promotion::PromotionEvent;
    type Error = crate::promotion::PromotionError;

    fn decide(
        state: Option<&Self>,
        command: ByActor<crate::promotion::PromotionCommand>,
    ) -> Result<Vec<crate::promotion::PromotionEvent>, crate::promotion::PromotionError> {
        crate::promotion::decide(state, command.command, &command.actor)
    }

    fn evolve(state: Option<Self>, event: &crate::promotion::PromotionEvent) -> Option<Self> {
        crate::promotion::evolve(state, event)
    }
}

/// A user's record, named by their id (`User#<sub>`). Schema 2 added the profile and
/// role; heads of schema 1 (deletion only) are rebuilt from their events.
impl Aggregate for User {
    const NAME: &'static str = "User";
    const SCHEMA: u32 = 2;
    type Id = str;
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;

    fn decide(state: Option<&Self>, command: UserCommand) -> Result<Vec<UserEvent>, UserError> {
        user::decide(state, command)
    }

    fn evolve(state: Option<Self>, event: &UserEvent) -> Option<Self> {
        user::evolve(state, event)
    }
}

/// One stream per ticket (`Ticket#<id>`), its id derived from its order and seat.
impl Aggregate for Ticket {
    const NAME: &'static str = "Ticket";
    type Id = Uuid;
    type Command = TicketCommand;
    type Event = TicketEvent;
    type Error = TicketError;

    fn decide(
        state: Option<&Self>,
        command: TicketCommand,
    ) -> Result<Vec<TicketEvent>, TicketError> {
        ticket::decide(state, command)
    }

    fn evolve(state: Option<Self>, event: &TicketEvent) -> Option<Self> {
        ticket::evolve(state, event)
    }
}

/// A coupon's rule and limits (`Coupon#<id>`); its use counts are lock items beside it.
impl Aggregate for Coupon {
    const NAME: &'static str = "Coupon";
    type Id = Uuid;
    type Command = CouponCommand;
    type Event = CouponEvent;
    type Error = CouponError;

    fn decide(
        state: Option<&Self>,
        command: CouponCommand,
    ) -> Result<Vec<CouponEvent>, CouponError> {
        coupon::decide(state, command)
    }

    fn evolve(state: Option<Self>, event: &CouponEvent) -> Option<Self> {
        coupon::evolve(state, event)
    }
}

/// The coupon usages of one order, named by the order's id (`CouponUsage#<order id>`).
impl Aggregate for OrderCoupons {
    const NAME: &'static str = "CouponUsage";
    type Id = Uuid;
    type Command = UsageCommand;
    type Event = UsageEvent;
    type Error = UsageError;

    fn decide(state: Option<&Self>, command: UsageCommand) -> Result<Vec<UsageEvent>, UsageError> {
        coupon_usage::decide(state, command)
    }

    fn evolve(state: Option<Self>, event: &UsageEvent) -> Option<Self> {
        coupon_usage::evolve(state, event)
    }
}

/// A buyer's refused coupon codes (`CouponAttempts#<user id>`).
impl Aggregate for Attempts {
    const NAME: &'static str = "CouponAttempts";
    type Id = str;
    type Command = Reject;
    type Event = AttemptEvent;
    type Error = Infallible;

    fn decide(_: Option<&Self>, command: Reject) -> Result<Vec<AttemptEvent>, Infallible> {
        Ok(coupon_usage::reject(command))
    }

    fn evolve(state: Option<Self>, event: &AttemptEvent) -> Option<Self> {
        coupon_usage::evolve_attempts(state, event)
    }
}
