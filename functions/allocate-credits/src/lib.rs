//! On `workspace.created`: allocate the tier's monthly credits plus its signup bonus.
//! Idempotent twice over: by event id (the idempotency record) and by allocation id (the
//! wallet refuses to apply `signup` a second time).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_domain::credits::{self, AllocationReason, CreditCommand};
use kassa_domain::workspace::WorkspaceEvent;
use kassa_runtime::events::{self, EffectError};
use kassa_runtime::{wallet, Clock, Config, SdkConfig};
use kassa_store::{EventStore, Idempotency, Metadata, RecordedEvent, Renewals};
use std::sync::Arc;
use time::macros::format_description;

pub const NAME: &str = "allocate-credits";

pub struct AllocateCredits {
    store: EventStore,
    renewals: Renewals,
    idempotency: Idempotency,
    clock: Arc<dyn Clock>,
}

impl AllocateCredits {
    pub fn new(
        store: EventStore,
        renewals: Renewals,
        idempotency: Idempotency,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            renewals,
            idempotency,
            clock,
        }
    }

    pub fn from_config(config: &Config, aws: &SdkConfig, clock: Arc<dyn Clock>) -> Self {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Self::new(
            EventStore::new(client.clone(), &config.events_table),
            Renewals::new(client.clone(), &config.state_table),
            Idempotency::new(client, &config.state_table, NAME),
            clock,
        )
    }

    pub async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        events::each_once(
            batch,
            &self.idempotency,
            self.clock.as_ref(),
            |event| async move { self.allocate(&event).await },
        )
        .await
    }

    async fn allocate(&self, event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {
        let WorkspaceEvent::Created {
            workspace_id, tier, ..
        } = event.decode::<WorkspaceEvent>()?
        else {
            return Ok(serde_json::json!({ "skipped": event.event_type }));
        };
        let policy = tier.policy();
        let command = CreditCommand::Allocate {
            allocation_id: "signup".into(),
            base: policy.monthly_credits,
            bonus: policy.signup_bonus_credits,
            reason: AllocationReason::Signup,
        };
        // The first monthly renewal is due a month after signup; it is scheduled in the
        // same commit as the allocation, so neither exists without the other.
        let signup = event.time.date();
        let due = credits::renewal_after(signup, signup.day())
            .format(format_description!("[year]-[month]-[day]"))?;
        let metadata = Metadata::caused_by(event, format!("system:{NAME}"));
        let recorded = wallet::allocate(
            &self.store,
            self.clock.as_ref(),
            workspace_id,
            command,
            metadata,
            |commit| {
                commit.put(
                    self.renewals.schedule(workspace_id, &due, signup.day())?,
                    "renewal",
                );
                Ok(())
            },
        )
        .await?;
        Ok(serde_json::json!({ "allocated": recorded.len() }))
    }
}
