//! The bench's own tables, and the one workspace whose wallet every measurement debits.

use crate::api;
use anyhow::{bail, Context, Result};
use kassa_commerce::SystemClock;
use kassa_domain::credits::{AllocationReason, CreditCommand};
use kassa_local::resources::tables_only;
use kassa_local::template::Template;
use kassa_runtime::{HttpFunction, SdkConfig};
use kassa_store::{EventStore, Metadata};
use kassa_workspaces::Workspaces;
use std::path::Path;
use std::sync::Arc;
use uuid::Uuid;

/// Far more credits than a run consumes, so no measured call meets an empty wallet (a
/// refusal would be a different, cheaper path than the debit being measured).
const FUNDING: u64 = 10_000_000;

pub struct BenchWorkspace {
    pub id: Uuid,
    pub owner: String,
    pub events_table: String,
    pub state_table: String,
    /// The events table's stream, which the relay reads.
    pub events_stream: Option<String>,
}

impl BenchWorkspace {
    /// The key of the wallet's head, where a debit writes.
    pub fn wallet_pk(&self) -> String {
        kassa_runtime::access::wallet_stream(self.id)
            .as_str()
            .to_owned()
    }
}

/// Creates the template's tables under a fresh prefix, then a workspace through the
/// workspaces handler (so its head carries the member set the debit checks) and funds
/// its wallet as allocate-credits would.
pub async fn open(aws: &SdkConfig, template: &Path) -> Result<BenchWorkspace> {
    let client = aws_sdk_dynamodb::Client::new(aws);
    let template = Template::load(template)?;
    let prefix = format!("bench-{}", &Uuid::now_v7().simple().to_string()[20..]);
    let names = tables_only(&template, &client, &prefix)
        .await
        .context("creating the bench tables")?;
    let table = |id: &str| {
        names
            .physical
            .get(id)
            .cloned()
            .with_context(|| format!("the template has no {id}"))
    };
    let events_table = table("EventsTable")?;
    let state_table = table("StateTable")?;
    let store = EventStore::new(client, &events_table);

    let owner = "bench-owner".to_owned();
    let workspaces = Workspaces::new(store.clone(), Arc::new(SystemClock));
    let created = workspaces.handle(api::create_workspace(&owner)?).await;
    if created.status() != 201 {
        bail!("creating the bench workspace: {}", api::describe(&created));
    }
    let answer: serde_json::Value =
        serde_json::from_str(&api::body(&created)).context("the created workspace is not JSON")?;
    let id = answer["id"]
        .as_str()
        .and_then(|id| Uuid::parse_str(id).ok())
        .context("the created workspace has no id")?;

    fund(&store, id).await?;
    Ok(BenchWorkspace {
        id,
        owner,
        events_table,
        state_table,
        events_stream: names.stream_arns.get("EventsTable").cloned(),
    })
}

async fn fund(store: &EventStore, workspace: Uuid) -> Result<()> {
    let added = kassa_commerce::wallet::allocate(
        store,
        Arc::new(SystemClock),
        workspace,
        CreditCommand::Allocate {
            allocation_id: "bench".into(),
            base: FUNDING,
            bonus: 0,
            reason: AllocationReason::Purchase,
        },
        Metadata::origin(Uuid::now_v7(), "system:bench"),
        |_| Ok(()),
    )
    .await?;
    if added.is_empty() {
        bail!("the bench wallet was funded already");
    }
    Ok(())
}
