//! Subscriptions as the payment provider reports them: one stream per provider
//! subscription, advanced by observations that carry the provider's own timestamp.
//!
//! Observations older than the newest applied one are ignored, so a late
//! `customer.subscription.updated` cannot roll a plan back. Whatever arrives first
//! announces the subscription (`subscription.created`), even an update or a failed
//! invoice.
//!
//! The provider stamps observations in whole seconds, so two may tie. A tie is broken by
//! the sequence the provider's own report gives (see [`follows`]), else by the provider's
//! event id, so the same observations end in the same state whatever their arrival.

use crate::event::DomainEvent;
use crate::identity::UserId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The provider's view of a subscription at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub subscription_id: String,
    pub customer: Option<String>,
    pub user_id: Option<UserId>,
    pub plan: Option<String>,
    pub status: String,
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: bool,
    pub ended_at: Option<i64>,
    /// The terms just before this observation, when the provider says (an update's
    /// previous attributes laid over its snapshot).
    pub before: Option<Terms>,
}

impl Snapshot {
    pub fn terms(&self) -> Terms {
        Terms {
            plan: self.plan.clone(),
            status: self.status.clone(),
            cancel_at_period_end: self.cancel_at_period_end,
        }
    }
}

/// What kassa follows of a subscription, as one observation leaves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Terms {
    pub plan: Option<String>,
    pub status: String,
    pub cancel_at_period_end: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub subscription_id: String,
    pub user_id: Option<UserId>,
    pub plan: Option<String>,
    pub status: String,
    pub cancel_at_period_end: bool,
    /// `subscription.created` was published (a failed invoice may have opened the stream).
    pub announced: bool,
    pub canceled: bool,
    pub expired: bool,
    /// Provider timestamp (Unix seconds) of the newest observation applied.
    pub observed_at: i64,
    /// The provider's id of the event that reported it.
    #[serde(default)]
    pub observed_event: Option<String>,
    /// The terms it says came just before it.
    #[serde(default)]
    pub observed_before: Option<Terms>,
    pub payment_failures: u32,
}

impl Subscription {
    pub fn terms(&self) -> Terms {
        Terms {
            plan: self.plan.clone(),
            status: self.status.clone(),
            cancel_at_period_end: self.cancel_at_period_end,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionCommand {
    /// `customer.subscription.created/updated/deleted`, stamped with the event's `created`
    /// and named by the event's id.
    Observe {
        at: i64,
        event_id: String,
        snapshot: Snapshot,
        deleted: bool,
    },
    /// A renewal invoice of the subscription failed (`invoice.payment_failed`).
    PaymentFailed {
        at: i64,
        subscription_id: String,
        user_id: Option<UserId>,
        attempt_count: u32,
        invoice: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "payload")]
pub enum SubscriptionEvent {
    #[serde(rename = "subscription.created")]
    Created {
        subscription_id: String,
        user_id: Option<UserId>,
        plan_id: Option<String>,
        status: String,
        observed_at: i64,
        /// The provider's event that reported it.
        #[serde(default)]
        observed_event: Option<String>,
        /// The terms that event says came just before it.
        #[serde(default)]
        observed_before: Option<Terms>,
    },
    #[serde(rename = "subscription.updated")]
    Updated {
        subscription_id: String,
        user_id: Option<UserId>,
        old_plan: Option<String>,
        new_plan: Option<String>,
        status: String,
        cancel_at_period_end: bool,
        observed_at: i64,
        #[serde(default)]
        observed_event: Option<String>,
        #[serde(default)]
        observed_before: Option<Terms>,
    },
    #[serde(rename = "subscription.canceled")]
    Canceled {
        subscription_id: String,
        user_id: Option<UserId>,
        reason: String,
        /// When service ends (Unix seconds): the period's end for a cancellation at period end.
        ends_at: Option<i64>,
        observed_at: i64,
    },
    #[serde(rename = "subscription.expired")]
    Expired {
        subscription_id: String,
        user_id: Option<UserId>,
        expiration_date: i64,
        observed_at: i64,
    },
    #[serde(rename = "subscription.payment_failed")]
    PaymentFailed {
        subscription_id: String,
        user_id: Option<UserId>,
        attempt_count: u32,
        invoice_id: String,
        observed_at: i64,
    },
}

impl DomainEvent for SubscriptionEvent {
    const CONTEXT: &'static str = "payments";
    const TYPES: &'static [&'static str] = &[
        "subscription.created",
        "subscription.updated",
        "subscription.canceled",
        "subscription.expired",
        "subscription.payment_failed",
    ];

    fn event_type(&self) -> &'static str {
        match self {
            Self::Created { .. } => "subscription.created",
            Self::Updated { .. } => "subscription.updated",
            Self::Canceled { .. } => "subscription.canceled",
            Self::Expired { .. } => "subscription.expired",
            Self::PaymentFailed { .. } => "subscription.payment_failed",
        }
    }
}

pub fn decide(
    state: Option<&Subscription>,
    command: SubscriptionCommand,
) -> Vec<SubscriptionEvent> {
    match command {
        SubscriptionCommand::Observe {
            at,
            event_id,
            snapshot,
            deleted,
        } => observe(state, at, event_id, snapshot, deleted),
        SubscriptionCommand::PaymentFailed {
            at,
            subscription_id,
            user_id,
            attempt_count,
            invoice,
        } => {
            let seen = state.map_or(0, |s| s.payment_failures);
            let ended = state.is_some_and(|s| s.expired);
            if attempt_count <= seen || ended {
                return vec![];
            }
            vec![SubscriptionEvent::PaymentFailed {
                subscription_id,
                user_id: state.and_then(|s| s.user_id.clone()).or(user_id),
                attempt_count,
                invoice_id: invoice,
                observed_at: at,
            }]
        }
    }
}

/// Whether `snap`, stamped in the same second as the newest observation applied to `s`,
/// is the later of the two. Stripe's `previous_attributes` give the sequence: an update
/// whose previous terms are the current ones follows them, and the current observation
/// follows `snap` when its own previous terms are `snap`'s. When that says neither or both
/// (no previous attributes, or a change and its undoing in one second), the greater event
/// id is taken as the later: arbitrary, but the same whatever the order of arrival.
pub fn follows(s: &Subscription, snap: &Snapshot, event_id: &str) -> bool {
    let after_current = snap.before.as_ref() == Some(&s.terms());
    let before_current = s.observed_before.as_ref() == Some(&snap.terms());
    match (after_current, before_current) {
        (true, false) => true,
        (false, true) => false,
        _ => Some(event_id) > s.observed_event.as_deref(),
    }
}

fn observe(
    state: Option<&Subscription>,
    at: i64,
    event_id: String,
    snap: Snapshot,
    deleted: bool,
) -> Vec<SubscriptionEvent> {
    let mut events = Vec::new();
    if let Some(s) = state {
        // A deletion is final at the provider: nothing observed in its second follows it.
        let newer = at > s.observed_at
            || (at == s.observed_at && (deleted || follows(s, &snap, &event_id)));
        if s.expired || (s.announced && !newer) {
            return events;
        }
    }
    let user_id = state
        .and_then(|s| s.user_id.clone())
        .or(snap.user_id.clone());
    let id = snap.subscription_id.clone();
    let announced = state.is_some_and(|s| s.announced);
    if !announced {
        events.push(SubscriptionEvent::Created {
            subscription_id: id.clone(),
            user_id: user_id.clone(),
            plan_id: snap.plan.clone(),
            status: snap.status.clone(),
            observed_at: at,
            observed_event: Some(event_id.clone()),
            observed_before: snap.before.clone(),
        });
    } else if let Some(s) = state {
        // A newer observation is recorded even when nothing kassa tracks changed: its
        // timestamp, event id and previous terms are what keep an older one from undoing it.
        if !deleted {
            events.push(SubscriptionEvent::Updated {
                subscription_id: id.clone(),
                user_id: user_id.clone(),
                old_plan: s.plan.clone(),
                new_plan: snap.plan.clone(),
                status: snap.status.clone(),
                cancel_at_period_end: snap.cancel_at_period_end,
                observed_at: at,
                observed_event: Some(event_id.clone()),
                observed_before: snap.before.clone(),
            });
        }
    }
    let already_canceled = state.is_some_and(|s| s.canceled);
    let cancels = deleted || snap.cancel_at_period_end || snap.status == "canceled";
    if cancels && !already_canceled {
        events.push(SubscriptionEvent::Canceled {
            subscription_id: id.clone(),
            user_id: user_id.clone(),
            reason: if deleted || snap.status == "canceled" {
                "canceled".into()
            } else {
                "cancel_at_period_end".into()
            },
            ends_at: snap.ended_at.or(snap.current_period_end),
            observed_at: at,
        });
    }
    if deleted {
        events.push(SubscriptionEvent::Expired {
            subscription_id: id,
            user_id,
            expiration_date: snap.ended_at.unwrap_or(at),
            observed_at: at,
        });
    }
    events
}

pub fn evolve(state: Option<Subscription>, event: &SubscriptionEvent) -> Option<Subscription> {
    let mut s = state.unwrap_or_else(|| Subscription {
        subscription_id: String::new(),
        user_id: None,
        plan: None,
        status: String::new(),
        cancel_at_period_end: false,
        announced: false,
        canceled: false,
        expired: false,
        observed_at: 0,
        observed_event: None,
        observed_before: None,
        payment_failures: 0,
    });
    match event {
        SubscriptionEvent::Created {
            subscription_id,
            user_id,
            plan_id,
            status,
            observed_at,
            observed_event,
            observed_before,
        } => {
            s.subscription_id = subscription_id.clone();
            s.user_id = s.user_id.take().or(user_id.clone());
            s.plan = plan_id.clone();
            s.status = status.clone();
            s.announced = true;
            s.observed_at = s.observed_at.max(*observed_at);
            s.observed_event = observed_event.clone();
            s.observed_before = observed_before.clone();
        }
        SubscriptionEvent::Updated {
            new_plan,
            status,
            cancel_at_period_end,
            observed_at,
            observed_event,
            observed_before,
            ..
        } => {
            s.plan = new_plan.clone();
            s.status = status.clone();
            s.cancel_at_period_end = *cancel_at_period_end;
            s.observed_at = s.observed_at.max(*observed_at);
            s.observed_event = observed_event.clone();
            s.observed_before = observed_before.clone();
        }
        SubscriptionEvent::Canceled { observed_at, .. } => {
            s.canceled = true;
            s.observed_at = s.observed_at.max(*observed_at);
        }
        SubscriptionEvent::Expired { observed_at, .. } => {
            s.expired = true;
            s.status = "canceled".into();
            s.observed_at = s.observed_at.max(*observed_at);
        }
        SubscriptionEvent::PaymentFailed {
            subscription_id,
            user_id,
            attempt_count,
            ..
        } => {
            if s.subscription_id.is_empty() {
                s.subscription_id = subscription_id.clone();
            }
            s.user_id = s.user_id.take().or(user_id.clone());
            s.payment_failures = *attempt_count;
        }
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(plan: &str, status: &str) -> Snapshot {
        Snapshot {
            subscription_id: "sub_1".into(),
            customer: Some("cus_1".into()),
            user_id: Some(UserId::new("ada")),
            plan: Some(plan.into()),
            status: status.into(),
            current_period_end: Some(2_000),
            cancel_at_period_end: false,
            ended_at: None,
            before: None,
        }
    }

    /// An update from `from` to `plan`, as a delivery with previous attributes says.
    fn moved(from: &str, plan: &str) -> Snapshot {
        let mut snapshot = snap(plan, "active");
        snapshot.before = Some(snap(from, "active").terms());
        snapshot
    }

    fn observe(at: i64, snapshot: Snapshot, deleted: bool) -> SubscriptionCommand {
        observed(&format!("evt_{at}"), at, snapshot, deleted)
    }

    fn observed(event_id: &str, at: i64, snapshot: Snapshot, deleted: bool) -> SubscriptionCommand {
        SubscriptionCommand::Observe {
            at,
            event_id: event_id.into(),
            snapshot,
            deleted,
        }
    }

    fn run(commands: Vec<SubscriptionCommand>) -> (Vec<&'static str>, Subscription) {
        let mut state = None;
        let mut types = Vec::new();
        for c in commands {
            for e in decide(state.as_ref(), c) {
                types.push(e.event_type());
                state = evolve(state, &e);
            }
        }
        (types, state.expect("a subscription"))
    }

    #[test]
    fn an_older_update_is_ignored() {
        let (types, s) = run(vec![
            observe(100, snap("basic", "active"), false),
            observe(300, snap("pro", "active"), false),
            observe(200, snap("team", "active"), false),
        ]);
        assert_eq!(types, ["subscription.created", "subscription.updated"]);
        assert_eq!(s.plan.as_deref(), Some("pro"));
        // An unchanged newer observation still guards against an older change.
        let (_, s) = run(vec![
            observe(100, snap("basic", "active"), false),
            observe(300, snap("basic", "active"), false),
            observe(200, snap("team", "active"), false),
        ]);
        assert_eq!(s.plan.as_deref(), Some("basic"));
    }

    /// Both orders of arrival of the last two commands, after the first.
    fn both_orders(
        first: SubscriptionCommand,
        pair: [SubscriptionCommand; 2],
    ) -> [Subscription; 2] {
        let [a, b] = pair;
        let (_, forward) = run(vec![first.clone(), a.clone(), b.clone()]);
        let (_, reversed) = run(vec![first, b, a]);
        [forward, reversed]
    }

    #[test]
    fn updates_in_one_second_follow_the_sequence_their_previous_attributes_give() {
        let [forward, reversed] = both_orders(
            observe(100, snap("basic", "active"), false),
            [
                // Ids that would pick the wrong one, were they asked.
                observed("evt_b", 200, moved("basic", "pro"), false),
                observed("evt_a", 200, moved("pro", "team"), false),
            ],
        );
        assert_eq!(forward.plan.as_deref(), Some("team"));
        assert_eq!(reversed.plan.as_deref(), Some("team"));
        assert_eq!(forward.terms(), reversed.terms());
    }

    #[test]
    fn updates_in_one_second_that_do_not_say_their_sequence_are_ordered_by_event_id() {
        // No previous attributes at all.
        let [forward, reversed] = both_orders(
            observe(100, snap("basic", "active"), false),
            [
                observed("evt_2", 200, snap("pro", "active"), false),
                observed("evt_1", 200, snap("team", "active"), false),
            ],
        );
        assert_eq!(forward.plan.as_deref(), Some("pro"));
        assert_eq!(reversed.plan.as_deref(), Some("pro"));
        // A change and its undoing in one second: each follows the other.
        let [forward, reversed] = both_orders(
            observe(100, snap("basic", "active"), false),
            [
                observed("evt_1", 200, moved("basic", "pro"), false),
                observed("evt_2", 200, moved("pro", "basic"), false),
            ],
        );
        assert_eq!(forward.plan.as_deref(), Some("basic"));
        assert_eq!(reversed.plan.as_deref(), Some("basic"));
    }

    #[test]
    fn a_deletion_in_the_second_of_an_update_ends_the_subscription_either_way() {
        let [forward, reversed] = both_orders(
            observe(100, snap("basic", "active"), false),
            [
                observed("evt_z", 200, moved("basic", "pro"), false),
                observed("evt_a", 200, snap("basic", "canceled"), true),
            ],
        );
        assert!(forward.expired && reversed.expired);
    }

    #[test]
    fn an_update_before_the_creation_announces_it_once() {
        let (types, s) = run(vec![
            observe(300, snap("pro", "active"), false),
            observe(100, snap("basic", "incomplete"), false),
        ]);
        assert_eq!(types, ["subscription.created"]);
        assert_eq!(s.plan.as_deref(), Some("pro"));
    }

    #[test]
    fn deletion_cancels_and_expires_and_nothing_follows() {
        let (types, s) = run(vec![
            observe(100, snap("basic", "active"), false),
            observe(300, snap("basic", "canceled"), true),
            observe(200, snap("pro", "active"), false),
            observe(400, snap("pro", "active"), false),
        ]);
        assert_eq!(
            types,
            [
                "subscription.created",
                "subscription.canceled",
                "subscription.expired"
            ]
        );
        assert!(s.expired);
    }

    #[test]
    fn payment_failures_count_up_only() {
        let failed = |n| SubscriptionCommand::PaymentFailed {
            at: 10,
            subscription_id: "sub_1".into(),
            user_id: None,
            attempt_count: n,
            invoice: "in_1".into(),
        };
        let (types, s) = run(vec![
            failed(2),
            failed(1),
            observe(100, snap("basic", "past_due"), false),
        ]);
        assert_eq!(
            types,
            ["subscription.payment_failed", "subscription.created"]
        );
        assert_eq!(s.payment_failures, 2);
        assert_eq!(s.user_id, Some(UserId::new("ada")));
    }
}
