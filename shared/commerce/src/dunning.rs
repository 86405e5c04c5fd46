//! Recording what became of a charge of a workspace's saved card, and the dunning that
//! follows a failure (`kassa_domain::workspace` decides it): one commit holds the outcome,
//! the apply-once marker of the attempt, the retry's entry on the dunning agenda (and the
//! taking of the entry that led to this attempt), and the wallet's suspension or
//! reactivation, so a suspended workspace's very next debit is refused.
//!
//! A charge is settled once: the first success of a source writes its `settled:` marker,
//! and any later outcome of it (a failure notice arriving after the payment's) is
//! recorded as nothing.
//!
//! A charge is also MADE once at a time. The daily retry (the saved card) and the owner's
//! new card (`PUT .../payment-method`) both charge the same debt, each under its own
//! idempotency key, so both could succeed at the provider; each takes the debt's turn (a
//! lease, [`take_turn`]) before asking the provider and re-reads the debt after taking
//! it. Only a holder that dies between its charge and its record leaves the debt to be
//! charged again once its turn expires (a minute later).

use crate::kernel::{Fail, Kernel};
use kassa_domain::aggregate::ByActor;
use kassa_domain::credits::{CreditCommand, Wallet};
use kassa_domain::identity::Actor;
use kassa_domain::money::Money;
use kassa_domain::workspace::{
    ChargeFor, Workspace, WorkspaceCommand, WorkspaceError, WorkspaceEvent,
};
use kassa_store::lease::Leases;
use kassa_store::{stream_of, Agenda, Entry, Metadata, Refusal, StoreError};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// How long a charge's turn lasts: well past a charge (the provider's 4 s timeout) and its
/// record, so only a holder that died loses it.
pub const CHARGE_TURN: Duration = Duration::from_secs(60);

/// The turn to charge one debt of one workspace, held by one attempt.
#[derive(Debug)]
pub struct Turn {
    key: String,
    holder: String,
}

/// Takes the turn to charge `source_event` of `workspace`; `None` while another attempt
/// holds it.
pub async fn take_turn(
    leases: &Leases,
    workspace: Uuid,
    source_event: Uuid,
    now: OffsetDateTime,
) -> Result<Option<Turn>, StoreError> {
    let turn = Turn {
        key: format!("lease:charge#{workspace}#{source_event}"),
        holder: Uuid::now_v7().to_string(),
    };
    let taken = leases
        .acquire(&turn.key, &turn.holder, now, CHARGE_TURN)
        .await?;
    Ok(taken.then_some(turn))
}

/// Ends `turn` once its outcome is recorded (or nothing was charged). A turn that cannot
/// be given back expires on its own.
pub async fn end_turn(leases: &Leases, turn: Turn) {
    if let Err(e) = leases.abandon(&turn.key, &turn.holder).await {
        tracing::warn!(turn = %turn.key, error = %e, "a charge's turn is left to expire");
    }
}

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
