//! Promotions (seed 000): promo codes an operator makes that grant a workspace a free
//! trial of a paid tier. One stream per code (`Promotion#<CODE>`), so a code is unique by
//! its stream's creation, and every use advances its count under its limit in the
//! commit that starts the trial (`workspace::WorkspaceCommand::StartTrial`).

use crate::coupon_code::CouponCode;
use crate::event::DomainEvent;
use crate::identity::{Actor, Role};
use crate::tier::TierId;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// The longest trial a promotion may grant, in days.
pub const MAX_TRIAL_DAYS: u16 = 30;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    pub code: CouponCode,
    pub tier: TierId,
    pub days: u16,
    #[serde(with = "time::serde::rfc3339")]
    pub valid_from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub valid_until: OffsetDateTime,
    pub max_uses: u32,
    pub uses: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromotionCommand {
    Create {
        code: CouponCode,
        tier: TierId,
        days: u16,
        valid_from: OffsetDateTime,
        valid_until: OffsetDateTime,
        max_uses: u32,
    },
    /// One use, by the workspace whose trial it starts, at `at`.
    Apply {
        workspace_id: Uuid,
        at: OffsetDateTime,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "payload")]
pub enum PromotionEvent {
    #[serde(rename = "promotion.created")]
    Created {
        code: CouponCode,
        tier: TierId,
        days: u16,
        #[serde(with = "time::serde::rfc3339")]
        #[schemars(with = "String")]
        valid_from: OffsetDateTime,
        #[serde(with = "time::serde::rfc3339")]
        #[schemars(with = "String")]
        valid_until: OffsetDateTime,
        max_uses: u32,
    },
    #[serde(rename = "promotion.applied")]
    Applied {
        code: CouponCode,
        workspace_id: Uuid,
        tier: TierId,
        days: u16,
        uses: u32,
    },
    /// The last use was taken: the code grants nothing more.
    #[serde(rename = "promotion.usage_limit_reached")]
    UsageLimitReached { code: CouponCode, uses: u32 },
}

impl DomainEvent for PromotionEvent {
    const CONTEXT: &'static str = "promotions";
    const TYPES: &'static [&'static str] = &[
        "promotion.created",
        "promotion.applied",
        "promotion.usage_limit_reached",
    ];

    fn event_type(&self) -> &'static str {
        match self {
            Self::Created { .. } => "promotion.created",
            Self::Applied { .. } => "promotion.applied",
            Self::UsageLimitReached { .. } => "promotion.usage_limit_reached",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromotionError {
    #[error("only operators make promotions")]
    Forbidden,
    #[error("a promotion with this code exists")]
    AlreadyExists,
    #[error("a trial is of a paid tier, for 1 to {MAX_TRIAL_DAYS} days")]
    InvalidTrial,
    #[error("valid_until must be after valid_from")]
    InvalidWindow,
    #[error("max_uses must be at least 1")]
    InvalidLimits,
    /// Unknown, not yet or no longer valid, or used up: one answer for all, so codes
    /// cannot be told apart by their errors.
    #[error("this code does not apply")]
    NotApplicable,
}

impl PromotionError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Forbidden => "admin_only",
            Self::AlreadyExists => "promotion_exists",
            Self::InvalidTrial => "invalid_trial",
            Self::InvalidWindow => "invalid_window",
            Self::InvalidLimits => "invalid_limits",
            Self::NotApplicable => "promotion_not_applicable",
        }
    }
}

pub fn decide(
    state: Option<&Promotion>,
    command: PromotionCommand,
    actor: &Actor,
) -> Result<Vec<PromotionEvent>, PromotionError> {
    match (state, command) {
        (
            state,
            PromotionCommand::Create {
                code,
                tier,
                days,
                valid_from,
                valid_until,
                max_uses,
            },
        ) => {
            if actor.role != Role::Admin {
                return Err(PromotionError::Forbidden);
            }
            if state.is_some() {
                return Err(PromotionError::AlreadyExists);
            }
            if tier == TierId::Free || !(1..=MAX_TRIAL_DAYS).contains(&days) {
                return Err(PromotionError::InvalidTrial);
            }
            if valid_until <= valid_from {
                return Err(PromotionError::InvalidWindow);
            }
            if max_uses == 0 {
                return Err(PromotionError::InvalidLimits);
            }
            Ok(vec![PromotionEvent::Created {
                code,
                tier,
                days,
                valid_from,
                valid_until,
                max_uses,
            }])
        }
        (None, PromotionCommand::Apply { .. }) => Err(PromotionError::NotApplicable),
        (Some(p), PromotionCommand::Apply { workspace_id, at }) => {
            let open = p.valid_from <= at && at < p.valid_until && p.uses < p.max_uses;
            if !open {
                return Err(PromotionError::NotApplicable);
            }
            let uses = p.uses + 1;
            let mut events = vec![PromotionEvent::Applied {
                code: p.code.clone(),
                workspace_id,
                tier: p.tier,
                days: p.days,
                uses,
            }];
            if uses == p.max_uses {
                events.push(PromotionEvent::UsageLimitReached {
                    code: p.code.clone(),
                    uses,
                });
            }
            Ok(events)
        }
    }
}

pub fn evolve(state: Option<Promotion>, event: &PromotionEvent) -> Option<Promotion> {
    match (state, event) {
        (
            None,
            PromotionEvent::Created {
                code,
                tier,
                days,
                valid_from,
                valid_until,
                max_uses,
            },
        ) => Some(Promotion {
            code: code.clone(),
            tier: *tier,
            days: *days,
            valid_from: *valid_from,
            valid_until: *valid_until,
            max_uses: *max_uses,
            uses: 0,
        }),
        (Some(mut p), PromotionEvent::Applied { uses, .. }) => {
            p.uses = *uses;
            Some(p)
        }
        (state, _) => state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn code() -> CouponCode {
        CouponCode::parse("try-pro").unwrap()
    }

    fn create(days: u16, max_uses: u32) -> PromotionCommand {
        PromotionCommand::Create {
            code: code(),
            tier: TierId::Pro,
            days,
            valid_from: datetime!(2026-12-01 00:00 UTC),
            valid_until: datetime!(2027-01-01 00:00 UTC),
            max_uses,
        }
    }

    fn created(max_uses: u32) -> Promotion {
        let events = decide(None, create(14, max_uses), &Actor::admin("ops")).unwrap();
        events.iter().fold(None, evolve).unwrap()
    }

    #[test]
    fn only_operators_make_promotions_of_a_paid_tier_for_up_to_thirty_days() {
        assert_eq!(
            decide(None, create(14, 5), &Actor::user("alice")),
            Err(PromotionError::Forbidden)
        );
        for bad in [create(0, 5), create(31, 5)] {
            assert_eq!(
                decide(None, bad, &Actor::admin("ops")),
                Err(PromotionError::InvalidTrial)
            );
        }
        assert_eq!(
            decide(None, create(14, 0), &Actor::admin("ops")),
            Err(PromotionError::InvalidLimits)
        );
        let p = created(5);
        assert_eq!(
            decide(Some(&p), create(14, 5), &Actor::admin("ops")),
            Err(PromotionError::AlreadyExists)
        );
    }

    #[test]
    fn each_use_counts_until_the_limit_and_the_window_and_the_limit_close_it_alike() {
        let apply = |p: &Promotion, at| {
            decide(
                Some(p),
                PromotionCommand::Apply {
                    workspace_id: Uuid::nil(),
                    at,
                },
                &Actor::user("alice"),
            )
        };
        let mut p = created(2);
        let inside = datetime!(2026-12-10 00:00 UTC);
        assert_eq!(
            apply(&p, datetime!(2026-11-30 23:59 UTC)),
            Err(PromotionError::NotApplicable)
        );
        assert_eq!(
            apply(&p, datetime!(2027-01-01 00:00 UTC)),
            Err(PromotionError::NotApplicable)
        );
        let first = apply(&p, inside).unwrap();
        assert_eq!(first.len(), 1);
        p = first.iter().fold(Some(p), evolve).unwrap();
        let last = apply(&p, inside).unwrap();
        assert!(matches!(
            last.as_slice(),
            [
                PromotionEvent::Applied { uses: 2, .. },
                PromotionEvent::UsageLimitReached { uses: 2, .. }
            ]
        ));
        p = last.iter().fold(Some(p), evolve).unwrap();
        assert_eq!(apply(&p, inside), Err(PromotionError::NotApplicable));
    }
}
