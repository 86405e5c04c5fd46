//! Payments (seed 001's payment service): one stream per provider payment intent, fed by
//! the intent kassa created and by the provider's webhooks.
//!
//! The provider does not order its deliveries, so every command is decided against the
//! state: a failure reported after the success changes nothing, a repeated refund id is a
//! no-op, and a refund seen before the success records the success it implies first.

use crate::event::DomainEvent;
use crate::identity::UserId;
use crate::money::Money;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Created and not yet paid; failed attempts leave it here (the customer may retry).
    Pending,
    Succeeded,
    Canceled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub payment_intent_id: String,
    pub order_id: Uuid,
    pub user_id: UserId,
    pub amount: Money,
    pub status: PaymentStatus,
    pub payment_id: Option<String>,
    pub failures: u32,
    pub refunds: BTreeMap<String, Money>,
}

/// What kassa knows of an intent from the order that asked for it (or, for a webhook that
/// arrives first, from the metadata kassa put on the intent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentOrigin {
    pub payment_intent_id: String,
    pub order_id: Uuid,
    pub user_id: UserId,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentCommand {
    RecordIntent(IntentOrigin),
    Succeed {
        origin: IntentOrigin,
        payment_id: String,
    },
    Fail {
        origin: IntentOrigin,
        code: Option<String>,
        message: String,
    },
    Cancel {
        origin: IntentOrigin,
        reason: Option<String>,
    },
    Refund {
        origin: IntentOrigin,
        payment_id: String,
        refund_id: String,
        amount: Money,
        reason: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentError {
    pub code: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "payload")]
pub enum PaymentEvent {
    #[serde(rename = "payment.intent.created")]
    IntentCreated {
        payment_intent_id: String,
        order_id: Uuid,
        user_id: UserId,
        amount: Money,
    },
    #[serde(rename = "payment.completed")]
    Completed {
        payment_intent_id: String,
        payment_id: String,
        order_id: Uuid,
        user_id: UserId,
        amount: Money,
    },
    #[serde(rename = "payment.failed")]
    Failed {
        payment_intent_id: String,
        order_id: Uuid,
        user_id: UserId,
        amount: Money,
        error: PaymentError,
        attempt: u32,
    },
    #[serde(rename = "payment.canceled")]
    Canceled {
        payment_intent_id: String,
        order_id: Uuid,
        user_id: UserId,
        reason: Option<String>,
    },
    #[serde(rename = "payment.refunded")]
    Refunded {
        payment_id: String,
        payment_intent_id: String,
        refund_id: String,
        order_id: Uuid,
        user_id: UserId,
        amount: Money,
        reason: Option<String>,
    },
}

impl DomainEvent for PaymentEvent {
    const CONTEXT: &'static str = "payments";
    const TYPES: &'static [&'static str] = &[
        "payment.intent.created",
        "payment.completed",
        "payment.failed",
        "payment.canceled",
        "payment.refunded",
    ];

    fn event_type(&self) -> &'static str {
        match self {
            Self::IntentCreated { .. } => "payment.intent.created",
            Self::Completed { .. } => "payment.completed",
            Self::Failed { .. } => "payment.failed",
            Self::Canceled { .. } => "payment.canceled",
            Self::Refunded { .. } => "payment.refunded",
        }
    }
}

/// Decides by state; there is no refusal, only events or none.
pub fn decide(state: Option<&Payment>, command: PaymentCommand) -> Vec<PaymentEvent> {
    let origin = match &command {
        PaymentCommand::RecordIntent(o)
        | PaymentCommand::Succeed { origin: o, .. }
        | PaymentCommand::Fail { origin: o, .. }
        | PaymentCommand::Cancel { origin: o, .. }
        | PaymentCommand::Refund { origin: o, .. } => o.clone(),
    };
    // A webhook may be the first kassa hears of the intent (its creation's commit lost the
    // race or failed after the provider answered): record it from the intent's metadata.
    let mut events = Vec::new();
    let fresh;
    let payment = match state {
        Some(p) => p,
        None => {
            events.push(PaymentEvent::IntentCreated {
                payment_intent_id: origin.payment_intent_id.clone(),
                order_id: origin.order_id,
                user_id: origin.user_id.clone(),
                amount: origin.amount,
            });
            fresh = evolve(None, &events[0]);
            match &fresh {
                Some(p) => p,
                None => return events,
            }
        }
    };
    let facts = |p: &Payment| (p.payment_intent_id.clone(), p.order_id, p.user_id.clone());
    let (payment_intent_id, order_id, user_id) = facts(payment);
    match command {
        PaymentCommand::RecordIntent(_) => {}
        PaymentCommand::Succeed { payment_id, .. } => {
            if payment.status != PaymentStatus::Succeeded {
                events.push(PaymentEvent::Completed {
                    payment_intent_id,
                    payment_id,
                    order_id,
                    user_id,
                    amount: payment.amount,
                });
            }
        }
        PaymentCommand::Fail { code, message, .. } => {
            if payment.status == PaymentStatus::Pending {
                events.push(PaymentEvent::Failed {
                    payment_intent_id,
                    order_id,
                    user_id,
                    amount: payment.amount,
                    error: PaymentError { code, message },
                    attempt: payment.failures + 1,
                });
            }
        }
        PaymentCommand::Cancel { reason, .. } => {
            if payment.status == PaymentStatus::Pending {
                events.push(PaymentEvent::Canceled {
                    payment_intent_id,
                    order_id,
                    user_id,
                    reason,
                });
            }
        }
        PaymentCommand::Refund {
            payment_id,
            refund_id,
            amount,
            reason,
            ..
        } => {
            if !payment.refunds.contains_key(&refund_id) {
                if payment.status != PaymentStatus::Succeeded {
                    events.push(PaymentEvent::Completed {
                        payment_intent_id: payment_intent_id.clone(),
                        payment_id: payment_id.clone(),
                        order_id,
                        user_id: user_id.clone(),
                        amount: payment.amount,
                    });
                }
                events.push(PaymentEvent::Refunded {
                    payment_id,
                    payment_intent_id,
                    refund_id,
                    order_id,
                    user_id,
                    amount,
                    reason,
                });
            }
        }
    }
    events
}

pub fn evolve(state: Option<Payment>, event: &PaymentEvent) -> Option<Payment> {
    match (state, event) {
        (
            None,
            PaymentEvent::IntentCreated {
                payment_intent_id,
                order_id,
                user_id,
                amount,
            },
        ) => Some(Payment {
            payment_intent_id: payment_intent_id.clone(),
            order_id: *order_id,
            user_id: user_id.clone(),
            amount: *amount,
            status: PaymentStatus::Pending,
            payment_id: None,
            failures: 0,
            refunds: BTreeMap::new(),
        }),
        (Some(mut p), event) => {
            match event {
                PaymentEvent::IntentCreated { .. } => {}
                PaymentEvent::Completed { payment_id, .. } => {
                    p.status = PaymentStatus::Succeeded;
                    p.payment_id = Some(payment_id.clone());
                }
                PaymentEvent::Failed { attempt, .. } => p.failures = *attempt,
                PaymentEvent::Canceled { .. } => p.status = PaymentStatus::Canceled,
                PaymentEvent::Refunded {
                    refund_id, amount, ..
                } => {
                    p.refunds.insert(refund_id.clone(), *amount);
                }
            }
            Some(p)
        }
        (None, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use rust_decimal::Decimal;

    fn origin() -> IntentOrigin {
        IntentOrigin {
            payment_intent_id: "pi_1".into(),
            order_id: Uuid::from_u128(7),
            user_id: UserId::new("ada"),
            amount: Money::new(Decimal::new(2400, 2), Currency::Usd),
        }
    }

    fn succeed() -> PaymentCommand {
        PaymentCommand::Succeed {
            origin: origin(),
            payment_id: "ch_1".into(),
        }
    }

    fn fail() -> PaymentCommand {
        PaymentCommand::Fail {
            origin: origin(),
            code: Some("card_declined".into()),
            message: "Your card was declined.".into(),
        }
    }

    fn refund(id: &str) -> PaymentCommand {
        PaymentCommand::Refund {
            origin: origin(),
            payment_id: "ch_1".into(),
            refund_id: id.into(),
            amount: origin().amount,
            reason: None,
        }
    }

    /// Applies the commands in order, returning every event and the final state.
    fn run(commands: Vec<PaymentCommand>) -> (Vec<&'static str>, Option<Payment>) {
        let mut state = None;
        let mut types = Vec::new();
        for c in commands {
            for e in decide(state.as_ref(), c) {
                types.push(e.event_type());
                state = evolve(state, &e);
            }
        }
        (types, state)
    }

    #[test]
    fn failure_then_success_pays() {
        let (types, state) = run(vec![
            PaymentCommand::RecordIntent(origin()),
            fail(),
            succeed(),
        ]);
        assert_eq!(
            types,
            [
                "payment.intent.created",
                "payment.failed",
                "payment.completed"
            ]
        );
        assert_eq!(state.unwrap().status, PaymentStatus::Succeeded);
    }

    #[test]
    fn failure_after_success_does_not_unpay() {
        let (types, state) = run(vec![
            PaymentCommand::RecordIntent(origin()),
            succeed(),
            fail(),
        ]);
        assert_eq!(types, ["payment.intent.created", "payment.completed"]);
        assert_eq!(state.unwrap().status, PaymentStatus::Succeeded);
    }

    #[test]
    fn a_webhook_before_the_intent_record_creates_it_once() {
        let (types, _) = run(vec![
            succeed(),
            PaymentCommand::RecordIntent(origin()),
            succeed(),
        ]);
        assert_eq!(types, ["payment.intent.created", "payment.completed"]);
    }

    #[test]
    fn refund_before_success_implies_it_and_repeats_are_ignored() {
        let (types, state) = run(vec![
            PaymentCommand::RecordIntent(origin()),
            refund("re_1"),
            succeed(),
            refund("re_1"),
        ]);
        assert_eq!(
            types,
            [
                "payment.intent.created",
                "payment.completed",
                "payment.refunded"
            ]
        );
        assert_eq!(state.unwrap().refunds.len(), 1);
    }

    #[test]
    fn cancel_after_success_is_ignored() {
        let cancel = PaymentCommand::Cancel {
            origin: origin(),
            reason: Some("abandoned".into()),
        };
        let (types, _) = run(vec![succeed(), cancel]);
        assert_eq!(types, ["payment.intent.created", "payment.completed"]);
    }
}
