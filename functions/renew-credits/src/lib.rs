//! Scheduled daily: every wallet whose monthly renewal is due gets its tier's monthly
//! credits (unused credits roll over), and its next renewal is scheduled on the wallet's
//! anchor day (its signup's day of the month) — all in the commit that appends
//! `credits.allocated`. A run that overlaps another, or a retried
//! invocation, finds the entry already taken and does nothing twice.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use kassa_domain::credits::{self, CreditCommand};
use kassa_runtime::events::EffectError;
use kassa_runtime::{wallet, Clock, Config, SdkConfig};
use kassa_store::{DueRenewal, EventStore, Metadata, Renewals, StoreError};
use serde::Serialize;
use std::sync::Arc;
use time::macros::format_description;
use uuid::Uuid;

pub const NAME: &str = "renew-credits";
const DAY: &[time::format_description::FormatItem<'static>] =
    format_description!("[year]-[month]-[day]");

pub struct RenewCredits {
    store: EventStore,
    renewals: Renewals,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Run {
    pub due: usize,
    pub renewed: usize,
    pub already_done: usize,
    pub failed: usize,
}

impl RenewCredits {
    pub fn new(store: EventStore, renewals: Renewals, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            renewals,
            clock,
        }
    }

    pub fn from_config(config: &Config, aws: &SdkConfig, clock: Arc<dyn Clock>) -> Self {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Self::new(
            EventStore::new(client.clone(), &config.events_table),
            Renewals::new(client, &config.state_table),
            clock,
        )
    }

    /// One scheduled run. Fails (so the invocation is retried) only after trying every
    /// due wallet.
    pub async fn handle(&self, _schedule: EventBridgeEvent) -> Result<Run, EffectError> {
        let today = self.clock.now().date().format(DAY)?;
        let due = self.renewals.due_by(&today).await?;
        let mut run = Run {
            due: due.len(),
            ..Run::default()
        };
        let correlation = Uuid::now_v7();
        for renewal in due {
            match self.renew(&renewal, correlation).await {
                Ok(true) => run.renewed += 1,
                Ok(false) => run.already_done += 1,
                Err(e) => {
                    tracing::error!(workspace = %renewal.workspace_id, due = %renewal.due, error = %e, "renewal failed");
                    run.failed += 1;
                }
            }
        }
        tracing::info!(?run, "renewal run");
        if run.failed > 0 {
            return Err(format!("{} of {} renewals failed", run.failed, run.due).into());
        }
        Ok(run)
    }

    async fn renew(&self, renewal: &DueRenewal, correlation: Uuid) -> Result<bool, StoreError> {
        let metadata = Metadata::origin(correlation, format!("system:{NAME}"));
        let due = time::Date::parse(&renewal.due, DAY)
            .map_err(|e| StoreError::Corrupt(format!("renewal day {}: {e}", renewal.due)))?;
        let anchor = renewal.anchor.unwrap_or(due.day());
        let next_due = credits::renewal_after(due, anchor)
            .format(DAY)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let command = CreditCommand::Renew {
            due: renewal.due.clone(),
        };
        let result = wallet::allocate(
            &self.store,
            self.clock.as_ref(),
            renewal.workspace_id,
            command,
            metadata,
            |commit| {
                commit.delete(self.renewals.take(renewal)?, "renewal_taken");
                commit.put(
                    self.renewals
                        .schedule(renewal.workspace_id, &next_due, anchor)?,
                    "renewal",
                );
                Ok(())
            },
        )
        .await;
        match result {
            Ok(recorded) => Ok(!recorded.is_empty()),
            Err(StoreError::Refused("renewal_taken")) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
