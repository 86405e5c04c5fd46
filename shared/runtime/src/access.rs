//! Who may touch a workspace, checked the same way by every route.

use crate::problem::store_problem;
use crate::Problem;
use kassa_domain::identity::Actor;
use kassa_domain::workspace::Workspace;
use kassa_store::{EventStore, Head, StreamId};
use uuid::Uuid;

pub fn workspace_stream(id: Uuid) -> StreamId {
    StreamId::new("Workspace", id)
}

pub fn wallet_stream(id: Uuid) -> StreamId {
    StreamId::new("Wallet", id)
}

/// The workspace if `actor` may see it. A workspace that is not theirs is answered as one
/// that does not exist (404): a stranger learns nothing about what exists, the same rule
/// as for orders and invoices.
pub fn admitted(head: Option<&Head>, id: Uuid, actor: &Actor) -> Result<Workspace, Problem> {
    let head = head.ok_or_else(|| not_found(id))?;
    let ws: Workspace = head.state().map_err(|e| Problem::internal(&e))?;
    if ws.admits(actor) {
        Ok(ws)
    } else {
        Err(not_found(id))
    }
}

pub async fn load_admitted(
    store: &EventStore,
    id: Uuid,
    actor: &Actor,
) -> Result<(Head, Workspace), Problem> {
    let head = store
        .load(&workspace_stream(id))
        .await
        .map_err(|e| store_problem(&e))?;
    let Some(head) = head else {
        return Err(not_found(id));
    };
    let ws = admitted(Some(&head), id, actor)?;
    Ok((head, ws))
}

/// No workspace `id`, or none the caller may see: the two answer alike.
pub fn not_found(id: Uuid) -> Problem {
    Problem::not_found("workspace_not_found", format!("no workspace {id}"))
}

pub fn order_stream(id: Uuid) -> StreamId {
    StreamId::new("Order", id)
}

/// One stream per provider payment intent (`pi_...`).
pub fn payment_stream(intent: &str) -> StreamId {
    StreamId::new("Payment", intent)
}

/// One stream per provider subscription (`sub_...`).
pub fn subscription_stream(id: &str) -> StreamId {
    StreamId::new("Subscription", id)
}

pub fn invoice_stream(id: Uuid) -> StreamId {
    StreamId::new("Invoice", id)
}

pub fn user_stream(id: &str) -> StreamId {
    StreamId::new("User", id)
}
