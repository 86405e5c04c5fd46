//! What coupons take off an order, computed from the order as kassa stored it, never from a
//! client's total. A discount is taken off the order's lines (percent or fixed) or off its
//! delivery fee (shipping), spread over the lines so that the line discounts sum exactly to
//! the order's, and tax is computed on what is left. Nothing here goes below zero: a fixed
//! discount larger than what is left takes what is left.
//!
//! Several coupons on one order (stacking) apply in the order given, each to what the ones
//! before it left: a percent after a fixed discount is a percent of the reduced amount, so
//! the result never depends on rounding the same cent twice, and the sum never passes the
//! lines' total.

use crate::money::Money;
use crate::order::tax_on;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// What one coupon takes off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Discount {
    /// A percentage of the lines, above 0 and at most 100.
    Percent {
        #[schemars(with = "String")]
        percent: Decimal,
    },
    /// An amount off the lines, in the order's currency.
    Fixed { amount: Money },
    /// The delivery fee waived (printed tickets sent by courier).
    Shipping,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscountError {
    #[error("a percentage must be above 0 and at most 100, not {0}")]
    InvalidPercent(Decimal),
    #[error(
        "a fixed discount must be above zero and at most 999999.99, in whole minor units, not {0}"
    )]
    InvalidAmount(Money),
    #[error("the discount is in {discount}, the order in {order}")]
    CurrencyMismatch {
        discount: &'static str,
        order: &'static str,
    },
    #[error("an order needs at least one line")]
    NoLines,
}

impl Discount {
    /// Whether the discount can be offered at all, whatever order it meets.
    pub fn validate(self) -> Result<(), DiscountError> {
        match self {
            Self::Percent { percent }
                if percent <= Decimal::ZERO || percent > Decimal::ONE_HUNDRED =>
            {
                Err(DiscountError::InvalidPercent(percent))
            }
            Self::Fixed { amount } if amount.amount <= Decimal::ZERO || !amount.is_price() => {
                Err(DiscountError::InvalidAmount(amount))
            }
            _ => Ok(()),
        }
    }
}

/// An order's amounts before any discount: its lines and its delivery fee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gross {
    pub lines: Vec<Money>,
    /// Zero when the delivery costs nothing.
    pub delivery: Money,
    /// Tax as a fraction (0.20 for 20 %).
    pub tax_rate: Decimal,
}

/// The order's amounts after its discounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Priced {
    /// Per coupon, in the order given: what it took off (lines and delivery together).
    pub discounts: Vec<Money>,
    /// Per line: what the discounts took off it; sums exactly to the lines' discount.
    pub line_discounts: Vec<Money>,
    /// The lines after their discounts.
    pub subtotal: Money,
    /// The delivery fee after a shipping discount.
    pub delivery: Money,
    /// On `subtotal + delivery`.
    pub tax: Money,
    pub total: Money,
}

/// Prices `gross` with `discounts` applied in order.
pub fn apply(gross: &Gross, discounts: &[Discount]) -> Result<Priced, DiscountError> {
    let Some(first) = gross.lines.first() else {
        return Err(DiscountError::NoLines);
    };
    let currency = first.currency;
    for amount in gross.lines.iter().chain([&gross.delivery]) {
        if amount.currency != currency {
            return Err(DiscountError::CurrencyMismatch {
                discount: amount.currency.code(),
                order: currency.code(),
            });
        }
    }
    let lines_total = Money::new(gross.lines.iter().map(|l| l.amount).sum(), currency);
    let mut lines_left = lines_total.amount;
    let mut delivery_left = gross.delivery.amount;
    let mut taken = Vec::with_capacity(discounts.len());
    for discount in discounts {
        discount.validate()?;
        let off = match *discount {
            Discount::Percent { percent } => {
                let off = (lines_left * percent / Decimal::ONE_HUNDRED).round_dp_with_strategy(
                    currency.minor_digits(),
                    RoundingStrategy::MidpointAwayFromZero,
                );
                let off = off.min(lines_left);
                lines_left -= off;
                off
            }
            Discount::Fixed { amount } => {
                if amount.currency != currency {
                    return Err(DiscountError::CurrencyMismatch {
                        discount: amount.currency.code(),
                        order: currency.code(),
                    });
                }
                let off = amount.amount.min(lines_left);
                lines_left -= off;
                off
            }
            Discount::Shipping => {
                let off = delivery_left;
                delivery_left = Decimal::ZERO;
                off
            }
        };
        taken.push(Money::new(off, currency));
    }
    let lines_off = Money::new(lines_total.amount - lines_left, currency);
    let weights: Vec<Decimal> = gross.lines.iter().map(|l| l.amount).collect();
    let line_discounts = lines_off.apportion(&weights);
    let subtotal = Money::new(lines_left, currency);
    let delivery = Money::new(delivery_left, currency);
    let base = Money::new(subtotal.amount + delivery.amount, currency);
    let tax = tax_on(base, gross.tax_rate);
    Ok(Priced {
        discounts: taken,
        line_discounts,
        subtotal,
        delivery,
        tax,
        // Neither part is below zero: each discount takes at most what is left.
        total: Money::new(base.amount + tax.amount, currency),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use proptest::prelude::*;

    fn eur(amount: &str) -> Money {
        Money::new(amount.parse().unwrap(), Currency::Eur)
    }

    fn gross(lines: &[&str], delivery: &str, tax: &str) -> Gross {
        Gross {
            lines: lines.iter().map(|l| eur(l)).collect(),
            delivery: eur(delivery),
            tax_rate: tax.parse().unwrap(),
        }
    }

    fn percent(p: &str) -> Discount {
        Discount::Percent {
            percent: p.parse().unwrap(),
        }
    }

    #[test]
    fn a_third_off_three_lines_sums_to_the_cent() {
        let priced = apply(
            &gross(&["10.00", "10.00", "10.01"], "0.00", "0"),
            &[percent("33")],
        )
        .unwrap();
        // 33 % of 30.01 = 9.9033 → 9.90, spread 3.30 / 3.30 / 3.30 by largest remainder.
        assert_eq!(priced.discounts, vec![eur("9.90")]);
        assert_eq!(
            priced.line_discounts,
            vec![eur("3.30"), eur("3.30"), eur("3.30")]
        );
        assert_eq!(priced.subtotal, eur("20.11"));
        assert_eq!(priced.total, eur("20.11"));
    }

    #[test]
    fn a_fixed_discount_above_the_total_makes_it_zero_never_negative() {
        let fixed = Discount::Fixed {
            amount: eur("500.00"),
        };
        let priced = apply(&gross(&["80.00", "49.50"], "0.00", "0.20"), &[fixed]).unwrap();
        assert_eq!(priced.discounts, vec![eur("129.50")]);
        assert_eq!(priced.line_discounts, vec![eur("80.00"), eur("49.50")]);
        assert_eq!(
            (priced.subtotal, priced.tax, priced.total),
            (eur("0.00"), eur("0.00"), eur("0.00"))
        );
    }

    #[test]
    fn tax_is_on_the_discounted_base() {
        let priced = apply(&gross(&["100.00"], "0.00", "0.20"), &[percent("10")]).unwrap();
        assert_eq!(priced.subtotal, eur("90.00"));
        assert_eq!(priced.tax, eur("18.00"));
        assert_eq!(priced.total, eur("108.00"));
    }

    #[test]
    fn shipping_waives_the_delivery_fee_and_leaves_the_lines() {
        let priced = apply(&gross(&["80.00"], "7.50", "0.10"), &[Discount::Shipping]).unwrap();
        assert_eq!(priced.discounts, vec![eur("7.50")]);
        assert_eq!(priced.line_discounts, vec![eur("0.00")]);
        assert_eq!(
            (priced.delivery, priced.tax, priced.total),
            (eur("0.00"), eur("8.00"), eur("88.00"))
        );
    }

    #[test]
    fn stacked_discounts_apply_to_what_the_earlier_ones_left() {
        let fixed = Discount::Fixed {
            amount: eur("20.00"),
        };
        let priced = apply(&gross(&["100.00"], "0.00", "0"), &[fixed, percent("50")]).unwrap();
        assert_eq!(priced.discounts, vec![eur("20.00"), eur("40.00")]);
        assert_eq!(priced.total, eur("40.00"));
    }

    #[test]
    fn refuses_what_cannot_be_offered_or_does_not_match_the_order() {
        let lines = gross(&["10.00"], "0.00", "0");
        assert!(matches!(
            apply(&lines, &[percent("0")]),
            Err(DiscountError::InvalidPercent(_))
        ));
        assert!(matches!(
            apply(&lines, &[percent("100.5")]),
            Err(DiscountError::InvalidPercent(_))
        ));
        let cents = Discount::Fixed {
            amount: eur("0.005"),
        };
        assert!(matches!(
            apply(&lines, &[cents]),
            Err(DiscountError::InvalidAmount(_))
        ));
        let dollars = Discount::Fixed {
            amount: Money::new(Decimal::ONE, Currency::Usd),
        };
        assert!(matches!(
            apply(&lines, &[dollars]),
            Err(DiscountError::CurrencyMismatch { .. })
        ));
        assert_eq!(
            apply(&gross(&[], "0.00", "0"), &[]),
            Err(DiscountError::NoLines)
        );
    }

    fn cents(max: i64) -> impl Strategy<Value = Money> {
        (0..=max).prop_map(|c| Money::new(Decimal::new(c, 2), Currency::Eur))
    }

    fn discount() -> impl Strategy<Value = Discount> {
        prop_oneof![
            (1..=10_000i64).prop_map(|bp| Discount::Percent {
                percent: Decimal::new(bp, 2)
            }),
            (1..=500_000i64).prop_map(|c| Discount::Fixed {
                amount: Money::new(Decimal::new(c, 2), Currency::Eur)
            }),
            Just(Discount::Shipping),
        ]
    }

    proptest! {
        #[test]
        fn line_discounts_sum_exactly_and_nothing_goes_negative(
            lines in prop::collection::vec(cents(200_000), 1..8),
            delivery in cents(2_000),
            discounts in prop::collection::vec(discount(), 0..4),
            tax_bp in 0..=3_000i64,
        ) {
            let gross = Gross { lines: lines.clone(), delivery, tax_rate: Decimal::new(tax_bp, 4) };
            let priced = apply(&gross, &discounts).unwrap();
            let lines_total: Decimal = lines.iter().map(|l| l.amount).sum();
            let spread: Decimal = priced.line_discounts.iter().map(|d| d.amount).sum();
            prop_assert_eq!(spread, lines_total - priced.subtotal.amount);
            for (line, off) in lines.iter().zip(&priced.line_discounts) {
                prop_assert!(off.amount >= Decimal::ZERO && off.amount <= line.amount, "{off:?} of {line:?}");
            }
            let taken: Decimal = priced.discounts.iter().map(|d| d.amount).sum();
            prop_assert_eq!(taken, lines_total + delivery.amount - priced.subtotal.amount - priced.delivery.amount);
            prop_assert!(priced.subtotal.amount >= Decimal::ZERO);
            prop_assert!(priced.delivery.amount >= Decimal::ZERO);
            prop_assert!(priced.total.amount >= Decimal::ZERO);
            prop_assert_eq!(priced.total.amount, priced.subtotal.amount + priced.delivery.amount + priced.tax.amount);
            prop_assert_eq!(priced.tax, tax_on(Money::new(priced.subtotal.amount + priced.delivery.amount, Currency::Eur), gross.tax_rate));
        }
    }
}
