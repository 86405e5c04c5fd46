//! The users Lambda: deleting a user records `user.deleted`, on which their open orders
//! and subscriptions are canceled. A user may delete themselves; an operator anyone.

use kassa_domain::identity::{Role, UserId};
use kassa_domain::user::{User, UserCommand};
use kassa_runtime::access;
use kassa_runtime::function::StartError;
use kassa_runtime::http::{json, request_id, respond, string_param};
use kassa_runtime::{
    caller, Clock, Config, Fail, Function, HttpFunction, Kernel, Problem, SdkConfig,
};
use kassa_store::{EventStore, Metadata};
use lambda_http::{Body, Request, Response};
use std::sync::Arc;

pub struct Users {
    kernel: Kernel,
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
        respond(self.delete(&request).await.map(|v| json(200, &v)))
    }
}

impl Users {
    async fn delete(&self, request: &Request) -> Result<serde_json::Value, Problem> {
        let actor = caller(request)?;
        let target = UserId::new(string_param(request, "userId")?);
        if target != actor.user && actor.role != Role::Admin {
            return Err(Problem::forbidden("you may only delete your own account"));
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
                        tx.decide(&mut user, command.clone())?;
                        Ok(())
                    })
                },
            )
            .await
            .map_err(|fail| match fail {
                Fail::Store(e) => access::store_problem(&e),
                // Deleting is never refused.
                Fail::Refused(e) => Problem::internal(&e),
            })?;
        Ok(serde_json::json!({
            "user_id": target,
            "deleted": true,
            "already_deleted": done.recorded.is_empty(),
        }))
    }
}
