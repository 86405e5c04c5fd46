//! Subscriptions kassa's users hold with Stripe: each update observed on the
//! subscription's stream, older ones ignored, and a new one indexed under its subscriber
//! so that deleting the user can cancel it.

use crate::delivery::Outcome;
use crate::StripeWebhook;
use kassa_commerce::order_book::USER_KEY;
use kassa_domain::identity::UserId;
use kassa_domain::subscription::{self, Snapshot, Subscription, SubscriptionCommand, Terms};
use kassa_payments::stripe_event::{StripeEvent, SubscriptionFacts};
use kassa_runtime::Problem;
use kassa_store::Commit;

impl StripeWebhook {
    pub(crate) async fn on_subscription(
        &self,
        event: &StripeEvent,
        facts: &SubscriptionFacts,
        deleted: bool,
    ) -> Result<Outcome, Problem> {
        let Some(user) = facts.metadata.get(USER_KEY).map(UserId::new) else {
            return Ok(Outcome::Ignored("not a kassa subscription".into()));
        };
        let snapshot = Snapshot {
            subscription_id: facts.id.clone(),
            customer: facts.customer.clone(),
            user_id: Some(user.clone()),
            plan: facts.price.clone(),
            status: facts.status.clone(),
            current_period_end: facts.current_period_end,
            cancel_at_period_end: facts.cancel_at_period_end,
            ended_at: facts.ended_at,
            // What the update says it replaced, over what it left: the terms before it.
            before: facts.previous.as_ref().map(|p| Terms {
                plan: p.price.clone().or_else(|| facts.price.clone()),
                status: p.status.clone().unwrap_or_else(|| facts.status.clone()),
                cancel_at_period_end: p.cancel_at_period_end.unwrap_or(facts.cancel_at_period_end),
            }),
        };
        let at = event.created;
        let decide = |state: Option<&Subscription>| {
            subscription::decide(
                state,
                SubscriptionCommand::Observe {
                    at,
                    event_id: event.id.clone(),
                    snapshot: snapshot.clone(),
                    deleted,
                },
            )
        };
        let index = |commit: &mut Commit, _: Option<&Subscription>, events: &[_]| {
            let announced = events
                .iter()
                .any(|e| matches!(e, subscription::SubscriptionEvent::Created { .. }));
            if announced {
                commit.index(self.book.subscriber(user.as_str(), &facts.id)?);
            }
            Ok(())
        };
        self.record::<Subscription>(event, &facts.id, &decide, &index)
            .await
    }
}
