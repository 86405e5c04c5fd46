//! Reports that contradict kassa's record of the order (another intent than the order's,
//! or another amount): recorded as `payment.mismatched` on a stream of their own, applied
//! nowhere, and alerted.

use crate::delivery::Outcome;
use crate::receipt::nothing;
use crate::StripeWebhook;
use kassa_domain::money::Money;
use kassa_domain::payment::{Mismatches, PaymentEvent};
use kassa_payments::stripe_event::StripeEvent;
use kassa_runtime::Problem;
use kassa_store::RecordedEvent;

/// The `alert` field of the error line logged for every `payment.mismatched` recorded: a
/// CloudWatch metric filter matches `{ $.level = "ERROR" && $.fields.alert = "payment_mismatched" }`.
pub const MISMATCH_ALERT: &str = "payment_mismatched";

/// Logs the alert line for each `payment.mismatched` among `recorded`.
pub(crate) fn alert(recorded: &[RecordedEvent]) {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let money = |m: &Option<Money>| m.map(|m| m.to_string()).unwrap_or_default();
    for event in recorded {
        let Ok(PaymentEvent::Mismatched {
            payment_intent_id,
            order_id,
            reason,
            expected_payment_intent_id,
            expected_amount,
            reported_amount,
            refund_id,
        }) = event.decode::<PaymentEvent>()
        else {
            continue;
        };
        tracing::error!(
            alert = MISMATCH_ALERT,
            event_id = %event.event_id,
            %payment_intent_id,
            %order_id,
            reason = reason.as_str(),
            expected_payment_intent_id = %text(&expected_payment_intent_id),
            expected_amount = %money(&expected_amount),
            reported_amount = %money(&reported_amount),
            refund_id = %text(&refund_id),
            "a Stripe report contradicts the order; recorded, not applied"
        );
    }
}

impl StripeWebhook {
    /// Records `mismatch` (a `payment.mismatched`) on the intent's own mismatch stream with
    /// the delivery's receipt, and alerts. Nothing else is applied.
    pub(crate) async fn mismatched(
        &self,
        event: &StripeEvent,
        intent_id: &str,
        mismatch: PaymentEvent,
    ) -> Result<Outcome, Problem> {
        let reason = match &mismatch {
            PaymentEvent::Mismatched { reason, .. } => reason.as_str(),
            _ => "mismatch",
        };
        let decide = |_: Option<&Mismatches>| vec![mismatch.clone()];
        match self
            .record::<Mismatches>(event, intent_id, &decide, &nothing)
            .await?
        {
            Outcome::Recorded(_) => Ok(Outcome::Mismatched(reason)),
            other => Ok(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kassa_domain::event::DomainEvent;
    use kassa_domain::money::Currency;
    use kassa_domain::payment::MismatchReason;
    use kassa_store::Metadata;
    use std::sync::{Arc, Mutex};
    use uuid::Uuid;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The line the README tells operators to match, in the JSON shape Lambda logs have
    /// (`kassa_runtime::telemetry`).
    #[test]
    fn a_recorded_mismatch_logs_the_error_line_the_metric_filter_matches() {
        let mismatch = PaymentEvent::Mismatched {
            payment_intent_id: "pi_foreign".into(),
            order_id: Uuid::from_u128(7),
            reason: MismatchReason::Intent,
            expected_payment_intent_id: Some("pi_order".into()),
            expected_amount: Some(Money::from_minor(1_000, Currency::Usd)),
            reported_amount: Some(Money::from_minor(1_000, Currency::Usd)),
            refund_id: None,
        };
        let recorded = RecordedEvent {
            event_id: Uuid::from_u128(1),
            stream: kassa_store::stream_of::<Mismatches>("pi_foreign"),
            version: 1,
            event_type: mismatch.event_type().to_owned(),
            context: PaymentEvent::CONTEXT.to_owned(),
            time: time::OffsetDateTime::UNIX_EPOCH,
            payload: mismatch.payload(),
            metadata: Metadata::origin(Uuid::from_u128(2), "test"),
            schema: 1,
        };
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .without_time()
            .with_current_span(false)
            .with_target(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || alert(&[recorded]));
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["level"], "ERROR", "{line}");
        assert_eq!(line["fields"]["alert"], MISMATCH_ALERT, "{line}");
        assert_eq!(line["fields"]["payment_intent_id"], "pi_foreign");
        assert_eq!(line["fields"]["expected_payment_intent_id"], "pi_order");
        assert_eq!(line["fields"]["reason"], "intent");
        assert_eq!(line["fields"]["reported_amount"], "10.00 USD");
    }
}
