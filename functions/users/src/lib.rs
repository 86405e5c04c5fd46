//! The users Lambda (seed 003's user management): callers register themselves, read
//! their record, and admins read anyone's and change their role. Deleting a user records
//! `user.deleted`, on which their open orders and subscriptions are canceled; a user may
//! delete themselves, an admin anyone.
//!
//! Every right checked here is the caller's recorded role (`access::recorded`), not only
//! their token's claim: an admin demoted a moment ago can no longer change roles.

use kassa_commerce::{Clock, Fail, Kernel};
use kassa_domain::identity::{Actor, Role, UserId};
use kassa_domain::user::{User, UserCommand, UserError};
use kassa_runtime::access;
use kassa_runtime::function::StartError;
use kassa_runtime::http::{json, json_body, request_id, respond, route_key, string_param};
use kassa_runtime::{caller, Config, Function, HttpFunction, Problem, SdkConfig};
use kassa_store::{EventStore, Metadata};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use time::OffsetDateTime;

pub struct Users {
    kernel: Kernel,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    email: String,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    role: String,
}

/// A registered user as the routes answer them.
#[derive(Debug, Serialize)]
struct UserView<'a> {
    id: &'a UserId,
    email: &'a str,
    name: &'a str,
    role: Role,
    #[serde(with = "time::serde::rfc3339")]
    registered_at: OffsetDateTime,
}

/// The record of a registered user; one deleted or never registered is not found alike.
fn view<'a>(user: Option<&'a User>, id: &str) -> Result<UserView<'a>, Problem> {
    match user {
        Some(User {
            user_id,
            profile: Some(profile),
            deleted: false,
        }) => Ok(UserView {
            id: user_id,
            email: &profile.email,
            name: &profile.name,
            role: profile.role,
            registered_at: profile.registered_at,
        }),
        _ => Err(not_found(id)),
    }
}

fn not_found(id: &str) -> Problem {
    Problem::not_found("user_not_found", format!("no registered user `{id}`"))
}

fn refusal(e: UserError) -> Problem {
    let status = match e {
        UserError::InvalidEmail(_) | UserError::InvalidName | UserError::UngrantableRole => 422,
        UserError::AlreadyRegistered | UserError::Deleted => 409,
        UserError::NotFound => 404,
        UserError::AdminsOnly => 403,
    };
    Problem::new(status, e.code(), e.to_string())
}

/// A failed command as an answer: its refusal already is one.
fn answer(fail: Fail<Problem>) -> Problem {
    match fail {
        Fail::Refused(problem) => problem,
        Fail::Store(e) => kassa_runtime::problem::store_problem(&e),
    }
}

impl Function for Users {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {
            kernel: Kernel::new(EventStore::new(client, &config.events_table), clock),
        })
    }
}

impl HttpFunction for Users {
    async fn handle(&self, request: Request) -> Response<Body> {
        respond(self.route(&request).await)
    }
}

impl Users {
    async fn route(&self, request: &Request) -> Result<Response<Body>, Problem> {
        let actor = caller(request)?;
        match route_key(request).as_str() {
            "POST /users" => self.register(request, actor).await,
            "GET /users/me" => {
                let user = self.load(actor.user.as_str()).await?;
                Ok(json(200, &view(user.as_ref(), actor.user.as_str())?))
            }
            "GET /users/{userId}" => {
                let id = string_param(request, "userId")?;
                if id != actor.user.as_str() {
                    let actor = access::recorded(self.kernel.store(), actor).await?;
                    if actor.role != Role::Admin {
                        return Err(Problem::forbidden("only admins read other users"));
                    }
                }
                let user = self.load(&id).await?;
                Ok(json(200, &view(user.as_ref(), &id)?))
            }
            "PUT /users/{userId}/role" => self.change_role(request, actor).await,
            "DELETE /users/{userId}" => self.delete(request, actor).await,
            other => Err(Problem::not_found(
                "no_route",
                format!("no route `{other}`"),
            )),
        }
    }

    async fn load(&self, id: &str) -> Result<Option<User>, Problem> {
        let loaded = self
            .kernel
            .store()
            .load_aggregate::<User>(id)
            .await
            .map_err(|e| kassa_runtime::problem::store_problem(&e))?;
        Ok(loaded.state)
    }

    /// Registers the caller under their token's `sub`, with the role their token claims.
    async fn register(&self, request: &Request, actor: Actor) -> Result<Response<Body>, Problem> {
        let body: RegisterBody = json_body(request)?;
        let id = actor.user.as_str();
        let done = self
            .kernel
            .run(Metadata::origin(request_id(request), id), |tx| {
                let command = UserCommand::Register {
                    user_id: actor.user.clone(),
                    email: body.email.clone(),
                    name: body.name.clone(),
                    role: actor.role,
                    now: tx.now(),
                };
                Box::pin(async move {
                    let mut user = tx.load::<User>(id).await?;
                    tx.decide(&mut user, command).map_err(|f| f.map(refusal))?;
                    Ok(user.state)
                })
            })
            .await
            .map_err(answer)?;
        let mut response = json(201, &view(done.value.as_ref(), id)?);
        if let Ok(location) = format!("/users/{id}").parse() {
            response.headers_mut().insert("location", location);
        }
        Ok(response)
    }

    /// Gives a user a role; the caller must be an admin as recorded, checked in the same
    /// commit, so a demotion that lands meanwhile refuses the change.
    async fn change_role(
        &self,
        request: &Request,
        actor: Actor,
    ) -> Result<Response<Body>, Problem> {
        let target = string_param(request, "userId")?;
        let body: RoleBody = json_body(request)?;
        let role = match Role::parse(&body.role) {
            Some(role) if role != Role::System => role,
            _ => {
                return Err(Problem::new(
                    422,
                    "invalid_role",
                    format!(
                        "`{}` is not a role; give `user`, `organizer` or `admin`",
                        body.role
                    ),
                ))
            }
        };
        let (target, actor) = (target.as_str(), &actor);
        let done = self
            .kernel
            .run(
                Metadata::origin(request_id(request), actor.user.as_str()),
                |tx| {
                    Box::pin(async move {
                        let mut user = tx.load::<User>(target).await?;
                        let by = if actor.user.as_str() == target {
                            // Their own record, which the append's condition guards.
                            access::as_recorded(actor.clone(), user.state.as_ref())
                                .map_err(Fail::Refused)?
                        } else {
                            access::recorded_in(tx, actor.clone()).await?
                        };
                        let command = UserCommand::ChangeRole { role, by };
                        tx.decide(&mut user, command).map_err(|f| f.map(refusal))?;
                        Ok(user.state)
                    })
                },
            )
            .await
            .map_err(answer)?;
        let mut record = serde_json::to_value(view(done.value.as_ref(), target)?)
            .map_err(|e| Problem::internal(&e))?;
        record["changed"] = serde_json::Value::Bool(!done.recorded.is_empty());
        Ok(json(200, &record))
    }

    async fn delete(&self, request: &Request, actor: Actor) -> Result<Response<Body>, Problem> {
        let target = UserId::new(string_param(request, "userId")?);
        // Anyone may delete themselves, even twice; anyone else needs a recorded admin.
        if target != actor.user {
            let actor = access::recorded(self.kernel.store(), actor.clone()).await?;
            if actor.role != Role::Admin {
                return Err(Problem::forbidden("you may only delete your own account"));
            }
        }
        let command = UserCommand::Delete {
            user_id: target.clone(),
            by: actor.user.clone(),
        };
        let (command, target_id) = (&command, target.as_str());
        let done = self
            .kernel
            .run(
                Metadata::origin(request_id(request), actor.user.as_str()),
                |tx| {
                    Box::pin(async move {
                        let mut user = tx.load::<User>(target_id).await?;
                        tx.decide(&mut user, command.clone())
                            .map_err(|f| f.map(refusal))?;
                        Ok(())
                    })
                },
            )
            .await
            .map_err(answer)?;
        Ok(json(
            200,
            &serde_json::json!({
                "user_id": target,
                "deleted": true,
                "already_deleted": done.recorded.is_empty(),
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_is_a_4xx_with_its_code() {
        for (e, status) in [
            (UserError::InvalidEmail("x".into()), 422),
            (UserError::InvalidName, 422),
            (UserError::UngrantableRole, 422),
            (UserError::AlreadyRegistered, 409),
            (UserError::Deleted, 409),
            (UserError::NotFound, 404),
            (UserError::AdminsOnly, 403),
        ] {
            let code = e.code();
            let problem = refusal(e);
            assert_eq!((problem.status, problem.code.as_str()), (status, code));
        }
    }

    #[test]
    fn only_a_registered_live_user_has_a_view() {
        assert_eq!(view(None, "ann").unwrap_err().code, "user_not_found");
        let mut user = User {
            user_id: UserId::new("ann"),
            profile: Some(kassa_domain::user::Profile {
                email: "ann@example.test".into(),
                name: "Ann".into(),
                role: Role::Organizer,
                registered_at: OffsetDateTime::UNIX_EPOCH,
            }),
            deleted: false,
        };
        assert_eq!(view(Some(&user), "ann").unwrap().role, Role::Organizer);
        user.deleted = true;
        assert_eq!(view(Some(&user), "ann").unwrap_err().status, 404);
    }
}
