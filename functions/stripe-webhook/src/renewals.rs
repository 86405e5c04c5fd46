//! The invoices of workspaces' subscriptions (those kassa made for a paid tier, named by
//! `workspace_id` in the subscription's metadata): a renewal that fails starts the
//! workspace's dunning, owed as that invoice; a renewal paid, by Stripe or by any retry,
//! settles it. The first invoice of a subscription is not kassa's to follow: kassa
//! charged the period up to the subscription's anchor itself.
//!
//! Each outcome is recorded once per invoice (markers `renewal-paid:` and
//! `renewal-failed:` on the workspace's stream), and a payment settles the invoice for
//! good: a failure notice that arrives after it, or Stripe's own later attempts, change
//! nothing. kassa's retry schedule, not Stripe's, drives the dunning.

use crate::delivery::Outcome;
use crate::receipt::server_error;
use crate::StripeWebhook;
use kassa_commerce::dunning::{self, Attempt};
use kassa_commerce::Fail;
use kassa_domain::money::{Currency, Money};
use kassa_domain::workspace::ChargeFor;
use kassa_payments::dues::WORKSPACE_KEY;
use kassa_payments::stripe_event::{InvoiceFacts, StripeEvent};
use kassa_runtime::Problem;
use uuid::Uuid;

/// The workspace whose subscription billed `facts`, if it is one of kassa's.
pub(crate) fn workspace_of(facts: &InvoiceFacts) -> Option<Uuid> {
    facts.subscription.as_ref()?;
    facts
        .subscription_metadata
        .get(WORKSPACE_KEY)
        .and_then(|w| Uuid::parse_str(w).ok())
}

impl StripeWebhook {
    pub(crate) async fn on_renewal(
        &self,
        event: &StripeEvent,
        facts: &InvoiceFacts,
        workspace: Uuid,
        paid: bool,
    ) -> Result<Outcome, Problem> {
        if facts.billing_reason.as_deref() == Some("subscription_create") {
            return Ok(Outcome::Ignored(
                "a subscription's first invoice: kassa charged that period itself".into(),
            ));
        }
        let Some(currency) = Currency::from_code(&facts.currency) else {
            return Ok(Outcome::Ignored(format!(
                "currency {} is not kassa's",
                facts.currency
            )));
        };
        let minor = if paid {
            facts.amount_paid_minor
        } else {
            facts.amount_due_minor
        };
        if minor <= 0 {
            return Ok(Outcome::Ignored("nothing to pay".into()));
        }
        let (outcome, marker) = if paid {
            let payment = facts.payment_intent.clone().unwrap_or(facts.id.clone());
            (Ok(payment), format!("renewal-paid:{}", facts.id))
        } else {
            let why = format!(
                "Stripe could not collect the renewal invoice {} (attempt {})",
                facts.id, facts.attempt_count
            );
            (Err(why), format!("renewal-failed:{}", facts.id))
        };
        let attempt = Attempt {
            workspace,
            source_event: dunning::invoice_source(&facts.id),
            reason: ChargeFor::Renewal,
            amount: Money::from_minor(minor, currency),
            outcome,
            marker,
            due: None,
            invoice: Some(facts.id.clone()),
        };
        match dunning::record(
            &self.kernel,
            &self.dunning,
            &attempt,
            self.metadata(event),
            self.clock.now(),
        )
        .await
        {
            Ok(events) if events.is_empty() => Ok(Outcome::Ignored(
                "nothing changed: already applied or settled".into(),
            )),
            Ok(events) => Ok(Outcome::Recorded(events.len())),
            // The workspace is gone (deleted workspaces keep their stream, so this is a
            // subscription of another deployment sharing the account).
            Err(Fail::Refused(e)) => Ok(Outcome::Ignored(format!("workspace {workspace}: {e}"))),
            Err(Fail::Store(e)) => Err(server_error(&e)),
        }
    }
}
