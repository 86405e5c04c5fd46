//! Stripe's invoices (of subscriptions): issued as kassa invoices in the user's series,
//! paid at once or put on the overdue agenda, and a failed payment recorded on the
//! subscription.

use crate::delivery::Outcome;
use crate::receipt::{nothing, server_error};
use crate::renewals::workspace_of;
use crate::StripeWebhook;
use kassa_commerce::invoicing;
use kassa_commerce::order_book::{USER_KEY, WORKSPACE_KEY};
use kassa_domain::identity::UserId;
use kassa_domain::invoice::{self, Draft, Invoice, InvoiceCommand, PAYMENT_TERMS_DAYS};
use kassa_domain::money::{Currency, Money};
use kassa_domain::order::OrderLine;
use kassa_domain::subscription::{self, Subscription, SubscriptionCommand};
use kassa_payments::stripe_event::{InvoiceFacts, StripeEvent};
use kassa_runtime::Problem;
use uuid::Uuid;

impl StripeWebhook {
    pub(crate) async fn on_invoice(
        &self,
        event: &StripeEvent,
        facts: &InvoiceFacts,
        paid: bool,
    ) -> Result<Outcome, Problem> {
        if let Some(ws) = workspace_of(facts) {
            return self.on_renewal(event, facts, ws, paid).await;
        }
        let meta = |k: &str| {
            facts
                .subscription_metadata
                .get(k)
                .or_else(|| facts.metadata.get(k))
                .cloned()
        };
        let (Some(user), Some(currency)) = (
            meta(USER_KEY).map(UserId::new),
            Currency::from_code(&facts.currency),
        ) else {
            return Ok(Outcome::Ignored("not a kassa invoice".into()));
        };
        let workspace = meta(WORKSPACE_KEY).and_then(|w| Uuid::parse_str(&w).ok());
        let issued_on = time::OffsetDateTime::from_unix_timestamp(event.created)
            .map_err(|e| Problem::bad_request("invalid_event", e.to_string()))?
            .date();
        let due_date = facts
            .due_date
            .and_then(|d| time::OffsetDateTime::from_unix_timestamp(d).ok())
            .map(|d| d.date())
            .unwrap_or(issued_on + time::Duration::days(PAYMENT_TERMS_DAYS));
        let draft = Draft {
            invoice_id: invoicing::invoice_id(&format!("stripe:{}", facts.id)),
            series: invoicing::series(workspace, &user),
            user_id: user.clone(),
            workspace_id: workspace,
            order_id: None,
            provider_invoice_id: Some(facts.id.clone()),
            lines: lines(facts, currency),
            tax_rate: None,
            tax: Money::from_minor(facts.tax_minor.unwrap_or(0), currency),
            issued_on,
            due_date,
        };
        let metadata = self.metadata(event);
        let now = self.clock.now();
        let payment = paid.then(|| (facts.id.clone(), issued_on));
        let issued = self
            .invoicing
            .issue(
                draft,
                payment.clone(),
                Some(&self.overdue),
                metadata.clone(),
                now,
            )
            .await
            .map_err(|e| server_error(&e))?;
        let mut recorded = issued.recorded.len();
        if let (Some((payment_id, paid_on)), true) = (payment, issued.recorded.is_empty()) {
            // Issued earlier as open (its payment failed first): now it is paid.
            let decide = |state: Option<&Invoice>| {
                invoice::decide(
                    state,
                    InvoiceCommand::Pay {
                        payment_id: payment_id.clone(),
                        paid_on,
                    },
                )
                .unwrap_or_default()
            };
            match self
                .record::<Invoice>(event, &issued.invoice.invoice_id, &decide, &nothing)
                .await?
            {
                Outcome::Recorded(n) => recorded += n,
                Outcome::Duplicate => return Ok(Outcome::Duplicate),
                Outcome::Ignored(_) | Outcome::Mismatched(_) => {}
            }
        }
        if let (false, Some(sub)) = (paid, &facts.subscription) {
            let decide = |state: Option<&Subscription>| {
                subscription::decide(
                    state,
                    SubscriptionCommand::PaymentFailed {
                        at: event.created,
                        subscription_id: sub.clone(),
                        user_id: Some(user.clone()),
                        attempt_count: facts.attempt_count,
                        invoice: facts.id.clone(),
                    },
                )
            };
            match self
                .record::<Subscription>(event, sub, &decide, &nothing)
                .await?
            {
                Outcome::Recorded(n) => recorded += n,
                Outcome::Duplicate => return Ok(Outcome::Duplicate),
                Outcome::Ignored(_) | Outcome::Mismatched(_) => {}
            }
        }
        Ok(if recorded > 0 {
            Outcome::Recorded(recorded)
        } else {
            Outcome::Ignored("nothing changed: already applied".into())
        })
    }
}

/// The invoice's lines in kassa's terms; an invoice without lines gets one for its total.
fn lines(facts: &InvoiceFacts, currency: Currency) -> Vec<OrderLine> {
    let mut out: Vec<OrderLine> = facts
        .lines
        .iter()
        .map(|l| {
            let quantity = l.quantity.unwrap_or(1).max(1);
            let amount = Money::from_minor(l.amount_minor, currency);
            OrderLine {
                description: l
                    .description
                    .clone()
                    .or_else(|| l.price.clone())
                    .unwrap_or_else(|| "subscription".into()),
                quantity,
                unit_price: Money::new(
                    amount.amount / rust_decimal::Decimal::from(quantity),
                    currency,
                ),
                amount,
            }
        })
        .collect();
    if out.is_empty() {
        let amount = Money::from_minor(facts.subtotal_minor, currency);
        out.push(OrderLine {
            description: facts.number.clone().unwrap_or_else(|| facts.id.clone()),
            quantity: 1,
            unit_price: amount,
            amount,
        });
    }
    out
}
