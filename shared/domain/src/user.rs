//! Users as kassa records them (seed 003's user management): the caller registers with an
//! email and a name under the id their identity provider gave them (`sub`), kassa keeps
//! the role it grants them, and an operator may change that role, until the user is
//! deleted. Deleting a user is the event other contexts act on (seed 001: cancel their
//! subscriptions and pending orders).
//!
//! Rules:
//! - one registration per id: registering again is refused, and so is registering an id
//!   that was deleted, so a deleted account cannot come back under the same id;
//! - a registration starts with the role the caller's token claims (`user` when it
//!   claims none), which is how the first operator is bootstrapped; from then on kassa's
//!   record is the role that counts, whatever later tokens claim;
//! - only an admin (as recorded) changes a role; giving the role a user already has
//!   records nothing; `system` is never granted, it is what event handlers act as;
//! - deleting twice is a no-op, and a user may be deleted without having registered
//!   (users of seed 001 came from the identity provider alone).
//!
//! Time comes in with the commands (`now`): the decider never reads a clock.

use crate::event::DomainEvent;
use crate::identity::{Actor, Role, UserId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Longest name, in characters.
pub const MAX_NAME_LEN: usize = 100;

/// Longest email address (RFC 5321's path limit).
pub const MAX_EMAIL_LEN: usize = 254;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub user_id: UserId,
    /// What registration recorded, with the role as it now is; `None` for a user deleted
    /// without having registered.
    pub profile: Option<Profile>,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub email: String,
    pub name: String,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    pub registered_at: OffsetDateTime,
}

impl User {
    /// The role kassa grants this user now: none once deleted or before registering.
    pub fn role(&self) -> Option<Role> {
        match &self.profile {
            Some(profile) if !self.deleted => Some(profile.role),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    /// The caller registers themselves; `role` is what their token claims.
    Register {
        user_id: UserId,
        email: String,
        name: String,
        role: Role,
        now: OffsetDateTime,
    },
    /// `by` carries the role kassa recorded for the caller, not only their token's.
    ChangeRole { role: Role, by: Actor },
    /// Deleting twice is a no-op.
    Delete { user_id: UserId, by: UserId },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "payload")]
pub enum UserEvent {
    #[serde(rename = "user.registered")]
    Registered {
        user_id: UserId,
        email: String,
        /// 1 to 100 characters, trimmed.
        name: String,
        /// The role the user starts with: what their token claimed at registration.
        #[schemars(schema_with = "granted_role")]
        role: Role,
        #[serde(with = "time::serde::rfc3339")]
        #[schemars(with = "String")]
        registered_at: OffsetDateTime,
    },
    #[serde(rename = "user.role_updated")]
    RoleUpdated {
        user_id: UserId,
        #[schemars(schema_with = "granted_role")]
        role: Role,
        #[schemars(schema_with = "granted_role")]
        previous: Role,
        /// The admin who changed it.
        by: UserId,
    },
    #[serde(rename = "user.deleted")]
    Deleted { user_id: UserId, deleted_by: UserId },
}

/// The roles a user may hold: `system` is for event handlers and never recorded.
fn granted_role(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": ["user", "organizer", "admin"],
    })
}

impl DomainEvent for UserEvent {
    const CONTEXT: &'static str = "accounts";
    const TYPES: &'static [&'static str] =
        &["user.registered", "user.role_updated", "user.deleted"];

    fn event_type(&self) -> &'static str {
        match self {
            Self::Registered { .. } => "user.registered",
            Self::RoleUpdated { .. } => "user.role_updated",
            Self::Deleted { .. } => "user.deleted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("`{0}` is not an email address")]
    InvalidEmail(String),
    #[error("the name must be 1 to {MAX_NAME_LEN} characters, not only spaces, and no control characters")]
    InvalidName,
    #[error("the role `system` is for event handlers; a user is `user`, `organizer` or `admin`")]
    UngrantableRole,
    #[error("this user is registered already")]
    AlreadyRegistered,
    #[error("this user was deleted; the id cannot be used again")]
    Deleted,
    #[error("no such user")]
    NotFound,
    #[error("only admins change roles")]
    AdminsOnly,
}

impl UserError {
    /// The problem code a client can branch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidEmail(_) => "invalid_email",
            Self::InvalidName => "invalid_name",
            Self::UngrantableRole => "invalid_role",
            Self::AlreadyRegistered => "already_registered",
            Self::Deleted => "user_deleted",
            Self::NotFound => "user_not_found",
            Self::AdminsOnly => "forbidden",
        }
    }
}

pub fn decide(state: Option<&User>, command: UserCommand) -> Result<Vec<UserEvent>, UserError> {
    match command {
        UserCommand::Register {
            user_id,
            email,
            name,
            role,
            now,
        } => register(state, user_id, email, name, role, now),
        UserCommand::ChangeRole { role, by } => change_role(state, role, by),
        UserCommand::Delete { user_id, by } => Ok(delete(state, user_id, by)),
    }
}

fn register(
    state: Option<&User>,
    user_id: UserId,
    email: String,
    name: String,
    role: Role,
    now: OffsetDateTime,
) -> Result<Vec<UserEvent>, UserError> {
    // The input is judged first: a bad request says so whatever the record holds.
    let email = email.trim().to_owned();
    if !plausible_email(&email) {
        return Err(UserError::InvalidEmail(email));
    }
    let name = name.trim().to_owned();
    let length = name.chars().count();
    if !(1..=MAX_NAME_LEN).contains(&length) || name.chars().any(char::is_control) {
        return Err(UserError::InvalidName);
    }
    if role == Role::System {
        return Err(UserError::UngrantableRole);
    }
    match state {
        Some(user) if user.deleted => Err(UserError::Deleted),
        Some(_) => Err(UserError::AlreadyRegistered),
        None => Ok(vec![UserEvent::Registered {
            user_id,
            email,
            name,
            role,
            registered_at: now,
        }]),
    }
}

fn change_role(state: Option<&User>, role: Role, by: Actor) -> Result<Vec<UserEvent>, UserError> {
    if by.role != Role::Admin {
        return Err(UserError::AdminsOnly);
    }
    if role == Role::System {
        return Err(UserError::UngrantableRole);
    }
    let user = state.ok_or(UserError::NotFound)?;
    if user.deleted {
        return Err(UserError::Deleted);
    }
    let profile = user.profile.as_ref().ok_or(UserError::NotFound)?;
    if profile.role == role {
        return Ok(vec![]);
    }
    Ok(vec![UserEvent::RoleUpdated {
        user_id: user.user_id.clone(),
        role,
        previous: profile.role,
        by: by.user,
    }])
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

pub fn evolve(state: Option<User>, event: &UserEvent) -> Option<User> {
    match (state, event) {
        (
            _,
            UserEvent::Registered {
                user_id,
                email,
                name,
                role,
                registered_at,
            },
        ) => Some(User {
            user_id: user_id.clone(),
            profile: Some(Profile {
                email: email.clone(),
                name: name.clone(),
                role: *role,
                registered_at: *registered_at,
            }),
            deleted: false,
        }),
        (Some(mut user), UserEvent::RoleUpdated { role, .. }) => {
            if let Some(profile) = &mut user.profile {
                profile.role = *role;
            }
            Some(user)
        }
        (None, UserEvent::RoleUpdated { .. }) => None,
        (state, UserEvent::Deleted { user_id, .. }) => {
            let profile = state.and_then(|u| u.profile);
            Some(User {
                user_id: user_id.clone(),
                profile,
                deleted: true,
            })
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
        && email.len() <= MAX_EMAIL_LEN
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::given;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-05-01 12:00 UTC);

    fn ann() -> UserId {
        UserId::new("ann")
    }

    fn register_as(role: Role) -> UserCommand {
        UserCommand::Register {
            user_id: ann(),
            email: "ann@example.test".into(),
            name: "Ann".into(),
            role,
            now: NOW,
        }
    }

    fn registered(role: Role) -> UserEvent {
        UserEvent::Registered {
            user_id: ann(),
            email: "ann@example.test".into(),
            name: "Ann".into(),
            role,
            registered_at: NOW,
        }
    }

    fn deleted() -> UserEvent {
        UserEvent::Deleted {
            user_id: ann(),
            deleted_by: ann(),
        }
    }

    fn change(role: Role, by: Actor) -> UserCommand {
        UserCommand::ChangeRole { role, by }
    }

    fn role_updated(role: Role, previous: Role) -> UserEvent {
        UserEvent::RoleUpdated {
            user_id: ann(),
            role,
            previous,
            by: UserId::new("root"),
        }
    }

    #[test]
    fn a_new_user_registers_with_the_role_their_token_claims() {
        let user = given::<User>([])
            .when(register_as(Role::User))
            .then([registered(Role::User)])
            .unwrap();
        assert_eq!(user.role(), Some(Role::User));
        let admin = given::<User>([])
            .when(register_as(Role::Admin))
            .then([registered(Role::Admin)]);
        assert_eq!(admin.and_then(|u| u.role()), Some(Role::Admin));
    }

    #[test]
    fn email_and_name_are_trimmed() {
        given::<User>([])
            .when(UserCommand::Register {
                user_id: ann(),
                email: "  ann@example.test ".into(),
                name: " Ann\u{a0}".into(),
                role: Role::User,
                now: NOW,
            })
            .then([registered(Role::User)]);
    }

    #[test]
    fn a_bad_email_is_refused() {
        for email in [
            "",
            "ann",
            "ann@",
            "@example.test",
            "ann@example",
            "ann@.example",
            "ann@example.",
            "a n@example.test",
            "ann@exa@mple.test",
            "ann\u{7}@example.test",
        ] {
            let outcome = given::<User>([])
                .when(UserCommand::Register {
                    user_id: ann(),
                    email: email.into(),
                    name: "Ann".into(),
                    role: Role::User,
                    now: NOW,
                })
                .outcome();
            assert!(
                matches!(outcome, Err(UserError::InvalidEmail(_))),
                "{email:?}: {outcome:?}"
            );
        }
        let long = format!("{}@example.test", "a".repeat(MAX_EMAIL_LEN));
        assert!(!plausible_email(&long));
    }

    #[test]
    fn a_name_must_be_1_to_100_characters() {
        let with_name = |name: String| UserCommand::Register {
            user_id: ann(),
            email: "ann@example.test".into(),
            name,
            role: Role::User,
            now: NOW,
        };
        for bad in [
            String::new(),
            "   ".into(),
            "é".repeat(MAX_NAME_LEN + 1),
            "Ann\nSmith".into(),
        ] {
            given::<User>([])
                .when(with_name(bad))
                .then_refused(UserError::InvalidName);
        }
        // Characters, not bytes: 100 two-byte letters are a valid name.
        let longest = "é".repeat(MAX_NAME_LEN);
        let events = given::<User>([])
            .when(with_name(longest))
            .outcome()
            .unwrap();
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn no_one_registers_as_system() {
        given::<User>([])
            .when(register_as(Role::System))
            .then_refused(UserError::UngrantableRole);
    }

    #[test]
    fn registering_twice_is_refused() {
        given::<User>([registered(Role::User)])
            .when(register_as(Role::User))
            .then_refused(UserError::AlreadyRegistered);
    }

    #[test]
    fn a_deleted_id_cannot_register_again() {
        given::<User>([registered(Role::User), deleted()])
            .when(register_as(Role::User))
            .then_refused(UserError::Deleted);
        // Deleted before it ever registered, as seed 001's users could be.
        given::<User>([deleted()])
            .when(register_as(Role::User))
            .then_refused(UserError::Deleted);
    }

    #[test]
    fn an_admin_promotes_a_user_to_organizer() {
        let user = given::<User>([registered(Role::User)])
            .when(change(Role::Organizer, Actor::admin("root")))
            .then([role_updated(Role::Organizer, Role::User)])
            .unwrap();
        assert_eq!(user.role(), Some(Role::Organizer));
    }

    #[test]
    fn giving_the_role_a_user_has_records_nothing() {
        given::<User>([
            registered(Role::User),
            role_updated(Role::Organizer, Role::User),
        ])
        .when(change(Role::Organizer, Actor::admin("root")))
        .then([]);
    }

    #[test]
    fn only_admins_change_roles() {
        for by in [
            Actor::user("ann"),
            Actor::organizer("olga"),
            Actor::system("x"),
        ] {
            given::<User>([registered(Role::User)])
                .when(change(Role::Admin, by))
                .then_refused(UserError::AdminsOnly);
        }
    }

    #[test]
    fn the_system_role_is_never_granted() {
        given::<User>([registered(Role::User)])
            .when(change(Role::System, Actor::admin("root")))
            .then_refused(UserError::UngrantableRole);
    }

    #[test]
    fn an_unknown_or_deleted_user_keeps_no_role() {
        given::<User>([])
            .when(change(Role::Organizer, Actor::admin("root")))
            .then_refused(UserError::NotFound);
        given::<User>([registered(Role::User), deleted()])
            .when(change(Role::Organizer, Actor::admin("root")))
            .then_refused(UserError::Deleted);
        given::<User>([deleted()])
            .when(change(Role::Organizer, Actor::admin("root")))
            .then_refused(UserError::Deleted);
    }

    #[test]
    fn a_deleted_user_keeps_their_profile_but_no_role() {
        let given = given::<User>([registered(Role::Admin), deleted()]);
        let user = given.state().unwrap();
        assert!(user.deleted);
        assert_eq!(user.profile.as_ref().map(|p| p.role), Some(Role::Admin));
        assert_eq!(user.role(), None);
    }

    #[test]
    fn deleting_twice_is_a_no_op() {
        let delete = || UserCommand::Delete {
            user_id: ann(),
            by: ann(),
        };
        given::<User>([]).when(delete()).then([deleted()]);
        given::<User>([registered(Role::User)])
            .when(delete())
            .then([deleted()]);
        given::<User>([registered(Role::User), deleted()])
            .when(delete())
            .then([]);
    }

    #[test]
    fn events_round_trip_through_their_stored_shape() {
        for event in [
            registered(Role::Organizer),
            role_updated(Role::Admin, Role::Organizer),
            deleted(),
        ] {
            let back = UserEvent::from_parts(event.event_type(), event.payload()).unwrap();
            assert_eq!(back, event);
        }
        assert_eq!(
            registered(Role::User).payload()["registered_at"],
            "2026-05-01T12:00:00Z"
        );
    }
}
