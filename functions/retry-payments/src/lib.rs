//! Scheduled daily: retries the charges workspaces owe (the dunning agenda), with the saved
//! card (a renewal invoice of the subscription is paid as that invoice), on the days `kassa_domain::workspace::RETRY_DAYS` gives after the first failure.
//! Each attempt is keyed by its charge and number, at the provider (`retry-<event>-<n>`)
//! and in kassa (the attempt's marker, in the commit that takes the agenda entry), so an
//! overlapping or retried run charges once. The outcome and the next entry, the warning
//! before the last retry, the suspension after it, and the reactivation on a payment are
//! decided and committed by `kassa_commerce::dunning`.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use kassa_commerce::dunning::{self, Attempt, DUNNING_AGENDA};
use kassa_commerce::{Clock, Kernel};
use kassa_domain::workspace::Workspace;
use kassa_payments::dues;
use kassa_payments::stripe::StripeGateway;
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::sweep::{sweep_day, Fate, Sweep};
use kassa_runtime::{Config, Function, ScheduledFunction, SdkConfig};
use kassa_store::lease::Leases;
use kassa_store::{Agenda, Entry, EventStore, Metadata, Refusal, StoreError};
use std::sync::Arc;
use uuid::Uuid;

pub const NAME: &str = "retry-payments";

pub struct RetryPayments {
    kernel: Kernel,
    agenda: Agenda,
    leases: Leases,
    gateway: StripeGateway,
}

impl Function for RetryPayments {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {
            kernel: Kernel::new(EventStore::new(client.clone(), &config.events_table), clock),
            leases: Leases::new(client.clone(), &config.events_table),
            agenda: Agenda::new(client, &config.state_table, DUNNING_AGENDA),
            gateway: config.stripe.gateway()?,
        })
    }
}

impl ScheduledFunction for RetryPayments {
    type Run = Sweep;

    async fn handle(&self, _schedule: EventBridgeEvent) -> Result<Sweep, EffectError> {
        let correlation = Uuid::now_v7();
        sweep_day(
            &self.agenda,
            self.kernel.clock().now(),
            "payment retry",
            |entry| self.retry(entry, correlation),
        )
        .await
    }
}

impl RetryPayments {
    async fn retry(&self, entry: Entry, correlation: Uuid) -> Result<Fate, EffectError> {
        let (workspace, source_event) = dunning::parse_subject(&entry.subject)
            .ok_or_else(|| EffectError::poison(format!("dunning entry {}", entry.subject)))?;
        let now = self.kernel.clock().now();
        let Some(turn) = dunning::take_turn(&self.leases, workspace, source_event, now).await?
        else {
            // The owner's new card is being charged for it right now: the entry stays,
            // and the run after this one finds the debt paid or still owed.
            return Err(EffectError::retry(format!(
                "charge {source_event} of workspace {workspace} is being made by another attempt"
            )));
        };
        let fate = self
            .retry_in_turn(entry, workspace, source_event, correlation)
            .await;
        dunning::end_turn(&self.leases, turn).await;
        fate
    }

    /// [`Self::retry`] once the charge's turn is this run's: the debt is read only now.
    async fn retry_in_turn(
        &self,
        entry: Entry,
        workspace: Uuid,
        source_event: Uuid,
        correlation: Uuid,
    ) -> Result<Fate, EffectError> {
        let ws = self
            .kernel
            .store()
            .load_aggregate::<Workspace>(&workspace)
            .await?
            .state;
        let owed = ws.as_ref().and_then(|ws| {
            ws.overdue
                .iter()
                .find(|o| o.source_event == source_event)
                .cloned()
        });
        let (Some(ws), Some(owed)) = (ws, owed) else {
            // Paid (the owner's new card) or never owed: only the entry is left.
            return self.drop_entry(&entry).await;
        };
        let attempt_no = owed.failures + 1;
        let outcome = dues::pay(
            &self.gateway,
            &ws,
            &owed,
            format!("kassa workspace {}: retry {attempt_no}", ws.name),
            &format!("retry-{source_event}-{attempt_no}"),
        )
        .await?;
        let attempt = Attempt {
            workspace,
            source_event,
            reason: owed.reason,
            amount: owed.amount,
            outcome,
            marker: format!("retry:{source_event}:{attempt_no}"),
            due: Some(entry),
            invoice: owed.invoice.clone(),
        };
        let metadata = Metadata::origin(correlation, format!("system:{NAME}"));
        match dunning::record(
            &self.kernel,
            &self.agenda,
            &attempt,
            metadata,
            self.kernel.clock().now(),
        )
        .await
        {
            Ok(events) if events.is_empty() => Ok(Fate::Settled),
            Ok(_) => Ok(Fate::Done),
            // Another run took the entry first.
            Err(kassa_commerce::Fail::Store(StoreError::Refused(Refusal::EntryTaken))) => {
                Ok(Fate::Settled)
            }
            Err(fail) => Err(fail.into()),
        }
    }

    async fn drop_entry(&self, entry: &Entry) -> Result<Fate, EffectError> {
        let take = self.agenda.take(entry)?;
        let mut commit = self.kernel.store().commit_builder(
            Metadata::origin(Uuid::now_v7(), NAME),
            self.kernel.clock().now(),
        );
        commit.delete(take, Refusal::EntryTaken);
        match self.kernel.store().commit(commit).await {
            Ok(_) | Err(StoreError::Refused(Refusal::EntryTaken)) => Ok(Fate::Settled),
            Err(e) => Err(e.into()),
        }
    }
}
