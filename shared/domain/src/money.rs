//! Money is an exact decimal amount in a currency; arithmetic across currencies is refused.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;

/// ISO 4217 code, upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Currency {
    #[serde(rename = "USD")]
    Usd,
    #[serde(rename = "EUR")]
    Eur,
}

impl Currency {
    pub fn code(self) -> &'static str {
        match self {
            Self::Usd => "USD",
            Self::Eur => "EUR",
        }
    }

    /// The currency of an ISO code in either case (payment providers send `usd`).
    pub fn from_code(code: &str) -> Option<Self> {
        match code.to_ascii_uppercase().as_str() {
            "USD" => Some(Self::Usd),
            "EUR" => Some(Self::Eur),
            _ => None,
        }
    }

    /// Digits after the decimal point in the currency's minor unit (cents).
    pub fn minor_digits(self) -> u32 {
        2
    }
}

// Serialized as `{"amount": "24.00", "currency": "USD"}`: the amount is written with at
// least the currency's minor digits (see `Money::shown`), whatever scale the arithmetic that
// made it left, so no route, event or mail can show `"0"` beside `"0.00"`. (A plain comment:
// a doc comment would change the event catalog's schemas.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
pub struct Money {
    /// A decimal string, e.g. `"24.00"`: exact, never a float.
    #[schemars(with = "String")]
    pub amount: Decimal,
    pub currency: Currency,
}

impl Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut money = serializer.serialize_struct("Money", 2)?;
        money.serialize_field("amount", &self.shown())?;
        money.serialize_field("currency", &self.currency)?;
        money.end()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot combine {0} with {1}")]
pub struct CurrencyMismatch(pub &'static str, pub &'static str);

/// The most a price, a fixed discount or a minimum order may be, in minor units
/// (999,999.99 in a currency of two minor digits): Stripe's largest charge. It also keeps
/// every total kassa computes from prices (at most 20 levels of 10 seats in a cart) far
/// inside `Decimal`'s range.
pub const MAX_PRICE_MINOR: i64 = 99_999_999;

impl Money {
    pub fn new(amount: Decimal, currency: Currency) -> Self {
        Self { amount, currency }
    }

    /// Zero written with the currency's minor digits (`0.00`), as amounts are shown.
    pub fn zero(currency: Currency) -> Self {
        Self::new(Decimal::new(0, currency.minor_digits()), currency)
    }

    pub fn checked_add(self, other: Money) -> Result<Money, CurrencyMismatch> {
        if self.currency != other.currency {
            return Err(CurrencyMismatch(
                self.currency.code(),
                other.currency.code(),
            ));
        }
        Ok(Money::new(self.amount + other.amount, self.currency))
    }

    /// Whether this can be a price: zero or more, in whole minor units, and at most
    /// [`MAX_PRICE_MINOR`] of them.
    pub fn is_price(self) -> bool {
        !self.amount.is_sign_negative()
            && self.amount.normalize().scale() <= self.currency.minor_digits()
            && self.amount <= Decimal::new(MAX_PRICE_MINOR, self.currency.minor_digits())
    }

    /// The same amount written with exactly the currency's minor digits (`10.000` as
    /// `10.00`), for an amount in whole minor units: stored as it is always shown.
    pub fn in_minor_digits(self) -> Money {
        let mut amount = self.amount.normalize();
        amount.rescale(self.currency.minor_digits());
        Money::new(amount, self.currency)
    }

    /// An amount given in the currency's minor unit (cents), as providers report it.
    pub fn from_minor(minor: i64, currency: Currency) -> Self {
        Self::new(Decimal::new(minor, currency.minor_digits()), currency)
    }

    /// The amount as it is written: padded to the currency's minor digits (`0` is `0.00`,
    /// `10` is `10.00`). More digits than that are kept, never rounded away: an amount is
    /// rounded where it is decided, not where it is printed.
    pub fn shown(self) -> Decimal {
        let minor = self.currency.minor_digits();
        let mut shown = self.amount;
        if shown.scale() < minor {
            shown.rescale(minor);
        }
        shown
    }

    /// Multiplies by a whole count (a quantity of credits, seats, tickets).
    pub fn times(self, count: u64) -> Money {
        Money::new(self.amount * Decimal::from(count), self.currency)
    }

    /// Splits this amount over `weights` in proportion, each share in whole minor units
    /// (cents), the shares summing exactly to the amount: each share is first rounded
    /// toward zero, then the cents left over go one each to the largest remainders
    /// (ties to the earlier weight). Weights that sum to zero get nothing; the amount
    /// must itself be in whole minor units for the sum to be exact.
    pub fn apportion(self, weights: &[Decimal]) -> Vec<Money> {
        let digits = self.currency.minor_digits();
        let whole: Decimal = weights.iter().copied().sum();
        if whole.is_zero() {
            return weights
                .iter()
                .map(|_| Money::new(Decimal::ZERO, self.currency))
                .collect();
        }
        let unit = if self.amount.is_sign_negative() {
            -Decimal::new(1, digits)
        } else {
            Decimal::new(1, digits)
        };
        let mut shares: Vec<(Decimal, Decimal)> = weights
            .iter()
            .map(|w| {
                let exact = self.amount * *w / whole;
                let share =
                    exact.round_dp_with_strategy(digits, rust_decimal::RoundingStrategy::ToZero);
                (share, (exact - share).abs())
            })
            .collect();
        let given: Decimal = shares.iter().map(|(s, _)| *s).sum();
        let mut left = ((self.amount - given) / unit.abs()).abs();
        let mut order: Vec<usize> = (0..shares.len()).collect();
        order.sort_by(|&a, &b| shares[b].1.cmp(&shares[a].1).then(a.cmp(&b)));
        for i in order {
            if left <= Decimal::ZERO {
                break;
            }
            shares[i].0 += unit;
            left -= Decimal::ONE;
        }
        shares
            .into_iter()
            .map(|(share, _)| Money::new(share, self.currency))
            .collect()
    }

    /// The amount in the currency's minor unit, rounded half away from zero
    /// (what payment providers expect).
    pub fn minor_units(self) -> Option<i64> {
        let scaled = self
            .amount
            .checked_mul(Decimal::from(10_i64.pow(self.currency.minor_digits())))?;
        let rounded =
            scaled.round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        i64::try_from(rounded).ok()
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.shown(), self.currency.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn adding_other_currencies_is_refused() {
        let usd = Money::new(Decimal::ONE, Currency::Usd);
        let eur = Money::new(Decimal::ONE, Currency::Eur);
        assert_eq!(usd.checked_add(eur), Err(CurrencyMismatch("USD", "EUR")));
    }

    #[test]
    fn amounts_are_written_with_the_currencys_minor_digits() {
        for (amount, written) in [
            ("0", "0.00"),
            ("0.000", "0.000"),
            ("10", "10.00"),
            ("10.5", "10.50"),
            ("-3", "-3.00"),
            ("0.125", "0.125"),
        ] {
            let money = Money::new(Decimal::from_str(amount).unwrap(), Currency::Usd);
            assert_eq!(
                serde_json::to_value(money).unwrap(),
                serde_json::json!({ "amount": written, "currency": "USD" }),
                "{amount}"
            );
            assert_eq!(money.to_string(), format!("{written} USD"), "{amount}");
        }
        // Zero times anything has scale 0 in rust_decimal: where "0" came from.
        let tax = Money::new(
            Decimal::from_str("10.00").unwrap() * Decimal::ZERO,
            Currency::Eur,
        );
        assert_eq!(serde_json::to_value(tax).unwrap()["amount"], "0.00");
    }

    #[test]
    fn written_amounts_read_back_equal() {
        let money = Money::new(Decimal::from(7), Currency::Usd);
        let back: Money = serde_json::from_value(serde_json::to_value(money).unwrap()).unwrap();
        assert_eq!(back, money);
        assert_eq!(back.amount.scale(), 2);
    }

    #[test]
    fn apportioned_shares_sum_exactly_and_follow_the_weights() {
        let eur = |a: &str| Money::new(a.parse().unwrap(), Currency::Eur);
        let d = |a: &str| a.parse::<Decimal>().unwrap();
        let shares = eur("100.00").apportion(&[d("1"), d("1"), d("1")]);
        assert_eq!(shares, vec![eur("33.34"), eur("33.33"), eur("33.33")]);
        let shares = eur("10.00").apportion(&[d("160.00"), d("80.00")]);
        assert_eq!(shares, vec![eur("6.67"), eur("3.33")]);
        let shares = eur("0.01").apportion(&[d("1"), d("3")]);
        assert_eq!(shares, vec![eur("0.00"), eur("0.01")]);
        let shares = eur("-5.00").apportion(&[d("1"), d("2")]);
        assert_eq!(shares, vec![eur("-1.67"), eur("-3.33")]);
        assert_eq!(
            eur("5.00").apportion(&[d("0"), d("0")]),
            vec![eur("0"), eur("0")]
        );
        for total in ["0.07", "99.99", "1234.56"] {
            let shares = eur(total).apportion(&[d("3"), d("7"), d("11"), d("0")]);
            let sum: Decimal = shares.iter().map(|m| m.amount).sum();
            assert_eq!(sum, d(total));
            assert!(shares[3].amount.is_zero());
        }
    }

    #[test]
    fn minor_units_round_half_away_from_zero() {
        let m = Money::new(Decimal::from_str("0.125").unwrap(), Currency::Usd);
        assert_eq!(m.minor_units(), Some(13));
        let m = Money::new(Decimal::from_str("49.99").unwrap(), Currency::Usd);
        assert_eq!(m.times(3).minor_units(), Some(14997));
    }
}
