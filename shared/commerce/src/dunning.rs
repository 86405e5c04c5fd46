//! Recording what became of a charge of a workspace's saved card, and the dunning that
//! follows a failure (`kassa_domain::workspace` decides it): one commit holds the outcome,
//! the apply-once marker of the attempt, the retry's entry on the dunning agenda (and the
//! taking of the entry that led to this attempt), and the wallet's suspension or
//! reactivation, so a suspended workspace's very next debit is refused.
//!
//! A charge is settled once: the first success of a source writes its `settled:` marker,
//! and any later outcome of it (a retry and the owner's new card paying at the same time,
//! a failure notice arriving after the payment's) is recorded as nothing.

use crate::kernel::{Fail, Kernel};
use kassa_domain::aggregate::ByActor;
use kassa_domain::credits::{CreditCommand, Wallet};
use kassa_domain::identity::Actor;
use kassa_domain::money::Money;
use kassa_domain::workspace::{
    ChargeFor, Workspace, WorkspaceCommand, WorkspaceError, WorkspaceEvent,
};
use kassa_store::{stream_of, Agenda, Entry, Metadata, Refusal, StoreError};
use time::OffsetDateTime;
use uuid::Uuid;

/// The agenda partition of owed charges' retries; an entry's subject is
/// `<workspace>/<source event>`.
pub const DUNNING_AGENDA: &str = "dunning";

/// The agenda subject of the charge `source_event` owes `workspace`.
pub fn subject(workspace: Uuid, source_event: Uuid) -> String {
    format!("{workspace}/{source_event}")
}

/// The workspace and source event an agenda subject names.
pub fn parse_subject(subject: &str) -> Option<(Uuid, Uuid)> {
    let (ws, source) = subject.split_once('/')?;
    Some((Uuid::parse_str(ws).ok()?, Uuid::parse_str(source).ok()?))
}

/// The source event standing for the provider's invoice `invoice` of a workspace's
/// subscription (a renewal), whichever delivery or retry names it.
pub fn invoice_source(invoice: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("kassa:renewal-invoice:{invoice}").as_bytes(),
    )
}

fn settled_marker(source_event: Uuid) -> String {
    format!("settled:{source_event}")
}

/// One attempt at a charge and what became of it.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub workspace: Uuid,
    pub source_event: Uuid,
    pub reason: ChargeFor,
    pub amount: Money,
    /// The payment intent, or why the charge failed.
    pub outcome: Result<String, String>,
    /// Names the attempt for its apply-once marker (`charge:<event>`, `retry:<event>:<n>`).
    pub marker: String,
    /// The agenda entry this attempt was due on, taken in the same commit.
    pub due: Option<Entry>,
    /// The provider's invoice it pays (a renewal's).
    pub invoice: Option<String>,
}

/// Records `attempt` once: nothing is written when its marker exists.
pub async fn record(
    kernel: &Kernel,
    agenda: &Agenda,
    attempt: &Attempt,
    metadata: Metadata,
    at: OffsetDateTime,
) -> Result<Vec<WorkspaceEvent>, Fail<WorkspaceError>> {
    let command = ByActor {
        command: WorkspaceCommand::RecordCharge {
            source_event: attempt.source_event,
            reason: attempt.reason,
            amount: attempt.amount,
            outcome: attempt.outcome.clone(),
            invoice: attempt.invoice.clone(),
            at,
        },
        actor: Actor::system("dunning"),
    };
    let command = &command;
    let done = kernel
        .run(metadata, |tx| {
            Box::pin(async move {
                let stream = stream_of::<Workspace>(&attempt.workspace);
                let settled = settled_marker(attempt.source_event);
                if tx.store().is_marked(&stream, &attempt.marker).await? {
                    return Ok(Vec::new());
                }
                let mut ws = tx.load::<Workspace>(&attempt.workspace).await?;
                let events = if tx.store().is_marked(&stream, &settled).await? {
                    Vec::new()
                } else {
                    tx.decide(&mut ws, command.clone())?
                };
                tx.commit().mark(&ws.stream, &attempt.marker)?;
                if attempt.outcome.is_ok() && !events.is_empty() {
                    tx.commit().mark(&ws.stream, &settled)?;
                }
                if let Some(due) = &attempt.due {
                    tx.commit().delete(agenda.take(due)?, Refusal::EntryTaken);
                }
                let next = events.iter().find_map(|e| match e {
                    WorkspaceEvent::ChargeFailed { next_retry_on, .. }
                    | WorkspaceEvent::RetryFailed { next_retry_on, .. } => next_retry_on.clone(),
                    _ => None,
                });
                if let Some(next) = next {
                    let entry = agenda
                        .schedule(&next, &subject(attempt.workspace, attempt.source_event))?;
                    tx.commit().put(entry, Refusal::AlreadyScheduled);
                }
                let standing = events.iter().find_map(|e| match e {
                    WorkspaceEvent::Suspended { .. } => Some(CreditCommand::Suspend),
                    WorkspaceEvent::Reactivated { .. } => Some(CreditCommand::Reactivate),
                    _ => None,
                });
                if let Some(standing) = standing {
                    let mut wallet = tx.load::<Wallet>(&attempt.workspace).await?;
                    tx.decide(&mut wallet, standing).map_err(|f| match f {
                        Fail::Refused(e) => Fail::Store(StoreError::Corrupt(format!(
                            "wallet {}: {e}",
                            attempt.workspace
                        ))),
                        Fail::Store(e) => Fail::Store(e),
                    })?;
                }
                Ok(events)
            })
        })
        .await?;
    Ok(done.value)
}
