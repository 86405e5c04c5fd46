//! Allocating credits to a wallet, shared by every handler that adds credits (signup,
//! renewal, purchases) or takes purchased ones back: decide on the current head, commit with whatever index
//! or lock items the caller adds, retry on conflict.

use crate::access::wallet_stream;
use crate::Clock;
use kassa_domain::credits::{self, CreditCommand, CreditEvent, Wallet};
use kassa_store::{retry, Commit, EventStore, Metadata, RecordedEvent, StoreError};
use uuid::Uuid;

/// Applies `command` to the wallet of `workspace`. `also` adds items that must commit with
/// the allocation (it is not called when the allocation was already applied, in which case
/// nothing is written and no events are returned).
pub async fn allocate(
    store: &EventStore,
    clock: &dyn Clock,
    workspace: Uuid,
    command: CreditCommand,
    metadata: Metadata,
    also: impl Fn(&mut Commit) -> Result<(), StoreError>,
) -> Result<Vec<RecordedEvent>, StoreError> {
    apply(store, clock, workspace, &[command], metadata, also).await
}

/// As [`allocate`], for several commands decided one after the other on the same head and
/// committed together: all of them or none (a purchase and the clawback of its refund).
pub async fn apply(
    store: &EventStore,
    clock: &dyn Clock,
    workspace: Uuid,
    commands: &[CreditCommand],
    metadata: Metadata,
    also: impl Fn(&mut Commit) -> Result<(), StoreError>,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let stream = wallet_stream(workspace);
    retry::on_conflict(retry::DEFAULT_ATTEMPTS, |seen| {
        let (metadata, stream, also) = (metadata.clone(), &stream, &also);
        async move {
            let head = match seen {
                Some(h) => h,
                None => store
                    .load(stream)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt(format!("{stream} has no wallet")))?,
            };
            let wallet: Wallet = head.state()?;
            let mut next = Some(wallet);
            let mut events = Vec::new();
            for command in commands {
                let decided = credits::decide(next.as_ref(), command.clone())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                next = decided.iter().fold(next, credits::evolve);
                events.extend(decided);
            }
            if events.is_empty() {
                return Ok(Vec::new());
            }
            let mut commit = store.commit_builder(metadata, clock.now());
            commit.append::<CreditEvent>(stream, head.version, &events, &next)?;
            also(&mut commit)?;
            store.commit(commit).await
        }
    })
    .await
}
