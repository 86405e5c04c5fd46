//! Who may do what, checked the same way by every route: the role that counts for a
//! caller, and who may touch a workspace.

use crate::problem::store_problem;
use crate::Problem;
use kassa_commerce::{Fail, Tx};
use kassa_domain::identity::{Actor, Role};
use kassa_domain::user::User;
use kassa_domain::workspace::Workspace;
use kassa_store::{EventStore, Head, StreamId};
use uuid::Uuid;

/// The caller as kassa recorded them: the role that counts for this request.
///
/// A token's `role` claim is what the identity provider said when it issued the token; it
/// may be an hour old and kassa cannot change it. So once a user has registered
/// (`POST /users`), kassa's record decides, whatever their token claims:
/// - registered: `actor` with the role kassa recorded. An admin's `PUT /users/{id}/role`
///   takes effect on the user's next request: a demoted organizer or admin loses those
///   rights at once, and a token that newly claims `admin` grants a registered user
///   nothing;
/// - deleted: 403 `user_deleted`, whatever the token says;
/// - never registered: the token's role, as before users could register, so that
///   callers who have not registered keep working (and the first operator can register
///   as `admin`, see `user.rs`);
/// - `system` (an event handler acting for an event): returned as it is; it has no
///   record.
///
/// Costs one strongly consistent read of the caller's head (`GetItem`; a head of an
/// older schema is rebuilt with `Query`). The role is as of that read: a command that
/// must not commit on a role changed meanwhile uses [`recorded_in`], which makes the read
/// a condition of its commit.
pub async fn recorded(store: &EventStore, actor: Actor) -> Result<Actor, Problem> {
    if actor.role == Role::System {
        return Ok(actor);
    }
    let user = store
        .load_aggregate::<User>(actor.user.as_str())
        .await
        .map_err(|e| store_problem(&e))?;
    as_recorded(actor, user.state.as_ref())
}

/// As [`recorded`], inside a kernel attempt: the caller's record is read through the
/// attempt, and its version becomes a condition of the commit, so a role change that
/// lands between the read and the commit makes the command decide again on the new
/// role. The commit then writes even when the command decides nothing (the condition
/// alone), which is the price of that guarantee.
///
/// Not for a command that also appends to the caller's own user stream (a transaction
/// touches an item once): there, load that stream and use [`as_recorded`]; the append's
/// own condition guards the read.
pub async fn recorded_in(tx: &mut Tx<'_>, actor: Actor) -> Result<Actor, Fail<Problem>> {
    if actor.role == Role::System {
        return Ok(actor);
    }
    let user = tx.load::<User>(actor.user.as_str()).await?;
    // A caller who never registered has no head to hold still; their registration would
    // record the role their token claims anyway.
    if user.version > 0 {
        tx.commit().require_version(&user.stream, user.version)?;
    }
    as_recorded(actor, user.state.as_ref()).map_err(Fail::Refused)
}

/// The rule [`recorded`] applies, given the caller's record (`None`: never registered).
pub fn as_recorded(actor: Actor, user: Option<&User>) -> Result<Actor, Problem> {
    match user {
        _ if actor.role == Role::System => Ok(actor),
        Some(user) if user.deleted => Err(Problem::new(
            403,
            "user_deleted",
            "this account was deleted",
        )),
        Some(user) => match user.role() {
            Some(role) => Ok(Actor { role, ..actor }),
            None => Ok(actor),
        },
        None => Ok(actor),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(role: Role, deleted: bool) -> User {
        use kassa_domain::user::Profile;
        User {
            user_id: kassa_domain::identity::UserId::new("olga"),
            profile: Some(Profile {
                email: "olga@example.test".into(),
                name: "Olga".into(),
                role,
                registered_at: time::OffsetDateTime::UNIX_EPOCH,
            }),
            deleted,
        }
    }

    #[test]
    fn the_recorded_role_counts_over_the_tokens_claim() {
        let demoted = record(Role::User, false);
        let acting = as_recorded(Actor::organizer("olga"), Some(&demoted)).unwrap();
        assert_eq!(acting, Actor::user("olga"));
        let promoted = record(Role::Admin, false);
        let acting = as_recorded(Actor::user("olga"), Some(&promoted)).unwrap();
        assert_eq!(acting, Actor::admin("olga"));
    }

    #[test]
    fn an_unregistered_caller_acts_with_the_tokens_role() {
        let acting = as_recorded(Actor::organizer("olga"), None).unwrap();
        assert_eq!(acting, Actor::organizer("olga"));
    }

    #[test]
    fn a_deleted_caller_is_refused_whatever_the_token_claims() {
        for record in [
            record(Role::Admin, true),
            User {
                user_id: kassa_domain::identity::UserId::new("olga"),
                profile: None,
                deleted: true,
            },
        ] {
            let refused = as_recorded(Actor::admin("olga"), Some(&record)).unwrap_err();
            assert_eq!(
                (refused.status, refused.code.as_str()),
                (403, "user_deleted")
            );
        }
    }

    #[test]
    fn event_handlers_act_as_themselves() {
        let system = Actor::system("order-payments");
        assert_eq!(as_recorded(system.clone(), None), Ok(system));
    }
}
