//! The wallet's cold commands (opening, allocations, renewals, purchases, clawbacks): each
//! is decided on the wallet's head and committed with its apply-once marker item, under a
//! condition on the head's version. The hot one, the debit, is consume-credits' single
//! conditional update of the same head (`kassa_store::counter`).

use crate::kernel::{Fail, Kernel, Tx};
use crate::Clock;
use kassa_domain::credits::{self, CreditCommand, CreditError, CreditEvent, Wallet};
use kassa_domain::workspace::WorkspaceEvent;
use kassa_store::{Commit, EventStore, Loaded, Metadata, RecordedEvent, StoreError};
use std::sync::Arc;
use uuid::Uuid;

/// Stages `command` on `wallet`, once: a command whose marker exists decides nothing;
/// otherwise its events are staged with the marker (so a rival applying it at the same
/// moment makes this commit refused, and the kernel decides again, on the marker), and a
/// clawback is refused unless its purchase is applied or applied in this commit.
pub async fn stage(
    tx: &mut Tx<'_>,
    wallet: &mut Loaded<Wallet>,
    command: CreditCommand,
) -> Result<Vec<CreditEvent>, Fail<CreditError>> {
    let Some(marker) = credits::marker(&command) else {
        return tx.decide(wallet, command);
    };
    let store = tx.store();
    if store.is_marked(&wallet.stream, &marker.key).await? {
        return Ok(Vec::new());
    }
    if let Some(required) = &marker.requires {
        let here = tx.commit().marks(&wallet.stream, required);
        if !here && !store.is_marked(&wallet.stream, required).await? {
            let order = match &command {
                CreditCommand::ClawBack { order_id, .. } => *order_id,
                _ => Uuid::nil(),
            };
            return Err(Fail::Refused(CreditError::PurchaseNotApplied(order)));
        }
    }
    let events = tx.decide(wallet, command)?;
    if !events.is_empty() {
        let commit = tx.commit();
        commit.mark(&wallet.stream, &marker.key)?;
        if let Some(required) = &marker.requires {
            // Read above; the check keeps it true until the commit.
            commit.require_mark(&wallet.stream, required)?;
        }
    }
    Ok(events)
}

/// The wallet's move along with a tier change (or a trial's end on to paid) that took
/// effect among a workspace's `events`, which left the workspace at `version`: its tier (prices and limits follow in
/// the same commit) and the change's prorated credits. The marker names the workspace
/// version that made the change, so the move applies once.
pub fn retier(version: u64, events: &[WorkspaceEvent]) -> Option<CreditCommand> {
    events.iter().find_map(|e| match e {
        WorkspaceEvent::TierChanged {
            to,
            credits_top_up,
            credits_taken_back,
            ..
        } => Some(CreditCommand::Retier {
            change_id: format!("tier@{version}"),
            tier: *to,
            top_up: *credits_top_up,
            take_back: *credits_taken_back,
        }),
        // On to paid: the rest of the period's credits, on the tier it stays on.
        WorkspaceEvent::TrialEnded {
            tier,
            credits_top_up,
            ..
        } if *credits_top_up > 0 => Some(CreditCommand::Retier {
            change_id: format!("tier@{version}"),
            tier: *tier,
            top_up: *credits_top_up,
            take_back: 0,
        }),
        _ => None,
    })
}

/// Applies `command` to the wallet of `workspace`. `also` adds items that must commit with
/// it (it is not called when the command was applied already, in which case nothing is
/// written and no events are returned).
pub async fn allocate(
    store: &EventStore,
    clock: Arc<dyn Clock>,
    workspace: Uuid,
    command: CreditCommand,
    metadata: Metadata,
    also: impl Fn(&mut Commit) -> Result<(), StoreError> + Sync,
) -> Result<Vec<RecordedEvent>, Fail<CreditError>> {
    apply(store, clock, workspace, &[command], metadata, also).await
}

/// As [`allocate`], for several commands decided one after the other on the same head and
/// committed together, each applied once (a purchase and the clawback of its refund). A
/// refusal comes back as the wallet's own error, for the caller to judge.
pub async fn apply(
    store: &EventStore,
    clock: Arc<dyn Clock>,
    workspace: Uuid,
    commands: &[CreditCommand],
    metadata: Metadata,
    also: impl Fn(&mut Commit) -> Result<(), StoreError> + Sync,
) -> Result<Vec<RecordedEvent>, Fail<CreditError>> {
    let kernel = Kernel::new(store.clone(), clock);
    let also = &also;
    let done = kernel
        .run(metadata, |tx| {
            Box::pin(async move {
                let mut wallet = tx.load::<Wallet>(&workspace).await?;
                if wallet.state.is_none() {
                    return Err(Fail::Store(StoreError::Corrupt(format!(
                        "{} has no wallet",
                        wallet.stream
                    ))));
                }
                let mut any = false;
                for command in commands {
                    any |= !stage(tx, &mut wallet, command.clone()).await?.is_empty();
                }
                if any {
                    also(tx.commit())?;
                }
                Ok(())
            })
        })
        .await?;
    Ok(done.recorded)
}
