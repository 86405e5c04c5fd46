//! Who is acting: the caller's id and role as the API's authorizer vouches for them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A user's id: the `sub` claim of the caller's token.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The caller's role across kassa. `Admin` is the operator's role (support, back office);
/// `Organizer` may create concerts; `System` is a side-effect handler acting on an event's
/// behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
    Organizer,
    System,
}

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Self::User),
            "admin" => Some(Self::Admin),
            "organizer" => Some(Self::Organizer),
            "system" => Some(Self::System),
            _ => None,
        }
    }
}

/// The authenticated caller of a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub user: UserId,
    pub role: Role,
}

impl Actor {
    pub fn user(id: impl Into<String>) -> Self {
        Self {
            user: UserId::new(id),
            role: Role::User,
        }
    }

    pub fn organizer(id: impl Into<String>) -> Self {
        Self {
            user: UserId::new(id),
            role: Role::Organizer,
        }
    }

    pub fn admin(id: impl Into<String>) -> Self {
        Self {
            user: UserId::new(id),
            role: Role::Admin,
        }
    }

    pub fn system(handler: &str) -> Self {
        Self {
            user: UserId::new(format!("system:{handler}")),
            role: Role::System,
        }
    }
}
