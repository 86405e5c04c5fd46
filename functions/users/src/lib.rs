//! The users Lambda: deleting a user records `user.deleted`, on which their open orders
//! and subscriptions are canceled. A user may delete themselves; an operator anyone.

use kassa_domain::identity::{Role, UserId};
use kassa_domain::user::{self, User};
use kassa_runtime::access::{self, user_stream};
use kassa_runtime::command::{self, Command};
use kassa_runtime::config::ConfigError;
use kassa_runtime::http::{json, request_id, respond, string_param};
use kassa_runtime::{caller, Clock, Config, Problem, SdkConfig};
use kassa_store::{retry, EventStore, Metadata};
use lambda_http::{Body, Request, Response};
use std::sync::Arc;

pub struct Users {
    store: EventStore,
    clock: Arc<dyn Clock>,
}

impl Users {
    pub fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {
            store: EventStore::new(client, &config.events_table),
            clock,
        })
    }

    pub async fn handle(&self, request: Request) -> Response<Body> {
        respond(self.delete(&request).await.map(|v| json(200, &v)))
    }

    async fn delete(&self, request: &Request) -> Result<serde_json::Value, Problem> {
        let actor = caller(request)?;
        let target = UserId::new(string_param(request, "userId")?);
        if target != actor.user && actor.role != Role::Admin {
            return Err(Problem::forbidden("you may only delete your own account"));
        }
        let stream = user_stream(target.as_str());
        let decide = |state: Option<&User>| {
            Ok::<_, std::convert::Infallible>(user::delete(
                state,
                target.clone(),
                actor.user.clone(),
            ))
        };
        let done = command::run(
            &self.store,
            self.clock.now(),
            Command {
                stream: &stream,
                metadata: Metadata::origin(request_id(request), actor.user.as_str()),
                decide: &decide,
                evolve: user::evolve,
                also: &command::nothing,
                attempts: retry::DEFAULT_ATTEMPTS,
            },
        )
        .await
        .map_err(|e| access::store_problem(&e))?
        .map_err(|never| match never {})?;
        Ok(serde_json::json!({
            "user_id": target,
            "deleted": true,
            "already_deleted": done.recorded.is_empty(),
        }))
    }
}
