//! Workspaces: who owns one, who collaborates on it, and which tier it is on.
//!
//! A tier change is decided here: a move up takes effect at once, prorated on what is left
//! of the billing period (`billing_period`); a move down is scheduled for the period's end,
//! when the renewal applies it, and the owner may cancel it until then.
//!
//! Dunning: a charge of the saved card that fails makes the workspace owe it. The charge is
//! retried [`RETRY_DAYS`] days after the first failure; the last retry's notice warns of
//! suspension, and its failure suspends the workspace (its wallet refuses debits; reads
//! work and nothing is deleted). Any later success (a retry, or the owner's new card)
//! settles what it paid for, and a workspace that owes nothing more is reactivated.

use crate::billing_period::{Period, Proration};
use crate::event::DomainEvent;
use crate::identity::{Actor, Role, UserId};
use crate::money::Money;
use crate::tier::TierId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use time::macros::format_description;
use time::OffsetDateTime;
use uuid::Uuid;

const DAY: &[time::format_description::FormatItem<'static>] =
    format_description!("[year]-[month]-[day]");

/// Days after a charge first failed on which it is retried; the failure of the last
/// suspends the workspace.
pub const RETRY_DAYS: [i64; 4] = [1, 3, 5, 7];

pub const MAX_NAME_LEN: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: Uuid,
    pub name: String,
    pub tier: TierId,
    pub owner: UserId,
    pub collaborators: BTreeSet<UserId>,
    /// Where billing mail (low balance, receipts) goes.
    pub billing_email: Option<String>,
    /// The day of the month its billing period starts (its signup's).
    #[serde(default = "first_day")]
    pub anchor_day: u8,
    /// A move to a smaller tier waiting for the period's end.
    #[serde(default)]
    pub scheduled: Option<ScheduledTier>,
    /// The payment provider's subscription that pays for a paid tier.
    #[serde(default)]
    pub billing: Option<Billing>,
    /// Charges that failed and are being retried (rarely more than one).
    #[serde(default)]
    pub overdue: Vec<Overdue>,
    #[serde(default)]
    pub suspended: bool,
    /// `YYYY-MM-DD`: when its latest subscription began and, once over, ended (revenue
    /// analytics count active subscriptions and churn by them).
    #[serde(default)]
    pub subscribed_on: Option<String>,
    #[serde(default)]
    pub unsubscribed_on: Option<String>,
    /// `YYYY-MM-DD`: deleted, its read models purged; the event log is kept.
    #[serde(default)]
    pub deleted_on: Option<String>,
    /// Payments for periods (a subscription's, a move up's, a renewal's) of about the
    /// last two months: what a cancellation at once may refund. Older ones are dropped as
    /// new ones come, so the head stays small.
    #[serde(default)]
    pub payments: Vec<Payment>,
    /// A free trial of a paid tier running now.
    #[serde(default)]
    pub trial: Option<Trial>,
    /// A trial was granted once: never again.
    #[serde(default)]
    pub trialed: bool,
    /// The provider's customer of the subscription that ended last: a charge made for it
    /// before it ended may still have to be found there.
    #[serde(default)]
    pub former_customer: Option<String>,
}

/// A free trial of `tier` from `previous`, until `ends_on` (`YYYY-MM-DD`, 00:00 UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Trial {
    pub code: String,
    pub tier: TierId,
    pub previous: TierId,
    pub ends_on: String,
    /// Granted for the trial, taken back from granted credits when it reverts.
    pub credits: u64,
    pub reminded: bool,
}

/// Days before a trial's end that its reminder is due.
pub const TRIAL_REMINDER_DAYS: i64 = 3;

/// How a trial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrialOutcome {
    /// Subscribed during the trial: on to paid.
    Converted,
    /// Back to the tier before it.
    Reverted,
}

/// A payment kassa recorded for a period of the subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Payment {
    pub payment_intent: String,
    pub amount: Money,
    /// `YYYY-MM-DD`.
    pub paid_on: String,
}

/// How long a payment is kept for a refund: longer than any billing period.
const PAYMENTS_KEPT_DAYS: i64 = 62;

/// One payment's part of a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RefundShare {
    pub payment_intent: String,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Overdue {
    pub source_event: Uuid,
    pub reason: ChargeFor,
    pub amount: Money,
    pub failures: u32,
    /// `YYYY-MM-DD`.
    pub first_failed_on: String,
    /// The provider's invoice, when what is owed is one of the subscription's own
    /// (a renewal): a retry pays that invoice instead of charging the card anew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Billing {
    pub customer: String,
    pub subscription_id: String,
    /// The saved payment method kassa's own charges (a tier change, overage) use.
    pub payment_method: String,
}

/// Workspaces recorded before anchors were kept start their periods on the 1st.
fn first_day() -> u8 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ScheduledTier {
    pub tier: TierId,
    /// `YYYY-MM-DD`: the first day of the next period.
    pub effective_on: String,
}

impl Workspace {
    /// Owners, collaborators and operators may read and change a workspace; once it is
    /// deleted, only kassa's own functions see it.
    pub fn admits(&self, actor: &Actor) -> bool {
        if self.deleted_on.is_some() {
            return actor.role == Role::System;
        }
        matches!(actor.role, Role::Admin | Role::System)
            || actor.user == self.owner
            || self.collaborators.contains(&actor.user)
    }

    /// Everyone a conditional write may accept as a member.
    pub fn members(&self) -> impl Iterator<Item = &UserId> {
        std::iter::once(&self.owner).chain(self.collaborators.iter())
    }
}

/// What kassa charges a workspace's saved card for, besides the subscription's own
/// invoices.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ChargeFor {
    /// The rest of the period a workspace subscribed in.
    Subscription,
    /// The rest of the period after a move up.
    TierChange,
    /// A closed period's overage.
    Overage,
    /// The provider's renewal invoice of the subscription (a whole period).
    Renewal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkspaceCommand {
    Create {
        id: Uuid,
        name: String,
        tier: TierId,
        billing_email: Option<String>,
        /// The day of the month of signup.
        anchor_day: u8,
        at: OffsetDateTime,
    },
    AddCollaborator {
        user: UserId,
    },
    RemoveCollaborator {
        user: UserId,
    },
    /// The owner's move to `tier` at `at`: at once if it is a larger tier, else at the
    /// period's end; back to the current tier cancels a scheduled move.
    ChangeTier {
        tier: TierId,
        at: OffsetDateTime,
    },
    CancelScheduledTier,
    /// Records the subscription made at the provider for `tier` (the current tier or a
    /// larger one, which it then moves to as `ChangeTier` would).
    Subscribe {
        billing: Billing,
        tier: TierId,
        at: OffsetDateTime,
    },
    /// The outcome of charging the saved card for the event `source_event`: the payment
    /// intent, or why it failed.
    RecordCharge {
        source_event: Uuid,
        reason: ChargeFor,
        amount: Money,
        outcome: Result<String, String>,
        /// The provider's invoice the charge pays (a renewal's).
        invoice: Option<String>,
        at: OffsetDateTime,
    },
    /// The owner's: ends the subscription now, moves to the free tier, and refunds the
    /// rest of the period (see [`cancel_now`]).
    CancelNow {
        at: OffsetDateTime,
    },
    /// The subscription ended at the provider (the workspace moved to the free tier).
    Unsubscribe {
        at: OffsetDateTime,
    },
    /// The owner's: deletes a workspace that pays for nothing and owes nothing.
    Delete {
        at: OffsetDateTime,
    },
    /// The owner's new card, saved at the provider.
    ChangePaymentMethod {
        payment_method: String,
    },
    /// The renewal's: applies a scheduled move whose day has come.
    ApplyScheduledTier {
        at: OffsetDateTime,
    },
    /// The owner's promo code `code` grants a trial of `tier` for `days` (see
    /// [`start_trial`]).
    StartTrial {
        code: String,
        tier: TierId,
        days: u16,
        at: OffsetDateTime,
    },
    /// The trial schedule's: the reminder, once, from [`TRIAL_REMINDER_DAYS`] before the end.
    RemindTrial {
        at: OffsetDateTime,
    },
    /// The trial schedule's: ends a trial whose day has come.
    EndTrial {
        at: OffsetDateTime,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "payload")]
pub enum WorkspaceEvent {
    #[serde(rename = "workspace.created")]
    Created {
        workspace_id: Uuid,
        name: String,
        tier: TierId,
        owner: UserId,
        #[serde(default)]
        billing_email: Option<String>,
        #[serde(default)]
        anchor_day: Option<u8>,
    },
    #[serde(rename = "collaborator.added")]
    CollaboratorAdded { workspace_id: Uuid, user: UserId },
    #[serde(rename = "collaborator.removed")]
    CollaboratorRemoved { workspace_id: Uuid, user: UserId },
    /// The tier changed now: a move up (prorated) or a scheduled move down arriving.
    #[serde(rename = "workspace.tier_changed")]
    TierChanged {
        workspace_id: Uuid,
        from: TierId,
        to: TierId,
        /// Unix seconds.
        at: i64,
        /// `YYYY-MM-DD`, the billing period the change falls in.
        period_start: String,
        period_end: String,
        /// Owed for the rest of the period (zero for a move down).
        charge: Money,
        /// Credits granted for the rest of the period (zero for a move down).
        credits_top_up: u64,
        /// Granted credits taken back for the rest of the period (a cancellation at once).
        #[serde(default)]
        credits_taken_back: u64,
        seconds_left: i64,
        period_seconds: i64,
    },
    #[serde(rename = "workspace.tier_change_scheduled")]
    TierChangeScheduled {
        workspace_id: Uuid,
        from: TierId,
        to: TierId,
        effective_on: String,
    },
    #[serde(rename = "workspace.tier_change_cancelled")]
    TierChangeCancelled {
        workspace_id: Uuid,
        tier: TierId,
        effective_on: String,
    },
    /// The workspace pays by a subscription from now on. The provider bills whole periods
    /// from the period's end; `charge` is the rest of this period on the tier it was on
    /// unpaid (a move up in the same request is charged on its own event).
    #[serde(rename = "workspace.subscribed")]
    Subscribed {
        workspace_id: Uuid,
        tier: TierId,
        customer: String,
        subscription_id: String,
        payment_method: String,
        charge: Money,
        period_end: String,
        /// `YYYY-MM-DD`.
        #[serde(default)]
        subscribed_on: String,
    },
    #[serde(rename = "workspace.charged")]
    Charged {
        workspace_id: Uuid,
        source_event: Uuid,
        reason: ChargeFor,
        amount: Money,
        payment_intent: String,
        /// `YYYY-MM-DD`.
        #[serde(default)]
        paid_on: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        invoice: Option<String>,
    },
    /// A charge for the subscription (or a move up) that was made while the subscription
    /// was being ended at once, and recorded after: the cancellation's refund was computed
    /// without it, so it is paid back whole, and it is no payment of the workspace's.
    #[serde(rename = "workspace.charge_returned")]
    ChargeReturned {
        workspace_id: Uuid,
        source_event: Uuid,
        reason: ChargeFor,
        amount: Money,
        payment_intent: String,
        /// `YYYY-MM-DD`.
        returned_on: String,
    },
    /// A charge failed for the first time: the workspace owes it, and it is retried.
    #[serde(rename = "workspace.charge_failed")]
    ChargeFailed {
        workspace_id: Uuid,
        source_event: Uuid,
        reason: ChargeFor,
        amount: Money,
        error: String,
        #[serde(default)]
        failed_on: String,
        #[serde(default)]
        next_retry_on: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        invoice: Option<String>,
    },
    /// A retry of an owed charge failed too.
    #[serde(rename = "workspace.payment_retry_failed")]
    RetryFailed {
        workspace_id: Uuid,
        source_event: Uuid,
        amount: Money,
        error: String,
        failures: u32,
        /// None after the last retry.
        next_retry_on: Option<String>,
        /// The next retry is the last: its failure suspends the workspace.
        final_notice: bool,
    },
    #[serde(rename = "workspace.payment_method_changed")]
    PaymentMethodChanged {
        workspace_id: Uuid,
        payment_method: String,
    },
    #[serde(rename = "workspace.suspended")]
    Suspended { workspace_id: Uuid, owed: Money },
    #[serde(rename = "workspace.deleted")]
    Deleted {
        workspace_id: Uuid,
        deleted_on: String,
    },
    #[serde(rename = "workspace.reactivated")]
    Reactivated { workspace_id: Uuid },
    /// The owner ended the subscription at once: the provider's is cancelled now and
    /// `refund` (the rest of the period at the tier's price, no more than was paid for
    /// it) is paid back over the period's payments, newest first.
    #[serde(rename = "workspace.subscription_cancelled")]
    SubscriptionCancelled {
        workspace_id: Uuid,
        subscription_id: String,
        tier: TierId,
        refund: Money,
        refunds: Vec<RefundShare>,
        period_start: String,
        period_end: String,
        seconds_left: i64,
        period_seconds: i64,
    },
    #[serde(rename = "free_trial.started")]
    TrialStarted {
        workspace_id: Uuid,
        code: String,
        tier: TierId,
        previous: TierId,
        /// `YYYY-MM-DD`.
        ends_on: String,
        credits: u64,
    },
    /// The trial ends in [`TRIAL_REMINDER_DAYS`] days or fewer: the owner is reminded.
    #[serde(rename = "free_trial.ending")]
    TrialEnding {
        workspace_id: Uuid,
        tier: TierId,
        ends_on: String,
        subscribed: bool,
    },
    #[serde(rename = "free_trial.ended")]
    TrialEnded {
        workspace_id: Uuid,
        tier: TierId,
        outcome: TrialOutcome,
        /// Credits granted for the rest of the period, on to paid.
        credits_top_up: u64,
    },
    #[serde(rename = "workspace.unsubscribed")]
    Unsubscribed {
        workspace_id: Uuid,
        subscription_id: String,
        /// `YYYY-MM-DD`.
        #[serde(default)]
        ended_on: String,
    },
}

impl DomainEvent for WorkspaceEvent {
    const CONTEXT: &'static str = "workspaces";
    const TYPES: &'static [&'static str] = &[
        "workspace.created",
        "collaborator.added",
        "collaborator.removed",
        "workspace.tier_changed",
        "workspace.tier_change_scheduled",
        "workspace.tier_change_cancelled",
        "workspace.subscribed",
        "workspace.charged",
        "workspace.charge_returned",
        "workspace.charge_failed",
        "workspace.unsubscribed",
        "workspace.subscription_cancelled",
        "workspace.payment_retry_failed",
        "workspace.payment_method_changed",
        "workspace.suspended",
        "workspace.reactivated",
        "workspace.deleted",
        "free_trial.started",
        "free_trial.ending",
        "free_trial.ended",
    ];

    fn event_type(&self) -> &'static str {
        match self {
            Self::Created { .. } => "workspace.created",
            Self::CollaboratorAdded { .. } => "collaborator.added",
            Self::CollaboratorRemoved { .. } => "collaborator.removed",
            Self::TierChanged { .. } => "workspace.tier_changed",
            Self::TierChangeScheduled { .. } => "workspace.tier_change_scheduled",
            Self::TierChangeCancelled { .. } => "workspace.tier_change_cancelled",
            Self::Subscribed { .. } => "workspace.subscribed",
            Self::Charged { .. } => "workspace.charged",
            Self::ChargeReturned { .. } => "workspace.charge_returned",
            Self::ChargeFailed { .. } => "workspace.charge_failed",
            Self::Unsubscribed { .. } => "workspace.unsubscribed",
            Self::SubscriptionCancelled { .. } => "workspace.subscription_cancelled",
            Self::RetryFailed { .. } => "workspace.payment_retry_failed",
            Self::PaymentMethodChanged { .. } => "workspace.payment_method_changed",
            Self::Suspended { .. } => "workspace.suspended",
            Self::Reactivated { .. } => "workspace.reactivated",
            Self::Deleted { .. } => "workspace.deleted",
            Self::TrialStarted { .. } => "free_trial.started",
            Self::TrialEnding { .. } => "free_trial.ending",
            Self::TrialEnded { .. } => "free_trial.ended",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkspaceError {
    #[error("a workspace with this id already exists")]
    AlreadyExists,
    #[error("no such workspace")]
    NotFound,
    #[error("you may not change this workspace")]
    Forbidden,
    #[error("the name must be 1 to {MAX_NAME_LEN} characters and not only spaces")]
    InvalidName,
    #[error("{0} already collaborates on this workspace")]
    AlreadyCollaborator(UserId),
    #[error("{0} does not collaborate on this workspace")]
    NotCollaborator(UserId),
    #[error("only the owner may change who collaborates")]
    OwnerOnly,
    #[error("`{0}` is not an email address")]
    InvalidEmail(String),
    #[error("the workspace is on the {0} tier already")]
    TierUnchanged(TierId),
    #[error("a move to the {0} tier is scheduled already")]
    AlreadyScheduled(TierId),
    #[error("no tier change is scheduled")]
    NothingScheduled,
    #[error("only the owner may change the tier")]
    OwnerOnlyTier,
    #[error("a paid tier needs a subscription: POST /workspaces/{{id}}/subscription with a payment method")]
    SubscriptionRequired,
    #[error("the workspace is subscribed already")]
    AlreadySubscribed,
    #[error("the free tier has no subscription")]
    FreeTier,
    #[error("the workspace has no subscription: POST /workspaces/{{id}}/subscription first")]
    NoSubscription,
    #[error("the workspace's subscription is active: cancel it (DELETE /workspaces/{{id}}/subscription) and delete the workspace once it has ended")]
    SubscriptionActive,
    #[error("the workspace owes {0}: settle it before deleting")]
    PaymentOverdue(Money),
    #[error("subscribing cannot move to a smaller tier; change the tier instead")]
    SubscribeDown,
    #[error("a workspace gets one free trial, and it had it")]
    TrialUsed,
    #[error("a trial starts from the free tier, at least a day before the period's end")]
    TrialUnavailable,
    #[error("a free trial of {0} is running: subscribe to {0} or wait for its end")]
    TrialRunning(TierId),
}

impl WorkspaceError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::AlreadyExists => "workspace_exists",
            Self::NotFound => "workspace_not_found",
            Self::Forbidden => "forbidden",
            Self::InvalidName => "invalid_name",
            Self::AlreadyCollaborator(_) => "already_collaborator",
            Self::NotCollaborator(_) => "not_collaborator",
            Self::OwnerOnly => "owner_only",
            Self::InvalidEmail(_) => "invalid_email",
            Self::TierUnchanged(_) => "tier_unchanged",
            Self::AlreadyScheduled(_) => "tier_change_scheduled",
            Self::NothingScheduled => "no_scheduled_tier_change",
            Self::OwnerOnlyTier => "owner_only",
            Self::SubscriptionRequired => "subscription_required",
            Self::AlreadySubscribed => "already_subscribed",
            Self::FreeTier => "free_tier",
            Self::NoSubscription => "no_subscription",
            Self::SubscriptionActive => "subscription_active",
            Self::PaymentOverdue(_) => "payment_overdue",
            Self::SubscribeDown => "subscribe_down",
            Self::TrialUsed => "trial_used",
            Self::TrialUnavailable => "trial_unavailable",
            Self::TrialRunning(_) => "trial_running",
        }
    }
}

pub fn decide(
    state: Option<&Workspace>,
    command: WorkspaceCommand,
    actor: &Actor,
) -> Result<Vec<WorkspaceEvent>, WorkspaceError> {
    match (state, command) {
        (Some(_), WorkspaceCommand::Create { .. }) => Err(WorkspaceError::AlreadyExists),
        (
            None,
            WorkspaceCommand::Create {
                id,
                name,
                tier,
                billing_email,
                anchor_day,
                at,
            },
        ) => {
            let name = name.trim().to_owned();
            if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
                return Err(WorkspaceError::InvalidName);
            }
            if let Some(email) = &billing_email {
                if !plausible_email(email) {
                    return Err(WorkspaceError::InvalidEmail(email.clone()));
                }
            }
            let mut events = vec![WorkspaceEvent::Created {
                workspace_id: id,
                name,
                tier,
                owner: actor.user.clone(),
                billing_email,
                anchor_day: Some(anchor_day),
            }];
            if tier != TierId::Free {
                // Billing setup: a paid tier holds for the signup's period unpaid, and
                // moves to free at its end unless the owner subscribes by then.
                events.push(WorkspaceEvent::TierChangeScheduled {
                    workspace_id: id,
                    from: tier,
                    to: TierId::Free,
                    effective_on: day(Period::holding(anchor_day, at).end),
                });
            }
            Ok(events)
        }
        (None, _) => Err(WorkspaceError::NotFound),
        (Some(ws), WorkspaceCommand::AddCollaborator { user }) => {
            owner_only(ws, actor)?;
            if ws.owner == user || ws.collaborators.contains(&user) {
                return Err(WorkspaceError::AlreadyCollaborator(user));
            }
            Ok(vec![WorkspaceEvent::CollaboratorAdded {
                workspace_id: ws.id,
                user,
            }])
        }
        (Some(ws), WorkspaceCommand::RemoveCollaborator { user }) => {
            owner_only(ws, actor)?;
            if !ws.collaborators.contains(&user) {
                return Err(WorkspaceError::NotCollaborator(user));
            }
            Ok(vec![WorkspaceEvent::CollaboratorRemoved {
                workspace_id: ws.id,
                user,
            }])
        }
        (Some(ws), WorkspaceCommand::ChangeTier { tier, at }) => {
            may_manage_billing(ws, actor)?;
            if let Some(trial) = &ws.trial {
                return Err(WorkspaceError::TrialRunning(trial.tier));
            }
            change_tier(ws, tier, at)
        }
        (
            Some(ws),
            WorkspaceCommand::StartTrial {
                code,
                tier,
                days,
                at,
            },
        ) => {
            may_start_trial(ws, actor)?;
            start_trial(ws, code, tier, days, at)
        }
        (Some(ws), WorkspaceCommand::RemindTrial { at }) => Ok(remind_trial(ws, at)),
        (Some(ws), WorkspaceCommand::EndTrial { at }) => Ok(end_trial(ws, at)),
        (Some(ws), WorkspaceCommand::Subscribe { billing, tier, at }) => {
            if ws
                .billing
                .as_ref()
                .is_some_and(|b| b.subscription_id == billing.subscription_id)
            {
                // The same subscription recorded again (a retried request): nothing new.
                return Ok(vec![]);
            }
            may_subscribe(ws, tier, actor)?;
            let period = Period::holding(ws.anchor_day, at);
            // During a trial (of this tier, as `may_subscribe` checked) the subscription
            // pays from the trial's end.
            let from = ws
                .trial
                .as_ref()
                .map_or(at, |trial| trial_end(trial).max(at));
            let unpaid = Proration::of(TierId::Free, ws.tier, period, from);
            let mut events = vec![WorkspaceEvent::Subscribed {
                workspace_id: ws.id,
                tier,
                customer: billing.customer,
                subscription_id: billing.subscription_id,
                payment_method: billing.payment_method,
                charge: unpaid.charge,
                period_end: day(period.end),
                subscribed_on: day(at.date()),
            }];
            if let Some(scheduled) = &ws.scheduled {
                // Paid from now on: the move billing setup scheduled is off.
                events.push(WorkspaceEvent::TierChangeCancelled {
                    workspace_id: ws.id,
                    tier: scheduled.tier,
                    effective_on: scheduled.effective_on.clone(),
                });
            }
            if tier != ws.tier {
                // Decided on the workspace as subscribed.
                let subscribed = events.iter().fold(Some(ws.clone()), evolve);
                if let Some(subscribed) = subscribed {
                    events.extend(change_tier(&subscribed, tier, at)?);
                }
            }
            Ok(events)
        }
        (
            Some(ws),
            WorkspaceCommand::RecordCharge {
                source_event,
                reason,
                amount,
                outcome,
                invoice,
                at,
            },
        ) => Ok(record_charge(
            ws,
            Charge {
                source_event,
                reason,
                amount,
                invoice,
            },
            outcome,
            at,
        )),
        (Some(ws), WorkspaceCommand::CancelNow { at }) => {
            may_manage_billing(ws, actor)?;
            if let Some(trial) = &ws.trial {
                return Err(WorkspaceError::TrialRunning(trial.tier));
            }
            cancel_now(ws, at)
        }
        (Some(ws), WorkspaceCommand::Delete { at }) => {
            owner_only(ws, actor)?;
            if ws.billing.is_some() {
                return Err(WorkspaceError::SubscriptionActive);
            }
            if let Some(owed) = owed(ws) {
                return Err(WorkspaceError::PaymentOverdue(owed));
            }
            Ok(vec![WorkspaceEvent::Deleted {
                workspace_id: ws.id,
                deleted_on: day(at.date()),
            }])
        }
        (Some(ws), WorkspaceCommand::ChangePaymentMethod { payment_method }) => {
            may_manage_billing(ws, actor)?;
            match &ws.billing {
                None => Err(WorkspaceError::NoSubscription),
                Some(b) if b.payment_method == payment_method => Ok(vec![]),
                Some(_) => Ok(vec![WorkspaceEvent::PaymentMethodChanged {
                    workspace_id: ws.id,
                    payment_method,
                }]),
            }
        }
        (Some(ws), WorkspaceCommand::Unsubscribe { at }) => Ok(ws
            .billing
            .iter()
            .map(|b| WorkspaceEvent::Unsubscribed {
                workspace_id: ws.id,
                subscription_id: b.subscription_id.clone(),
                ended_on: day(at.date()),
            })
            .collect()),
        (Some(ws), WorkspaceCommand::CancelScheduledTier) => {
            may_manage_billing(ws, actor)?;
            let scheduled = ws
                .scheduled
                .clone()
                .ok_or(WorkspaceError::NothingScheduled)?;
            unpaid_keeps_nothing(ws)?;
            Ok(vec![WorkspaceEvent::TierChangeCancelled {
                workspace_id: ws.id,
                tier: scheduled.tier,
                effective_on: scheduled.effective_on,
            }])
        }
        (Some(ws), WorkspaceCommand::ApplyScheduledTier { at }) => {
            let Some(scheduled) = &ws.scheduled else {
                return Ok(vec![]);
            };
            let today = day(at.date());
            if today < scheduled.effective_on {
                return Ok(vec![]);
            }
            let period = Period::holding(ws.anchor_day, at);
            Ok(vec![WorkspaceEvent::TierChanged {
                workspace_id: ws.id,
                from: ws.tier,
                to: scheduled.tier,
                at: at.unix_timestamp(),
                period_start: day(period.start),
                period_end: day(period.end),
                charge: Money::zero(scheduled.tier.policy().monthly_price.currency),
                credits_top_up: 0,
                credits_taken_back: 0,
                seconds_left: period.seconds_left(at),
                period_seconds: period.seconds(),
            }])
        }
    }
}

/// A charge of the workspace, whatever became of it.
struct Charge {
    source_event: Uuid,
    reason: ChargeFor,
    amount: Money,
    invoice: Option<String>,
}

/// The sum of what `ws` owes, if anything.
fn owed(ws: &Workspace) -> Option<Money> {
    let first = ws.overdue.first()?;
    Some(
        ws.overdue
            .iter()
            .skip(1)
            .try_fold(first.amount, |sum, o| sum.checked_add(o.amount))
            .unwrap_or(first.amount),
    )
}

fn record_charge(
    ws: &Workspace,
    charge: Charge,
    outcome: Result<String, String>,
    at: OffsetDateTime,
) -> Vec<WorkspaceEvent> {
    let Charge {
        source_event,
        reason,
        amount,
        invoice,
    } = charge;
    let owed = ws.overdue.iter().find(|o| o.source_event == source_event);
    // The subscription ended at once while this first charge was at the provider: nothing
    // is owed for it any more, and what it took goes back. (A debt recorded before the
    // subscription ended is still owed, and its retries go on.)
    if ws.billing.is_none()
        && owed.is_none()
        && matches!(reason, ChargeFor::Subscription | ChargeFor::TierChange)
    {
        return match outcome {
            Ok(payment_intent) => vec![WorkspaceEvent::ChargeReturned {
                workspace_id: ws.id,
                source_event,
                reason,
                amount,
                payment_intent,
                returned_on: day(at.date()),
            }],
            Err(_) => Vec::new(),
        };
    }
    let error = match outcome {
        Ok(payment_intent) => {
            let mut events = vec![WorkspaceEvent::Charged {
                workspace_id: ws.id,
                source_event,
                reason,
                amount,
                payment_intent,
                paid_on: day(at.date()),
                invoice,
            }];
            let settled_all = ws.overdue.iter().all(|o| o.source_event == source_event);
            if ws.suspended && settled_all {
                events.push(WorkspaceEvent::Reactivated {
                    workspace_id: ws.id,
                });
            }
            return events;
        }
        Err(error) => error,
    };
    let retry_on = |first: time::Date, failures: u32| {
        RETRY_DAYS
            .get(failures as usize - 1)
            .map(|days| day(first + time::Duration::days(*days)))
    };
    let Some(owed) = owed else {
        return vec![WorkspaceEvent::ChargeFailed {
            workspace_id: ws.id,
            source_event,
            reason,
            amount,
            error,
            failed_on: day(at.date()),
            next_retry_on: retry_on(at.date(), 1),
            invoice,
        }];
    };
    let first = time::Date::parse(&owed.first_failed_on, DAY).unwrap_or(at.date());
    let failures = owed.failures + 1;
    let next_retry_on = retry_on(first, failures);
    let mut events = vec![WorkspaceEvent::RetryFailed {
        workspace_id: ws.id,
        source_event,
        amount,
        error,
        failures,
        final_notice: failures as usize == RETRY_DAYS.len(),
        next_retry_on: next_retry_on.clone(),
    }];
    if next_retry_on.is_none() && !ws.suspended {
        let total = ws
            .overdue
            .iter()
            .map(|o| o.amount)
            .try_fold(Money::zero(amount.currency), Money::checked_add)
            .unwrap_or(amount);
        events.push(WorkspaceEvent::Suspended {
            workspace_id: ws.id,
            owed: total,
        });
    }
    events
}

/// Whether `actor` may subscribe `ws` to `tier`: checked before the provider is asked.
pub fn may_subscribe(ws: &Workspace, tier: TierId, actor: &Actor) -> Result<(), WorkspaceError> {
    may_manage_billing(ws, actor)?;
    if ws.billing.is_some() {
        return Err(WorkspaceError::AlreadySubscribed);
    }
    if tier == TierId::Free {
        return Err(WorkspaceError::FreeTier);
    }
    if tier.rank() < ws.tier.rank() {
        return Err(WorkspaceError::SubscribeDown);
    }
    // A trial converts only into its own tier: asked before the provider, or a refused
    // subscription would be left billing there.
    if let Some(trial) = ws.trial.as_ref().filter(|t| t.tier != tier) {
        return Err(WorkspaceError::TrialRunning(trial.tier));
    }
    Ok(())
}

fn change_tier(
    ws: &Workspace,
    tier: TierId,
    at: OffsetDateTime,
) -> Result<Vec<WorkspaceEvent>, WorkspaceError> {
    let period = Period::holding(ws.anchor_day, at);
    if tier == ws.tier {
        // Asking for the tier it is on keeps it there: a scheduled move is called off.
        return match &ws.scheduled {
            Some(scheduled) => unpaid_keeps_nothing(ws).map(|()| {
                vec![WorkspaceEvent::TierChangeCancelled {
                    workspace_id: ws.id,
                    tier: scheduled.tier,
                    effective_on: scheduled.effective_on.clone(),
                }]
            }),
            None => Err(WorkspaceError::TierUnchanged(tier)),
        };
    }
    if tier.rank() < ws.tier.rank() {
        if ws.scheduled.as_ref().is_some_and(|s| s.tier == tier) {
            return Err(WorkspaceError::AlreadyScheduled(tier));
        }
        if tier != TierId::Free {
            // Unpaid, it would stay on that paid tier past the period.
            unpaid_keeps_nothing(ws)?;
        }
        return Ok(vec![WorkspaceEvent::TierChangeScheduled {
            workspace_id: ws.id,
            from: ws.tier,
            to: tier,
            effective_on: day(period.end),
        }]);
    }
    // A paid tier is paid for by the subscription: without one, nothing could collect
    // the charge. (Subscribing records the subscription before this change.)
    if tier != TierId::Free && ws.billing.is_none() {
        return Err(WorkspaceError::SubscriptionRequired);
    }
    let proration = Proration::of(ws.tier, tier, period, at);
    Ok(vec![WorkspaceEvent::TierChanged {
        workspace_id: ws.id,
        from: ws.tier,
        to: tier,
        at: at.unix_timestamp(),
        period_start: day(period.start),
        period_end: day(period.end),
        charge: proration.charge,
        credits_top_up: proration.credits,
        credits_taken_back: 0,
        seconds_left: proration.seconds_left,
        period_seconds: proration.period_seconds,
    }])
}

/// Ends the subscription at `at`: the workspace moves to the free tier now, and what is
/// left of the period is given back. The refund is what subscribing at `at` would have
/// charged (the tier's price × seconds left / period seconds, half up to the cent), no
/// more than the period's payments, taken from them newest first; the credits taken back
/// are what subscribing would have granted (rounded down), no more than the wallet's
/// granted credits (the wallet decides that). A workspace that owes a charge settles it
/// first: refunding a period while its payment is owed would pay back money never paid.
fn cancel_now(ws: &Workspace, at: OffsetDateTime) -> Result<Vec<WorkspaceEvent>, WorkspaceError> {
    let billing = ws.billing.as_ref().ok_or(WorkspaceError::NoSubscription)?;
    if let Some(owed) = owed(ws) {
        return Err(WorkspaceError::PaymentOverdue(owed));
    }
    let period = Period::holding(ws.anchor_day, at);
    let rest = Proration::of(TierId::Free, ws.tier, period, at);
    let start = day(period.start);
    let mut left = rest.charge;
    let mut refunds = Vec::new();
    for payment in ws.payments.iter().rev().filter(|p| p.paid_on >= start) {
        if left.amount <= rust_decimal::Decimal::ZERO {
            break;
        }
        if payment.amount.currency != left.currency {
            continue;
        }
        let share = Money::new(payment.amount.amount.min(left.amount), left.currency);
        left = Money::new(left.amount - share.amount, left.currency);
        refunds.push(RefundShare {
            payment_intent: payment.payment_intent.clone(),
            amount: share,
        });
    }
    let refund = Money::new(rest.charge.amount - left.amount, rest.charge.currency);
    let free = TierId::Free.policy().monthly_price.currency;
    Ok(vec![
        WorkspaceEvent::SubscriptionCancelled {
            workspace_id: ws.id,
            subscription_id: billing.subscription_id.clone(),
            tier: ws.tier,
            refund,
            refunds,
            period_start: start.clone(),
            period_end: day(period.end),
            seconds_left: rest.seconds_left,
            period_seconds: rest.period_seconds,
        },
        WorkspaceEvent::TierChanged {
            workspace_id: ws.id,
            from: ws.tier,
            to: TierId::Free,
            at: at.unix_timestamp(),
            period_start: start,
            period_end: day(period.end),
            charge: Money::zero(free),
            credits_top_up: 0,
            credits_taken_back: rest.credits,
            seconds_left: rest.seconds_left,
            period_seconds: rest.period_seconds,
        },
        WorkspaceEvent::Unsubscribed {
            workspace_id: ws.id,
            subscription_id: billing.subscription_id.clone(),
            ended_on: day(at.date()),
        },
    ])
}

/// 00:00 UTC of the trial's last day.
fn trial_end(trial: &Trial) -> OffsetDateTime {
    time::Date::parse(&trial.ends_on, DAY)
        .map(|d| d.midnight().assume_utc())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `more` credits a period grants, for the `seconds` of it given.
fn share_of(more: u64, seconds: i64, period: Period) -> u64 {
    let whole = period.seconds();
    if whole <= 0 || seconds <= 0 {
        return 0;
    }
    // i128: credits × seconds stays exact far beyond any tier's grant.
    u64::try_from(i128::from(more) * i128::from(seconds) / i128::from(whole)).unwrap_or(0)
}

/// A trial of `tier` for `days` from `at`, for a free workspace that never had one. It
/// ends no later than the day before the period's end, so no renewal falls inside it
/// (a renewal would grant the trial tier's month). Its credits are the tier's monthly
/// credits over free's for the trial's seconds, rounded down, granted at once; the move
/// is a `workspace.tier_changed` like any other, so prices and limits follow at once.
/// Whether `actor` may start a trial of any tier on `ws`: what the workspace alone
/// decides, so that it can be asked before any promo code is looked at.
pub fn may_start_trial(ws: &Workspace, actor: &Actor) -> Result<(), WorkspaceError> {
    may_manage_billing(ws, actor)?;
    if ws.trialed {
        return Err(WorkspaceError::TrialUsed);
    }
    if ws.billing.is_some() {
        return Err(WorkspaceError::AlreadySubscribed);
    }
    if ws.tier != TierId::Free {
        return Err(WorkspaceError::TrialUnavailable);
    }
    Ok(())
}

fn start_trial(
    ws: &Workspace,
    code: String,
    tier: TierId,
    days: u16,
    at: OffsetDateTime,
) -> Result<Vec<WorkspaceEvent>, WorkspaceError> {
    if tier == TierId::Free {
        return Err(WorkspaceError::TrialUnavailable);
    }
    let period = Period::holding(ws.anchor_day, at);
    let today = at.date();
    let ends =
        (today + time::Duration::days(i64::from(days))).min(period.end - time::Duration::days(1));
    if ends <= today {
        return Err(WorkspaceError::TrialUnavailable);
    }
    let end = ends.midnight().assume_utc();
    let seconds = period.seconds_left(at) - period.seconds_left(end);
    let more = tier
        .policy()
        .monthly_credits
        .saturating_sub(ws.tier.policy().monthly_credits);
    let credits = share_of(more, seconds, period);
    Ok(vec![
        WorkspaceEvent::TrialStarted {
            workspace_id: ws.id,
            code,
            tier,
            previous: ws.tier,
            ends_on: day(ends),
            credits,
        },
        WorkspaceEvent::TierChanged {
            workspace_id: ws.id,
            from: ws.tier,
            to: tier,
            at: at.unix_timestamp(),
            period_start: day(period.start),
            period_end: day(period.end),
            charge: Money::zero(tier.policy().monthly_price.currency),
            credits_top_up: credits,
            credits_taken_back: 0,
            seconds_left: period.seconds_left(at),
            period_seconds: period.seconds(),
        },
    ])
}

fn remind_trial(ws: &Workspace, at: OffsetDateTime) -> Vec<WorkspaceEvent> {
    let Some(trial) = ws.trial.as_ref().filter(|t| !t.reminded) else {
        return vec![];
    };
    let due = trial_end(trial).date() - time::Duration::days(TRIAL_REMINDER_DAYS);
    if at.date() < due {
        return vec![];
    }
    vec![WorkspaceEvent::TrialEnding {
        workspace_id: ws.id,
        tier: trial.tier,
        ends_on: trial.ends_on.clone(),
        subscribed: ws.billing.is_some(),
    }]
}

/// A trial whose day has come ends: on to paid when the workspace subscribed meanwhile
/// (the rest of the period's credits granted, as the subscription's charge paid for
/// them), else back to the tier before it, the trial's credits taken back from what is
/// left of granted credits.
fn end_trial(ws: &Workspace, at: OffsetDateTime) -> Vec<WorkspaceEvent> {
    let Some(trial) = &ws.trial else {
        return vec![];
    };
    let end = trial_end(trial);
    if at < end {
        return vec![];
    }
    let period = Period::holding(ws.anchor_day, end);
    if ws.billing.is_some() {
        let more = trial
            .tier
            .policy()
            .monthly_credits
            .saturating_sub(trial.previous.policy().monthly_credits);
        return vec![WorkspaceEvent::TrialEnded {
            workspace_id: ws.id,
            tier: trial.tier,
            outcome: TrialOutcome::Converted,
            credits_top_up: share_of(more, period.seconds_left(end), period),
        }];
    }
    let mut events = vec![WorkspaceEvent::TrialEnded {
        workspace_id: ws.id,
        tier: trial.tier,
        outcome: TrialOutcome::Reverted,
        credits_top_up: 0,
    }];
    if ws.tier != trial.previous {
        events.push(WorkspaceEvent::TierChanged {
            workspace_id: ws.id,
            from: ws.tier,
            to: trial.previous,
            at: at.unix_timestamp(),
            period_start: day(period.start),
            period_end: day(period.end),
            charge: Money::zero(trial.previous.policy().monthly_price.currency),
            credits_top_up: 0,
            credits_taken_back: trial.credits,
            seconds_left: period.seconds_left(at),
            period_seconds: period.seconds(),
        });
    }
    events
}

/// A paid tier held unpaid (billing setup) ends with its period: no scheduled move can
/// be called off nor replaced until the workspace subscribes.
fn unpaid_keeps_nothing(ws: &Workspace) -> Result<(), WorkspaceError> {
    if ws.tier != TierId::Free && ws.billing.is_none() {
        Err(WorkspaceError::SubscriptionRequired)
    } else {
        Ok(())
    }
}

/// `YYYY-MM-DD`, which orders as the days do.
fn day(date: time::Date) -> String {
    date.format(DAY).unwrap_or_default()
}

/// One `@` with something on each side and a dot in the domain: enough to catch typos;
/// the mail provider is the real judge.
fn plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && email.len() <= 254
        && !email.chars().any(char::is_whitespace)
}

/// Whether `actor` may change what `ws` pays (its tier, subscription, card, trial): its
/// owner or an operator; a collaborator is told it is the owner's (`owner_only`).
pub fn may_manage_billing(ws: &Workspace, actor: &Actor) -> Result<(), WorkspaceError> {
    owner_only(ws, actor).map_err(|e| match e {
        WorkspaceError::OwnerOnly => WorkspaceError::OwnerOnlyTier,
        e => e,
    })
}

fn owner_only(ws: &Workspace, actor: &Actor) -> Result<(), WorkspaceError> {
    if actor.user == ws.owner || actor.role == Role::Admin {
        Ok(())
    } else if ws.admits(actor) {
        Err(WorkspaceError::OwnerOnly)
    } else {
        Err(WorkspaceError::Forbidden)
    }
}

pub fn evolve(state: Option<Workspace>, event: &WorkspaceEvent) -> Option<Workspace> {
    match (state, event) {
        (
            None,
            WorkspaceEvent::Created {
                workspace_id,
                name,
                tier,
                owner,
                billing_email,
                anchor_day,
            },
        ) => Some(Workspace {
            id: *workspace_id,
            name: name.clone(),
            tier: *tier,
            owner: owner.clone(),
            collaborators: BTreeSet::new(),
            billing_email: billing_email.clone(),
            anchor_day: anchor_day.unwrap_or_else(first_day),
            scheduled: None,
            billing: None,
            overdue: Vec::new(),
            suspended: false,
            subscribed_on: None,
            unsubscribed_on: None,
            deleted_on: None,
            payments: Vec::new(),
            trial: None,
            trialed: false,
            former_customer: None,
        }),
        (Some(mut ws), WorkspaceEvent::CollaboratorAdded { user, .. }) => {
            ws.collaborators.insert(user.clone());
            Some(ws)
        }
        (Some(mut ws), WorkspaceEvent::CollaboratorRemoved { user, .. }) => {
            ws.collaborators.remove(user);
            Some(ws)
        }
        (Some(mut ws), WorkspaceEvent::TierChanged { to, .. }) => {
            ws.tier = *to;
            ws.scheduled = None;
            Some(ws)
        }
        (
            Some(mut ws),
            WorkspaceEvent::TierChangeScheduled {
                to, effective_on, ..
            },
        ) => {
            ws.scheduled = Some(ScheduledTier {
                tier: *to,
                effective_on: effective_on.clone(),
            });
            Some(ws)
        }
        (Some(mut ws), WorkspaceEvent::TierChangeCancelled { .. }) => {
            ws.scheduled = None;
            Some(ws)
        }
        (
            Some(mut ws),
            WorkspaceEvent::Subscribed {
                customer,
                subscription_id,
                payment_method,
                subscribed_on,
                ..
            },
        ) => {
            ws.subscribed_on = Some(subscribed_on.clone());
            ws.unsubscribed_on = None;
            ws.billing = Some(Billing {
                customer: customer.clone(),
                subscription_id: subscription_id.clone(),
                payment_method: payment_method.clone(),
            });
            Some(ws)
        }
        (Some(mut ws), WorkspaceEvent::Unsubscribed { ended_on, .. }) => {
            if let Some(ended) = ws.billing.take() {
                ws.former_customer = Some(ended.customer);
            }
            ws.unsubscribed_on = Some(ended_on.clone());
            Some(ws)
        }
        (
            Some(mut ws),
            WorkspaceEvent::ChargeFailed {
                source_event,
                reason,
                amount,
                failed_on,
                invoice,
                ..
            },
        ) => {
            ws.overdue.push(Overdue {
                source_event: *source_event,
                reason: *reason,
                amount: *amount,
                failures: 1,
                first_failed_on: failed_on.clone(),
                invoice: invoice.clone(),
            });
            Some(ws)
        }
        (
            Some(mut ws),
            WorkspaceEvent::RetryFailed {
                source_event,
                failures,
                ..
            },
        ) => {
            for o in ws
                .overdue
                .iter_mut()
                .filter(|o| o.source_event == *source_event)
            {
                o.failures = *failures;
            }
            Some(ws)
        }
        (
            Some(mut ws),
            WorkspaceEvent::Charged {
                source_event,
                reason,
                amount,
                payment_intent,
                paid_on,
                ..
            },
        ) => {
            ws.overdue.retain(|o| o.source_event != *source_event);
            if *reason != ChargeFor::Overage {
                // A past period's overage is not a payment for the period a cancellation
                // refunds.
                let kept_from = time::Date::parse(paid_on, DAY)
                    .map(|d| day(d - time::Duration::days(PAYMENTS_KEPT_DAYS)))
                    .unwrap_or_default();
                ws.payments.retain(|p| p.paid_on >= kept_from);
                ws.payments.push(Payment {
                    payment_intent: payment_intent.clone(),
                    amount: *amount,
                    paid_on: paid_on.clone(),
                });
            }
            Some(ws)
        }
        (Some(mut ws), WorkspaceEvent::PaymentMethodChanged { payment_method, .. }) => {
            if let Some(b) = ws.billing.as_mut() {
                b.payment_method = payment_method.clone();
            }
            Some(ws)
        }
        (Some(mut ws), WorkspaceEvent::Suspended { .. }) => {
            ws.suspended = true;
            Some(ws)
        }
        (Some(mut ws), WorkspaceEvent::Deleted { deleted_on, .. }) => {
            ws.deleted_on = Some(deleted_on.clone());
            ws.scheduled = None;
            Some(ws)
        }
        (Some(mut ws), WorkspaceEvent::Reactivated { .. }) => {
            ws.suspended = false;
            Some(ws)
        }
        (
            Some(mut ws),
            WorkspaceEvent::TrialStarted {
                code,
                tier,
                previous,
                ends_on,
                credits,
                ..
            },
        ) => {
            ws.trial = Some(Trial {
                code: code.clone(),
                tier: *tier,
                previous: *previous,
                ends_on: ends_on.clone(),
                credits: *credits,
                reminded: false,
            });
            ws.trialed = true;
            Some(ws)
        }
        (Some(mut ws), WorkspaceEvent::TrialEnding { .. }) => {
            if let Some(t) = ws.trial.as_mut() {
                t.reminded = true;
            }
            Some(ws)
        }
        (Some(mut ws), WorkspaceEvent::TrialEnded { .. }) => {
            ws.trial = None;
            Some(ws)
        }
        // Events that do not apply to the state leave it as it is; the store never
        // hands us such a sequence, and replay must not panic on history.
        (state, _) => state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Uuid {
        Uuid::from_u128(7)
    }

    fn created(owner: &str) -> WorkspaceEvent {
        WorkspaceEvent::Created {
            workspace_id: id(),
            name: "Acme".into(),
            tier: TierId::Pro,
            owner: UserId::new(owner),
            billing_email: Some("billing@acme.test".into()),
            anchor_day: Some(1),
        }
    }

    fn given(events: &[WorkspaceEvent]) -> Option<Workspace> {
        events.iter().fold(None, evolve)
    }

    #[test]
    fn creating_records_the_caller_as_owner_and_trims_the_name() {
        let events = decide(
            None,
            WorkspaceCommand::Create {
                id: id(),
                name: "  Acme ".into(),
                tier: TierId::Pro,
                billing_email: Some("billing@acme.test".into()),
                anchor_day: 1,
                at: time::macros::datetime!(2026-11-01 09:00 UTC),
            },
            &Actor::user("alice"),
        )
        .unwrap();
        // Billing setup: pro holds for the signup's period, then moves to free unless
        // the owner subscribes.
        assert_eq!(
            events,
            vec![
                created("alice"),
                WorkspaceEvent::TierChangeScheduled {
                    workspace_id: id(),
                    from: TierId::Pro,
                    to: TierId::Free,
                    effective_on: "2026-12-01".into(),
                }
            ]
        );
    }

    #[test]
    fn blank_or_long_names_are_refused() {
        for name in ["", "   ", &"x".repeat(MAX_NAME_LEN + 1)] {
            let err = decide(
                None,
                WorkspaceCommand::Create {
                    id: id(),
                    name: name.into(),
                    tier: TierId::Free,
                    billing_email: None,
                    anchor_day: 1,
                    at: time::macros::datetime!(2026-11-01 09:00 UTC),
                },
                &Actor::user("alice"),
            )
            .unwrap_err();
            assert_eq!(err, WorkspaceError::InvalidName);
        }
    }

    #[test]
    fn implausible_billing_emails_are_refused() {
        for email in [
            "alice",
            "alice@",
            "@acme.test",
            "a@b",
            "a b@acme.test",
            "a@acme.",
        ] {
            let err = decide(
                None,
                WorkspaceCommand::Create {
                    id: id(),
                    name: "Acme".into(),
                    tier: TierId::Free,
                    billing_email: Some(email.into()),
                    anchor_day: 1,
                    at: time::macros::datetime!(2026-11-01 09:00 UTC),
                },
                &Actor::user("alice"),
            )
            .unwrap_err();
            assert_eq!(err, WorkspaceError::InvalidEmail(email.into()), "{email}");
        }
    }

    #[test]
    fn creating_twice_is_refused() {
        let state = given(&[created("alice")]);
        let err = decide(
            state.as_ref(),
            WorkspaceCommand::Create {
                id: id(),
                name: "Acme".into(),
                tier: TierId::Pro,
                billing_email: None,
                anchor_day: 1,
                at: time::macros::datetime!(2026-11-01 09:00 UTC),
            },
            &Actor::user("alice"),
        )
        .unwrap_err();
        assert_eq!(err, WorkspaceError::AlreadyExists);
    }

    #[test]
    fn only_the_owner_adds_collaborators_and_they_are_admitted() {
        let state = given(&[created("alice")]).unwrap();
        let add = WorkspaceCommand::AddCollaborator {
            user: UserId::new("bob"),
        };
        assert_eq!(
            decide(Some(&state), add.clone(), &Actor::user("mallory")),
            Err(WorkspaceError::Forbidden)
        );
        let events = decide(Some(&state), add.clone(), &Actor::user("alice")).unwrap();
        let state = events.iter().fold(Some(state), evolve).unwrap();
        assert!(state.admits(&Actor::user("bob")));
        assert!(!state.admits(&Actor::user("mallory")));
        assert_eq!(
            decide(Some(&state), add, &Actor::user("bob")),
            Err(WorkspaceError::OwnerOnly)
        );
    }

    #[test]
    fn removing_someone_who_is_not_a_collaborator_is_refused() {
        let state = given(&[created("alice")]).unwrap();
        let err = decide(
            Some(&state),
            WorkspaceCommand::RemoveCollaborator {
                user: UserId::new("bob"),
            },
            &Actor::user("alice"),
        )
        .unwrap_err();
        assert_eq!(err, WorkspaceError::NotCollaborator(UserId::new("bob")));
    }

    #[test]
    fn events_round_trip_through_type_and_payload() {
        let event = created("alice");
        assert_eq!(event.event_type(), "workspace.created");
        let back = WorkspaceEvent::from_parts(event.event_type(), event.payload()).unwrap();
        assert_eq!(back, event);
    }

    fn billing() -> Billing {
        Billing {
            customer: "cus_1".into(),
            subscription_id: "sub_1".into(),
            payment_method: "pm_1".into(),
        }
    }

    fn pro(anchor: u8) -> Workspace {
        let mut ws = given(&[created("alice")]).unwrap();
        ws.anchor_day = anchor;
        ws.billing = Some(billing());
        ws
    }

    #[test]
    fn a_paid_tier_needs_a_subscription_and_subscribing_charges_the_unpaid_rest_of_the_period() {
        use time::macros::datetime;
        let at = datetime!(2026-11-16 00:00 UTC);
        let mut free = given(&[created("alice")]).unwrap();
        free.tier = TierId::Free;
        assert_eq!(
            change(&free, TierId::Pro, at),
            Err(WorkspaceError::SubscriptionRequired)
        );
        let subscribe = |ws: &Workspace, tier: TierId, who: &str| {
            decide(
                Some(ws),
                WorkspaceCommand::Subscribe {
                    billing: billing(),
                    tier,
                    at,
                },
                &Actor::user(who),
            )
        };
        assert_eq!(
            subscribe(&free, TierId::Free, "alice"),
            Err(WorkspaceError::FreeTier)
        );
        assert_eq!(
            subscribe(&free, TierId::Pro, "bob"),
            Err(WorkspaceError::Forbidden)
        );
        // From free: the subscription, then the move up, charged on its own event.
        let events = subscribe(&free, TierId::Pro, "alice").unwrap();
        let [WorkspaceEvent::Subscribed {
            charge, period_end, ..
        }, WorkspaceEvent::TierChanged {
            charge: move_up,
            credits_top_up,
            ..
        }] = events.as_slice()
        else {
            panic!("{events:?}")
        };
        assert_eq!(charge.to_string(), "0.00 USD");
        assert_eq!(period_end, "2026-12-01");
        assert_eq!(
            (move_up.to_string().as_str(), *credits_top_up),
            ("24.50 USD", 4_500)
        );
        let subscribed = events.iter().fold(Some(free), evolve).unwrap();
        assert_eq!(
            (subscribed.tier, subscribed.billing.clone()),
            (TierId::Pro, Some(billing()))
        );
        // Recorded again, it is nothing new; another subscription is refused.
        assert_eq!(subscribe(&subscribed, TierId::Pro, "alice"), Ok(vec![]));
        let mut other = billing();
        other.subscription_id = "sub_2".into();
        assert_eq!(
            decide(
                Some(&subscribed),
                WorkspaceCommand::Subscribe {
                    billing: other,
                    tier: TierId::Pro,
                    at
                },
                &Actor::user("alice")
            ),
            Err(WorkspaceError::AlreadySubscribed)
        );
        // A workspace created on pro subscribes at pro and pays the rest of the period.
        let created_on_pro = given(&[created("alice")]).unwrap();
        let events = subscribe(&created_on_pro, TierId::Pro, "alice").unwrap();
        let [WorkspaceEvent::Subscribed { charge, .. }] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(charge.to_string(), "24.50 USD");
        assert_eq!(
            subscribe(&created_on_pro, TierId::Free, "alice"),
            Err(WorkspaceError::FreeTier)
        );
    }

    fn change(
        ws: &Workspace,
        tier: TierId,
        at: OffsetDateTime,
    ) -> Result<Vec<WorkspaceEvent>, WorkspaceError> {
        decide(
            Some(ws),
            WorkspaceCommand::ChangeTier { tier, at },
            &Actor::user("alice"),
        )
    }

    #[test]
    fn a_move_up_takes_effect_at_once_prorated_on_the_period_left() {
        use time::macros::datetime;
        let ws = pro(1);
        let events = change(&ws, TierId::Enterprise, datetime!(2026-11-16 00:00 UTC)).unwrap();
        let [WorkspaceEvent::TierChanged {
            from,
            to,
            period_start,
            period_end,
            charge,
            credits_top_up,
            ..
        }] = events.as_slice()
        else {
            panic!("{events:?}")
        };
        assert_eq!((*from, *to), (TierId::Pro, TierId::Enterprise));
        assert_eq!(
            (period_start.as_str(), period_end.as_str()),
            ("2026-11-01", "2026-12-01")
        );
        assert_eq!(charge.to_string(), "225.00 USD");
        assert_eq!(*credits_top_up, 45_000);
        let ws = events.iter().fold(Some(ws), evolve).unwrap();
        assert_eq!(ws.tier, TierId::Enterprise);
    }

    #[test]
    fn a_paid_tier_created_unpaid_moves_to_free_at_the_period_end_unless_subscribed() {
        use time::macros::datetime;
        let at = datetime!(2026-11-10 00:00 UTC);
        let mut created_on = given(&[created("alice")]).unwrap();
        created_on.tier = TierId::Enterprise;
        let scheduled = WorkspaceEvent::TierChangeScheduled {
            workspace_id: id(),
            from: TierId::Enterprise,
            to: TierId::Free,
            effective_on: "2026-12-01".into(),
        };
        let unpaid = evolve(Some(created_on), &scheduled).unwrap();
        // Nothing keeps it on a paid tier unpaid: not calling the move off, not a move to
        // another paid tier.
        for refused in [
            change(&unpaid, TierId::Enterprise, at),
            change(&unpaid, TierId::Pro, at),
            decide(
                Some(&unpaid),
                WorkspaceCommand::CancelScheduledTier,
                &Actor::user("alice"),
            ),
        ] {
            assert_eq!(refused, Err(WorkspaceError::SubscriptionRequired));
        }
        assert_eq!(
            change(&unpaid, TierId::Free, at),
            Err(WorkspaceError::AlreadyScheduled(TierId::Free))
        );
        // Subscribing calls it off.
        let events = decide(
            Some(&unpaid),
            WorkspaceCommand::Subscribe {
                billing: billing(),
                tier: TierId::Enterprise,
                at,
            },
            &Actor::user("alice"),
        )
        .unwrap();
        let [WorkspaceEvent::Subscribed { .. }, WorkspaceEvent::TierChangeCancelled { tier, .. }] =
            events.as_slice()
        else {
            panic!("{events:?}")
        };
        assert_eq!(*tier, TierId::Free);
        let paid = events.iter().fold(Some(unpaid), evolve).unwrap();
        assert_eq!((paid.tier, &paid.scheduled), (TierId::Enterprise, &None));
    }

    fn free(anchor: u8) -> Workspace {
        let mut ws = given(&[created("alice")]).unwrap();
        ws.tier = TierId::Free;
        ws.anchor_day = anchor;
        ws
    }

    fn trial(
        ws: &Workspace,
        days: u16,
        at: OffsetDateTime,
    ) -> Result<Vec<WorkspaceEvent>, WorkspaceError> {
        decide(
            Some(ws),
            WorkspaceCommand::StartTrial {
                code: "TRY-PRO".into(),
                tier: TierId::Pro,
                days,
                at,
            },
            &Actor::user("alice"),
        )
    }

    fn system(ws: &Workspace, command: WorkspaceCommand) -> Vec<WorkspaceEvent> {
        decide(Some(ws), command, &Actor::system("trials")).unwrap()
    }

    #[test]
    fn a_trial_grants_the_tier_once_with_its_share_of_credits_and_reverts_at_its_end() {
        use time::macros::datetime;
        // A 30-day period from 1 November: a 10-day trial is a third of pro's 9,000 more.
        let at = datetime!(2026-11-05 00:00 UTC);
        let ws = free(1);
        let events = trial(&ws, 10, at).unwrap();
        let [WorkspaceEvent::TrialStarted {
            ends_on, credits, ..
        }, WorkspaceEvent::TierChanged {
            to: TierId::Pro,
            credits_top_up,
            charge,
            ..
        }] = events.as_slice()
        else {
            panic!("{events:?}")
        };
        assert_eq!((ends_on.as_str(), *credits), ("2026-11-15", 3_000));
        assert_eq!(
            (*credits_top_up, charge.to_string().as_str()),
            (3_000, "0.00 USD")
        );
        let ws = events.iter().fold(Some(ws), evolve).unwrap();
        assert_eq!(ws.tier, TierId::Pro);
        // Once per workspace; no tier change while it runs.
        assert_eq!(trial(&ws, 10, at), Err(WorkspaceError::TrialUsed));
        assert_eq!(
            change(&ws, TierId::Enterprise, at),
            Err(WorkspaceError::TrialRunning(TierId::Pro))
        );
        // The reminder, once, three days before the end.
        let remind = |ws: &Workspace, at| system(ws, WorkspaceCommand::RemindTrial { at });
        assert_eq!(remind(&ws, datetime!(2026-11-11 23:59 UTC)), vec![]);
        let reminded = remind(&ws, datetime!(2026-11-12 06:00 UTC));
        assert!(matches!(
            reminded.as_slice(),
            [WorkspaceEvent::TrialEnding {
                subscribed: false,
                ..
            }]
        ));
        let ws = reminded.iter().fold(Some(ws), evolve).unwrap();
        assert_eq!(remind(&ws, datetime!(2026-11-13 06:00 UTC)), vec![]);
        // The end: back to free, the trial's credits taken back.
        let end = |ws: &Workspace, at| system(ws, WorkspaceCommand::EndTrial { at });
        assert_eq!(end(&ws, datetime!(2026-11-14 23:59 UTC)), vec![]);
        let ended = end(&ws, datetime!(2026-11-15 06:00 UTC));
        let [WorkspaceEvent::TrialEnded {
            outcome: TrialOutcome::Reverted,
            ..
        }, WorkspaceEvent::TierChanged {
            to: TierId::Free,
            credits_taken_back: 3_000,
            ..
        }] = ended.as_slice()
        else {
            panic!("{ended:?}")
        };
        let ws = ended.iter().fold(Some(ws), evolve).unwrap();
        assert_eq!(
            (ws.tier, &ws.trial, ws.trialed),
            (TierId::Free, &None, true)
        );
        assert_eq!(trial(&ws, 10, at), Err(WorkspaceError::TrialUsed));
    }

    #[test]
    fn a_trial_ends_before_the_renewal_and_subscribing_during_it_pays_from_its_end() {
        use time::macros::datetime;
        // 20 days asked on 25 November: cut to the day before the period's end.
        let at = datetime!(2026-11-25 00:00 UTC);
        let ws = free(1);
        let events = trial(&ws, 20, at).unwrap();
        let [WorkspaceEvent::TrialStarted { ends_on, .. }, _] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(ends_on, "2026-11-30");
        assert_eq!(
            trial(&ws, 5, datetime!(2026-11-30 08:00 UTC)),
            Err(WorkspaceError::TrialUnavailable)
        );
        let ws = events.iter().fold(Some(ws), evolve).unwrap();
        // Subscribing to the trial's tier pays from the trial's end: the last day, 49.00/30.
        let subscribed = decide(
            Some(&ws),
            WorkspaceCommand::Subscribe {
                billing: billing(),
                tier: TierId::Pro,
                at,
            },
            &Actor::user("alice"),
        )
        .unwrap();
        let [WorkspaceEvent::Subscribed { charge, .. }] = subscribed.as_slice() else {
            panic!("{subscribed:?}")
        };
        assert_eq!(charge.to_string(), "1.63 USD");
        assert_eq!(
            decide(
                Some(&ws),
                WorkspaceCommand::Subscribe {
                    billing: billing(),
                    tier: TierId::Enterprise,
                    at,
                },
                &Actor::user("alice"),
            ),
            Err(WorkspaceError::TrialRunning(TierId::Pro))
        );
        let ws = subscribed.iter().fold(Some(ws), evolve).unwrap();
        // On to paid at the end, with the last day's credits: 9,000 / 30.
        let ended = system(
            &ws,
            WorkspaceCommand::EndTrial {
                at: datetime!(2026-11-30 06:00 UTC),
            },
        );
        assert_eq!(
            ended,
            vec![WorkspaceEvent::TrialEnded {
                workspace_id: id(),
                tier: TierId::Pro,
                outcome: TrialOutcome::Converted,
                credits_top_up: 300,
            }]
        );
        let ws = ended.iter().fold(Some(ws), evolve).unwrap();
        assert_eq!((ws.tier, ws.trial.is_none()), (TierId::Pro, true));
    }

    fn paid(ws: Workspace, pi: &str, minor: i64, on: &str, reason: ChargeFor) -> Workspace {
        let charged = WorkspaceEvent::Charged {
            workspace_id: ws.id,
            source_event: Uuid::now_v7(),
            reason,
            amount: Money::from_minor(minor, crate::money::Currency::Usd),
            payment_intent: pi.into(),
            paid_on: on.into(),
            invoice: None,
        };
        evolve(Some(ws), &charged).unwrap()
    }

    #[test]
    fn cancelling_at_once_refunds_the_rest_of_the_period_from_its_payments_newest_first() {
        use time::macros::datetime;
        let at = datetime!(2026-11-16 00:00 UTC);
        let cancel = |ws: &Workspace, who: &str| {
            decide(
                Some(ws),
                WorkspaceCommand::CancelNow { at },
                &Actor::user(who),
            )
        };
        let shares = |events: &[WorkspaceEvent]| match events {
            [WorkspaceEvent::SubscriptionCancelled {
                refund, refunds, ..
            }, WorkspaceEvent::TierChanged {
                to: TierId::Free,
                credits_taken_back,
                ..
            }, WorkspaceEvent::Unsubscribed { .. }] => (
                refund.to_string(),
                refunds
                    .iter()
                    .map(|r| format!("{} {}", r.payment_intent, r.amount))
                    .collect::<Vec<_>>(),
                *credits_taken_back,
            ),
            other => panic!("{other:?}"),
        };
        // Half of November left: half of pro's 49.00 and of its 9,000 credits over free's.
        let ws = paid(pro(1), "pi_oct", 4_900, "2026-10-01", ChargeFor::Renewal);
        let ws = paid(ws, "pi_nov", 4_900, "2026-11-01", ChargeFor::Renewal);
        let ws = paid(ws, "pi_over", 900, "2026-11-02", ChargeFor::Overage);
        assert_eq!(
            shares(&cancel(&ws, "alice").unwrap()),
            ("24.50 USD".into(), vec!["pi_nov 24.50 USD".into()], 4_500)
        );
        // Taken from the newest payment first, and never more than the period's payments.
        let ws = paid(pro(1), "pi_a", 2_000, "2026-11-01", ChargeFor::Subscription);
        let ws = paid(ws, "pi_b", 1_500, "2026-11-10", ChargeFor::TierChange);
        assert_eq!(
            shares(&cancel(&ws, "alice").unwrap()).1,
            vec!["pi_b 15.00 USD".to_owned(), "pi_a 9.50 USD".to_owned()]
        );
        let ws = paid(pro(1), "pi_a", 1_000, "2026-11-01", ChargeFor::Subscription);
        assert_eq!(
            shares(&cancel(&ws, "alice").unwrap()).0,
            "10.00 USD".to_owned()
        );
        let cancelled = cancel(&ws, "alice")
            .unwrap()
            .iter()
            .fold(Some(ws.clone()), evolve)
            .unwrap();
        assert_eq!((cancelled.tier, &cancelled.billing), (TierId::Free, &None));
        assert_eq!(
            cancel(&cancelled, "alice"),
            Err(WorkspaceError::NoSubscription)
        );
        // Only the owner; and not while a charge is owed.
        let mut shared = ws.clone();
        shared.collaborators.insert(UserId::new("carol"));
        assert_eq!(cancel(&shared, "carol"), Err(WorkspaceError::OwnerOnlyTier));
        let mut owing = ws;
        owing.overdue.push(Overdue {
            source_event: Uuid::nil(),
            reason: ChargeFor::Renewal,
            amount: Money::from_minor(4_900, crate::money::Currency::Usd),
            failures: 1,
            first_failed_on: "2026-11-01".into(),
            invoice: Some("in_1".into()),
        });
        assert_eq!(
            cancel(&owing, "alice"),
            Err(WorkspaceError::PaymentOverdue(Money::from_minor(
                4_900,
                crate::money::Currency::Usd
            )))
        );
    }

    #[test]
    fn payments_older_than_any_period_are_let_go() {
        let mut ws = pro(1);
        for month in 1..=12 {
            ws = paid(
                ws,
                "pi",
                4_900,
                &format!("2026-{month:02}-01"),
                ChargeFor::Renewal,
            );
        }
        assert_eq!(ws.payments.len(), 3);
    }

    #[test]
    fn a_move_down_waits_for_the_period_end_and_can_be_called_off() {
        use time::macros::datetime;
        let ws = pro(20);
        let at = datetime!(2026-12-04 10:00 UTC);
        let events = change(&ws, TierId::Free, at).unwrap();
        assert_eq!(
            events,
            vec![WorkspaceEvent::TierChangeScheduled {
                workspace_id: id(),
                from: TierId::Pro,
                to: TierId::Free,
                effective_on: "2026-12-20".into(),
            }]
        );
        let scheduled = events.iter().fold(Some(ws.clone()), evolve).unwrap();
        assert_eq!(scheduled.tier, TierId::Pro);
        assert_eq!(
            change(&scheduled, TierId::Free, at),
            Err(WorkspaceError::AlreadyScheduled(TierId::Free))
        );
        // Before its day the renewal leaves it be; on its day it applies, free of charge.
        let early = decide(
            Some(&scheduled),
            WorkspaceCommand::ApplyScheduledTier {
                at: datetime!(2026-12-19 23:59 UTC),
            },
            &Actor::system("renew-credits"),
        )
        .unwrap();
        assert!(early.is_empty());
        let applied = decide(
            Some(&scheduled),
            WorkspaceCommand::ApplyScheduledTier {
                at: datetime!(2026-12-20 00:00 UTC),
            },
            &Actor::system("renew-credits"),
        )
        .unwrap();
        let after = applied
            .iter()
            .fold(Some(scheduled.clone()), evolve)
            .unwrap();
        assert_eq!((after.tier, after.scheduled), (TierId::Free, None));
        let [WorkspaceEvent::TierChanged {
            charge,
            credits_top_up,
            ..
        }] = applied.as_slice()
        else {
            panic!("{applied:?}")
        };
        assert_eq!(
            (charge.to_string().as_str(), *credits_top_up),
            ("0.00 USD", 0)
        );
        // Asking for the current tier, or cancelling, calls the move off.
        for command in [
            WorkspaceCommand::CancelScheduledTier,
            WorkspaceCommand::ChangeTier {
                tier: TierId::Pro,
                at,
            },
        ] {
            let events = decide(Some(&scheduled), command, &Actor::user("alice")).unwrap();
            let after = events.iter().fold(Some(scheduled.clone()), evolve).unwrap();
            assert_eq!(after.scheduled, None);
            assert_eq!(
                decide(
                    Some(&after),
                    WorkspaceCommand::CancelScheduledTier,
                    &Actor::user("alice")
                ),
                Err(WorkspaceError::NothingScheduled)
            );
        }
    }

    #[test]
    fn only_the_owner_changes_the_tier() {
        use time::macros::datetime;
        let mut ws = pro(1);
        ws.collaborators.insert(UserId::new("bob"));
        let at = datetime!(2026-12-04 10:00 UTC);
        let command = WorkspaceCommand::ChangeTier {
            tier: TierId::Enterprise,
            at,
        };
        assert_eq!(
            decide(Some(&ws), command.clone(), &Actor::user("bob")),
            Err(WorkspaceError::OwnerOnlyTier)
        );
        assert_eq!(
            decide(Some(&ws), command, &Actor::user("mallory")),
            Err(WorkspaceError::Forbidden)
        );
        assert_eq!(
            change(&ws, TierId::Pro, at),
            Err(WorkspaceError::TierUnchanged(TierId::Pro))
        );
    }

    /// The events recording what became of the charge `source` of `ws`.
    fn record_charge_of(
        ws: &Workspace,
        source: Uuid,
        reason: ChargeFor,
        amount: Money,
        outcome: Result<String, String>,
        at: OffsetDateTime,
    ) -> Vec<WorkspaceEvent> {
        decide(
            Some(ws),
            WorkspaceCommand::RecordCharge {
                source_event: source,
                reason,
                amount,
                outcome,
                invoice: None,
                at,
            },
            &Actor::system("test"),
        )
        .unwrap()
    }

    #[test]
    fn a_charge_recorded_after_the_subscription_ended_at_once_is_returned_and_owes_nothing() {
        use time::macros::datetime;
        let mut ended = pro(1);
        ended.billing = None;
        let source = Uuid::from_u128(98);
        let amount = Money::from_minor(4_860, crate::money::Currency::Usd);
        let at = datetime!(2026-12-16 00:00 UTC);
        let record = |ws: &Workspace, reason, outcome| {
            record_charge_of(ws, source, reason, amount, outcome, at)
        };
        let returned = record(&ended, ChargeFor::Subscription, Ok("pi_1".into()));
        assert_eq!(
            returned,
            vec![WorkspaceEvent::ChargeReturned {
                workspace_id: ended.id,
                source_event: source,
                reason: ChargeFor::Subscription,
                amount,
                payment_intent: "pi_1".into(),
                returned_on: "2026-12-16".into(),
            }]
        );
        let after = returned.iter().fold(Some(ended.clone()), evolve).unwrap();
        assert!(after.payments.is_empty() && after.overdue.is_empty());
        assert_eq!(
            record(&ended, ChargeFor::TierChange, Err("card declined".into())),
            vec![],
            "an ended subscription's failed charge starts no dunning"
        );
        assert!(
            matches!(
                record(&ended, ChargeFor::Overage, Err("card declined".into())).as_slice(),
                [WorkspaceEvent::ChargeFailed { .. }]
            ),
            "a closed period's overage is owed whatever became of the subscription"
        );
        // A debt recorded while the subscription lasted is still owed after it ends.
        let mut indebted = pro(1);
        let failed = record(
            &indebted,
            ChargeFor::TierChange,
            Err("card declined".into()),
        );
        indebted = failed.iter().fold(Some(indebted), evolve).unwrap();
        indebted.billing = None;
        assert!(matches!(
            record(
                &indebted,
                ChargeFor::TierChange,
                Err("card declined".into())
            )
            .as_slice(),
            [WorkspaceEvent::RetryFailed { .. }]
        ));
    }

    #[test]
    fn a_failed_charge_is_retried_on_the_schedule_warns_then_suspends_and_payment_reactivates() {
        use time::macros::datetime;
        let mut ws = pro(1);
        let source = Uuid::from_u128(99);
        let amount = Money::from_minor(2_450, crate::money::Currency::Usd);
        let charge = |ws: &Workspace, outcome: Result<String, String>, at| {
            record_charge_of(ws, source, ChargeFor::TierChange, amount, outcome, at)
        };
        let declined = || Err("card declined".to_owned());
        let events = charge(&ws, declined(), datetime!(2026-12-10 08:00 UTC));
        let [WorkspaceEvent::ChargeFailed { next_retry_on, .. }] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(next_retry_on.as_deref(), Some("2026-12-11"));
        ws = events.iter().fold(Some(ws), evolve).unwrap();
        let mut retries = Vec::new();
        for at in [
            datetime!(2026-12-11 06:00 UTC),
            datetime!(2026-12-13 06:00 UTC),
            datetime!(2026-12-15 06:00 UTC),
            datetime!(2026-12-17 06:00 UTC),
        ] {
            let events = charge(&ws, declined(), at);
            for e in &events {
                match e {
                    WorkspaceEvent::RetryFailed {
                        next_retry_on,
                        final_notice,
                        failures,
                        ..
                    } => retries.push((*failures, next_retry_on.clone(), *final_notice)),
                    WorkspaceEvent::Suspended { owed, .. } => {
                        assert_eq!(owed.to_string(), "24.50 USD")
                    }
                    other => panic!("{other:?}"),
                }
            }
            ws = events.iter().fold(Some(ws), evolve).unwrap();
        }
        assert_eq!(
            retries,
            vec![
                (2, Some("2026-12-13".to_owned()), false),
                (3, Some("2026-12-15".to_owned()), false),
                (4, Some("2026-12-17".to_owned()), true),
                (5, None, false),
            ]
        );
        assert!(ws.suspended);
        let events = charge(&ws, Ok("pi_1".into()), datetime!(2026-12-20 06:00 UTC));
        assert!(matches!(
            events.as_slice(),
            [
                WorkspaceEvent::Charged { .. },
                WorkspaceEvent::Reactivated { .. }
            ]
        ));
        let ws = events.iter().fold(Some(ws), evolve).unwrap();
        assert!(!ws.suspended && ws.overdue.is_empty());
    }
}
