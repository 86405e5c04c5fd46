//! A coupon: a discount rule with its limits, and whether it may be used now. Coupons
//! never change money: they say whether an order is eligible and what comes off it
//! ([`crate::discount`]); the order changes its own total.
//!
//! A coupon is created inactive, activated when its owner is ready, and disabled for good
//! (by its owner, or by the fraud rules). Admins create coupons for anything; an organizer
//! only for a concert of their own (seller scope).
//!
//! Usage counts (total and per user) are hot counters kept beside the coupon and moved by
//! the apply-coupon command's one conditional write; this aggregate holds the limits they
//! are checked against.

use crate::coupon_code::CouponCode;
use crate::discount::{Discount, DiscountError};
use crate::identity::{Actor, Role, UserId};
use crate::money::Money;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// What a coupon can discount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scope {
    /// Credit-pack orders of any workspace.
    CreditPacks,
    /// Ticket orders for one concert; with `levels`, orders whose seats are all of those
    /// levels.
    Concert {
        concert_id: Uuid,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        levels: Vec<String>,
    },
}

/// Whether a coupon shares an order with others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Stacking {
    /// Alone on its order.
    Exclusive,
    /// With other stackable coupons, `max_per_order` in all.
    Stackable { max_per_order: u32 },
}

/// The rule and limits as the coupon's owner set them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Terms {
    pub discount: Discount,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub valid_from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub valid_until: OffsetDateTime,
    /// Uses in all, locked or redeemed.
    pub max_uses: u32,
    pub max_uses_per_user: u32,
    pub min_order: Option<Money>,
    pub first_order_only: bool,
    pub scope: Scope,
    pub stacking: Stacking,
    /// The fraud rule on redemptions: absent, none applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub velocity: Option<Velocity>,
    /// The fraud rule on one payment card behind many accounts: absent, none applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_card: Option<SharedCard>,
}

/// More than `max_redemptions` redemptions within one window of `window_minutes` is
/// suspicious (`coupon.suspicious_usage_detected`, the owner notified); with `disable`,
/// the coupon is disabled as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Velocity {
    pub max_redemptions: u32,
    pub window_minutes: u32,
    #[serde(default)]
    pub disable: bool,
}

/// Redemptions by more than `max_accounts` accounts paid with one card (the same card
/// fingerprint at Stripe) are suspicious: one person behind many accounts, each within
/// its per-user limit. With `disable`, the coupon is disabled as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SharedCard {
    pub max_accounts: u32,
    #[serde(default)]
    pub disable: bool,
}

/// What a fraud rule saw (`coupon.suspicious_usage_detected`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Suspicion {
    Velocity {
        redemptions: u64,
        max_redemptions: u32,
        window_minutes: u32,
        /// The window's start, unix seconds.
        window: i64,
    },
    SharedCard {
        /// The card's fingerprint at the payment provider (not the card number).
        fingerprint: String,
        accounts: u32,
        max_accounts: u32,
    },
}

impl Velocity {
    /// The start (unix seconds) of the window `at` falls in.
    pub fn window_of(&self, at: OffsetDateTime) -> i64 {
        let width = i64::from(self.window_minutes.max(1)) * 60;
        at.unix_timestamp().div_euclid(width) * width
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CouponStatus {
    Inactive,
    Active,
    Disabled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coupon {
    pub coupon_id: Uuid,
    pub code: CouponCode,
    /// Who created it: its owner, who may activate, disable and audit it.
    pub owner: UserId,
    pub terms: Terms,
    pub status: CouponStatus,
    pub disabled_reason: Option<String>,
    /// The last velocity window flagged as suspicious (its start, unix seconds), so a
    /// window is flagged once however many redemptions pass its limit.
    #[serde(default)]
    pub flagged_window: Option<i64>,
    /// The card fingerprints the shared-card rule flagged, each once.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub flagged_cards: std::collections::BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CouponCommand {
    Create {
        coupon_id: Uuid,
        code: CouponCode,
        terms: Terms,
        by: Actor,
        /// The organizer of the concert a concert-scoped coupon is for, as the concert
        /// records it; `None` when the scope names no concert or it does not exist.
        concert_organizer: Option<UserId>,
    },
    Activate {
        by: Actor,
    },
    Disable {
        by: Actor,
        reason: String,
    },
    /// `redemptions` were counted in the velocity window starting at `window`.
    FlagVelocity {
        redemptions: u64,
        window: i64,
    },
    /// `accounts` accounts redeemed the coupon paying with the card `fingerprint`.
    FlagSharedCard {
        fingerprint: String,
        accounts: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "payload")]
pub enum CouponEvent {
    #[serde(rename = "coupon.created")]
    Created {
        coupon_id: Uuid,
        #[schemars(with = "String")]
        code: CouponCode,
        #[schemars(with = "String")]
        owner: UserId,
        terms: Terms,
    },
    #[serde(rename = "coupon.activated")]
    Activated {
        coupon_id: Uuid,
        #[schemars(with = "String")]
        by: UserId,
    },
    #[serde(rename = "coupon.disabled")]
    Disabled {
        coupon_id: Uuid,
        #[schemars(with = "String")]
        by: UserId,
        reason: String,
    },
    #[serde(rename = "coupon.suspicious_usage_detected")]
    SuspiciousUsageDetected {
        coupon_id: Uuid,
        #[schemars(with = "String")]
        owner: UserId,
        reason: String,
        #[serde(flatten)]
        suspicion: Suspicion,
    },
}

impl crate::event::DomainEvent for CouponEvent {
    const CONTEXT: &'static str = "coupons";
    const TYPES: &'static [&'static str] = &[
        "coupon.created",
        "coupon.activated",
        "coupon.disabled",
        "coupon.suspicious_usage_detected",
    ];

    fn event_type(&self) -> &'static str {
        match self {
            Self::Created { .. } => "coupon.created",
            Self::Activated { .. } => "coupon.activated",
            Self::Disabled { .. } => "coupon.disabled",
            Self::SuspiciousUsageDetected { .. } => "coupon.suspicious_usage_detected",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CouponError {
    #[error("the coupon exists already")]
    AlreadyExists,
    #[error("no such coupon")]
    NotFound,
    #[error("only an admin, or the organizer of the concert it is for, may create this coupon")]
    Forbidden,
    #[error("only the coupon's owner or an admin may change it")]
    NotOwner,
    #[error("the coupon is disabled for good")]
    Disabled,
    #[error("the validity window ends before it starts")]
    EmptyWindow,
    #[error("a coupon allows at least one use in all and per user, no more per user than in all")]
    InvalidLimits,
    #[error("a stackable coupon allows 2 to 10 coupons per order")]
    InvalidStacking,
    #[error("a shipping discount is for concerts, whose printed tickets have a delivery fee")]
    ShippingOutOfScope,
    #[error("a reason for disabling is 1 to 200 characters")]
    InvalidReason,
    #[error("a velocity rule allows at least one redemption in a window of 1 to 1440 minutes")]
    InvalidVelocity,
    #[error("a shared-card rule allows at least one account per card")]
    InvalidSharedCard,
    #[error("a minimum order is an amount of zero or more, in whole minor units, at most 999999.99, in the fixed discount's currency")]
    InvalidMinOrder,
    #[error(transparent)]
    Discount(#[from] DiscountError),
}

impl CouponError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::AlreadyExists => "coupon_exists",
            Self::NotFound => "coupon_not_found",
            Self::Forbidden | Self::NotOwner => "forbidden",
            Self::Disabled => "coupon_disabled",
            Self::EmptyWindow => "invalid_window",
            Self::InvalidLimits => "invalid_limits",
            Self::InvalidStacking => "invalid_stacking",
            Self::ShippingOutOfScope => "invalid_discount",
            Self::InvalidReason => "invalid_reason",
            Self::InvalidVelocity => "invalid_velocity",
            Self::InvalidSharedCard => "invalid_shared_card",
            Self::InvalidMinOrder => "invalid_min_order",
            Self::Discount(_) => "invalid_discount",
        }
    }
}

pub fn decide(
    state: Option<&Coupon>,
    command: CouponCommand,
) -> Result<Vec<CouponEvent>, CouponError> {
    match (state, command) {
        (
            None,
            CouponCommand::Create {
                coupon_id,
                code,
                terms,
                by,
                concert_organizer,
            },
        ) => {
            let allowed = match (by.role, &terms.scope) {
                (Role::Admin, _) => true,
                (Role::Organizer, Scope::Concert { .. }) => {
                    concert_organizer.as_ref() == Some(&by.user)
                }
                _ => false,
            };
            if !allowed {
                return Err(CouponError::Forbidden);
            }
            validate(&terms)?;
            Ok(vec![CouponEvent::Created {
                coupon_id,
                code,
                owner: by.user,
                terms,
            }])
        }
        (Some(_), CouponCommand::Create { .. }) => Err(CouponError::AlreadyExists),
        (None, _) => Err(CouponError::NotFound),
        (Some(coupon), CouponCommand::Activate { by }) => {
            may_change(coupon, &by)?;
            match coupon.status {
                CouponStatus::Disabled => Err(CouponError::Disabled),
                CouponStatus::Active => Ok(vec![]),
                CouponStatus::Inactive => Ok(vec![CouponEvent::Activated {
                    coupon_id: coupon.coupon_id,
                    by: by.user,
                }]),
            }
        }
        (
            Some(coupon),
            CouponCommand::FlagVelocity {
                redemptions,
                window,
            },
        ) => Ok(flag(coupon, redemptions, window)),
        (
            Some(coupon),
            CouponCommand::FlagSharedCard {
                fingerprint,
                accounts,
            },
        ) => Ok(flag_card(coupon, fingerprint, accounts)),
        (Some(coupon), CouponCommand::Disable { by, reason }) => {
            // The fraud rules disable on their own (a system actor).
            if by.role != Role::System {
                may_change(coupon, &by)?;
            }
            let reason = reason.trim().to_owned();
            if reason.is_empty() || reason.chars().count() > 200 {
                return Err(CouponError::InvalidReason);
            }
            if coupon.status == CouponStatus::Disabled {
                return Ok(vec![]);
            }
            Ok(vec![CouponEvent::Disabled {
                coupon_id: coupon.coupon_id,
                by: by.user,
                reason,
            }])
        }
    }
}

/// The velocity rule's verdict on `redemptions` counted in `window`: flagged once per
/// window, and disabled too when the rule says so.
fn flag(coupon: &Coupon, redemptions: u64, window: i64) -> Vec<CouponEvent> {
    let Some(rule) = coupon.terms.velocity else {
        return vec![];
    };
    if redemptions <= u64::from(rule.max_redemptions) || coupon.flagged_window >= Some(window) {
        return vec![];
    }
    let reason = format!(
        "{redemptions} redemptions within {} minutes, above the {} allowed",
        rule.window_minutes, rule.max_redemptions
    );
    let suspicion = Suspicion::Velocity {
        redemptions,
        max_redemptions: rule.max_redemptions,
        window_minutes: rule.window_minutes,
        window,
    };
    suspect(coupon, reason, suspicion, rule.disable)
}

/// The shared-card rule's verdict on `accounts` accounts paying with one card: flagged
/// once per card, and disabled too when the rule says so.
fn flag_card(coupon: &Coupon, fingerprint: String, accounts: u32) -> Vec<CouponEvent> {
    let Some(rule) = coupon.terms.shared_card else {
        return vec![];
    };
    if accounts <= rule.max_accounts || coupon.flagged_cards.contains(&fingerprint) {
        return vec![];
    }
    let reason = format!(
        "{accounts} accounts paid with one card, above the {} allowed",
        rule.max_accounts
    );
    let suspicion = Suspicion::SharedCard {
        fingerprint,
        accounts,
        max_accounts: rule.max_accounts,
    };
    suspect(coupon, reason, suspicion, rule.disable)
}

fn suspect(
    coupon: &Coupon,
    reason: String,
    suspicion: Suspicion,
    disable: bool,
) -> Vec<CouponEvent> {
    let mut events = vec![CouponEvent::SuspiciousUsageDetected {
        coupon_id: coupon.coupon_id,
        owner: coupon.owner.clone(),
        reason: reason.clone(),
        suspicion,
    }];
    if disable && coupon.status != CouponStatus::Disabled {
        events.push(CouponEvent::Disabled {
            coupon_id: coupon.coupon_id,
            by: UserId::new("system:fraud"),
            reason: format!("fraud: {reason}"),
        });
    }
    events
}

fn may_change(coupon: &Coupon, by: &Actor) -> Result<(), CouponError> {
    if by.role == Role::Admin || by.user == coupon.owner {
        Ok(())
    } else {
        Err(CouponError::NotOwner)
    }
}

fn validate(terms: &Terms) -> Result<(), CouponError> {
    terms.discount.validate()?;
    if terms.valid_until <= terms.valid_from {
        return Err(CouponError::EmptyWindow);
    }
    if terms.max_uses == 0
        || terms.max_uses_per_user == 0
        || terms.max_uses_per_user > terms.max_uses
    {
        return Err(CouponError::InvalidLimits);
    }
    if let Stacking::Stackable { max_per_order } = terms.stacking {
        if !(2..=10).contains(&max_per_order) {
            return Err(CouponError::InvalidStacking);
        }
    }
    if let Some(rule) = terms.velocity {
        if rule.max_redemptions == 0 || !(1..=1440).contains(&rule.window_minutes) {
            return Err(CouponError::InvalidVelocity);
        }
    }
    if terms.shared_card.is_some_and(|rule| rule.max_accounts == 0) {
        return Err(CouponError::InvalidSharedCard);
    }
    if let Some(minimum) = terms.min_order {
        let other_currency = match terms.discount {
            Discount::Fixed { amount } => amount.currency != minimum.currency,
            _ => false,
        };
        if !minimum.is_price() || other_currency {
            return Err(CouponError::InvalidMinOrder);
        }
    }
    if terms.discount == Discount::Shipping && terms.scope == Scope::CreditPacks {
        return Err(CouponError::ShippingOutOfScope);
    }
    Ok(())
}

pub fn evolve(state: Option<Coupon>, event: &CouponEvent) -> Option<Coupon> {
    match (state, event) {
        (
            None,
            CouponEvent::Created {
                coupon_id,
                code,
                owner,
                terms,
            },
        ) => Some(Coupon {
            coupon_id: *coupon_id,
            code: code.clone(),
            owner: owner.clone(),
            terms: terms.clone(),
            status: CouponStatus::Inactive,
            disabled_reason: None,
            flagged_window: None,
            flagged_cards: Default::default(),
        }),
        (Some(mut c), CouponEvent::Activated { .. }) => {
            c.status = CouponStatus::Active;
            Some(c)
        }
        (Some(mut c), CouponEvent::Disabled { reason, .. }) => {
            c.status = CouponStatus::Disabled;
            c.disabled_reason = Some(reason.clone());
            Some(c)
        }
        (Some(mut c), CouponEvent::SuspiciousUsageDetected { suspicion, .. }) => {
            match suspicion {
                Suspicion::Velocity { window, .. } => c.flagged_window = Some(*window),
                Suspicion::SharedCard { fingerprint, .. } => {
                    c.flagged_cards.insert(fingerprint.clone());
                }
            }
            Some(c)
        }
        (state, _) => state,
    }
}

/// What an order is, as far as eligibility goes: read from the order kassa stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFacts {
    /// `Some(concert)` for a ticket order, `None` for a credit pack.
    pub concert: Option<Uuid>,
    /// The levels the order has seats of (ticket orders).
    pub levels: Vec<String>,
    /// The lines' total before any discount.
    pub amount: Money,
    /// Whether the buyer has paid for an order before.
    pub buyer_has_paid_before: bool,
    /// The delivery fee a shipping discount would waive.
    pub delivery_fee: Money,
}

/// Why an order cannot use a coupon. Kept for the audit; the buyer is told only that the
/// coupon does not apply, so codes cannot be told apart by their errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Ineligible {
    NotActive,
    NotYetValid,
    Expired,
    OutOfScope,
    BelowMinimum,
    NotFirstOrder,
    CurrencyMismatch,
    /// A shipping discount, and no delivery fee on the order.
    NothingToWaive,
}

impl Coupon {
    /// Whether the order `facts` describes may use this coupon at `now` (limits on uses
    /// are checked where they are counted).
    pub fn eligible(&self, facts: &OrderFacts, now: OffsetDateTime) -> Result<(), Ineligible> {
        let terms = &self.terms;
        if self.status != CouponStatus::Active {
            return Err(Ineligible::NotActive);
        }
        if now < terms.valid_from {
            return Err(Ineligible::NotYetValid);
        }
        if now >= terms.valid_until {
            return Err(Ineligible::Expired);
        }
        let in_scope = match (&terms.scope, facts.concert) {
            (Scope::CreditPacks, None) => true,
            // The discount is taken off the whole order, so every seat on it must be one
            // the coupon is for: a coupon for some levels never discounts the others.
            (Scope::Concert { concert_id, levels }, Some(concert)) => {
                *concert_id == concert
                    && (levels.is_empty() || facts.levels.iter().all(|l| levels.contains(l)))
            }
            _ => false,
        };
        if !in_scope {
            return Err(Ineligible::OutOfScope);
        }
        // Locking a use to take nothing off would only spend the coupon.
        if terms.discount == Discount::Shipping && facts.delivery_fee.amount.is_zero() {
            return Err(Ineligible::NothingToWaive);
        }
        if let Some(minimum) = terms.min_order {
            if minimum.currency != facts.amount.currency {
                return Err(Ineligible::CurrencyMismatch);
            }
            if facts.amount.amount < minimum.amount {
                return Err(Ineligible::BelowMinimum);
            }
        }
        if let Discount::Fixed { amount } = terms.discount {
            if amount.currency != facts.amount.currency {
                return Err(Ineligible::CurrencyMismatch);
            }
        }
        if terms.first_order_only && facts.buyer_has_paid_before {
            return Err(Ineligible::NotFirstOrder);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use rust_decimal::Decimal;

    fn eur(amount: &str) -> Money {
        Money::new(amount.parse::<Decimal>().unwrap(), Currency::Eur)
    }

    fn at(day: u8) -> OffsetDateTime {
        time::Date::from_calendar_date(2026, time::Month::December, day)
            .unwrap()
            .midnight()
            .assume_utc()
    }

    fn concert_id() -> Uuid {
        Uuid::from_u128(7)
    }

    fn terms(scope: Scope) -> Terms {
        Terms {
            discount: Discount::Percent {
                percent: Decimal::from(10),
            },
            valid_from: at(1),
            valid_until: at(31),
            max_uses: 50,
            max_uses_per_user: 1,
            min_order: Some(eur("20.00")),
            first_order_only: false,
            scope,
            stacking: Stacking::Exclusive,
            velocity: None,
            shared_card: None,
        }
    }

    fn concert_scope(levels: &[&str]) -> Scope {
        Scope::Concert {
            concert_id: concert_id(),
            levels: levels.iter().map(|l| (*l).to_owned()).collect(),
        }
    }

    fn create(terms: Terms, by: Actor, organizer: Option<&str>) -> CouponCommand {
        CouponCommand::Create {
            coupon_id: Uuid::from_u128(1),
            code: CouponCode::parse("summer-25").unwrap(),
            terms,
            by,
            concert_organizer: organizer.map(UserId::new),
        }
    }

    fn active(terms: Terms) -> Coupon {
        let mut state = None;
        for command in [
            create(terms, Actor::admin("root"), None),
            CouponCommand::Activate {
                by: Actor::admin("root"),
            },
        ] {
            for event in decide(state.as_ref(), command).unwrap() {
                state = evolve(state, &event);
            }
        }
        state.unwrap()
    }

    #[test]
    fn an_organizer_creates_coupons_only_for_their_own_concerts() {
        let olga = || Actor::organizer("olga");
        assert!(decide(
            None,
            create(terms(concert_scope(&[])), olga(), Some("olga"))
        )
        .is_ok());
        assert_eq!(
            decide(None, create(terms(concert_scope(&[])), olga(), Some("pia"))),
            Err(CouponError::Forbidden)
        );
        assert_eq!(
            decide(None, create(terms(Scope::CreditPacks), olga(), None)),
            Err(CouponError::Forbidden)
        );
        assert_eq!(
            decide(
                None,
                create(terms(Scope::CreditPacks), Actor::user("ana"), None)
            ),
            Err(CouponError::Forbidden)
        );
        assert!(decide(
            None,
            create(terms(Scope::CreditPacks), Actor::admin("root"), None)
        )
        .is_ok());
    }

    #[test]
    fn terms_that_cannot_work_are_refused() {
        let admin = || Actor::admin("root");
        let mut window = terms(Scope::CreditPacks);
        window.valid_until = window.valid_from;
        assert_eq!(
            decide(None, create(window, admin(), None)),
            Err(CouponError::EmptyWindow)
        );
        let mut limits = terms(Scope::CreditPacks);
        limits.max_uses_per_user = 51;
        assert_eq!(
            decide(None, create(limits, admin(), None)),
            Err(CouponError::InvalidLimits)
        );
        let mut stacking = terms(Scope::CreditPacks);
        stacking.stacking = Stacking::Stackable { max_per_order: 1 };
        assert_eq!(
            decide(None, create(stacking, admin(), None)),
            Err(CouponError::InvalidStacking)
        );
        let mut shipping = terms(Scope::CreditPacks);
        shipping.discount = Discount::Shipping;
        assert_eq!(
            decide(None, create(shipping, admin(), None)),
            Err(CouponError::ShippingOutOfScope)
        );
        let mut percent = terms(Scope::CreditPacks);
        percent.discount = Discount::Percent {
            percent: Decimal::from(101),
        };
        assert!(matches!(
            decide(None, create(percent, admin(), None)),
            Err(CouponError::Discount(_))
        ));
    }

    #[test]
    fn created_inactive_activated_by_its_owner_disabled_for_good() {
        let mut state = None;
        for event in decide(
            None,
            create(
                terms(concert_scope(&[])),
                Actor::organizer("olga"),
                Some("olga"),
            ),
        )
        .unwrap()
        {
            state = evolve(state, &event);
        }
        assert_eq!(state.as_ref().unwrap().status, CouponStatus::Inactive);
        let pia = CouponCommand::Activate {
            by: Actor::organizer("pia"),
        };
        assert_eq!(decide(state.as_ref(), pia), Err(CouponError::NotOwner));
        let activate = || CouponCommand::Activate {
            by: Actor::organizer("olga"),
        };
        for event in decide(state.as_ref(), activate()).unwrap() {
            state = evolve(state, &event);
        }
        assert_eq!(state.as_ref().unwrap().status, CouponStatus::Active);
        assert_eq!(
            decide(state.as_ref(), activate()),
            Ok(vec![]),
            "activating twice"
        );
        let fraud = CouponCommand::Disable {
            by: Actor::system("coupon-fraud"),
            reason: "fraud".into(),
        };
        for event in decide(state.as_ref(), fraud.clone()).unwrap() {
            state = evolve(state, &event);
        }
        let coupon = state.as_ref().unwrap();
        assert_eq!(
            (coupon.status, coupon.disabled_reason.as_deref()),
            (CouponStatus::Disabled, Some("fraud"))
        );
        assert_eq!(decide(state.as_ref(), fraud), Ok(vec![]), "disabling twice");
        assert_eq!(
            decide(state.as_ref(), activate()),
            Err(CouponError::Disabled)
        );
    }

    #[test]
    fn eligibility_follows_window_scope_minimum_and_first_order() {
        let facts = |levels: &[&str], amount: &str, paid_before: bool| OrderFacts {
            concert: Some(concert_id()),
            levels: levels.iter().map(|l| (*l).to_owned()).collect(),
            amount: eur(amount),
            buyer_has_paid_before: paid_before,
            delivery_fee: eur("0.00"),
        };
        let coupon = active(terms(concert_scope(&["vip"])));
        assert_eq!(
            coupon.eligible(&facts(&["vip"], "80.00", false), at(10)),
            Ok(())
        );
        assert_eq!(
            coupon.eligible(&facts(&["vip"], "80.00", false), at(31)),
            Err(Ineligible::Expired)
        );
        let early = at(1) - time::Duration::seconds(1);
        assert_eq!(
            coupon.eligible(&facts(&["vip"], "80.00", false), early),
            Err(Ineligible::NotYetValid)
        );
        assert_eq!(
            coupon.eligible(&facts(&["floor"], "80.00", false), at(10)),
            Err(Ineligible::OutOfScope)
        );
        // A seat of another level on the order would be discounted too: not in scope.
        assert_eq!(
            coupon.eligible(&facts(&["vip", "floor"], "160.00", false), at(10)),
            Err(Ineligible::OutOfScope)
        );
        // A shipping discount waives a delivery fee, and spends nothing where there is none.
        let mut waiver = terms(concert_scope(&[]));
        waiver.discount = Discount::Shipping;
        let waiver = active(waiver);
        assert_eq!(
            waiver.eligible(&facts(&["vip"], "80.00", false), at(10)),
            Err(Ineligible::NothingToWaive)
        );
        let couriered = OrderFacts {
            delivery_fee: eur("5.00"),
            ..facts(&["vip"], "80.00", false)
        };
        assert_eq!(waiver.eligible(&couriered, at(10)), Ok(()));
        assert_eq!(
            coupon.eligible(&facts(&["vip"], "19.99", false), at(10)),
            Err(Ineligible::BelowMinimum)
        );
        let packs = OrderFacts {
            concert: None,
            ..facts(&[], "80.00", false)
        };
        assert_eq!(coupon.eligible(&packs, at(10)), Err(Ineligible::OutOfScope));

        let mut first = terms(Scope::CreditPacks);
        first.first_order_only = true;
        let first = active(first);
        assert_eq!(
            first.eligible(
                &OrderFacts {
                    concert: None,
                    ..facts(&[], "80.00", false)
                },
                at(10)
            ),
            Ok(())
        );
        assert_eq!(
            first.eligible(
                &OrderFacts {
                    concert: None,
                    ..facts(&[], "80.00", true)
                },
                at(10)
            ),
            Err(Ineligible::NotFirstOrder)
        );
        let dollars = OrderFacts {
            concert: None,
            amount: Money::new(Decimal::from(80), Currency::Usd),
            ..facts(&[], "80.00", false)
        };
        assert_eq!(
            first.eligible(&dollars, at(10)),
            Err(Ineligible::CurrencyMismatch)
        );
    }

    #[test]
    fn an_inactive_coupon_applies_to_nothing() {
        let mut state = None;
        for event in decide(
            None,
            create(terms(Scope::CreditPacks), Actor::admin("root"), None),
        )
        .unwrap()
        {
            state = evolve(state, &event);
        }
        let facts = OrderFacts {
            concert: None,
            levels: vec![],
            amount: eur("80.00"),
            buyer_has_paid_before: false,
            delivery_fee: eur("0.00"),
        };
        assert_eq!(
            state.unwrap().eligible(&facts, at(10)),
            Err(Ineligible::NotActive)
        );
    }

    #[test]
    fn redemptions_above_the_velocity_flag_the_window_once_and_disable_when_told() {
        let admin = || Actor::admin("root");
        let mut bad = terms(Scope::CreditPacks);
        bad.velocity = Some(Velocity {
            max_redemptions: 0,
            window_minutes: 60,
            disable: false,
        });
        assert_eq!(
            decide(None, create(bad, admin(), None)),
            Err(CouponError::InvalidVelocity)
        );
        let mut watched = terms(Scope::CreditPacks);
        let rule = Velocity {
            max_redemptions: 2,
            window_minutes: 60,
            disable: true,
        };
        watched.velocity = Some(rule);
        let events = decide(None, create(watched, admin(), None)).unwrap();
        let coupon = events.iter().fold(None, evolve).unwrap();
        let window = rule.window_of(at(2));
        let flag = |c: &Coupon, n| {
            decide(
                Some(c),
                CouponCommand::FlagVelocity {
                    redemptions: n,
                    window,
                },
            )
            .unwrap()
        };
        assert!(flag(&coupon, 2).is_empty(), "at the limit is fine");
        let flagged = flag(&coupon, 3);
        assert!(matches!(
            flagged.as_slice(),
            [
                CouponEvent::SuspiciousUsageDetected {
                    suspicion: Suspicion::Velocity { redemptions: 3, .. },
                    ..
                },
                CouponEvent::Disabled { .. }
            ]
        ));
        let coupon = flagged.iter().fold(Some(coupon), evolve).unwrap();
        assert_eq!(coupon.status, CouponStatus::Disabled);
        assert!(flag(&coupon, 4).is_empty(), "a window is flagged once");
        assert_eq!(rule.window_of(at(2)) % 3600, 0);
    }

    #[test]
    fn accounts_above_the_shared_card_rule_flag_the_card_once() {
        let admin = || Actor::admin("root");
        let mut bad = terms(Scope::CreditPacks);
        bad.shared_card = Some(SharedCard {
            max_accounts: 0,
            disable: false,
        });
        assert_eq!(
            decide(None, create(bad, admin(), None)),
            Err(CouponError::InvalidSharedCard)
        );
        let mut watched = terms(Scope::CreditPacks);
        watched.shared_card = Some(SharedCard {
            max_accounts: 1,
            disable: false,
        });
        let events = decide(None, create(watched, admin(), None)).unwrap();
        let coupon = events.iter().fold(None, evolve).unwrap();
        let flag = |c: &Coupon, card: &str, accounts| {
            decide(
                Some(c),
                CouponCommand::FlagSharedCard {
                    fingerprint: card.into(),
                    accounts,
                },
            )
            .unwrap()
        };
        assert!(
            flag(&coupon, "fp_a", 1).is_empty(),
            "one account per card is fine"
        );
        let flagged = flag(&coupon, "fp_a", 2);
        assert!(
            matches!(
                flagged.as_slice(),
                [CouponEvent::SuspiciousUsageDetected {
                    suspicion: Suspicion::SharedCard {
                        accounts: 2,
                        max_accounts: 1,
                        ..
                    },
                    ..
                }]
            ),
            "{flagged:?}"
        );
        let coupon = flagged.iter().fold(Some(coupon), evolve).unwrap();
        assert_eq!(coupon.status, CouponStatus::Inactive, "not told to disable");
        assert!(
            flag(&coupon, "fp_a", 3).is_empty(),
            "a card is flagged once"
        );
        assert_eq!(
            flag(&coupon, "fp_b", 2).len(),
            1,
            "another card is another case"
        );
        // The rule's name travels in the payload, beside its figures.
        let payload = serde_json::to_value(&flagged[0]).unwrap();
        assert_eq!(payload["payload"]["rule"], "shared_card");
        assert_eq!(payload["payload"]["fingerprint"], "fp_a");
        let back: CouponEvent = serde_json::from_value(payload).unwrap();
        assert_eq!(back, flagged[0]);
    }
}
