//! Credit packs: credits a workspace buys on top of its tier's monthly allocation.

use crate::money::{Currency, Money};
use rust_decimal::Decimal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditPack {
    pub code: &'static str,
    pub credits: u64,
    /// Net price of one pack; tax is added on the order.
    pub price_minor: i64,
    pub currency: Currency,
}

impl CreditPack {
    pub fn price(&self) -> Money {
        Money::new(Decimal::new(self.price_minor, 2), self.currency)
    }

    pub fn describe(&self) -> String {
        format!("{} credits ({} pack)", self.credits, self.code)
    }
}

/// Larger packs are cheaper per credit.
pub const PACKS: [CreditPack; 3] = [
    CreditPack {
        code: "starter",
        credits: 1_000,
        price_minor: 1_000,
        currency: Currency::Usd,
    },
    CreditPack {
        code: "growth",
        credits: 5_000,
        price_minor: 4_500,
        currency: Currency::Usd,
    },
    CreditPack {
        code: "scale",
        credits: 20_000,
        price_minor: 16_000,
        currency: Currency::Usd,
    },
];

/// Most packs one order may buy: keeps credits and amounts far from overflow.
pub const MAX_PACKS_PER_ORDER: u64 = 100;

pub fn find(code: &str) -> Option<&'static CreditPack> {
    PACKS.iter().find(|p| p.code == code)
}

pub fn codes() -> String {
    PACKS.iter().map(|p| p.code).collect::<Vec<_>>().join(", ")
}
