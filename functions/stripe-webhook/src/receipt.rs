//! Every delivery's effect commits with its receipt, a conditional put of the Stripe event
//! id: a repeat finds the receipt there and has no second effect. A store failure is never
//! acknowledged, so Stripe delivers again.

use crate::delivery::Outcome;
use crate::mismatches::alert;
use crate::StripeWebhook;
use kassa_commerce::Fail;
use kassa_domain::aggregate::Aggregate;
use kassa_payments::stripe_event::StripeEvent;
use kassa_runtime::Problem;
use kassa_store::receipt::receipt;
use kassa_store::Refusal;
use kassa_store::{Commit, StoreError};

pub(crate) fn server_error(e: &StoreError) -> Problem {
    // Stripe retries any non-2xx: a store failure must not be acknowledged.
    tracing::error!(error = %e, "webhook not stored; Stripe will retry");
    Problem::new(503, "not_stored", "the event could not be stored; retry").retry_after(5)
}

/// Items a delivery's commit carries beside its events and receipt.
pub(crate) type Also<'a, S, E> =
    dyn Fn(&mut Commit, Option<&S>, &[E]) -> Result<(), StoreError> + Send + Sync + 'a;

/// Adds nothing to the commit.
pub(crate) fn nothing<S, E>(_: &mut Commit, _: Option<&S>, _: &[E]) -> Result<(), StoreError> {
    Ok(())
}

impl StripeWebhook {
    /// Decides with `decide` on the aggregate `id` and commits what it decided with the
    /// delivery's receipt and whatever `extra` adds.
    pub(crate) async fn record<A: Aggregate>(
        &self,
        event: &StripeEvent,
        id: &A::Id,
        decide: &(dyn Fn(Option<&A>) -> Vec<A::Event> + Send + Sync),
        extra: &Also<'_, A, A::Event>,
    ) -> Result<Outcome, Problem> {
        let outcome = self
            .kernel
            .run(self.metadata(event), |tx| {
                Box::pin(async move {
                    let mut loaded = tx.load::<A>(id).await?;
                    let events = decide(loaded.state.as_ref());
                    if events.is_empty() {
                        // Already applied or superseded: nothing is written, the
                        // receipt included.
                        return Ok::<_, Fail<std::convert::Infallible>>(());
                    }
                    tx.record(&mut loaded, &events)?;
                    let commit = tx.commit();
                    self.receipt(commit, event)?;
                    extra(commit, loaded.state.as_ref(), &events)?;
                    Ok(())
                })
            })
            .await;
        match outcome {
            Ok(done) if done.recorded.is_empty() => Ok(Outcome::Ignored(
                "nothing changed: already applied or superseded".into(),
            )),
            Ok(done) => {
                alert(&done.recorded);
                Ok(Outcome::Recorded(done.recorded.len()))
            }
            Err(Fail::Refused(never)) => match never {},
            Err(Fail::Store(StoreError::Refused(Refusal::AlreadyReceived))) => {
                Ok(Outcome::Duplicate)
            }
            Err(Fail::Store(e)) => Err(server_error(&e)),
        }
    }

    fn receipt(&self, commit: &mut Commit, event: &StripeEvent) -> Result<(), StoreError> {
        commit.put(
            receipt(
                self.store.table(),
                "stripe",
                &event.id,
                &event.event_type,
                self.clock.now(),
            )?,
            Refusal::AlreadyReceived,
        );
        Ok(())
    }
}
