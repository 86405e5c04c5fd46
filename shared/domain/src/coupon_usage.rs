//! Coupon usages (seed 002's `CouponUsage`): each coupon an order holds is one usage,
//! `locked` while the order is open, `redeemed` once it is paid, `released` when the order
//! is canceled or expires or the buyer takes the coupon off. The usages of one order are
//! one aggregate, so an order's end moves all of its usages in one commit, once.
//!
//! The counts a usage holds: the coupon's uses are a hot counter of their own
//! (`CouponUses#<coupon>`, [`UseEvent`]), taken by ONE conditional step before the lock
//! commits, so no transaction ever holds the item every apply writes; the user's uses are
//! a lock item moved in the usage's own commits. A lock settles the use it took, a
//! release gives both back, a redemption leaves them (a redeemed use stays used).
//!
//! Refusals are recorded too, on the buyer's own stream of attempts ([`Attempts`]): what
//! was tried, on which order, and why it was refused, for the audit and for the limit on
//! guessing codes.

use crate::event::DomainEvent;
use crate::identity::UserId;
use crate::money::Money;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::OffsetDateTime;
use uuid::Uuid;

/// Rejected codes a buyer may try within [`GUESS_WINDOW`] before being told to wait.
pub const GUESS_LIMIT: usize = 10;
pub const GUESS_WINDOW: time::Duration = time::Duration::minutes(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UsageStatus {
    Locked,
    Redeemed,
    Released,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub code: String,
    pub status: UsageStatus,
    pub discount: Money,
}

/// The coupon usages of one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCoupons {
    pub order_id: Uuid,
    pub user_id: UserId,
    pub usages: BTreeMap<Uuid, Usage>,
}

impl OrderCoupons {
    /// Usages still holding a count: locked ones.
    pub fn locked(&self) -> impl Iterator<Item = (&Uuid, &Usage)> {
        self.usages
            .iter()
            .filter(|(_, u)| u.status == UsageStatus::Locked)
    }
}

/// Why a usage was released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseReason {
    /// The buyer took the coupon off the open order.
    Removed,
    OrderCanceled,
    OrderExpired,
}

impl ReleaseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Removed => "removed",
            Self::OrderCanceled => "order_canceled",
            Self::OrderExpired => "order_expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageCommand {
    Lock {
        order_id: Uuid,
        user_id: UserId,
        coupon_id: Uuid,
        code: String,
        discount: Money,
    },
    /// Releases `coupon_id`'s usage, or every locked one when `None`.
    Release {
        coupon_id: Option<Uuid>,
        reason: ReleaseReason,
    },
    /// The order was paid: every usage it holds is redeemed, a released one too (a
    /// payment that arrived after the order expired: the discount was granted, so the use
    /// counts again).
    Redeem,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "payload")]
pub enum UsageEvent {
    /// One use of the coupon locked for the order (usage `locked`).
    #[serde(rename = "coupon.applied")]
    Applied {
        coupon_id: Uuid,
        code: String,
        order_id: Uuid,
        #[schemars(with = "String")]
        user_id: UserId,
        discount: Money,
    },
    #[serde(rename = "coupon.redeemed")]
    Redeemed {
        coupon_id: Uuid,
        code: String,
        order_id: Uuid,
        #[schemars(with = "String")]
        user_id: UserId,
        discount: Money,
    },
    /// The use is given back: the coupon's and the user's counts are restored.
    #[serde(rename = "coupon.released")]
    Released {
        coupon_id: Uuid,
        code: String,
        order_id: Uuid,
        #[schemars(with = "String")]
        user_id: UserId,
        reason: ReleaseReason,
    },
}

impl UsageEvent {
    pub fn coupon_id(&self) -> Uuid {
        match self {
            Self::Applied { coupon_id, .. }
            | Self::Redeemed { coupon_id, .. }
            | Self::Released { coupon_id, .. } => *coupon_id,
        }
    }
}

/// What a coupon's use counter records, carried on its head: each use taken and each use
/// given back, with the uses counted after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "payload")]
pub enum UseEvent {
    /// One use taken for `order_id` (one step, under the coupon's limit). The apply that
    /// took it settles it in the commit that locks the usage, or gives it back; one that
    /// never does (a timeout, a crash) is given back by reclaim-coupon-uses.
    #[serde(rename = "coupon.use_taken")]
    Taken {
        coupon_id: Uuid,
        order_id: Uuid,
        #[schemars(with = "String")]
        user_id: UserId,
        take_id: Uuid,
        /// A payment arrived after the order's usage was released: the discount was
        /// granted, so the use counts again. Settled by the redemption that counts it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        retaken: bool,
        /// Filled by the store with the counter after the step.
        uses_after: i64,
    },
    /// A use given back: its usage was released, or the apply that took it did not lock.
    #[serde(rename = "coupon.use_returned")]
    Returned {
        coupon_id: Uuid,
        order_id: Uuid,
        #[schemars(with = "String")]
        user_id: UserId,
        reason: String,
        uses_after: i64,
    },
}

impl DomainEvent for UseEvent {
    const CONTEXT: &'static str = "coupons";
    const TYPES: &'static [&'static str] = &["coupon.use_taken", "coupon.use_returned"];

    fn event_type(&self) -> &'static str {
        match self {
            Self::Taken { .. } => "coupon.use_taken",
            Self::Returned { .. } => "coupon.use_returned",
        }
    }
}

/// The field of a [`UseEvent`] the store fills with the counter.
pub const USES_AFTER: &str = "uses_after";

impl DomainEvent for UsageEvent {
    const CONTEXT: &'static str = "coupons";
    const TYPES: &'static [&'static str] =
        &["coupon.applied", "coupon.redeemed", "coupon.released"];

    fn event_type(&self) -> &'static str {
        match self {
            Self::Applied { .. } => "coupon.applied",
            Self::Redeemed { .. } => "coupon.redeemed",
            Self::Released { .. } => "coupon.released",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// The coupon was on this order before and was released: a use given back is not
    /// taken again on the same order, so counts cannot be cycled.
    #[error("the coupon was released from this order")]
    Released,
    #[error("the usages belong to another order or user")]
    Mismatch,
}

pub fn decide(
    state: Option<&OrderCoupons>,
    command: UsageCommand,
) -> Result<Vec<UsageEvent>, UsageError> {
    match command {
        UsageCommand::Lock {
            order_id,
            user_id,
            coupon_id,
            code,
            discount,
        } => {
            if let Some(usages) = state {
                if usages.order_id != order_id || usages.user_id != user_id {
                    return Err(UsageError::Mismatch);
                }
                match usages.usages.get(&coupon_id).map(|u| u.status) {
                    Some(UsageStatus::Locked | UsageStatus::Redeemed) => return Ok(vec![]),
                    Some(UsageStatus::Released) => return Err(UsageError::Released),
                    None => {}
                }
            }
            Ok(vec![UsageEvent::Applied {
                coupon_id,
                code,
                order_id,
                user_id,
                discount,
            }])
        }
        UsageCommand::Release { coupon_id, reason } => {
            let Some(usages) = state else {
                return Ok(vec![]);
            };
            Ok(usages
                .locked()
                .filter(|(id, _)| coupon_id.is_none_or(|c| c == **id))
                .map(|(id, usage)| UsageEvent::Released {
                    coupon_id: *id,
                    code: usage.code.clone(),
                    order_id: usages.order_id,
                    user_id: usages.user_id.clone(),
                    reason,
                })
                .collect())
        }
        UsageCommand::Redeem => {
            let Some(usages) = state else {
                return Ok(vec![]);
            };
            Ok(usages
                .usages
                .iter()
                .filter(|(_, u)| u.status != UsageStatus::Redeemed)
                .map(|(id, usage)| UsageEvent::Redeemed {
                    coupon_id: *id,
                    code: usage.code.clone(),
                    order_id: usages.order_id,
                    user_id: usages.user_id.clone(),
                    discount: usage.discount,
                })
                .collect())
        }
    }
}

pub fn evolve(state: Option<OrderCoupons>, event: &UsageEvent) -> Option<OrderCoupons> {
    let mut usages = match (state, event) {
        (Some(s), _) => s,
        (
            None,
            UsageEvent::Applied {
                order_id, user_id, ..
            },
        ) => OrderCoupons {
            order_id: *order_id,
            user_id: user_id.clone(),
            usages: BTreeMap::new(),
        },
        (None, _) => return None,
    };
    match event {
        UsageEvent::Applied {
            coupon_id,
            code,
            discount,
            ..
        } => {
            usages.usages.insert(
                *coupon_id,
                Usage {
                    code: code.clone(),
                    status: UsageStatus::Locked,
                    discount: *discount,
                },
            );
        }
        UsageEvent::Redeemed { coupon_id, .. } => {
            if let Some(u) = usages.usages.get_mut(coupon_id) {
                u.status = UsageStatus::Redeemed;
            }
        }
        UsageEvent::Released { coupon_id, .. } => {
            if let Some(u) = usages.usages.get_mut(coupon_id) {
                u.status = UsageStatus::Released;
            }
        }
    }
    Some(usages)
}

/// Why a code was refused, as the audit keeps it (the buyer hears only that the coupon
/// does not apply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    UnknownCode,
    NotActive,
    NotYetValid,
    Expired,
    OutOfScope,
    BelowMinimum,
    NotFirstOrder,
    CurrencyMismatch,
    NotStackable,
    /// All of the coupon's uses are locked or redeemed.
    Exhausted,
    /// The buyer used it as often as it allows per user.
    UserLimit,
    /// It was released from this order before.
    ReleasedBefore,
    /// A shipping discount on an order with no delivery fee to waive.
    NothingToWaive,
}

impl From<crate::coupon::Ineligible> for RejectReason {
    fn from(why: crate::coupon::Ineligible) -> Self {
        use crate::coupon::Ineligible as I;
        match why {
            I::NotActive => Self::NotActive,
            I::NotYetValid => Self::NotYetValid,
            I::Expired => Self::Expired,
            I::OutOfScope => Self::OutOfScope,
            I::BelowMinimum => Self::BelowMinimum,
            I::NotFirstOrder => Self::NotFirstOrder,
            I::CurrencyMismatch => Self::CurrencyMismatch,
            I::NothingToWaive => Self::NothingToWaive,
        }
    }
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownCode => "unknown_code",
            Self::NotActive => "not_active",
            Self::NotYetValid => "not_yet_valid",
            Self::Expired => "expired",
            Self::OutOfScope => "out_of_scope",
            Self::BelowMinimum => "below_minimum",
            Self::NotFirstOrder => "not_first_order",
            Self::CurrencyMismatch => "currency_mismatch",
            Self::NothingToWaive => "nothing_to_waive",
            Self::NotStackable => "not_stackable",
            Self::Exhausted => "exhausted",
            Self::UserLimit => "user_limit",
            Self::ReleasedBefore => "released_before",
        }
    }
}

/// A buyer's refused attempts: the recent ones, to hold guessing to [`GUESS_LIMIT`] per
/// [`GUESS_WINDOW`]. The head keeps at most that many times, so it stays O(1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempts {
    #[serde(with = "recent_times")]
    pub recent: Vec<OffsetDateTime>,
}

mod recent_times {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(v: &[OffsetDateTime], s: S) -> Result<S::Ok, S::Error> {
        let secs: Vec<i64> = v.iter().map(|t| t.unix_timestamp()).collect();
        secs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OffsetDateTime>, D::Error> {
        Vec::<i64>::deserialize(d)?
            .into_iter()
            .map(|t| OffsetDateTime::from_unix_timestamp(t).map_err(serde::de::Error::custom))
            .collect()
    }
}

impl Attempts {
    /// How long the buyer must wait before trying another code, if they must.
    pub fn wait(&self, now: OffsetDateTime) -> Option<time::Duration> {
        let inside: Vec<_> = self
            .recent
            .iter()
            .filter(|t| now - **t < GUESS_WINDOW)
            .collect();
        if inside.len() < GUESS_LIMIT {
            return None;
        }
        // The oldest of the last GUESS_LIMIT leaves the window first.
        let oldest = inside.iter().min()?;
        Some(**oldest + GUESS_WINDOW - now)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub user_id: UserId,
    pub order_id: Uuid,
    /// What the buyer typed, normalized when it parsed.
    pub code: String,
    /// The coupon the code named, when there is one.
    pub coupon_id: Option<Uuid>,
    pub reason: RejectReason,
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "payload")]
pub enum AttemptEvent {
    #[serde(rename = "coupon.rejected")]
    Rejected {
        #[schemars(with = "String")]
        user_id: UserId,
        order_id: Uuid,
        code: String,
        coupon_id: Option<Uuid>,
        reason: RejectReason,
        #[serde(with = "time::serde::rfc3339")]
        #[schemars(with = "String")]
        at: OffsetDateTime,
    },
}

impl DomainEvent for AttemptEvent {
    const CONTEXT: &'static str = "coupons";
    const TYPES: &'static [&'static str] = &["coupon.rejected"];

    fn event_type(&self) -> &'static str {
        "coupon.rejected"
    }
}

pub fn reject(command: Reject) -> Vec<AttemptEvent> {
    vec![AttemptEvent::Rejected {
        user_id: command.user_id,
        order_id: command.order_id,
        code: command.code,
        coupon_id: command.coupon_id,
        reason: command.reason,
        at: command.at,
    }]
}

pub fn evolve_attempts(state: Option<Attempts>, event: &AttemptEvent) -> Option<Attempts> {
    let mut attempts = state.unwrap_or_default();
    let AttemptEvent::Rejected { at, .. } = event;
    attempts.recent.push(*at);
    attempts.recent.sort();
    let excess = attempts.recent.len().saturating_sub(GUESS_LIMIT);
    attempts.recent.drain(..excess);
    Some(attempts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use time::macros::datetime;

    const ORDER: Uuid = Uuid::from_u128(1);
    const TEN: Uuid = Uuid::from_u128(10);
    const FIVE: Uuid = Uuid::from_u128(5);
    const NOW: OffsetDateTime = datetime!(2026-12-01 10:00 UTC);

    fn lock(coupon_id: Uuid) -> UsageCommand {
        UsageCommand::Lock {
            order_id: ORDER,
            user_id: UserId::new("ann"),
            coupon_id,
            code: format!("CODE{}", coupon_id.as_u128()),
            discount: Money::from_minor(500, Currency::Eur),
        }
    }

    fn run(state: Option<OrderCoupons>, command: UsageCommand) -> Option<OrderCoupons> {
        let events = decide(state.as_ref(), command).unwrap();
        events.iter().fold(state, evolve)
    }

    #[test]
    fn a_lock_is_taken_once_and_released_or_redeemed_once() {
        let state = run(run(None, lock(TEN)), lock(FIVE));
        assert!(decide(state.as_ref(), lock(TEN)).unwrap().is_empty());
        let removed = UsageCommand::Release {
            coupon_id: Some(FIVE),
            reason: ReleaseReason::Removed,
        };
        let state = run(state, removed.clone());
        assert!(decide(state.as_ref(), removed).unwrap().is_empty());
        assert_eq!(
            decide(state.as_ref(), lock(FIVE)),
            Err(UsageError::Released)
        );
        let redeemed = decide(state.as_ref(), UsageCommand::Redeem).unwrap();
        let ids: Vec<_> = redeemed.iter().map(UsageEvent::coupon_id).collect();
        assert_eq!(
            ids,
            vec![FIVE, TEN],
            "a late payment redeems the released use too"
        );
        let state = redeemed.iter().fold(state, evolve);
        assert!(decide(state.as_ref(), UsageCommand::Redeem)
            .unwrap()
            .is_empty());
        let late = UsageCommand::Release {
            coupon_id: None,
            reason: ReleaseReason::OrderExpired,
        };
        assert!(
            decide(state.as_ref(), late).unwrap().is_empty(),
            "a redeemed use is never given back"
        );
    }

    #[test]
    fn an_order_that_ends_releases_every_locked_usage() {
        let state = run(run(None, lock(TEN)), lock(FIVE));
        let released = decide(
            state.as_ref(),
            UsageCommand::Release {
                coupon_id: None,
                reason: ReleaseReason::OrderCanceled,
            },
        )
        .unwrap();
        let ids: Vec<_> = released.iter().map(UsageEvent::coupon_id).collect();
        assert_eq!(ids, vec![FIVE, TEN]);
    }

    #[test]
    fn guessing_waits_once_ten_codes_were_refused_within_ten_minutes() {
        let rejected = |minutes: i64| AttemptEvent::Rejected {
            user_id: UserId::new("ann"),
            order_id: ORDER,
            code: "X".into(),
            coupon_id: None,
            reason: RejectReason::UnknownCode,
            at: NOW + time::Duration::minutes(minutes),
        };
        let nine = (0..9)
            .map(rejected)
            .fold(None, |s, e| evolve_attempts(s, &e));
        assert_eq!(
            nine.as_ref()
                .unwrap()
                .wait(NOW + time::Duration::minutes(9)),
            None
        );
        let ten = evolve_attempts(nine, &rejected(9));
        let attempts = ten.unwrap();
        assert_eq!(
            attempts.wait(NOW + time::Duration::minutes(9)),
            Some(time::Duration::minutes(1))
        );
        assert_eq!(attempts.wait(NOW + time::Duration::minutes(10)), None);
        let many = (0..50)
            .map(rejected)
            .fold(None, |s, e| evolve_attempts(s, &e));
        assert_eq!(
            many.unwrap().recent.len(),
            GUESS_LIMIT,
            "the head stays small"
        );
    }
}
