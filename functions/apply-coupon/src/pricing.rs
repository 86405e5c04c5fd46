//! The order's PaymentIntent follows its total. Stripe lets an intent's amount change
//! until it is paid, so the intent is updated rather than replaced: the buyer's client
//! secret stays valid.
//!
//! The update comes after the commit, from the order as stored, with an idempotency key
//! of the order's version. Two changes of one order racing each other both end by reading
//! the order again: whoever updated last saw the latest version, or goes round again, so
//! the intent ends at the latest total. Had the buyer paid the old amount in the
//! meantime, the webhook finds it differs from the order's total and records
//! `payment.mismatched` (alerted) instead of completing the order.
//!
//! An order without an intent yet needs nothing: `payment-intents` creates it from the
//! order's total as stored, and follows a change made meanwhile the same way.

use crate::ApplyCoupon;
use kassa_domain::order::Order;
use kassa_payments::gateway::{GatewayError, PaymentGateway};
use kassa_runtime::problem::store_problem;
use kassa_runtime::Problem;
use uuid::Uuid;

/// Rounds of update-then-read before giving up (each needs another change to land in
/// between).
const ROUNDS: usize = 4;

impl ApplyCoupon {
    pub(crate) async fn follow_intent(&self, order_id: Uuid) -> Result<(), Problem> {
        let store = self.kernel.store();
        let read = || async {
            store
                .load_aggregate::<Order>(&order_id)
                .await
                .map_err(|e| store_problem(&e))
        };
        let mut loaded = read().await?;
        for _ in 0..ROUNDS {
            let Some(order) = loaded.state.as_ref() else {
                return Ok(());
            };
            let Some(intent) = order.payment_intent_id.as_deref() else {
                return Ok(());
            };
            if !order.status.is_open() || order.total.amount.is_zero() {
                return Ok(());
            }
            let key = format!("amount-{order_id}-{}", loaded.version);
            match self
                .gateway
                .update_payment_intent_amount(intent, order.total, &key)
                .await
            {
                Ok(_) => {}
                Err(GatewayError::Refused { kind, message }) => {
                    // Paid or canceled meanwhile: the webhook settles it against the total.
                    tracing::warn!(%order_id, %intent, %kind, %message, "intent amount not updated");
                    return Ok(());
                }
                Err(e) => {
                    // The coupon change is committed; the same request again finds it
                    // applied and updates the intent then.
                    return Err(Problem::new(
                        503,
                        "payment_provider_unavailable",
                        format!("the payment amount could not be updated; retry the request ({e})"),
                    )
                    .retry_after(1));
                }
            }
            let again = read().await?;
            if again.version == loaded.version {
                return Ok(());
            }
            loaded = again;
        }
        Ok(())
    }
}
