//! A workspace's credit wallet: allocations raise the balance, consumption lowers it.
//!
//! Rules (seed 000): credits needed = the tier's price of the feature × quantity; the balance
//! never goes below zero unless the tier allows overage, and never below minus the allowance;
//! crossing below the tier's threshold raises `credits.balance_low` once per crossing (an
//! allocation that lifts the balance back to the threshold re-arms it); any debit that ends
//! below zero raises `credits.overage` for the part not covered by the balance.

use crate::event::DomainEvent;
use crate::tier::{TierId, TierPolicy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use uuid::Uuid;

/// Largest quantity one request may consume; keeps `credits` far from overflow.
pub const MAX_QUANTITY: u64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wallet {
    pub workspace_id: Uuid,
    pub tier: TierId,
    pub balance: i64,
    /// True while the balance is at or above the threshold, so the next crossing alerts.
    pub low_balance_armed: bool,
    /// Allocation ids already applied (`signup`, `2026-11`, ...): a repeated allocation is a no-op.
    pub allocations: BTreeSet<String>,
}

impl Wallet {
    pub fn policy(&self) -> &'static TierPolicy {
        self.tier.policy()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditCommand {
    Open {
        workspace_id: Uuid,
        tier: TierId,
    },
    Allocate {
        allocation_id: String,
        base: u64,
        bonus: u64,
        reason: AllocationReason,
    },
    Consume {
        consumption_id: Uuid,
        feature: String,
        quantity: u64,
    },
    /// The monthly renewal due on `due` (`YYYY-MM-DD`): the tier's monthly credits, as the
    /// wallet's tier is at renewal time.
    Renew {
        due: String,
    },
    /// Credits bought with a paid order; applied once per order.
    Purchase {
        order_id: Uuid,
        pack: String,
        credits: u64,
    },
    /// Takes back credits of a refunded purchase, once per refund. The balance never goes
    /// below zero for it: what is already spent is recorded as the shortfall. Refused
    /// until the purchase itself is applied: credits never bought cannot be taken back,
    /// and taking them first would let the purchase add them again afterwards.
    ClawBack {
        order_id: Uuid,
        refund_id: String,
        credits: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AllocationReason {
    Signup,
    MonthlyRenewal,
    Purchase,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "payload")]
pub enum CreditEvent {
    #[serde(rename = "credits.wallet_opened")]
    WalletOpened { workspace_id: Uuid, tier: TierId },
    #[serde(rename = "credits.allocated")]
    Allocated {
        workspace_id: Uuid,
        allocation_id: String,
        reason: AllocationReason,
        base: u64,
        bonus: u64,
        total: u64,
        balance_after: i64,
    },
    #[serde(rename = "credits.consumed")]
    Consumed {
        workspace_id: Uuid,
        consumption_id: Uuid,
        feature: String,
        quantity: u64,
        credits: u64,
        balance_after: i64,
    },
    #[serde(rename = "credits.balance_low")]
    BalanceLow {
        workspace_id: Uuid,
        balance: i64,
        threshold: u64,
    },
    #[serde(rename = "credits.purchased")]
    Purchased {
        workspace_id: Uuid,
        order_id: Uuid,
        pack: String,
        credits: u64,
        balance_after: i64,
    },
    #[serde(rename = "credits.clawed_back")]
    ClawedBack {
        workspace_id: Uuid,
        order_id: Uuid,
        refund_id: String,
        requested: u64,
        clawed_back: u64,
        shortfall: u64,
        balance_after: i64,
    },
    #[serde(rename = "credits.overage")]
    Overage {
        workspace_id: Uuid,
        consumption_id: Uuid,
        feature: String,
        overage_credits: u64,
        balance_after: i64,
    },
}

impl DomainEvent for CreditEvent {
    const CONTEXT: &'static str = "credits";
    const TYPES: &'static [&'static str] = &[
        "credits.wallet_opened",
        "credits.allocated",
        "credits.consumed",
        "credits.balance_low",
        "credits.overage",
        "credits.purchased",
        "credits.clawed_back",
    ];

    fn event_type(&self) -> &'static str {
        match self {
            Self::WalletOpened { .. } => "credits.wallet_opened",
            Self::Allocated { .. } => "credits.allocated",
            Self::Consumed { .. } => "credits.consumed",
            Self::BalanceLow { .. } => "credits.balance_low",
            Self::Overage { .. } => "credits.overage",
            Self::Purchased { .. } => "credits.purchased",
            Self::ClawedBack { .. } => "credits.clawed_back",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditError {
    #[error("the wallet is already open")]
    AlreadyOpen,
    #[error("no wallet for this workspace")]
    NoWallet,
    #[error("unknown feature `{0}`; the tier prices: {1}")]
    UnknownFeature(String, String),
    #[error("quantity must be between 1 and {MAX_QUANTITY}")]
    InvalidQuantity,
    #[error("an allocation must add at least one credit")]
    EmptyAllocation,
    #[error("the purchase of order {0} is not applied; nothing of it can be clawed back")]
    PurchaseNotApplied(Uuid),
    #[error(
        "not enough credits: {needed} needed, balance {balance}, overage allowance {allowance}"
    )]
    InsufficientCredits {
        needed: u64,
        balance: i64,
        allowance: u64,
    },
}

impl CreditError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::AlreadyOpen => "wallet_exists",
            Self::NoWallet => "wallet_not_found",
            Self::UnknownFeature(..) => "unknown_feature",
            Self::InvalidQuantity => "invalid_quantity",
            Self::EmptyAllocation => "empty_allocation",
            Self::PurchaseNotApplied(_) => "purchase_not_applied",
            Self::InsufficientCredits { .. } => "insufficient_credits",
        }
    }
}

pub fn decide(
    state: Option<&Wallet>,
    command: CreditCommand,
) -> Result<Vec<CreditEvent>, CreditError> {
    match (state, command) {
        (None, CreditCommand::Open { workspace_id, tier }) => {
            Ok(vec![CreditEvent::WalletOpened { workspace_id, tier }])
        }
        (Some(_), CreditCommand::Open { .. }) => Err(CreditError::AlreadyOpen),
        (None, _) => Err(CreditError::NoWallet),
        (
            Some(wallet),
            CreditCommand::Allocate {
                allocation_id,
                base,
                bonus,
                reason,
            },
        ) => {
            if wallet.allocations.contains(&allocation_id) {
                return Ok(vec![]);
            }
            let total = base.saturating_add(bonus);
            if total == 0 {
                return Err(CreditError::EmptyAllocation);
            }
            Ok(vec![CreditEvent::Allocated {
                workspace_id: wallet.workspace_id,
                allocation_id,
                reason,
                base,
                bonus,
                total,
                balance_after: wallet.balance.saturating_add(credits_i64(total)),
            }])
        }
        (Some(wallet), CreditCommand::Renew { due }) => decide(
            Some(wallet),
            CreditCommand::Allocate {
                allocation_id: format!("renewal-{due}"),
                base: wallet.policy().monthly_credits,
                bonus: 0,
                reason: AllocationReason::MonthlyRenewal,
            },
        ),
        (
            Some(wallet),
            CreditCommand::Purchase {
                order_id,
                pack,
                credits,
            },
        ) => {
            if wallet.allocations.contains(&purchase_key(order_id)) {
                return Ok(vec![]);
            }
            if credits == 0 {
                return Err(CreditError::EmptyAllocation);
            }
            Ok(vec![CreditEvent::Purchased {
                workspace_id: wallet.workspace_id,
                order_id,
                pack,
                credits,
                balance_after: wallet.balance.saturating_add(credits_i64(credits)),
            }])
        }
        (
            Some(wallet),
            CreditCommand::ClawBack {
                order_id,
                refund_id,
                credits,
            },
        ) => {
            if wallet.allocations.contains(&clawback_key(&refund_id)) {
                return Ok(vec![]);
            }
            if !wallet.allocations.contains(&purchase_key(order_id)) {
                return Err(CreditError::PurchaseNotApplied(order_id));
            }
            let available = u64::try_from(wallet.balance.max(0)).unwrap_or(0);
            let clawed_back = credits.min(available);
            Ok(vec![CreditEvent::ClawedBack {
                workspace_id: wallet.workspace_id,
                order_id,
                refund_id,
                requested: credits,
                clawed_back,
                shortfall: credits - clawed_back,
                balance_after: wallet.balance - credits_i64(clawed_back),
            }])
        }
        (
            Some(wallet),
            CreditCommand::Consume {
                consumption_id,
                feature,
                quantity,
            },
        ) => consume(wallet, consumption_id, feature, quantity),
    }
}

fn consume(
    wallet: &Wallet,
    consumption_id: Uuid,
    feature: String,
    quantity: u64,
) -> Result<Vec<CreditEvent>, CreditError> {
    let policy = wallet.policy();
    let Some(unit_price) = policy.price_of(&feature) else {
        let known: Vec<_> = policy.prices.iter().map(|p| p.code).collect();
        return Err(CreditError::UnknownFeature(feature, known.join(", ")));
    };
    if quantity == 0 || quantity > MAX_QUANTITY {
        return Err(CreditError::InvalidQuantity);
    }
    let credits = unit_price * quantity;
    let balance_after = wallet.balance - credits_i64(credits);
    if balance_after < -credits_i64(policy.overage_allowance) {
        return Err(CreditError::InsufficientCredits {
            needed: credits,
            balance: wallet.balance,
            allowance: policy.overage_allowance,
        });
    }
    let workspace_id = wallet.workspace_id;
    let mut events = vec![CreditEvent::Consumed {
        workspace_id,
        consumption_id,
        feature: feature.clone(),
        quantity,
        credits,
        balance_after,
    }];
    let threshold = policy.low_balance_threshold;
    if wallet.low_balance_armed && balance_after < credits_i64(threshold) {
        events.push(CreditEvent::BalanceLow {
            workspace_id,
            balance: balance_after,
            threshold,
        });
    }
    if balance_after < 0 {
        let covered = wallet.balance.max(0);
        events.push(CreditEvent::Overage {
            workspace_id,
            consumption_id,
            feature,
            overage_credits: credits - covered as u64,
            balance_after,
        });
    }
    Ok(events)
}

pub fn evolve(state: Option<Wallet>, event: &CreditEvent) -> Option<Wallet> {
    match (state, event) {
        (None, CreditEvent::WalletOpened { workspace_id, tier }) => Some(Wallet {
            workspace_id: *workspace_id,
            tier: *tier,
            balance: 0,
            low_balance_armed: false,
            allocations: BTreeSet::new(),
        }),
        (
            Some(mut w),
            CreditEvent::Allocated {
                allocation_id,
                balance_after,
                ..
            },
        ) => {
            w.allocations.insert(allocation_id.clone());
            w.balance = *balance_after;
            w.low_balance_armed = w.balance >= credits_i64(w.policy().low_balance_threshold);
            Some(w)
        }
        (
            Some(mut w),
            CreditEvent::Purchased {
                order_id,
                balance_after,
                ..
            },
        ) => {
            w.allocations.insert(purchase_key(*order_id));
            w.balance = *balance_after;
            w.low_balance_armed = w.balance >= credits_i64(w.policy().low_balance_threshold);
            Some(w)
        }
        (
            Some(mut w),
            CreditEvent::ClawedBack {
                refund_id,
                balance_after,
                ..
            },
        ) => {
            w.allocations.insert(clawback_key(refund_id));
            w.balance = *balance_after;
            Some(w)
        }
        (Some(mut w), CreditEvent::Consumed { balance_after, .. }) => {
            w.balance = *balance_after;
            Some(w)
        }
        (Some(mut w), CreditEvent::BalanceLow { .. }) => {
            w.low_balance_armed = false;
            Some(w)
        }
        (state, _) => state,
    }
}

/// Purchases and clawbacks share the wallet's record of applied allocations, under keys
/// that cannot collide with allocation ids (`signup`, `renewal-...`).
fn purchase_key(order_id: Uuid) -> String {
    format!("purchase:{order_id}")
}

fn clawback_key(refund_id: &str) -> String {
    format!("clawback:{refund_id}")
}

/// Credit amounts are bounded far below `i64::MAX` (quantity and prices are capped).
fn credits_i64(credits: u64) -> i64 {
    i64::try_from(credits).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WS: Uuid = Uuid::from_u128(42);
    const C: Uuid = Uuid::from_u128(1);

    fn opened(tier: TierId) -> CreditEvent {
        CreditEvent::WalletOpened {
            workspace_id: WS,
            tier,
        }
    }

    fn allocate(state: Option<&Wallet>, base: u64, bonus: u64) -> Vec<CreditEvent> {
        decide(
            state,
            CreditCommand::Allocate {
                allocation_id: "signup".into(),
                base,
                bonus,
                reason: AllocationReason::Signup,
            },
        )
        .unwrap()
    }

    fn given(events: &[CreditEvent]) -> Wallet {
        events.iter().fold(None, evolve).expect("wallet")
    }

    fn wallet(tier: TierId, balance: u64) -> Wallet {
        let open = given(&[opened(tier)]);
        let alloc = allocate(Some(&open), balance, 0);
        alloc.iter().fold(Some(open), evolve).unwrap()
    }

    fn consume(w: &Wallet, feature: &str, quantity: u64) -> Result<Vec<CreditEvent>, CreditError> {
        decide(
            Some(w),
            CreditCommand::Consume {
                consumption_id: C,
                feature: feature.into(),
                quantity,
            },
        )
    }

    #[test]
    fn allocation_adds_base_and_bonus() {
        let w = given(&[opened(TierId::Pro)]);
        let events = allocate(Some(&w), 10_000, 1_000);
        assert_eq!(
            events,
            vec![CreditEvent::Allocated {
                workspace_id: WS,
                allocation_id: "signup".into(),
                reason: AllocationReason::Signup,
                base: 10_000,
                bonus: 1_000,
                total: 11_000,
                balance_after: 11_000,
            }]
        );
    }

    #[test]
    fn the_same_allocation_twice_adds_nothing() {
        let w = wallet(TierId::Free, 1_100);
        assert_eq!(allocate(Some(&w), 1_000, 100), vec![]);
    }

    #[test]
    fn a_renewal_adds_the_tiers_monthly_credits_once() {
        let w = wallet(TierId::Pro, 50);
        let renew = || CreditCommand::Renew {
            due: "2026-12-21".into(),
        };
        let events = decide(Some(&w), renew()).unwrap();
        assert!(matches!(
            &events[..],
            [CreditEvent::Allocated {
                total: 10_000,
                balance_after: 10_050,
                reason: AllocationReason::MonthlyRenewal,
                ..
            }]
        ));
        let w = events.iter().fold(Some(w), evolve).unwrap();
        assert_eq!(decide(Some(&w), renew()), Ok(vec![]));
    }

    #[test]
    fn consuming_prices_the_feature_by_tier() {
        let w = wallet(TierId::Enterprise, 50_000);
        let events = consume(&w, "ai.generate", 3).unwrap();
        assert_eq!(
            events,
            vec![CreditEvent::Consumed {
                workspace_id: WS,
                consumption_id: C,
                feature: "ai.generate".into(),
                quantity: 3,
                credits: 24,
                balance_after: 49_976,
            }]
        );
    }

    #[test]
    fn unknown_features_and_bad_quantities_are_refused() {
        let w = wallet(TierId::Free, 500);
        assert!(matches!(
            consume(&w, "teleport", 1),
            Err(CreditError::UnknownFeature(f, _)) if f == "teleport"
        ));
        assert_eq!(
            consume(&w, "api.call", 0),
            Err(CreditError::InvalidQuantity)
        );
        assert_eq!(
            consume(&w, "api.call", MAX_QUANTITY + 1),
            Err(CreditError::InvalidQuantity)
        );
    }

    #[test]
    fn free_tier_never_goes_below_zero() {
        let w = wallet(TierId::Free, 30);
        assert_eq!(
            consume(&w, "ai.generate", 4),
            Err(CreditError::InsufficientCredits {
                needed: 40,
                balance: 30,
                allowance: 0
            })
        );
        let events = consume(&w, "ai.generate", 3).unwrap();
        let w = events.iter().fold(Some(w), evolve).unwrap();
        assert_eq!(w.balance, 0);
    }

    #[test]
    fn overage_is_used_up_to_the_allowance_and_reported() {
        let w = wallet(TierId::Pro, 100);
        let events = consume(&w, "api.call", 300).unwrap();
        assert_eq!(
            events.last(),
            Some(&CreditEvent::Overage {
                workspace_id: WS,
                consumption_id: C,
                feature: "api.call".into(),
                overage_credits: 200,
                balance_after: -200,
            })
        );
        let w = events.iter().fold(Some(w), evolve).unwrap();
        // Already in overage: the whole debit is overage.
        let events = consume(&w, "api.call", 1_800).unwrap();
        assert!(matches!(
            events.last(),
            Some(CreditEvent::Overage {
                overage_credits: 1_800,
                balance_after: -2_000,
                ..
            })
        ));
        let w = events.iter().fold(Some(w), evolve).unwrap();
        assert!(matches!(
            consume(&w, "api.call", 1),
            Err(CreditError::InsufficientCredits {
                allowance: 2_000,
                ..
            })
        ));
    }

    #[test]
    fn balance_low_fires_once_per_crossing() {
        // Pro threshold is 1,000.
        let w = wallet(TierId::Pro, 1_005);
        let first = consume(&w, "api.call", 10).unwrap();
        assert_eq!(
            first[1],
            CreditEvent::BalanceLow {
                workspace_id: WS,
                balance: 995,
                threshold: 1_000
            }
        );
        let w = first.iter().fold(Some(w), evolve).unwrap();
        let second = consume(&w, "api.call", 10).unwrap();
        assert_eq!(second.len(), 1, "no second alert below the threshold");

        // An allocation above the threshold re-arms the alert.
        let w = second.iter().fold(Some(w), evolve).unwrap();
        let topped = decide(
            Some(&w),
            CreditCommand::Allocate {
                allocation_id: "2026-12".into(),
                base: 100,
                bonus: 0,
                reason: AllocationReason::MonthlyRenewal,
            },
        )
        .unwrap();
        let w = topped.iter().fold(Some(w), evolve).unwrap();
        assert!(w.low_balance_armed);
        let third = consume(&w, "api.call", 100).unwrap();
        assert!(matches!(third[1], CreditEvent::BalanceLow { .. }));
    }

    #[test]
    fn a_wallet_opened_below_the_threshold_is_not_armed() {
        let w = wallet(TierId::Free, 50);
        assert_eq!(consume(&w, "api.call", 1).unwrap().len(), 1);
    }

    #[test]
    fn consuming_without_a_wallet_is_refused() {
        let err = decide(
            None,
            CreditCommand::Consume {
                consumption_id: C,
                feature: "api.call".into(),
                quantity: 1,
            },
        )
        .unwrap_err();
        assert_eq!(err, CreditError::NoWallet);
    }

    #[test]
    fn events_round_trip_through_type_and_payload() {
        let w = wallet(TierId::Pro, 1_005);
        for event in consume(&w, "api.call", 2_000).unwrap() {
            let back = CreditEvent::from_parts(event.event_type(), event.payload()).unwrap();
            assert_eq!(back, event);
        }
    }
}

/// The day a wallet's monthly credits fall due after those due on `day`, for a wallet
/// that renews on day `anchor` of the month (its signup's): that day of the next month,
/// or the month's last day when it is shorter. The anchor, not `day`, gives the day, so a
/// short month does not move later renewals: 31 January, 28 February, 31 March.
pub fn renewal_after(day: time::Date, anchor: u8) -> time::Date {
    let (year, month) = match day.month() {
        time::Month::December => (day.year() + 1, time::Month::January),
        m => (day.year(), m.next()),
    };
    let last = time::util::days_in_month(month, year);
    time::Date::from_calendar_date(year, month, anchor.clamp(1, last)).unwrap_or(day)
}

#[cfg(test)]
mod renewal_tests {
    use super::renewal_after;
    use time::macros::date;

    #[test]
    fn renewals_fall_on_the_same_day_next_month_clamped_to_its_end() {
        assert_eq!(
            renewal_after(date!(2026 - 11 - 21), 21),
            date!(2026 - 12 - 21)
        );
        assert_eq!(
            renewal_after(date!(2026 - 12 - 15), 15),
            date!(2027 - 01 - 15)
        );
        assert_eq!(
            renewal_after(date!(2027 - 01 - 31), 31),
            date!(2027 - 02 - 28)
        );
        assert_eq!(
            renewal_after(date!(2028 - 01 - 31), 31),
            date!(2028 - 02 - 29)
        );
    }

    #[test]
    fn after_a_short_month_renewals_return_to_the_anchor_day() {
        let mut due = date!(2027 - 01 - 31);
        let mut dues = Vec::new();
        for _ in 0..4 {
            due = renewal_after(due, 31);
            dues.push(due);
        }
        assert_eq!(
            dues,
            [
                date!(2027 - 02 - 28),
                date!(2027 - 03 - 31),
                date!(2027 - 04 - 30),
                date!(2027 - 05 - 31)
            ]
        );
        assert_eq!(
            renewal_after(date!(2027 - 02 - 28), 30),
            date!(2027 - 03 - 30)
        );
    }
}

#[cfg(test)]
mod purchase_tests {
    use super::*;

    fn wallet(balance: i64) -> Wallet {
        Wallet {
            workspace_id: Uuid::from_u128(1),
            tier: TierId::Pro,
            balance,
            low_balance_armed: true,
            allocations: BTreeSet::new(),
        }
    }

    fn apply(w: Wallet, command: CreditCommand) -> (Vec<CreditEvent>, Wallet) {
        let events = decide(Some(&w), command).unwrap();
        let next = events.iter().fold(Some(w), evolve).unwrap();
        (events, next)
    }

    #[test]
    fn a_purchase_adds_credits_once_per_order() {
        let buy = CreditCommand::Purchase {
            order_id: Uuid::from_u128(7),
            pack: "starter".into(),
            credits: 1_000,
        };
        let (events, w) = apply(wallet(50), buy.clone());
        assert_eq!(events.len(), 1);
        assert_eq!(w.balance, 1_050);
        let (again, w) = apply(w, buy);
        assert!(again.is_empty());
        assert_eq!(w.balance, 1_050);
    }

    fn bought(balance: i64, order: u128, credits: u64) -> Wallet {
        let (_, w) = apply(
            wallet(balance),
            CreditCommand::Purchase {
                order_id: Uuid::from_u128(order),
                pack: "starter".into(),
                credits,
            },
        );
        w
    }

    #[test]
    fn a_clawback_stops_at_zero_and_records_the_shortfall_once() {
        let claw = CreditCommand::ClawBack {
            order_id: Uuid::from_u128(7),
            refund_id: "re_1".into(),
            credits: 1_000,
        };
        // 1,000 bought, 700 of them spent since.
        let (events, w) = apply(bought(-700, 7, 1_000), claw.clone());
        let CreditEvent::ClawedBack {
            clawed_back,
            shortfall,
            balance_after,
            ..
        } = &events[0]
        else {
            panic!("{events:?}")
        };
        assert_eq!((*clawed_back, *shortfall, *balance_after), (300, 700, 0));
        let (again, w) = apply(w, claw);
        assert!(again.is_empty());
        assert_eq!(w.balance, 0);
        // In overage already: nothing to take, all of it is shortfall.
        let (events, w) = apply(
            bought(-50, 8, 10),
            CreditCommand::ClawBack {
                order_id: Uuid::from_u128(8),
                refund_id: "re_2".into(),
                credits: 10,
            },
        );
        assert!(matches!(
            events[0],
            CreditEvent::ClawedBack {
                shortfall: 10,
                clawed_back: 0,
                ..
            }
        ));
        assert_eq!(w.balance, -40);
    }

    #[test]
    fn a_clawback_before_its_purchase_is_refused_and_changes_nothing() {
        let claw = CreditCommand::ClawBack {
            order_id: Uuid::from_u128(7),
            refund_id: "re_1".into(),
            credits: 1_000,
        };
        let w = wallet(50);
        assert_eq!(
            decide(Some(&w), claw.clone()),
            Err(CreditError::PurchaseNotApplied(Uuid::from_u128(7)))
        );
        // Another order's purchase does not count.
        let w = bought(50, 8, 1_000);
        assert!(decide(Some(&w), claw.clone()).is_err());
        // Purchase, then clawback: the wallet ends where it started.
        let (_, w) = apply(
            w,
            CreditCommand::Purchase {
                order_id: Uuid::from_u128(7),
                pack: "starter".into(),
                credits: 1_000,
            },
        );
        let (_, w) = apply(w, claw);
        assert_eq!(w.balance, 1_050);
    }
}
