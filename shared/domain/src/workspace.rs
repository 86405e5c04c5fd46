//! Workspaces: who owns one, who collaborates on it, and which tier it is on.

use crate::event::DomainEvent;
use crate::identity::{Actor, Role, UserId};
use crate::tier::TierId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use uuid::Uuid;

pub const MAX_NAME_LEN: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: Uuid,
    pub name: String,
    pub tier: TierId,
    pub owner: UserId,
    pub collaborators: BTreeSet<UserId>,
    /// Where billing mail (low balance, receipts) goes.
    pub billing_email: Option<String>,
}

impl Workspace {
    /// Owners, collaborators and operators may read and change a workspace.
    pub fn admits(&self, actor: &Actor) -> bool {
        matches!(actor.role, Role::Admin | Role::System)
            || actor.user == self.owner
            || self.collaborators.contains(&actor.user)
    }

    /// Everyone a conditional write may accept as a member.
    pub fn members(&self) -> impl Iterator<Item = &UserId> {
        std::iter::once(&self.owner).chain(self.collaborators.iter())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkspaceCommand {
    Create {
        id: Uuid,
        name: String,
        tier: TierId,
        billing_email: Option<String>,
    },
    AddCollaborator {
        user: UserId,
    },
    RemoveCollaborator {
        user: UserId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "payload")]
pub enum WorkspaceEvent {
    #[serde(rename = "workspace.created")]
    Created {
        workspace_id: Uuid,
        name: String,
        tier: TierId,
        owner: UserId,
        #[serde(default)]
        billing_email: Option<String>,
    },
    #[serde(rename = "collaborator.added")]
    CollaboratorAdded { workspace_id: Uuid, user: UserId },
    #[serde(rename = "collaborator.removed")]
    CollaboratorRemoved { workspace_id: Uuid, user: UserId },
}

impl DomainEvent for WorkspaceEvent {
    const CONTEXT: &'static str = "workspaces";
    const TYPES: &'static [&'static str] = &[
        "workspace.created",
        "collaborator.added",
        "collaborator.removed",
    ];

    fn event_type(&self) -> &'static str {
        match self {
            Self::Created { .. } => "workspace.created",
            Self::CollaboratorAdded { .. } => "collaborator.added",
            Self::CollaboratorRemoved { .. } => "collaborator.removed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkspaceError {
    #[error("a workspace with this id already exists")]
    AlreadyExists,
    #[error("no such workspace")]
    NotFound,
    #[error("you may not change this workspace")]
    Forbidden,
    #[error("the name must be 1 to {MAX_NAME_LEN} characters and not only spaces")]
    InvalidName,
    #[error("{0} already collaborates on this workspace")]
    AlreadyCollaborator(UserId),
    #[error("{0} does not collaborate on this workspace")]
    NotCollaborator(UserId),
    #[error("only the owner may change who collaborates")]
    OwnerOnly,
    #[error("`{0}` is not an email address")]
    InvalidEmail(String),
}

impl WorkspaceError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::AlreadyExists => "workspace_exists",
            Self::NotFound => "workspace_not_found",
            Self::Forbidden => "forbidden",
            Self::InvalidName => "invalid_name",
            Self::AlreadyCollaborator(_) => "already_collaborator",
            Self::NotCollaborator(_) => "not_collaborator",
            Self::OwnerOnly => "owner_only",
            Self::InvalidEmail(_) => "invalid_email",
        }
    }
}

pub fn decide(
    state: Option<&Workspace>,
    command: WorkspaceCommand,
    actor: &Actor,
) -> Result<Vec<WorkspaceEvent>, WorkspaceError> {
    match (state, command) {
        (Some(_), WorkspaceCommand::Create { .. }) => Err(WorkspaceError::AlreadyExists),
        (
            None,
            WorkspaceCommand::Create {
                id,
                name,
                tier,
                billing_email,
            },
        ) => {
            let name = name.trim().to_owned();
            if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
                return Err(WorkspaceError::InvalidName);
            }
            if let Some(email) = &billing_email {
                if !plausible_email(email) {
                    return Err(WorkspaceError::InvalidEmail(email.clone()));
                }
            }
            Ok(vec![WorkspaceEvent::Created {
                workspace_id: id,
                name,
                tier,
                owner: actor.user.clone(),
                billing_email,
            }])
        }
        (None, _) => Err(WorkspaceError::NotFound),
        (Some(ws), WorkspaceCommand::AddCollaborator { user }) => {
            owner_only(ws, actor)?;
            if ws.owner == user || ws.collaborators.contains(&user) {
                return Err(WorkspaceError::AlreadyCollaborator(user));
            }
            Ok(vec![WorkspaceEvent::CollaboratorAdded {
                workspace_id: ws.id,
                user,
            }])
        }
        (Some(ws), WorkspaceCommand::RemoveCollaborator { user }) => {
            owner_only(ws, actor)?;
            if !ws.collaborators.contains(&user) {
                return Err(WorkspaceError::NotCollaborator(user));
            }
            Ok(vec![WorkspaceEvent::CollaboratorRemoved {
                workspace_id: ws.id,
                user,
            }])
        }
    }
}

/// One `@` with something on each side and a dot in the domain: enough to catch typos;
/// the mail provider is the real judge.
fn plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && email.len() <= 254
        && !email.chars().any(char::is_whitespace)
}

fn owner_only(ws: &Workspace, actor: &Actor) -> Result<(), WorkspaceError> {
    if actor.user == ws.owner || actor.role == Role::Admin {
        Ok(())
    } else if ws.admits(actor) {
        Err(WorkspaceError::OwnerOnly)
    } else {
        Err(WorkspaceError::Forbidden)
    }
}

pub fn evolve(state: Option<Workspace>, event: &WorkspaceEvent) -> Option<Workspace> {
    match (state, event) {
        (
            None,
            WorkspaceEvent::Created {
                workspace_id,
                name,
                tier,
                owner,
                billing_email,
            },
        ) => Some(Workspace {
            id: *workspace_id,
            name: name.clone(),
            tier: *tier,
            owner: owner.clone(),
            collaborators: BTreeSet::new(),
            billing_email: billing_email.clone(),
        }),
        (Some(mut ws), WorkspaceEvent::CollaboratorAdded { user, .. }) => {
            ws.collaborators.insert(user.clone());
            Some(ws)
        }
        (Some(mut ws), WorkspaceEvent::CollaboratorRemoved { user, .. }) => {
            ws.collaborators.remove(user);
            Some(ws)
        }
        // Events that do not apply to the state leave it as it is; the store never
        // hands us such a sequence, and replay must not panic on history.
        (state, _) => state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Uuid {
        Uuid::from_u128(7)
    }

    fn created(owner: &str) -> WorkspaceEvent {
        WorkspaceEvent::Created {
            workspace_id: id(),
            name: "Acme".into(),
            tier: TierId::Pro,
            owner: UserId::new(owner),
            billing_email: Some("billing@acme.test".into()),
        }
    }

    fn given(events: &[WorkspaceEvent]) -> Option<Workspace> {
        events.iter().fold(None, evolve)
    }

    #[test]
    fn creating_records_the_caller_as_owner_and_trims_the_name() {
        let events = decide(
            None,
            WorkspaceCommand::Create {
                id: id(),
                name: "  Acme ".into(),
                tier: TierId::Pro,
                billing_email: Some("billing@acme.test".into()),
            },
            &Actor::user("alice"),
        )
        .unwrap();
        assert_eq!(events, vec![created("alice")]);
    }

    #[test]
    fn blank_or_long_names_are_refused() {
        for name in ["", "   ", &"x".repeat(MAX_NAME_LEN + 1)] {
            let err = decide(
                None,
                WorkspaceCommand::Create {
                    id: id(),
                    name: name.into(),
                    tier: TierId::Free,
                    billing_email: None,
                },
                &Actor::user("alice"),
            )
            .unwrap_err();
            assert_eq!(err, WorkspaceError::InvalidName);
        }
    }

    #[test]
    fn implausible_billing_emails_are_refused() {
        for email in [
            "alice",
            "alice@",
            "@acme.test",
            "a@b",
            "a b@acme.test",
            "a@acme.",
        ] {
            let err = decide(
                None,
                WorkspaceCommand::Create {
                    id: id(),
                    name: "Acme".into(),
                    tier: TierId::Free,
                    billing_email: Some(email.into()),
                },
                &Actor::user("alice"),
            )
            .unwrap_err();
            assert_eq!(err, WorkspaceError::InvalidEmail(email.into()), "{email}");
        }
    }

    #[test]
    fn creating_twice_is_refused() {
        let state = given(&[created("alice")]);
        let err = decide(
            state.as_ref(),
            WorkspaceCommand::Create {
                id: id(),
                name: "Acme".into(),
                tier: TierId::Pro,
                billing_email: None,
            },
            &Actor::user("alice"),
        )
        .unwrap_err();
        assert_eq!(err, WorkspaceError::AlreadyExists);
    }

    #[test]
    fn only_the_owner_adds_collaborators_and_they_are_admitted() {
        let state = given(&[created("alice")]).unwrap();
        let add = WorkspaceCommand::AddCollaborator {
            user: UserId::new("bob"),
        };
        assert_eq!(
            decide(Some(&state), add.clone(), &Actor::user("mallory")),
            Err(WorkspaceError::Forbidden)
        );
        let events = decide(Some(&state), add.clone(), &Actor::user("alice")).unwrap();
        let state = events.iter().fold(Some(state), evolve).unwrap();
        assert!(state.admits(&Actor::user("bob")));
        assert!(!state.admits(&Actor::user("mallory")));
        assert_eq!(
            decide(Some(&state), add, &Actor::user("bob")),
            Err(WorkspaceError::OwnerOnly)
        );
    }

    #[test]
    fn removing_someone_who_is_not_a_collaborator_is_refused() {
        let state = given(&[created("alice")]).unwrap();
        let err = decide(
            Some(&state),
            WorkspaceCommand::RemoveCollaborator {
                user: UserId::new("bob"),
            },
            &Actor::user("alice"),
        )
        .unwrap_err();
        assert_eq!(err, WorkspaceError::NotCollaborator(UserId::new("bob")));
    }

    #[test]
    fn events_round_trip_through_type_and_payload() {
        let event = created("alice");
        assert_eq!(event.event_type(), "workspace.created");
        let back = WorkspaceEvent::from_parts(event.event_type(), event.payload()).unwrap();
        assert_eq!(back, event);
    }
}
