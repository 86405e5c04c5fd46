//! Refunds of a charge kassa knows, applied to its payment stream by Stripe's own refund
//! ids, so a refund kassa already recorded when it asked for it is not applied twice.

use crate::delivery::Outcome;
use crate::receipt::{nothing, server_error};
use crate::StripeWebhook;
use kassa_domain::money::{Currency, Money};
use kassa_domain::payment::{self, IntentOrigin, Payment, PaymentCommand};
use kassa_payments::gateway::{GatewayError, PaymentGateway};
use kassa_payments::stripe_event::{RefundFacts, StripeEvent};
use kassa_runtime::access::payment_stream;
use kassa_runtime::Problem;

/// A refund as a delivery lists it or Stripe's API answers it.
struct Listed {
    id: String,
    amount_minor: i64,
    status: Option<String>,
    reason: Option<String>,
}

impl StripeWebhook {
    /// `charge.refunded`: the refunds that went through (listed, or read from Stripe when
    /// the listing falls short), in the charge's currency.
    pub(crate) async fn on_charge_refunded(
        &self,
        event: &StripeEvent,
        intent_id: &str,
        charge_id: &str,
        currency: &str,
        amount_refunded: i64,
        refunds: &[RefundFacts],
    ) -> Result<Outcome, Problem> {
        let Some(currency) = Currency::from_code(currency) else {
            return Ok(Outcome::Ignored(format!("currency {currency}")));
        };
        let listed: Vec<_> = refunds
            .iter()
            .map(|r| Listed {
                id: r.id.clone(),
                amount_minor: r.amount_minor,
                status: r.status.clone(),
                reason: r.reason.clone(),
            })
            .collect();
        let refunds = match self.refunds(charge_id, listed, amount_refunded).await? {
            Ok(refunds) => refunds,
            Err(ignored) => return Ok(ignored),
        };
        let refunds = refunds
            .into_iter()
            .filter(|r| !matches!(r.status.as_deref(), Some("failed" | "canceled")))
            .map(|r| (r.id, Money::from_minor(r.amount_minor, currency), r.reason))
            .collect();
        self.on_refund(event, intent_id, charge_id, refunds).await
    }

    async fn on_refund(
        &self,
        event: &StripeEvent,
        intent_id: &str,
        charge_id: &str,
        refunds: Vec<(String, Money, Option<String>)>,
    ) -> Result<Outcome, Problem> {
        let stream = payment_stream(intent_id);
        let known = self
            .store
            .load(&stream)
            .await
            .map_err(|e| server_error(&e))?;
        let Some(head) = known else {
            return Ok(Outcome::Ignored(
                "refund of a payment kassa does not know".into(),
            ));
        };
        let payment: Payment = head.state().map_err(|e| server_error(&e))?;
        let origin = IntentOrigin {
            payment_intent_id: intent_id.to_owned(),
            order_id: payment.order_id,
            user_id: payment.user_id.clone(),
            amount: payment.amount,
        };
        let decide = |state: Option<&Payment>| {
            let mut state = state.cloned();
            let mut events = Vec::new();
            let mut apply = |state: &mut Option<Payment>, command| {
                let out = payment::decide(state.as_ref(), command);
                *state = out.iter().fold(state.take(), payment::evolve);
                events.extend(out);
            };
            // Oldest first, so that if they ever exceed the payment it is the latest that
            // is refused.
            for (refund_id, amount, reason) in refunds.iter().rev() {
                apply(
                    &mut state,
                    PaymentCommand::Refund {
                        origin: origin.clone(),
                        payment_id: charge_id.to_owned(),
                        refund_id: refund_id.clone(),
                        amount: *amount,
                        reason: reason.clone(),
                    },
                );
            }
            events
        };
        self.record::<Payment>(event, intent_id, &decide, &nothing)
            .await
    }

    /// The charge's refunds, by Stripe's own ids. From API version 2022-11-15 a
    /// `charge.refunded` no longer lists them, and older ones list only the first page:
    /// whenever the listed refunds do not account for the charge's `amount_refunded`, they
    /// are read from Stripe. Newest first, as Stripe lists them.
    async fn refunds(
        &self,
        charge_id: &str,
        listed: Vec<Listed>,
        amount_refunded: i64,
    ) -> Result<Result<Vec<Listed>, Outcome>, Problem> {
        let accounted: i64 = listed
            .iter()
            .filter(|r| !matches!(r.status.as_deref(), Some("failed" | "canceled")))
            .map(|r| r.amount_minor)
            .sum();
        if accounted >= amount_refunded {
            return Ok(Ok(listed));
        }
        match self.gateway.list_refunds(charge_id).await {
            Ok(refunds) => Ok(Ok(refunds
                .into_iter()
                .map(|r| Listed {
                    id: r.id,
                    amount_minor: r.amount_minor,
                    status: Some(r.status),
                    reason: r.reason,
                })
                .collect())),
            Err(GatewayError::Refused { kind, message }) => {
                tracing::warn!(charge = %charge_id, %kind, %message, "Stripe does not list the refunds");
                Ok(Err(Outcome::Ignored(format!(
                    "Stripe does not list the refunds of {charge_id}: {message}"
                ))))
            }
            Err(e) => {
                // Stripe retries any non-2xx: the refunds are read again then.
                tracing::error!(charge = %charge_id, error = %e, "refunds not read; Stripe will retry");
                Err(Problem::new(503, "provider_unavailable", e.to_string()).retry_after(5))
            }
        }
    }
}
