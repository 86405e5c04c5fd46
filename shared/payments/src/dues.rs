//! Paying what a workspace owes (`kassa_domain::workspace::Overdue`): a renewal invoice of
//! its subscription is paid as that invoice, so the provider's books show it paid; any
//! other charge is made anew on the saved card.

use crate::gateway::{GatewayError, PaymentGateway, SavedCardCharge};
use kassa_domain::workspace::{Overdue, Workspace};
use std::collections::BTreeMap;

/// The metadata key naming the workspace on the provider's customer, subscription and
/// the charges kassa makes for it.
pub const WORKSPACE_KEY: &str = "workspace_id";

/// The metadata key naming, on a charge kassa makes, the event that owes it.
pub const EVENT_KEY: &str = "kassa_event";

/// Pays `owed` of `ws` under `idempotency_key`: `Ok(Ok(payment))` when paid,
/// `Ok(Err(why))` when refused (the dunning goes on), `Err` when the provider could not
/// be asked (worth a retry).
pub async fn pay(
    gateway: &impl PaymentGateway,
    ws: &Workspace,
    owed: &Overdue,
    description: String,
    idempotency_key: &str,
) -> Result<Result<String, String>, GatewayError> {
    let Some(billing) = &ws.billing else {
        return Ok(Err("the workspace has no saved payment method".to_owned()));
    };
    let paid = match &owed.invoice {
        Some(invoice) => gateway.pay_invoice(invoice, idempotency_key).await,
        None => {
            // An attempt that died between its charge and its record left the debt paid
            // at the provider: that payment settles it, and the card is not charged again.
            let source = owed.source_event.to_string();
            if let Some(made) = gateway
                .succeeded_charge(&billing.customer, EVENT_KEY, &source)
                .await?
            {
                return Ok(Ok(made.id));
            }
            let charge = SavedCardCharge {
                customer: billing.customer.clone(),
                payment_method: billing.payment_method.clone(),
                amount: owed.amount,
                description,
                metadata: BTreeMap::from([
                    (WORKSPACE_KEY.to_owned(), ws.id.to_string()),
                    (EVENT_KEY.to_owned(), source),
                ]),
            };
            gateway
                .charge_saved_card(&charge, idempotency_key)
                .await
                .map(|intent| intent.id)
        }
    };
    match paid {
        Ok(payment) => Ok(Ok(payment)),
        Err(GatewayError::Refused { message, .. }) => Ok(Err(message)),
        Err(e) => Err(e),
    }
}
