//! Payments (seed 001's payment service): one stream per provider payment intent, fed by
//! the intent kassa created and by the provider's webhooks.
//!
//! The provider does not order its deliveries, so every command is decided against the
//! state: a failure reported after the success changes nothing, a repeated refund id is a
//! no-op, and a refund seen before the success records the success it implies first.
//!
//! Refunds are capped here: their sum never exceeds the amount paid. A refund that would
//! pass it is recorded as `payment.mismatched` and not applied, as is a report about an
//! intent that is not its order's or does not carry the order's total.

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
    /// The payment method charged (`pm_...`), once the payment succeeded.
    #[serde(default)]
    pub payment_method: Option<String>,
}

impl Payment {
    /// What may still be refunded: the amount paid less the refunds recorded.
    pub fn refundable(&self) -> Money {
        let refunded: rust_decimal::Decimal = self
            .refunds
            .values()
            .filter(|m| m.currency == self.amount.currency)
            .map(|m| m.amount)
            .sum();
        Money::new(self.amount.amount - refunded, self.amount.currency)
    }
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
        /// The payment method the provider charged, when it says.
        payment_method: Option<String>,
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

/// What a provider's report disagreed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MismatchReason {
    /// The intent is not the one the order holds.
    Intent,
    /// The intent's amount or currency is not the order's total.
    Amount,
    /// The refund would take the refunds past the amount paid (or is in another currency).
    RefundExceedsPayment,
}

impl MismatchReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Intent => "intent",
            Self::Amount => "amount",
            Self::RefundExceedsPayment => "refund_exceeds_payment",
        }
    }
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
        /// The payment method charged (`pm_...`); absent when the provider did not say
        /// (and in events recorded before kassa kept it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payment_method: Option<String>,
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
    /// The provider reported something about a payment that contradicts kassa's record of
    /// its order: recorded and alerted, never applied.
    #[serde(rename = "payment.mismatched")]
    Mismatched {
        /// The intent the report is about.
        payment_intent_id: String,
        /// The order the report names (by the intent's metadata or kassa's own record).
        order_id: Uuid,
        reason: MismatchReason,
        /// The intent the order holds, when the report is about another.
        expected_payment_intent_id: Option<String>,
        /// The order's total, or for a refund what is left to refund.
        expected_amount: Option<Money>,
        /// What the report says: the intent's amount, or the refund's.
        reported_amount: Option<Money>,
        refund_id: Option<String>,
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
        "payment.mismatched",
    ];

    fn event_type(&self) -> &'static str {
        match self {
            Self::IntentCreated { .. } => "payment.intent.created",
            Self::Completed { .. } => "payment.completed",
            Self::Failed { .. } => "payment.failed",
            Self::Canceled { .. } => "payment.canceled",
            Self::Refunded { .. } => "payment.refunded",
            Self::Mismatched { .. } => "payment.mismatched",
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
        PaymentCommand::Succeed {
            payment_id,
            origin,
            payment_method,
        } => {
            if payment.status != PaymentStatus::Succeeded {
                // What the provider charged, which the caller checked against the order's
                // total: a coupon may have changed it since the intent was created.
                events.push(PaymentEvent::Completed {
                    payment_intent_id,
                    payment_id,
                    order_id,
                    user_id,
                    amount: origin.amount,
                    payment_method,
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
            if payment.refunds.contains_key(&refund_id) {
                return events;
            }
            let left = payment.refundable();
            if amount.currency != left.currency || amount.amount > left.amount {
                events.push(PaymentEvent::Mismatched {
                    payment_intent_id,
                    order_id,
                    reason: MismatchReason::RefundExceedsPayment,
                    expected_payment_intent_id: None,
                    expected_amount: Some(left),
                    reported_amount: Some(amount),
                    refund_id: Some(refund_id),
                });
            } else {
                if payment.status != PaymentStatus::Succeeded {
                    events.push(PaymentEvent::Completed {
                        payment_intent_id: payment_intent_id.clone(),
                        payment_id: payment_id.clone(),
                        order_id,
                        user_id: user_id.clone(),
                        amount: payment.amount,
                        payment_method: None,
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

/// Checks what the provider reports of an intent against the order it names: the order's
/// own intent, when it holds one, and its total (amount and currency). `Some` is the
/// `payment.mismatched` to record instead of applying the report.
pub fn check(
    order_intent: Option<&str>,
    order_total: Money,
    reported: &IntentOrigin,
) -> Option<PaymentEvent> {
    let mismatch = |reason, expected_payment_intent_id: Option<&str>| PaymentEvent::Mismatched {
        payment_intent_id: reported.payment_intent_id.clone(),
        order_id: reported.order_id,
        reason,
        expected_payment_intent_id: expected_payment_intent_id.map(str::to_owned),
        expected_amount: Some(order_total),
        reported_amount: Some(reported.amount),
        refund_id: None,
    };
    match order_intent {
        Some(held) if held != reported.payment_intent_id => {
            Some(mismatch(MismatchReason::Intent, Some(held)))
        }
        _ if reported.amount != order_total => Some(mismatch(MismatchReason::Amount, None)),
        _ => None,
    }
}

/// How many reports about one intent were refused by [`check`]. They are kept on a stream
/// of their own: an intent that is not an order's must not get a payment stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatches {
    pub count: u32,
}

pub fn tally(state: Option<Mismatches>, event: &PaymentEvent) -> Option<Mismatches> {
    let mut state = state.unwrap_or_default();
    if let PaymentEvent::Mismatched { .. } = event {
        state.count += 1;
    }
    Some(state)
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
            payment_method: None,
        }),
        (Some(mut p), event) => {
            match event {
                PaymentEvent::IntentCreated { .. } => {}
                PaymentEvent::Completed {
                    payment_id,
                    amount,
                    payment_method,
                    ..
                } => {
                    p.status = PaymentStatus::Succeeded;
                    p.payment_id = Some(payment_id.clone());
                    p.amount = *amount;
                    p.payment_method.clone_from(payment_method);
                }
                PaymentEvent::Failed { attempt, .. } => p.failures = *attempt,
                PaymentEvent::Canceled { .. } => p.status = PaymentStatus::Canceled,
                PaymentEvent::Refunded {
                    refund_id, amount, ..
                } => {
                    p.refunds.insert(refund_id.clone(), *amount);
                }
                PaymentEvent::Mismatched { .. } => {}
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
            payment_method: Some("pm_1".into()),
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

    fn refund_of(id: &str, minor: i64) -> PaymentCommand {
        PaymentCommand::Refund {
            origin: origin(),
            payment_id: "ch_1".into(),
            refund_id: id.into(),
            amount: Money::from_minor(minor, Currency::Usd),
            reason: None,
        }
    }

    #[test]
    fn refunds_never_pass_the_amount_paid() {
        // 24.00 paid: 10.00, then 14.00 is all of it; one cent more is refused.
        let (types, state) = run(vec![
            succeed(),
            refund_of("re_1", 1_000),
            refund_of("re_2", 1_401),
            refund_of("re_3", 1_400),
            refund_of("re_4", 1),
        ]);
        assert_eq!(
            types,
            [
                "payment.intent.created",
                "payment.completed",
                "payment.refunded",
                "payment.mismatched",
                "payment.refunded",
                "payment.mismatched"
            ]
        );
        let state = state.unwrap();
        assert_eq!(state.refunds.len(), 2);
        assert_eq!(state.refundable(), Money::from_minor(0, Currency::Usd));
        let over = decide(Some(&state), refund_of("re_5", 1));
        assert!(matches!(
            &over[..],
            [PaymentEvent::Mismatched {
                reason: MismatchReason::RefundExceedsPayment,
                refund_id: Some(id),
                ..
            }] if id == "re_5"
        ));
        // A refund in another currency is not applied either.
        let (_, paid) = run(vec![succeed()]);
        let euros = PaymentCommand::Refund {
            origin: origin(),
            payment_id: "ch_1".into(),
            refund_id: "re_eur".into(),
            amount: Money::from_minor(100, Currency::Eur),
            reason: None,
        };
        assert!(matches!(
            &decide(paid.as_ref(), euros)[..],
            [PaymentEvent::Mismatched { .. }]
        ));
    }

    #[test]
    fn a_report_about_another_intent_or_amount_than_the_orders_is_a_mismatch() {
        let total = origin().amount;
        assert_eq!(check(Some("pi_1"), total, &origin()), None);
        assert_eq!(check(None, total, &origin()), None, "no intent held yet");
        let Some(PaymentEvent::Mismatched {
            reason,
            expected_payment_intent_id,
            ..
        }) = check(Some("pi_other"), total, &origin())
        else {
            panic!("another intent passed")
        };
        assert_eq!(reason, MismatchReason::Intent);
        assert_eq!(expected_payment_intent_id.as_deref(), Some("pi_other"));
        let mut cheaper = origin();
        cheaper.amount = Money::from_minor(1, Currency::Usd);
        assert!(matches!(
            check(Some("pi_1"), total, &cheaper),
            Some(PaymentEvent::Mismatched {
                reason: MismatchReason::Amount,
                ..
            })
        ));
        let mut euros = origin();
        euros.amount = Money::new(total.amount, Currency::Eur);
        assert!(matches!(
            check(None, total, &euros),
            Some(PaymentEvent::Mismatched {
                reason: MismatchReason::Amount,
                ..
            })
        ));
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
