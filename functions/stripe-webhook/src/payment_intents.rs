//! Payment intents kassa created for an order: succeeded, failed or canceled, each checked
//! against the order before it is applied to the intent's payment stream.

use crate::delivery::Outcome;
use crate::receipt::{nothing, server_error};
use crate::StripeWebhook;
use kassa_commerce::order_book::{ORDER_KEY, USER_KEY};
use kassa_domain::identity::UserId;
use kassa_domain::money::{Currency, Money};
use kassa_domain::order::Order;
use kassa_domain::payment::{self, IntentOrigin, Payment, PaymentCommand};
use kassa_payments::stripe_event::{IntentFacts, StripeEvent};
use kassa_runtime::access::order_stream;
use kassa_runtime::Problem;
use uuid::Uuid;

impl StripeWebhook {
    /// Who the intent belongs to by the metadata kassa put on it, and that order, if it
    /// exists here. The metadata is only a claim: see [`payment::check`].
    async fn origin(&self, intent: &IntentFacts) -> Result<Option<(IntentOrigin, Order)>, Problem> {
        let (Some(order), Some(user), Some(currency)) = (
            intent
                .metadata
                .get(ORDER_KEY)
                .and_then(|o| Uuid::parse_str(o).ok()),
            intent.metadata.get(USER_KEY),
            Currency::from_code(&intent.currency),
        ) else {
            return Ok(None);
        };
        let Some(head) = self
            .store
            .load(&order_stream(order))
            .await
            .map_err(|e| server_error(&e))?
        else {
            return Ok(None);
        };
        let state: Order = head.state().map_err(|e| server_error(&e))?;
        let origin = IntentOrigin {
            payment_intent_id: intent.id.clone(),
            order_id: order,
            user_id: UserId::new(user.clone()),
            amount: Money::from_minor(intent.amount_minor, currency),
        };
        Ok(Some((origin, state)))
    }

    pub(crate) async fn on_intent(
        &self,
        event: &StripeEvent,
        intent: &IntentFacts,
        command: impl Fn(IntentOrigin) -> PaymentCommand + Send + Sync,
    ) -> Result<Outcome, Problem> {
        let Some((origin, order)) = self.origin(intent).await? else {
            return Ok(Outcome::Ignored("not a kassa payment".into()));
        };
        let held = order.payment_intent_id.as_deref();
        if let Some(mismatch) = payment::check(held, order.total, &origin) {
            return self.mismatched(event, &intent.id, mismatch).await;
        }
        let decide = |state: Option<&Payment>| payment::decide(state, command(origin.clone()));
        self.record::<Payment>(event, &intent.id, &decide, &nothing)
            .await
    }
}
