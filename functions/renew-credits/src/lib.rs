//! Scheduled daily: every wallet whose monthly renewal is due gets its tier's monthly
//! credits (unused credits roll over), and its next renewal is scheduled on the wallet's
//! anchor day (its signup's day of the month) — all in the commit that appends
//! `credits.allocated`. A run that overlaps another, or a retried
//! invocation, finds the entry already taken and does nothing twice.
//!
//! A renewal closes one billing period and opens the next, in one commit (see
//! `CreditCommand::Renew`): the closing period's overage is charged, granted credits over
//! the tier's rollover cap expire, a move to a smaller tier scheduled for the period's end
//! takes effect, and the new period's tier grants its credits.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use kassa_commerce::{Clock, Fail, Kernel};
use kassa_domain::aggregate::ByActor;
use kassa_domain::credits::{self, CreditCommand, Wallet};
use kassa_domain::identity::Actor;
use kassa_domain::workspace::{Workspace, WorkspaceCommand, WorkspaceError};
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::sweep::{work_through, Fate, Sweep};
use kassa_runtime::{Config, Function, ScheduledFunction, SdkConfig};
use kassa_store::{DueRenewal, EventStore, Metadata, Refusal, Renewals, StoreError};
use std::sync::Arc;
use time::macros::format_description;
use uuid::Uuid;

pub const NAME: &str = "renew-credits";
const DAY: &[time::format_description::FormatItem<'static>] =
    format_description!("[year]-[month]-[day]");

pub struct RenewCredits {
    kernel: Kernel,
    renewals: Renewals,
}

impl Function for RenewCredits {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self::new(
            EventStore::new(client.clone(), &config.events_table),
            Renewals::new(client, &config.state_table),
            clock,
        ))
    }
}

impl ScheduledFunction for RenewCredits {
    type Run = Sweep;

    /// One scheduled run. Fails (so the invocation is retried) only after trying every
    /// due wallet.
    async fn handle(&self, _schedule: EventBridgeEvent) -> Result<Sweep, EffectError> {
        let today = self.kernel.clock().now().date().format(DAY)?;
        // One read of the agenda: its entries carry each wallet's anchor beside its day.
        let due = self.renewals.due_by(&today).await?;
        let correlation = Uuid::now_v7();
        work_through(due, "renewal", |renewal| self.renew(renewal, correlation)).await
    }
}

impl RenewCredits {
    pub fn new(store: EventStore, renewals: Renewals, clock: Arc<dyn Clock>) -> Self {
        Self {
            kernel: Kernel::new(store, clock),
            renewals,
        }
    }

    async fn renew(&self, renewal: DueRenewal, correlation: Uuid) -> Result<Fate, EffectError> {
        let due = time::Date::parse(&renewal.due, DAY)
            .map_err(|e| EffectError::poison(format!("renewal day {}: {e}", renewal.due)))?;
        let anchor = renewal.anchor.unwrap_or(due.day());
        let next_due = credits::renewal_after(due, anchor).format(DAY)?;
        let (renewal, next_due) = (&renewal, &next_due);
        let result = self
            .kernel
            .run(
                Metadata::origin(correlation, format!("system:{NAME}")),
                |tx| {
                    Box::pin(async move {
                        let mut wallet = tx.load::<Wallet>(&renewal.workspace_id).await?;
                        let mut command = CreditCommand::Renew {
                            due: renewal.due.clone(),
                            retier: None,
                        };
                        // A renewal applied already writes nothing, the entry included.
                        if let Some(marker) = credits::marker(&command) {
                            if tx.store().is_marked(&wallet.stream, &marker.key).await? {
                                return Ok(());
                            }
                        }
                        let mut ws = tx.load::<Workspace>(&renewal.workspace_id).await?;
                        if ws.state.as_ref().is_some_and(|w| w.deleted_on.is_some()) {
                            // A deleted workspace renews no more: its entry just goes.
                            tx.commit()
                                .delete(self.renewals.take(renewal)?, Refusal::EntryTaken);
                            return Ok(());
                        }
                        if ws.state.is_some() {
                            let system = |command| ByActor {
                                command,
                                actor: Actor::system(NAME),
                            };
                            let corrupt = |f: Fail<WorkspaceError>| match f {
                                Fail::Refused(e) => Fail::Store(StoreError::Corrupt(format!(
                                    "workspace {}: {e}",
                                    renewal.workspace_id
                                ))),
                                Fail::Store(e) => Fail::Store(e),
                            };
                            // A trial end-trials has not ended yet (it ends the day before
                            // the period's end at the latest) ends here first, so the period
                            // closes on the tier before it and its credits go back.
                            let end = system(WorkspaceCommand::EndTrial { at: tx.now() });
                            let ended = tx.decide(&mut ws, end).map_err(corrupt)?;
                            if let Some(retier) = kassa_commerce::wallet::retier(ws.version, &ended)
                            {
                                kassa_commerce::wallet::stage(tx, &mut wallet, retier).await?;
                            }
                            let apply =
                                system(WorkspaceCommand::ApplyScheduledTier { at: tx.now() });
                            let applied = tx.decide(&mut ws, apply).map_err(corrupt)?;
                            if let Some(CreditCommand::Retier {
                                change_id, tier, ..
                            }) = kassa_commerce::wallet::retier(ws.version, &applied)
                            {
                                command = CreditCommand::Renew {
                                    due: renewal.due.clone(),
                                    retier: Some((change_id, tier)),
                                };
                            }
                        }
                        let events =
                            kassa_commerce::wallet::stage(tx, &mut wallet, command).await?;
                        if !events.is_empty() {
                            let take = self.renewals.take(renewal)?;
                            let next =
                                self.renewals
                                    .schedule(renewal.workspace_id, next_due, anchor)?;
                            tx.commit()
                                .delete(take, Refusal::EntryTaken)
                                .put(next, Refusal::AlreadyScheduled);
                        }
                        Ok(())
                    })
                },
            )
            .await;
        match result {
            Ok(done) if done.recorded.is_empty() => Ok(Fate::Settled),
            Ok(_) => Ok(Fate::Done),
            Err(Fail::Store(StoreError::Refused(Refusal::EntryTaken))) => Ok(Fate::Settled),
            Err(fail) => Err(fail.into()),
        }
    }
}
