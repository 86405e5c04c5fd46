//! On `workspace.deleted`: purges the workspace's read models (usage, notifications). The
//! event log is kept whole: it is the audit trail of every charge, invoice and credit
//! movement, which accounting keeps for years, and a rebuild must be able to replay it.
//! Purging twice finds nothing the second time, so redelivery needs no record.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_commerce::Clock;
use kassa_domain::workspace::WorkspaceEvent;
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::inbox::Inbox;
use kassa_runtime::{Config, Function, SdkConfig, SqsFunction};
use kassa_store::{ReadModels, RecordedEvent};
use std::sync::Arc;

pub const NAME: &str = "purge-workspaces";

pub struct PurgeWorkspaces {
    read_models: ReadModels,
    inbox: Inbox,
}

impl Function for PurgeWorkspaces {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {
            read_models: ReadModels::new(client, &config.state_table),
            inbox: Inbox::from_config(config, aws, NAME, clock),
        })
    }
}

impl SqsFunction for PurgeWorkspaces {
    async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        self.inbox
            .each(batch, |event| async move { self.purge(&event).await })
            .await
    }
}

impl PurgeWorkspaces {
    async fn purge(&self, event: &RecordedEvent) -> Result<(), EffectError> {
        let WorkspaceEvent::Deleted { workspace_id, .. } = event.decode::<WorkspaceEvent>()? else {
            return Ok(());
        };
        let purged = self.read_models.purge(workspace_id).await?;
        tracing::info!(%workspace_id, purged, "workspace read models purged");
        Ok(())
    }
}
