//! A delivery: its signature verified on the raw body before anything is parsed, then the
//! event handed to the concern it is about. What it did is the answer Stripe sees.

use crate::renewals::workspace_of;
use crate::{StripeWebhook, NAME};
use kassa_domain::payment::PaymentCommand;
use kassa_payments::stripe_event::{self, Signal, StripeEvent};
use kassa_payments::webhook_signature;
use kassa_runtime::http::json;
use kassa_runtime::Problem;
use kassa_store::Metadata;
use lambda_http::{Body, Request, Response};
use uuid::Uuid;

/// What a delivery did, as answered to Stripe (and seen in its dashboard).
pub(crate) enum Outcome {
    Recorded(usize),
    Duplicate,
    Ignored(String),
    /// Contradicts kassa's record of the order: recorded as `payment.mismatched`, not applied.
    Mismatched(&'static str),
}

impl StripeWebhook {
    pub(crate) async fn receive(&self, request: &Request) -> Result<Response<Body>, Problem> {
        let body: &[u8] = match request.body() {
            Body::Text(t) => t.as_bytes(),
            Body::Binary(b) => b,
            _ => b"",
        };
        let header = request
            .headers()
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok());
        webhook_signature::verify(
            body,
            header,
            &self.secret,
            self.clock.now().unix_timestamp(),
            self.tolerance_secs,
        )
        .map_err(|e| Problem::bad_request("invalid_signature", e.to_string()))?;
        let event = stripe_event::parse(body)
            .map_err(|e| Problem::bad_request("invalid_event", e.to_string()))?;
        let outcome = self.dispatch(&event).await?;
        let answer = match outcome {
            Outcome::Recorded(n) => serde_json::json!({ "id": event.id, "recorded": n }),
            Outcome::Duplicate => serde_json::json!({ "id": event.id, "duplicate": true }),
            Outcome::Ignored(why) => {
                tracing::info!(id = %event.id, event_type = %event.event_type, %why, "ignored");
                serde_json::json!({ "id": event.id, "ignored": why })
            }
            Outcome::Mismatched(reason) => {
                serde_json::json!({ "id": event.id, "mismatched": reason })
            }
        };
        Ok(json(200, &answer))
    }

    pub(crate) fn metadata(&self, event: &StripeEvent) -> Metadata {
        // Stripe event ids are not UUIDs: the correlation id derives from it, so every
        // kassa event a delivery causes shares one, stable across redeliveries.
        let correlation = Uuid::new_v5(&Uuid::NAMESPACE_OID, event.id.as_bytes());
        Metadata::origin(correlation, format!("system:{NAME}"))
    }

    async fn dispatch(&self, event: &StripeEvent) -> Result<Outcome, Problem> {
        match &event.signal {
            Signal::IntentSucceeded {
                intent,
                charge_id,
                payment_method,
            } => {
                let payment_id = charge_id.clone().unwrap_or_else(|| intent.id.clone());
                self.on_intent(event, intent, |origin| PaymentCommand::Succeed {
                    origin,
                    payment_id: payment_id.clone(),
                    payment_method: payment_method.clone(),
                })
                .await
            }
            Signal::IntentFailed {
                intent,
                code,
                message,
            } => {
                self.on_intent(event, intent, |origin| PaymentCommand::Fail {
                    origin,
                    code: code.clone(),
                    message: message.clone(),
                })
                .await
            }
            Signal::IntentCanceled { intent, reason } => {
                self.on_intent(event, intent, |origin| PaymentCommand::Cancel {
                    origin,
                    reason: reason.clone(),
                })
                .await
            }
            Signal::ChargeRefunded {
                intent_id,
                charge_id,
                currency,
                amount_minor,
                refunds,
            } => {
                self.on_charge_refunded(
                    event,
                    intent_id,
                    charge_id,
                    currency,
                    *amount_minor,
                    refunds,
                )
                .await
            }
            Signal::InvoicePaid { invoice } => self.on_invoice(event, invoice, true).await,
            Signal::InvoicePaymentFailed { invoice } => {
                self.on_invoice(event, invoice, false).await
            }
            // Stripe sends it along with `invoice.paid`; kassa's own books follow the
            // latter, a workspace's dunning whichever comes first.
            Signal::InvoicePaymentSucceeded { invoice } => match workspace_of(invoice) {
                Some(ws) => self.on_renewal(event, invoice, ws, true).await,
                None => Ok(Outcome::Ignored(
                    "kassa follows invoice.paid for this invoice".into(),
                )),
            },
            Signal::SubscriptionCreated(s) | Signal::SubscriptionUpdated(s) => {
                self.on_subscription(event, s, false).await
            }
            Signal::SubscriptionDeleted(s) => self.on_subscription(event, s, true).await,
            Signal::Unhandled => Ok(Outcome::Ignored(format!(
                "{} is not handled",
                event.event_type
            ))),
        }
    }
}
