//! Scheduled daily: the trial schedule (`kassa_commerce::trials`). A reminder due records
//! `free_trial.ending` (dunning-notices mails it); an end due records `free_trial.ended`,
//! and the move back to the tier before it (the trial's credits taken back) or, for a
//! workspace that subscribed meanwhile, the rest of the period's credits. Each commit
//! takes its agenda entry, so an overlapping or repeated run acts once.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use kassa_commerce::trials::{self, Step, TRIALS_AGENDA};
use kassa_commerce::{Clock, Fail, Kernel};
use kassa_domain::aggregate::ByActor;
use kassa_domain::credits::Wallet;
use kassa_domain::identity::Actor;
use kassa_domain::workspace::{Workspace, WorkspaceCommand, WorkspaceError};
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::sweep::{sweep_day, Fate, Sweep};
use kassa_runtime::{Config, Function, ScheduledFunction, SdkConfig};
use kassa_store::{Agenda, Entry, EventStore, Metadata, Refusal, StoreError};
use std::sync::Arc;
use uuid::Uuid;

pub const NAME: &str = "end-trials";

pub struct EndTrials {
    kernel: Kernel,
    agenda: Agenda,
}

impl Function for EndTrials {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {
            kernel: Kernel::new(EventStore::new(client.clone(), &config.events_table), clock),
            agenda: Agenda::new(client, &config.state_table, TRIALS_AGENDA),
        })
    }
}

impl ScheduledFunction for EndTrials {
    type Run = Sweep;

    async fn handle(&self, _schedule: EventBridgeEvent) -> Result<Sweep, EffectError> {
        let correlation = Uuid::now_v7();
        sweep_day(&self.agenda, self.kernel.clock().now(), "trial", |entry| {
            self.step(entry, correlation)
        })
        .await
    }
}

impl EndTrials {
    async fn step(&self, entry: Entry, correlation: Uuid) -> Result<Fate, EffectError> {
        let (workspace, step) = trials::parse_subject(&entry.subject)
            .ok_or_else(|| EffectError::poison(format!("trial entry {}", entry.subject)))?;
        let at = self.kernel.clock().now();
        let command = ByActor {
            command: match step {
                Step::Remind => WorkspaceCommand::RemindTrial { at },
                Step::End => WorkspaceCommand::EndTrial { at },
            },
            actor: Actor::system(NAME),
        };
        let (command, agenda, entry) = (&command, &self.agenda, &entry);
        let metadata = Metadata::origin(correlation, format!("system:{NAME}"));
        let done = self
            .kernel
            .run(metadata, |tx| {
                Box::pin(async move {
                    let mut ws = tx.load::<Workspace>(&workspace).await?;
                    let events = if ws.state.is_some() {
                        tx.decide(&mut ws, command.clone())?
                    } else {
                        Vec::new()
                    };
                    if let Some(retier) = kassa_commerce::wallet::retier(ws.version, &events) {
                        let mut wallet = tx.load::<Wallet>(&workspace).await?;
                        kassa_commerce::wallet::stage(tx, &mut wallet, retier)
                            .await
                            .map_err(|f| match f {
                                Fail::Refused(e) => Fail::Store(StoreError::Corrupt(format!(
                                    "wallet {workspace}: {e}"
                                ))),
                                Fail::Store(e) => Fail::Store(e),
                            })?;
                    }
                    tx.commit().delete(agenda.take(entry)?, Refusal::EntryTaken);
                    Ok::<_, Fail<WorkspaceError>>(events.len())
                })
            })
            .await;
        match done {
            Ok(done) if done.value > 0 => Ok(Fate::Done),
            Ok(_) => Ok(Fate::Settled),
            // Another run took the entry first.
            Err(Fail::Store(StoreError::Refused(Refusal::EntryTaken))) => Ok(Fate::Settled),
            Err(fail) => Err(fail.into()),
        }
    }
}
