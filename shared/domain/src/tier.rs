//! Tiers and their pricing policy: monthly credits, signup bonus, the low-balance threshold,
//! how far into overage a workspace may go and what each feature costs in credits.

use crate::money::{Currency, Money};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TierId {
    Free,
    Pro,
    Enterprise,
}

impl TierId {
    pub const ALL: [TierId; 3] = [TierId::Free, TierId::Pro, TierId::Enterprise];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Pro => "pro",
            Self::Enterprise => "enterprise",
        }
    }

    /// Larger tiers rank higher: a move to a higher rank is an upgrade.
    pub fn rank(self) -> usize {
        Self::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The policy of this tier.
    pub fn policy(self) -> &'static TierPolicy {
        match self {
            Self::Free => &FREE,
            Self::Pro => &PRO,
            Self::Enterprise => &ENTERPRISE,
        }
    }
}

impl fmt::Display for TierId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A billable feature and its price in credits per unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeaturePrice {
    pub code: &'static str,
    pub credits_per_unit: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierPolicy {
    pub tier: TierId,
    pub monthly_price: Money,
    pub monthly_credits: u64,
    pub signup_bonus_credits: u64,
    /// Crossing below this balance raises `credits.balance_low` once.
    pub low_balance_threshold: u64,
    /// How far below zero the balance may go; zero means no overage.
    pub overage_allowance: u64,
    /// What one overage credit is billed at.
    pub overage_credit_price: Money,
    /// The most granted credits a period's close carries into the next; the rest expire.
    /// Purchased credits are not counted: they never expire.
    pub rollover_cap: u64,
    pub prices: &'static [FeaturePrice],
}

impl TierPolicy {
    pub fn price_of(&self, feature: &str) -> Option<u64> {
        self.prices
            .iter()
            .find(|p| p.code == feature)
            .map(|p| p.credits_per_unit)
    }

    pub fn allows_overage(&self) -> bool {
        self.overage_allowance > 0
    }
}

const STANDARD_PRICES: &[FeaturePrice] = &[
    FeaturePrice {
        code: "api.call",
        credits_per_unit: 1,
    },
    FeaturePrice {
        code: "export.pdf",
        credits_per_unit: 5,
    },
    FeaturePrice {
        code: "ai.generate",
        credits_per_unit: 10,
    },
];

const ENTERPRISE_PRICES: &[FeaturePrice] = &[
    FeaturePrice {
        code: "api.call",
        credits_per_unit: 1,
    },
    FeaturePrice {
        code: "export.pdf",
        credits_per_unit: 4,
    },
    FeaturePrice {
        code: "ai.generate",
        credits_per_unit: 8,
    },
];

const fn usd(cents: i64) -> Money {
    Money {
        amount: Decimal::from_parts(cents as u32, 0, 0, false, 2),
        currency: Currency::Usd,
    }
}

const fn usd_mills(mills: u32) -> Money {
    Money {
        amount: Decimal::from_parts(mills, 0, 0, false, 3),
        currency: Currency::Usd,
    }
}

static FREE: TierPolicy = TierPolicy {
    tier: TierId::Free,
    monthly_price: usd(0),
    monthly_credits: 1_000,
    signup_bonus_credits: 100,
    low_balance_threshold: 100,
    overage_allowance: 0,
    overage_credit_price: usd_mills(0),
    rollover_cap: 0,
    prices: STANDARD_PRICES,
};

static PRO: TierPolicy = TierPolicy {
    tier: TierId::Pro,
    monthly_price: usd(4_900),
    monthly_credits: 10_000,
    signup_bonus_credits: 1_000,
    low_balance_threshold: 1_000,
    overage_allowance: 2_000,
    overage_credit_price: usd_mills(5),
    rollover_cap: 5_000,
    prices: STANDARD_PRICES,
};

static ENTERPRISE: TierPolicy = TierPolicy {
    tier: TierId::Enterprise,
    monthly_price: usd(49_900),
    monthly_credits: 100_000,
    signup_bonus_credits: 10_000,
    low_balance_threshold: 10_000,
    overage_allowance: 50_000,
    overage_credit_price: usd_mills(3),
    rollover_cap: 50_000,
    prices: ENTERPRISE_PRICES,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tier_prices_the_same_features() {
        for tier in TierId::ALL {
            let codes: Vec<_> = tier.policy().prices.iter().map(|p| p.code).collect();
            assert_eq!(codes, ["api.call", "export.pdf", "ai.generate"], "{tier}");
        }
    }

    #[test]
    fn only_paid_tiers_allow_overage() {
        assert!(!TierId::Free.policy().allows_overage());
        assert!(TierId::Pro.policy().allows_overage());
        assert_eq!(TierId::Pro.policy().monthly_price.to_string(), "49.00 USD");
    }

    #[test]
    fn tiers_parse_from_their_names() {
        assert_eq!(TierId::parse("pro"), Some(TierId::Pro));
        assert_eq!(TierId::parse("gold"), None);
    }
}
