//! Revenue analytics for operators: monthly recurring revenue, active subscriptions per
//! tier, churn in a period, and what kassa charged beside the subscriptions (tier changes'
//! prorations, overage) and paid back (cancellations at once), from read models fed by
//! events: one row per workspace that ever subscribed (a function of the workspace's
//! state), one per charge collected and one per refund granted.

use crate::money::{Currency, Money};
use crate::tier::TierId;
use crate::workspace::{ChargeFor, Workspace};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The read models' names (their partitions), for their projector and their readers.
pub const SUBSCRIPTIONS_VIEW: &str = "revenue#subscriptions";
pub const CHARGES_VIEW: &str = "revenue#charges";
pub const REFUNDS_VIEW: &str = "revenue#refunds";

/// A workspace's subscription as its state has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRow {
    pub workspace_id: Uuid,
    pub tier: TierId,
    pub active: bool,
    /// `YYYY-MM-DD`.
    pub subscribed_on: String,
    pub unsubscribed_on: Option<String>,
}

impl SubscriptionRow {
    /// The row of `ws`, if it ever subscribed.
    pub fn of(ws: &Workspace) -> Option<SubscriptionRow> {
        Some(SubscriptionRow {
            workspace_id: ws.id,
            tier: ws.tier,
            active: ws.billing.is_some(),
            subscribed_on: ws.subscribed_on.clone()?,
            unsubscribed_on: ws.unsubscribed_on.clone(),
        })
    }

    fn active_on(&self, day: &str) -> bool {
        self.subscribed_on.as_str() < day
            && self.unsubscribed_on.as_deref().is_none_or(|end| end >= day)
    }
}

/// One charge kassa collected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRow {
    pub workspace_id: Uuid,
    /// `YYYY-MM-DD`.
    pub on: String,
    pub reason: ChargeFor,
    pub amount: Money,
}

/// A refund granted (a cancellation at once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRow {
    pub workspace_id: Uuid,
    /// `YYYY-MM-DD`.
    pub on: String,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revenue {
    /// The period `[from, to)`, `YYYY-MM-DD`.
    pub from: String,
    pub to: String,
    /// What the active subscriptions bill a month, now.
    pub mrr: Money,
    pub active_subscriptions: BTreeMap<TierId, u64>,
    /// Subscriptions active when the period began, new in it, and ended in it.
    pub active_at_start: u64,
    pub new_subscriptions: u64,
    pub churned: u64,
    /// `churned / active_at_start`, to four places; zero without subscriptions at start.
    pub churn_rate: Decimal,
    /// kassa's own charges collected in the period, by what they were for.
    pub charged: BTreeMap<ChargeFor, Money>,
    pub overage_revenue: Money,
    /// Refunds granted in the period (cancellations at once).
    pub refunded: Money,
}

/// The figures of `[from, to)` (days as `YYYY-MM-DD`), in USD, the tiers' currency.
pub fn figures(
    subscriptions: &[SubscriptionRow],
    charges: &[ChargeRow],
    refunds: &[RefundRow],
    from: &str,
    to: &str,
) -> Revenue {
    let usd = |m: Money| (m.currency == Currency::Usd).then_some(m);
    let zero = Money::zero(Currency::Usd);
    let add = |a: Money, b: Money| a.checked_add(b).unwrap_or(a);
    let mut active_subscriptions = BTreeMap::new();
    let mut mrr = zero;
    for row in subscriptions.iter().filter(|r| r.active) {
        *active_subscriptions.entry(row.tier).or_insert(0) += 1;
        if let Some(price) = usd(row.tier.policy().monthly_price) {
            mrr = add(mrr, price);
        }
    }
    let active_at_start = subscriptions.iter().filter(|r| r.active_on(from)).count() as u64;
    let within = |day: &str| from <= day && day < to;
    let new_subscriptions = subscriptions
        .iter()
        .filter(|r| within(&r.subscribed_on))
        .count() as u64;
    let churned = subscriptions
        .iter()
        .filter(|r| r.unsubscribed_on.as_deref().is_some_and(within))
        .count() as u64;
    let churn_rate = if active_at_start == 0 {
        Decimal::ZERO
    } else {
        (Decimal::from(churned) / Decimal::from(active_at_start))
            .round_dp_with_strategy(4, RoundingStrategy::MidpointAwayFromZero)
    };
    let mut charged = BTreeMap::new();
    for charge in charges.iter().filter(|c| within(&c.on)) {
        if let Some(amount) = usd(charge.amount) {
            let total = charged.entry(charge.reason).or_insert(zero);
            *total = add(*total, amount);
        }
    }
    let overage_revenue = charged.get(&ChargeFor::Overage).copied().unwrap_or(zero);
    let refunded = refunds
        .iter()
        .filter(|r| within(&r.on))
        .filter_map(|r| usd(r.amount))
        .fold(zero, add);
    Revenue {
        from: from.to_owned(),
        to: to.to_owned(),
        mrr,
        active_subscriptions,
        active_at_start,
        new_subscriptions,
        churned,
        churn_rate,
        charged,
        overage_revenue,
        refunded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(n: u128, tier: TierId, on: &str, off: Option<&str>) -> SubscriptionRow {
        SubscriptionRow {
            workspace_id: Uuid::from_u128(n),
            tier,
            active: off.is_none(),
            subscribed_on: on.into(),
            unsubscribed_on: off.map(str::to_owned),
        }
    }

    fn charge(on: &str, reason: ChargeFor, cents: i64) -> ChargeRow {
        ChargeRow {
            workspace_id: Uuid::from_u128(1),
            on: on.into(),
            reason,
            amount: Money::from_minor(cents, Currency::Usd),
        }
    }

    #[test]
    fn mrr_counts_active_subscriptions_and_churn_those_that_ended_in_the_period() {
        let subs = [
            sub(1, TierId::Pro, "2026-10-03", None),
            sub(2, TierId::Pro, "2026-11-20", None),
            sub(3, TierId::Enterprise, "2026-09-01", None),
            sub(4, TierId::Pro, "2026-10-10", Some("2026-11-15")),
            sub(5, TierId::Pro, "2026-10-11", Some("2026-12-02")),
        ];
        let charges = [
            charge("2026-11-05", ChargeFor::Overage, 167),
            charge("2026-11-30", ChargeFor::Overage, 500),
            charge("2026-12-01", ChargeFor::Overage, 900),
            charge("2026-11-16", ChargeFor::TierChange, 22_500),
        ];
        let refunds = [
            RefundRow {
                workspace_id: Uuid::from_u128(4),
                on: "2026-11-15".into(),
                amount: Money::from_minor(2_529, Currency::Usd),
            },
            RefundRow {
                workspace_id: Uuid::from_u128(5),
                on: "2026-12-02".into(),
                amount: Money::from_minor(100, Currency::Usd),
            },
        ];
        let r = figures(&subs, &charges, &refunds, "2026-11-01", "2026-12-01");
        assert_eq!(r.mrr.to_string(), "597.00 USD");
        assert_eq!(
            r.active_subscriptions,
            BTreeMap::from([(TierId::Pro, 2), (TierId::Enterprise, 1)])
        );
        // 1, 3, 4 and 5 were active on 1 November; 4 ended in November.
        assert_eq!(
            (r.active_at_start, r.new_subscriptions, r.churned),
            (4, 1, 1)
        );
        assert_eq!(r.churn_rate, Decimal::new(2_500, 4));
        assert_eq!(r.overage_revenue.to_string(), "6.67 USD");
        assert_eq!(r.charged[&ChargeFor::TierChange].to_string(), "225.00 USD");
        assert_eq!(r.refunded.to_string(), "25.29 USD");
    }

    #[test]
    fn a_period_without_subscriptions_has_no_churn() {
        let r = figures(&[], &[], &[], "2026-11-01", "2026-12-01");
        assert_eq!(
            (r.churn_rate, r.mrr.to_string()),
            (Decimal::ZERO, "0.00 USD".into())
        );
    }
}
