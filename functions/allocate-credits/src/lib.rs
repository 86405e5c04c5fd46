//! On `workspace.created`: allocate the tier's monthly credits plus its signup bonus.
//! Idempotent twice over: by event id (the inbox) and by allocation id (the wallet refuses
//! to apply `signup` a second time).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_commerce::{Clock, Kernel};
use kassa_domain::credits::{self, AllocationReason, CreditCommand, Wallet};
use kassa_domain::workspace::WorkspaceEvent;
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::inbox::Inbox;
use kassa_runtime::{Config, Function, SdkConfig, SqsFunction};
use kassa_store::{EventStore, Metadata, RecordedEvent, Refusal, Renewals};
use std::sync::Arc;
use time::macros::format_description;

pub const NAME: &str = "allocate-credits";

pub struct AllocateCredits {
    kernel: Kernel,
    renewals: Renewals,
    inbox: Inbox,
}

impl Function for AllocateCredits {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {
            kernel: Kernel::new(
                EventStore::new(client.clone(), &config.events_table),
                clock.clone(),
            ),
            renewals: Renewals::new(client, &config.state_table),
            inbox: Inbox::from_config(config, aws, NAME, clock),
        })
    }
}

impl SqsFunction for AllocateCredits {
    async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        self.inbox
            .each_once(batch, |event| async move { self.allocate(&event).await })
            .await
    }
}

impl AllocateCredits {
    async fn allocate(&self, event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {
        let WorkspaceEvent::Created {
            workspace_id,
            tier,
            anchor_day,
            ..
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
        // The workspace's anchor is the day its billing periods start; the renewals fall on
        // it. A workspace recorded without one renews on its signup's day.
        let signup = event.time.date();
        let anchor = anchor_day.unwrap_or(signup.day());
        let due = credits::renewal_after(signup, anchor)
            .format(format_description!("[year]-[month]-[day]"))?;
        let (command, due) = (&command, &due);
        let done = self
            .kernel
            .run(Metadata::caused_by(event, format!("system:{NAME}")), |tx| {
                Box::pin(async move {
                    let mut wallet = tx.load::<Wallet>(&workspace_id).await?;
                    let events =
                        kassa_commerce::wallet::stage(tx, &mut wallet, command.clone()).await?;
                    if !events.is_empty() {
                        tx.commit().put(
                            self.renewals.schedule(workspace_id, due, anchor)?,
                            Refusal::AlreadyScheduled,
                        );
                    }
                    Ok(())
                })
            })
            .await?;
        Ok(serde_json::json!({ "allocated": done.recorded.len() }))
    }
}
