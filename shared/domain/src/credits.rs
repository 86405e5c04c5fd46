//! A workspace's credit wallet: allocations raise the balance, consumption lowers it.
//!
//! Rules (seed 000): credits needed = the tier's price of the feature × quantity; the balance
//! never goes below zero unless the tier allows overage, and never below minus the allowance;
//! a debit that takes the balance from at or above the tier's threshold to below it raises
//! `credits.balance_low` (so once per crossing: only an allocation that lifts the balance back
//! to the threshold makes another crossing possible); any debit that ends below zero raises
//! `credits.overage` for the part not covered by the balance.
//!
//! Allocations, purchases and clawbacks apply once each: not by a set of applied ids in the
//! wallet (it would grow with the wallet's history, and the wallet's head is rewritten on every
//! debit) but by a marker item per [`Marker`], written in the same commit.

use crate::event::DomainEvent;
use crate::money::Money;
use crate::tier::{TierId, TierPolicy};
use rust_decimal::RoundingStrategy;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Largest quantity one request may consume; keeps `credits` far from overflow.
pub const MAX_QUANTITY: u64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wallet {
    pub workspace_id: Uuid,
    pub tier: TierId,
    pub balance: i64,
    /// Credits bought with money that the balance may still hold: they never expire. Debits
    /// spend granted credits first, so at a period's close the balance holds
    /// `min(purchased, balance)` of them and the rest of it is granted credits.
    #[serde(default)]
    pub purchased: u64,
    /// The workspace is suspended for an unpaid charge: debits are refused.
    #[serde(default)]
    pub suspended: bool,
    /// The workspace is deleted: the wallet takes nothing more, and gives nothing.
    #[serde(default)]
    pub closed: bool,
}

impl Wallet {
    pub fn policy(&self) -> &'static TierPolicy {
        self.tier.policy()
    }
}

/// What makes a command apply once: the key of the marker its commit writes (refused when
/// it exists: the command was applied already), and the key of a marker that must exist
/// for it to apply at all (a clawback needs its purchase).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub key: String,
    pub requires: Option<String>,
}

/// The marker of `command`, for the commands that apply once.
pub fn marker(command: &CreditCommand) -> Option<Marker> {
    match command {
        CreditCommand::Allocate { allocation_id, .. } => Some(Marker {
            key: allocation_id.clone(),
            requires: None,
        }),
        CreditCommand::Renew { due, .. } => Some(Marker {
            key: renewal_key(due),
            requires: None,
        }),
        CreditCommand::Purchase { order_id, .. } => Some(Marker {
            key: purchase_key(*order_id),
            requires: None,
        }),
        CreditCommand::ClawBack {
            order_id,
            refund_id,
            ..
        } => Some(Marker {
            key: clawback_key(refund_id),
            requires: Some(purchase_key(*order_id)),
        }),
        CreditCommand::Retier { change_id, .. } => Some(Marker {
            key: retier_key(change_id),
            requires: None,
        }),
        CreditCommand::Open { .. }
        | CreditCommand::Consume { .. }
        | CreditCommand::Suspend
        | CreditCommand::Reactivate
        | CreditCommand::Close => None,
    }
}

/// The balances on which a debit decides the same events as on the balance it was decided
/// on, but for the balance it leaves: `at_least ≤ balance < below`, either bound open. A
/// debit written under this condition needs no exact balance, so concurrent debits do not
/// invalidate each other; only one that crosses a line (the threshold, zero) carries
/// figures of its own and holds for its exact balance alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holds {
    pub at_least: Option<i64>,
    pub below: Option<i64>,
}

impl Holds {
    pub fn contains(&self, balance: i64) -> bool {
        self.at_least.is_none_or(|lo| balance >= lo) && self.below.is_none_or(|hi| balance < hi)
    }
}

/// Where the decision of a debit of `credits` on `balance` holds (see [`Holds`]).
pub fn debit_holds(policy: &TierPolicy, balance: i64, credits: u64) -> Holds {
    let (c, threshold) = (
        credits_i64(credits),
        credits_i64(policy.low_balance_threshold),
    );
    let crosses = balance >= threshold && balance - c < threshold;
    let partly_overage = balance > 0 && balance < c;
    if crosses || partly_overage {
        return Holds {
            at_least: Some(balance),
            below: Some(balance + 1),
        };
    }
    // Between two consecutive lines every rule answers the same.
    let lines = [
        c - credits_i64(policy.overage_allowance),
        1,
        c,
        threshold,
        threshold.saturating_add(c),
    ];
    Holds {
        at_least: lines.iter().copied().filter(|l| *l <= balance).max(),
        below: lines.iter().copied().filter(|l| *l > balance).min(),
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
    /// The monthly renewal due on `due` (`YYYY-MM-DD`), which closes one billing period and
    /// opens the next: the overage of the period closing is charged (the balance back to
    /// zero), granted credits beyond the tier's rollover cap expire, then the wallet moves
    /// to `retier` if a scheduled tier change takes effect with the new period, and the new
    /// period's tier grants its monthly credits.
    Renew {
        due: String,
        retier: Option<(String, TierId)>,
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
    /// Moves the wallet to `tier` (its prices, threshold and overage allowance follow at
    /// once) and adds `top_up` credits: the workspace's tier change `change_id`, once.
    Retier {
        change_id: String,
        tier: TierId,
        top_up: u64,
        /// Granted credits to take back (a cancellation at once): no more than the
        /// balance holds beyond purchased credits.
        take_back: u64,
    },
    /// Follows the workspace's suspension (debits refused) or reactivation.
    Suspend,
    Reactivate,
    /// Follows the workspace's deletion.
    Close,
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
    #[serde(rename = "credits.reallocated")]
    Reallocated {
        workspace_id: Uuid,
        change_id: String,
        from: TierId,
        to: TierId,
        top_up: u64,
        #[serde(default)]
        taken_back: u64,
        balance_after: i64,
    },
    /// Granted credits beyond the tier's rollover cap at a period's close.
    #[serde(rename = "credits.expired")]
    Expired {
        workspace_id: Uuid,
        due: String,
        credits: u64,
        balance_after: i64,
    },
    /// What a period's close carries into the next: granted credits up to the cap, and
    /// the purchased credits left.
    #[serde(rename = "credits.rolled_over")]
    RolledOver {
        workspace_id: Uuid,
        due: String,
        granted: u64,
        purchased: u64,
        balance_after: i64,
    },
    /// The overage a period closed with, billed at the tier's overage price: the balance
    /// starts the next period at zero.
    #[serde(rename = "overage.charged")]
    OverageCharged {
        workspace_id: Uuid,
        due: String,
        tier: TierId,
        credits: u64,
        credit_price: Money,
        amount: Money,
        balance_after: i64,
    },
    #[serde(rename = "credits.wallet_suspended")]
    WalletSuspended { workspace_id: Uuid },
    #[serde(rename = "credits.wallet_reactivated")]
    WalletReactivated { workspace_id: Uuid },
    #[serde(rename = "credits.wallet_closed")]
    WalletClosed { workspace_id: Uuid, balance: i64 },
    /// A period closed at `period_end`: what the renewal's events before it did, in sum.
    #[serde(rename = "billing_cycle.completed")]
    CycleCompleted {
        workspace_id: Uuid,
        /// `YYYY-MM-DD`: the renewal's day.
        period_end: String,
        tier: TierId,
        overage_credits: u64,
        overage_charged: Money,
        expired: u64,
        rolled_over: u64,
        balance_after: i64,
    },
    /// The next period began with its allocation.
    #[serde(rename = "billing_cycle.started")]
    CycleStarted {
        workspace_id: Uuid,
        /// `YYYY-MM-DD`.
        period_start: String,
        tier: TierId,
        allocated: u64,
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
        "credits.reallocated",
        "credits.expired",
        "credits.rolled_over",
        "overage.charged",
        "credits.wallet_suspended",
        "credits.wallet_reactivated",
        "credits.wallet_closed",
        "billing_cycle.completed",
        "billing_cycle.started",
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
            Self::Reallocated { .. } => "credits.reallocated",
            Self::Expired { .. } => "credits.expired",
            Self::RolledOver { .. } => "credits.rolled_over",
            Self::OverageCharged { .. } => "overage.charged",
            Self::WalletSuspended { .. } => "credits.wallet_suspended",
            Self::WalletReactivated { .. } => "credits.wallet_reactivated",
            Self::WalletClosed { .. } => "credits.wallet_closed",
            Self::CycleCompleted { .. } => "billing_cycle.completed",
            Self::CycleStarted { .. } => "billing_cycle.started",
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
    #[error("the workspace is suspended for an unpaid charge; update its payment method")]
    Suspended,
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
            Self::Suspended => "workspace_suspended",
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
        // A deleted workspace's wallet: closing again is nothing, anything else refused.
        (Some(wallet), CreditCommand::Close) if wallet.closed => Ok(vec![]),
        (Some(wallet), _) if wallet.closed => Err(CreditError::NoWallet),
        (
            Some(wallet),
            CreditCommand::Allocate {
                allocation_id,
                base,
                bonus,
                reason,
            },
        ) => {
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
        (Some(wallet), CreditCommand::Renew { due, retier }) => Ok(renew(wallet, due, retier)),
        (Some(wallet), CreditCommand::Close) => Ok((!wallet.closed)
            .then_some(CreditEvent::WalletClosed {
                workspace_id: wallet.workspace_id,
                balance: wallet.balance,
            })
            .into_iter()
            .collect()),
        (Some(wallet), CreditCommand::Suspend) => Ok((!wallet.suspended)
            .then_some(CreditEvent::WalletSuspended {
                workspace_id: wallet.workspace_id,
            })
            .into_iter()
            .collect()),
        (Some(wallet), CreditCommand::Reactivate) => Ok(wallet
            .suspended
            .then_some(CreditEvent::WalletReactivated {
                workspace_id: wallet.workspace_id,
            })
            .into_iter()
            .collect()),
        (
            Some(wallet),
            CreditCommand::Purchase {
                order_id,
                pack,
                credits,
            },
        ) => {
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
            let available = u64::try_from(wallet.balance.max(0)).unwrap_or(0);
            let clawed_back = credits.min(available);
            let balance_after = wallet.balance - credits_i64(clawed_back);
            let mut events = vec![CreditEvent::ClawedBack {
                workspace_id: wallet.workspace_id,
                order_id,
                refund_id,
                requested: credits,
                clawed_back,
                shortfall: credits - clawed_back,
                balance_after,
            }];
            events.extend(crossing(wallet, balance_after));
            Ok(events)
        }
        (
            Some(wallet),
            CreditCommand::Consume {
                consumption_id,
                feature,
                quantity,
            },
        ) => consume(wallet, consumption_id, feature, quantity),
        (
            Some(wallet),
            CreditCommand::Retier {
                change_id,
                tier,
                top_up,
                take_back,
            },
        ) => {
            let granted = wallet
                .balance
                .saturating_sub(credits_i64(wallet.purchased))
                .max(0);
            let taken_back = take_back.min(u64::try_from(granted).unwrap_or(0));
            Ok(vec![CreditEvent::Reallocated {
                workspace_id: wallet.workspace_id,
                change_id,
                from: wallet.tier,
                to: tier,
                top_up,
                taken_back,
                balance_after: wallet
                    .balance
                    .saturating_add(credits_i64(top_up))
                    .saturating_sub(credits_i64(taken_back)),
            }])
        }
    }
}

fn consume(
    wallet: &Wallet,
    consumption_id: Uuid,
    feature: String,
    quantity: u64,
) -> Result<Vec<CreditEvent>, CreditError> {
    if wallet.suspended {
        return Err(CreditError::Suspended);
    }
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
    events.extend(crossing(wallet, balance_after));
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

fn renew(wallet: &Wallet, due: String, retier: Option<(String, TierId)>) -> Vec<CreditEvent> {
    let policy = wallet.policy();
    let workspace_id = wallet.workspace_id;
    let mut events = Vec::new();
    let mut balance = wallet.balance;
    let mut overage = (0, Money::zero(policy.overage_credit_price.currency));
    if balance < 0 {
        let credits = balance.unsigned_abs();
        let price = policy.overage_credit_price;
        let digits = price.currency.minor_digits();
        let amount = Money::new(
            price
                .times(credits)
                .amount
                .round_dp_with_strategy(digits, RoundingStrategy::MidpointAwayFromZero),
            price.currency,
        );
        balance = 0;
        overage = (credits, amount);
        events.push(CreditEvent::OverageCharged {
            workspace_id,
            due: due.clone(),
            tier: wallet.tier,
            credits,
            credit_price: price,
            amount,
            balance_after: balance,
        });
    }
    let held = u64::try_from(balance).unwrap_or(0);
    let purchased = wallet.purchased.min(held);
    let granted = held - purchased;
    let kept = granted.min(policy.rollover_cap);
    if granted > kept {
        balance -= credits_i64(granted - kept);
        events.push(CreditEvent::Expired {
            workspace_id,
            due: due.clone(),
            credits: granted - kept,
            balance_after: balance,
        });
    }
    if kept + purchased > 0 || wallet.purchased > 0 {
        events.push(CreditEvent::RolledOver {
            workspace_id,
            due: due.clone(),
            granted: kept,
            purchased,
            balance_after: balance,
        });
    }
    events.push(CreditEvent::CycleCompleted {
        workspace_id,
        period_end: due.clone(),
        tier: wallet.tier,
        overage_credits: overage.0,
        overage_charged: overage.1,
        expired: granted - kept,
        rolled_over: kept + purchased,
        balance_after: balance,
    });
    let mut tier = wallet.tier;
    if let Some((change_id, to)) = retier {
        events.push(CreditEvent::Reallocated {
            workspace_id,
            change_id,
            from: wallet.tier,
            to,
            top_up: 0,
            taken_back: 0,
            balance_after: balance,
        });
        tier = to;
    }
    let monthly = tier.policy().monthly_credits;
    events.push(CreditEvent::Allocated {
        workspace_id,
        allocation_id: renewal_key(&due),
        reason: AllocationReason::MonthlyRenewal,
        base: monthly,
        bonus: 0,
        total: monthly,
        balance_after: balance.saturating_add(credits_i64(monthly)),
    });
    events.push(CreditEvent::CycleStarted {
        workspace_id,
        period_start: due,
        tier,
        allocated: monthly,
        balance_after: balance.saturating_add(credits_i64(monthly)),
    });
    events
}

/// `credits.balance_low` when going from the wallet's balance to `balance_after` crosses
/// the tier's threshold.
fn crossing(wallet: &Wallet, balance_after: i64) -> Option<CreditEvent> {
    let threshold = wallet.policy().low_balance_threshold;
    let line = credits_i64(threshold);
    (wallet.balance >= line && balance_after < line).then_some(CreditEvent::BalanceLow {
        workspace_id: wallet.workspace_id,
        balance: balance_after,
        threshold,
    })
}

pub fn evolve(state: Option<Wallet>, event: &CreditEvent) -> Option<Wallet> {
    match (state, event) {
        (None, CreditEvent::WalletOpened { workspace_id, tier }) => Some(Wallet {
            workspace_id: *workspace_id,
            tier: *tier,
            balance: 0,
            purchased: 0,
            suspended: false,
            closed: false,
        }),
        (
            Some(mut w),
            CreditEvent::Purchased {
                credits,
                balance_after,
                ..
            },
        ) => {
            w.purchased = w.purchased.saturating_add(*credits);
            w.balance = *balance_after;
            Some(w)
        }
        (
            Some(mut w),
            CreditEvent::ClawedBack {
                clawed_back,
                balance_after,
                ..
            },
        ) => {
            w.purchased = w.purchased.saturating_sub(*clawed_back);
            w.balance = *balance_after;
            Some(w)
        }
        (
            Some(mut w),
            CreditEvent::RolledOver {
                purchased,
                balance_after,
                ..
            },
        ) => {
            w.purchased = *purchased;
            w.balance = *balance_after;
            Some(w)
        }
        (Some(mut w), CreditEvent::WalletSuspended { .. }) => {
            w.suspended = true;
            Some(w)
        }
        (Some(mut w), CreditEvent::WalletReactivated { .. }) => {
            w.suspended = false;
            Some(w)
        }
        (Some(mut w), CreditEvent::WalletClosed { .. }) => {
            w.closed = true;
            Some(w)
        }
        (Some(mut w), CreditEvent::OverageCharged { balance_after, .. }) => {
            w.purchased = 0;
            w.balance = *balance_after;
            Some(w)
        }
        (
            Some(mut w),
            CreditEvent::Allocated { balance_after, .. }
            | CreditEvent::Expired { balance_after, .. }
            | CreditEvent::Consumed { balance_after, .. },
        ) => {
            w.balance = *balance_after;
            Some(w)
        }
        (
            Some(mut w),
            CreditEvent::Reallocated {
                to, balance_after, ..
            },
        ) => {
            w.tier = *to;
            w.balance = *balance_after;
            Some(w)
        }
        (state, _) => state,
    }
}

/// Marker keys of renewals, purchases and clawbacks cannot collide with allocation ids
/// (`signup`, ...) nor with each other. A renewal's is the id its allocation has always had.
fn renewal_key(due: &str) -> String {
    format!("renewal-{due}")
}

fn purchase_key(order_id: Uuid) -> String {
    format!("purchase:{order_id}")
}

fn retier_key(change_id: &str) -> String {
    format!("retier:{change_id}")
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
    fn allocations_renewals_purchases_and_clawbacks_apply_once_by_their_markers() {
        let key = |c: CreditCommand| marker(&c).map(|m| (m.key, m.requires));
        let allocate = |id: &str| CreditCommand::Allocate {
            allocation_id: id.into(),
            base: 1,
            bonus: 0,
            reason: AllocationReason::Signup,
        };
        assert_eq!(key(allocate("signup")), Some(("signup".into(), None)));
        let renew = CreditCommand::Renew {
            due: "2026-12-21".into(),
            retier: None,
        };
        // A renewal and the allocation it makes share one marker.
        assert_eq!(key(renew), key(allocate("renewal-2026-12-21")));
        let order = Uuid::from_u128(7);
        let purchase = key(CreditCommand::Purchase {
            order_id: order,
            pack: "starter".into(),
            credits: 10,
        })
        .unwrap();
        let clawback = key(CreditCommand::ClawBack {
            order_id: order,
            refund_id: "re_1".into(),
            credits: 10,
        })
        .unwrap();
        assert_eq!(clawback.1.as_ref(), Some(&purchase.0));
        assert_ne!(clawback.0, purchase.0);
        assert_ne!(purchase.0, "signup");
        assert_eq!(
            marker(&CreditCommand::Consume {
                consumption_id: C,
                feature: "api.call".into(),
                quantity: 1
            }),
            None
        );
    }

    /// The renewal's events but its cycle's two, which frame every renewal.
    fn renew(w: &Wallet, retier: Option<TierId>) -> Vec<CreditEvent> {
        let (cycle, rest): (Vec<_>, Vec<_>) = renewal(w, retier).into_iter().partition(|e| {
            matches!(
                e,
                CreditEvent::CycleCompleted { .. } | CreditEvent::CycleStarted { .. }
            )
        });
        assert!(
            matches!(
                &cycle[..],
                [
                    CreditEvent::CycleCompleted { .. },
                    CreditEvent::CycleStarted { .. }
                ]
            ),
            "{cycle:?}"
        );
        rest
    }

    fn renewal(w: &Wallet, retier: Option<TierId>) -> Vec<CreditEvent> {
        decide(
            Some(w),
            CreditCommand::Renew {
                due: "2026-12-21".into(),
                retier: retier.map(|t| ("tier@9".into(), t)),
            },
        )
        .unwrap()
    }

    #[test]
    fn a_cycle_completes_with_what_its_close_did_and_the_next_starts_with_its_allocation() {
        // 8,000 granted on pro: 5,000 roll over, 3,000 expire; then a move down to free.
        let w = wallet(TierId::Pro, 8_000);
        let events = renewal(&w, Some(TierId::Free));
        let completed = events
            .iter()
            .position(|e| matches!(e, CreditEvent::CycleCompleted { .. }))
            .unwrap();
        assert!(matches!(
            events[completed - 1],
            CreditEvent::RolledOver { .. }
        ));
        assert_eq!(
            events[completed],
            CreditEvent::CycleCompleted {
                workspace_id: WS,
                period_end: "2026-12-21".into(),
                tier: TierId::Pro,
                overage_credits: 0,
                overage_charged: Money::zero(crate::money::Currency::Usd),
                expired: 3_000,
                rolled_over: 5_000,
                balance_after: 5_000,
            }
        );
        assert_eq!(
            events.last(),
            Some(&CreditEvent::CycleStarted {
                workspace_id: WS,
                period_start: "2026-12-21".into(),
                tier: TierId::Free,
                allocated: 1_000,
                balance_after: 6_000,
            })
        );
    }

    #[test]
    fn a_renewal_rolls_granted_credits_over_up_to_the_cap_and_adds_the_tiers_credits() {
        let w = wallet(TierId::Pro, 50);
        let events = renew(&w, None);
        assert!(
            matches!(
                &events[..],
                [
                    CreditEvent::RolledOver {
                        granted: 50,
                        purchased: 0,
                        balance_after: 50,
                        ..
                    },
                    CreditEvent::Allocated {
                        total: 10_000,
                        balance_after: 10_050,
                        reason: AllocationReason::MonthlyRenewal,
                        ..
                    }
                ]
            ),
            "{events:?}"
        );
        // Pro keeps at most 5,000 granted credits.
        let w = wallet(TierId::Pro, 7_300);
        let events = renew(&w, None);
        assert!(
            matches!(
                &events[..],
                [
                    CreditEvent::Expired {
                        credits: 2_300,
                        balance_after: 5_000,
                        ..
                    },
                    CreditEvent::RolledOver { granted: 5_000, .. },
                    CreditEvent::Allocated {
                        balance_after: 15_000,
                        ..
                    }
                ]
            ),
            "{events:?}"
        );
        // The free tier keeps none.
        let w = wallet(TierId::Free, 400);
        let events = renew(&w, None);
        let w = events.iter().fold(Some(w), evolve).unwrap();
        assert_eq!(w.balance, 1_000, "{events:?}");
    }

    #[test]
    fn purchased_credits_never_expire_and_are_spent_after_granted_ones() {
        let mut w = wallet(TierId::Free, 300);
        let bought = decide(
            Some(&w),
            CreditCommand::Purchase {
                order_id: Uuid::from_u128(5),
                pack: "starter".into(),
                credits: 500,
            },
        )
        .unwrap();
        w = bought.iter().fold(Some(w), evolve).unwrap();
        assert_eq!((w.balance, w.purchased), (800, 500));
        // 450 spent: the 300 granted first, then 150 of the purchased.
        w = consume(&w, "api.call", 450)
            .unwrap()
            .iter()
            .fold(Some(w), evolve)
            .unwrap();
        let events = renew(&w, None);
        assert!(
            matches!(
                &events[..],
                [
                    CreditEvent::RolledOver {
                        granted: 0,
                        purchased: 350,
                        balance_after: 350,
                        ..
                    },
                    CreditEvent::Allocated {
                        balance_after: 1_350,
                        ..
                    }
                ]
            ),
            "{events:?}"
        );
        let w = events.iter().fold(Some(w), evolve).unwrap();
        assert_eq!(w.purchased, 350);
        // A month later the 1,000 granted are unspent and expire; the 350 bought stay.
        let events = renew(&w, None);
        let w = events.iter().fold(Some(w), evolve).unwrap();
        assert_eq!((w.balance, w.purchased), (1_350, 350), "{events:?}");
    }

    #[test]
    fn overage_is_charged_at_the_close_to_the_cent_and_the_next_period_starts_at_zero() {
        let w = wallet(TierId::Pro, 100);
        let w = consume(&w, "api.call", 433)
            .unwrap()
            .iter()
            .fold(Some(w), evolve)
            .unwrap();
        assert_eq!(w.balance, -333);
        let events = renew(&w, Some(TierId::Free));
        let [CreditEvent::OverageCharged {
            credits,
            credit_price,
            amount,
            balance_after,
            tier,
            ..
        }, CreditEvent::Reallocated {
            from: TierId::Pro,
            to: TierId::Free,
            top_up: 0,
            ..
        }, CreditEvent::Allocated {
            total,
            balance_after: opened,
            ..
        }] = &events[..]
        else {
            panic!("{events:?}")
        };
        // 333 × 0.005 = 1.665, half up to the cent, at the tier the overage was run on.
        assert_eq!(
            (
                *credits,
                credit_price.to_string(),
                amount.to_string(),
                *tier
            ),
            (333, "0.005 USD".into(), "1.67 USD".into(), TierId::Pro)
        );
        assert_eq!((*balance_after, *total, *opened), (0, 1_000, 1_000));
        let w = events.iter().fold(Some(w), evolve).unwrap();
        assert_eq!((w.tier, w.balance), (TierId::Free, 1_000));
    }

    /// Every balance a debit's condition admits decides the same events, but for the
    /// balance they leave: so the debit may be written without knowing the exact balance.
    #[test]
    fn a_debit_decides_the_same_events_on_every_balance_it_holds_for() {
        fn shape(events: &[CreditEvent]) -> Vec<CreditEvent> {
            events
                .iter()
                .cloned()
                .map(|mut e| {
                    if let CreditEvent::Consumed { balance_after, .. }
                    | CreditEvent::Overage { balance_after, .. } = &mut e
                    {
                        *balance_after = 0;
                    }
                    e
                })
                .collect()
        }
        for tier in [TierId::Free, TierId::Pro, TierId::Enterprise] {
            let policy = tier.policy();
            let t = policy.low_balance_threshold as i64;
            let probes = [
                -2_500,
                -2_000,
                -1,
                0,
                1,
                7,
                30,
                t - 3,
                t,
                t + 5,
                t + 30,
                50_000,
            ];
            for balance in probes {
                for quantity in [1, 3, 40] {
                    let mut w = wallet(tier, 1);
                    w.balance = balance;
                    let Ok(events) = consume(&w, "api.call", quantity) else {
                        continue;
                    };
                    let credits = policy.price_of("api.call").unwrap() * quantity;
                    let holds = debit_holds(policy, balance, credits);
                    assert!(holds.contains(balance));
                    let lo = holds.at_least.unwrap_or(balance - 100);
                    let hi = holds.below.unwrap_or(balance + 100);
                    for other in (lo..hi).step_by(1.max(((hi - lo) / 50) as usize)) {
                        w.balance = other;
                        let again = consume(&w, "api.call", quantity)
                            .unwrap_or_else(|e| panic!("{tier:?} {balance}→{other}: {e}"));
                        assert_eq!(shape(&again), shape(&events), "{tier:?} {balance}→{other}");
                    }
                }
            }
        }
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
        assert!(w.balance >= 1_000);
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
    fn a_retier_moves_prices_and_limits_at_once_and_tops_up() {
        let w = wallet(TierId::Free, 50);
        assert!(consume(&w, "api.call", 60).is_err());
        let events = decide(
            Some(&w),
            CreditCommand::Retier {
                change_id: "ws-3".into(),
                tier: TierId::Pro,
                top_up: 4_500,
                take_back: 0,
            },
        )
        .unwrap();
        let w = events.iter().fold(Some(w), evolve).unwrap();
        assert_eq!((w.tier, w.balance), (TierId::Pro, 4_550));
        // Pro allows overage down to -2,000.
        assert!(consume(&w, "api.call", 6_000).is_ok());
        assert_eq!(
            marker(&CreditCommand::Retier {
                change_id: "ws-3".into(),
                tier: TierId::Pro,
                top_up: 0,
                take_back: 0,
            })
            .map(|m| m.key),
            Some("retier:ws-3".into())
        );
    }

    #[test]
    fn taking_back_stops_at_the_granted_credits_and_keeps_purchased_ones() {
        let mut w = wallet(TierId::Pro, 1_000);
        w.purchased = 700;
        let take = |w: &Wallet, n| {
            let events = decide(
                Some(w),
                CreditCommand::Retier {
                    change_id: "ws-4".into(),
                    tier: TierId::Free,
                    take_back: n,
                    top_up: 0,
                },
            )
            .unwrap();
            events.iter().fold(Some(w.clone()), evolve).unwrap()
        };
        assert_eq!(take(&w, 200).balance, 800);
        // Only 300 of the 1,000 were granted.
        let w = take(&w, 5_000);
        assert_eq!((w.tier, w.balance), (TierId::Free, 700));
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
            purchased: 0,
            suspended: false,
            closed: false,
        }
    }

    fn apply(w: Wallet, command: CreditCommand) -> (Vec<CreditEvent>, Wallet) {
        let events = decide(Some(&w), command).unwrap();
        let next = events.iter().fold(Some(w), evolve).unwrap();
        (events, next)
    }

    #[test]
    fn a_purchase_adds_its_credits() {
        let buy = CreditCommand::Purchase {
            order_id: Uuid::from_u128(7),
            pack: "starter".into(),
            credits: 1_000,
        };
        let (events, w) = apply(wallet(50), buy);
        assert_eq!(events.len(), 1);
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
        let (events, w) = apply(bought(-700, 7, 1_000), claw);
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
    fn a_clawback_that_crosses_the_threshold_says_so() {
        // Pro's threshold is 1,000.
        let (events, w) = apply(
            bought(200, 7, 1_000),
            CreditCommand::ClawBack {
                order_id: Uuid::from_u128(7),
                refund_id: "re_1".into(),
                credits: 1_000,
            },
        );
        assert_eq!(w.balance, 200);
        assert!(matches!(
            events[..],
            [
                CreditEvent::ClawedBack { .. },
                CreditEvent::BalanceLow { balance: 200, .. }
            ]
        ));
    }
}
