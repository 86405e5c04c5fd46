//! A workspace's billing period and what a tier change mid-period is worth.
//!
//! A workspace is billed monthly from its signup day (its anchor): the period that holds a
//! moment runs from the anchor day of one month, 00:00 UTC, to the anchor day of the next,
//! clamped to the month's last day as the renewals are (`credits::renewal_after`), so the
//! period ends exactly when the wallet's next renewal falls due.
//!
//! An upgrade is prorated on the seconds left in that period, the same fraction for the
//! money and for the credits:
//! - the charge is the difference of the two monthly prices × left / period, rounded to the
//!   currency's minor unit, half away from zero (so 0.5 cent is charged as a cent);
//! - the credit top-up is the difference of the two monthly credit grants × left / period,
//!   rounded down (a workspace never gets a credit it has not paid a whole share of).

use crate::credits::renewal_after;
use crate::money::Money;
use crate::tier::TierId;
use rust_decimal::{Decimal, RoundingStrategy};
use time::{Date, OffsetDateTime, Time};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: Date,
    /// The first day of the next period: the day the next renewal falls due.
    pub end: Date,
}

impl Period {
    /// The period of a workspace renewing on day `anchor` that holds `at`.
    pub fn holding(anchor: u8, at: OffsetDateTime) -> Period {
        let today = at.date();
        let this_month = anchor_in(today.year(), today.month(), anchor);
        if today >= this_month {
            Period {
                start: this_month,
                end: renewal_after(this_month, anchor),
            }
        } else {
            let (year, month) = match today.month() {
                time::Month::January => (today.year() - 1, time::Month::December),
                m => (today.year(), m.previous()),
            };
            Period {
                start: anchor_in(year, month, anchor),
                end: this_month,
            }
        }
    }

    pub fn seconds(&self) -> i64 {
        (midnight(self.end) - midnight(self.start)).whole_seconds()
    }

    /// Whole seconds from `at` to the period's end; zero once it is over.
    pub fn seconds_left(&self, at: OffsetDateTime) -> i64 {
        (midnight(self.end) - at)
            .whole_seconds()
            .clamp(0, self.seconds())
    }
}

fn midnight(day: Date) -> OffsetDateTime {
    day.with_time(Time::MIDNIGHT).assume_utc()
}

fn anchor_in(year: i32, month: time::Month, anchor: u8) -> Date {
    let last = time::util::days_in_month(month, year);
    // The clamp keeps the day valid for the month, so this cannot fail.
    Date::from_calendar_date(year, month, anchor.clamp(1, last)).unwrap_or(Date::MIN)
}

/// What moving from `from` to `to` at `at` within `period` is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proration {
    /// Owed for the rest of the period; zero for a move to a cheaper tier.
    pub charge: Money,
    /// Credits granted for the rest of the period; zero for a move to a smaller grant.
    pub credits: u64,
    pub seconds_left: i64,
    pub period_seconds: i64,
}

impl Proration {
    pub fn of(from: TierId, to: TierId, period: Period, at: OffsetDateTime) -> Proration {
        let (old, new) = (from.policy(), to.policy());
        let (left, whole) = (period.seconds_left(at), period.seconds());
        let currency = new.monthly_price.currency;
        let difference = (new.monthly_price.amount - old.monthly_price.amount).max(Decimal::ZERO);
        let charge = if whole == 0 {
            Decimal::ZERO
        } else {
            (difference * Decimal::from(left) / Decimal::from(whole)).round_dp_with_strategy(
                currency.minor_digits(),
                RoundingStrategy::MidpointAwayFromZero,
            )
        };
        let more = new.monthly_credits.saturating_sub(old.monthly_credits);
        let credits = if whole == 0 {
            0
        } else {
            // i128: credits × seconds stays exact far beyond any tier's grant.
            u64::try_from(i128::from(more) * i128::from(left) / i128::from(whole)).unwrap_or(0)
        };
        Proration {
            charge: Money::new(charge, currency),
            credits,
            seconds_left: left,
            period_seconds: whole,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn a_period_runs_from_the_anchor_day_to_the_next_and_clamps_short_months() {
        let p = Period::holding(15, datetime!(2026-12-04 16:00 UTC));
        assert_eq!(
            (p.start, p.end),
            (date!(2026 - 11 - 15), date!(2026 - 12 - 15))
        );
        let p = Period::holding(15, datetime!(2026-12-15 00:00 UTC));
        assert_eq!(
            (p.start, p.end),
            (date!(2026 - 12 - 15), date!(2027 - 01 - 15))
        );
        let p = Period::holding(31, datetime!(2027-02-10 00:00 UTC));
        assert_eq!(
            (p.start, p.end),
            (date!(2027 - 01 - 31), date!(2027 - 02 - 28))
        );
        let p = Period::holding(31, datetime!(2027-02-28 09:00 UTC));
        assert_eq!(
            (p.start, p.end),
            (date!(2027 - 02 - 28), date!(2027 - 03 - 31))
        );
        let p = Period::holding(3, datetime!(2027-01-02 23:59 UTC));
        assert_eq!(
            (p.start, p.end),
            (date!(2026 - 12 - 03), date!(2027 - 01 - 03))
        );
    }

    #[test]
    fn the_period_ends_when_the_next_renewal_falls_due() {
        // Renewals scheduled from a signup on 31 January fall on these days; every
        // moment of a renewal day opens the period that the next renewal closes.
        let mut due = date!(2027 - 01 - 31);
        for _ in 0..14 {
            let next = renewal_after(due, 31);
            let p = Period::holding(31, midnight(due) + time::Duration::hours(7));
            assert_eq!((p.start, p.end), (due, next));
            due = next;
        }
    }

    #[test]
    fn an_upgrade_halfway_through_a_thirty_day_period_costs_half_the_difference() {
        let period = Period::holding(1, datetime!(2026-11-16 00:00 UTC));
        assert_eq!(period.seconds(), 30 * 86_400);
        let p = Proration::of(
            TierId::Pro,
            TierId::Enterprise,
            period,
            datetime!(2026-11-16 00:00 UTC),
        );
        assert_eq!(p.charge.to_string(), "225.00 USD");
        assert_eq!(p.credits, 45_000);
        assert_eq!(p.seconds_left, 15 * 86_400);
    }

    #[test]
    fn fractions_round_the_charge_half_up_to_the_cent_and_the_credits_down() {
        // 31-day December; 10 days, 7 hours and 3 seconds left.
        let period = Period::holding(1, datetime!(2026-12-21 16:59:57 UTC));
        let left = 10 * 86_400 + 7 * 3_600 + 3;
        let at = datetime!(2026-12-21 16:59:57 UTC);
        let p = Proration::of(TierId::Free, TierId::Pro, period, at);
        assert_eq!(p.seconds_left, left);
        // 49.00 × 889,203 / 2,678,400 = 16.26754...
        assert_eq!(p.charge.to_string(), "16.27 USD");
        // 9,000 × 889,203 / 2,678,400 = 2,987.91...
        assert_eq!(p.credits, 2_987);
    }

    #[test]
    fn a_move_down_is_worth_nothing_now() {
        let at = datetime!(2026-12-10 12:00 UTC);
        let p = Proration::of(TierId::Enterprise, TierId::Pro, Period::holding(1, at), at);
        assert_eq!(p.charge.to_string(), "0.00 USD");
        assert_eq!(p.credits, 0);
    }
}
