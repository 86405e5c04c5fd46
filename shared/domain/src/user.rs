//! Users as kassa sees them: an id from the identity provider, until it is deleted.
//! Deleting a user is the event other contexts act on (seed 001: cancel their
//! subscriptions and pending orders).

use crate::event::DomainEvent;
use crate::identity::UserId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub user_id: UserId,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "payload")]
pub enum UserEvent {
    #[serde(rename = "user.deleted")]
    Deleted { user_id: UserId, deleted_by: UserId },
}

impl DomainEvent for UserEvent {
    const CONTEXT: &'static str = "accounts";
    const TYPES: &'static [&'static str] = &["user.deleted"];

    fn event_type(&self) -> &'static str {
        match self {
            Self::Deleted { .. } => "user.deleted",
        }
    }
}

/// Deleting twice is a no-op.
pub fn delete(state: Option<&User>, user_id: UserId, by: UserId) -> Vec<UserEvent> {
    if state.is_some_and(|u| u.deleted) {
        return vec![];
    }
    vec![UserEvent::Deleted {
        user_id,
        deleted_by: by,
    }]
}

pub fn evolve(_state: Option<User>, event: &UserEvent) -> Option<User> {
    match event {
        UserEvent::Deleted { user_id, .. } => Some(User {
            user_id: user_id.clone(),
            deleted: true,
        }),
    }
}
