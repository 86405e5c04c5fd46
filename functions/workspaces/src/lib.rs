//! The workspaces Lambda: create a workspace (and open its wallet in the same commit), read
//! it, add and remove collaborators.

use kassa_domain::credits::{self, CreditCommand, CreditEvent};
use kassa_domain::identity::{Actor, UserId};
use kassa_domain::tier::TierId;
use kassa_domain::workspace::{self, Workspace, WorkspaceCommand, WorkspaceError, WorkspaceEvent};
use kassa_runtime::access::{self, head_attributes, wallet_stream, workspace_stream};
use kassa_runtime::http::{
    json, json_body, request_id, respond, route_key, string_param, uuid_param,
};
use kassa_runtime::{caller, Clock, Config, Problem, SdkConfig};
use kassa_store::{retry, EventStore, Metadata, StoreError};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

pub struct Workspaces {
    store: EventStore,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    tier: TierId,
    billing_email: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CollaboratorBody {
    user_id: String,
}

#[derive(Debug, Serialize)]
struct WorkspaceView<'a> {
    id: Uuid,
    name: &'a str,
    tier: TierId,
    owner: &'a UserId,
    collaborators: Vec<&'a UserId>,
    billing_email: Option<&'a str>,
    version: u64,
}

fn view(ws: &Workspace, version: u64) -> WorkspaceView<'_> {
    WorkspaceView {
        id: ws.id,
        name: &ws.name,
        tier: ws.tier,
        owner: &ws.owner,
        collaborators: ws.collaborators.iter().collect(),
        billing_email: ws.billing_email.as_deref(),
        version,
    }
}

fn refusal(e: WorkspaceError) -> Problem {
    let status = match e {
        WorkspaceError::NotFound | WorkspaceError::Forbidden => 404,
        WorkspaceError::OwnerOnly => 403,
        WorkspaceError::AlreadyExists
        | WorkspaceError::AlreadyCollaborator(_)
        | WorkspaceError::NotCollaborator(_) => 409,
        WorkspaceError::InvalidName | WorkspaceError::InvalidEmail(_) => 422,
    };
    Problem::new(status, e.code(), e.to_string())
}

impl Workspaces {
    pub fn new(store: EventStore, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    pub fn from_config(config: &Config, aws: &SdkConfig, clock: Arc<dyn Clock>) -> Self {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Self::new(EventStore::new(client, &config.events_table), clock)
    }

    pub async fn handle(&self, request: Request) -> Response<Body> {
        respond(self.route(request).await)
    }

    async fn route(&self, request: Request) -> Result<Response<Body>, Problem> {
        let actor = caller(&request)?;
        match route_key(&request).as_str() {
            "POST /workspaces" => self.create(&request, actor).await,
            "GET /workspaces/{workspaceId}" => {
                let id = uuid_param(&request, "workspaceId", "workspace_not_found")?;
                let (head, ws) = access::load_admitted(&self.store, id, &actor).await?;
                Ok(json(200, &view(&ws, head.version)))
            }
            "POST /workspaces/{workspaceId}/collaborators" => {
                let id = uuid_param(&request, "workspaceId", "workspace_not_found")?;
                let body: CollaboratorBody = json_body(&request)?;
                let user = body.user_id.trim();
                if user.is_empty() || user.len() > 128 {
                    return Err(Problem::new(
                        422,
                        "invalid_user_id",
                        "user_id must be 1 to 128 characters",
                    ));
                }
                let command = WorkspaceCommand::AddCollaborator {
                    user: UserId::new(user),
                };
                self.change(&request, id, command, actor, 201).await
            }
            "DELETE /workspaces/{workspaceId}/collaborators/{userId}" => {
                let id = uuid_param(&request, "workspaceId", "workspace_not_found")?;
                let user = string_param(&request, "userId")?;
                let command = WorkspaceCommand::RemoveCollaborator {
                    user: UserId::new(user),
                };
                self.change(&request, id, command, actor, 200).await
            }
            other => Err(Problem::not_found(
                "no_route",
                format!("no route `{other}`"),
            )),
        }
    }

    async fn create(&self, request: &Request, actor: Actor) -> Result<Response<Body>, Problem> {
        let body: CreateBody = json_body(request)?;
        let id = Uuid::now_v7();
        let events = workspace::decide(
            None,
            WorkspaceCommand::Create {
                id,
                name: body.name,
                tier: body.tier,
                billing_email: body.billing_email,
            },
            &actor,
        )
        .map_err(refusal)?;
        let ws = fold(None, &events)
            .ok_or_else(|| Problem::internal(&"creation produced no workspace"))?;
        let wallet_events = credits::decide(
            None,
            CreditCommand::Open {
                workspace_id: id,
                tier: ws.tier,
            },
        )
        .map_err(|e| Problem::internal(&e))?;
        let wallet = wallet_events.iter().fold(None, credits::evolve);

        let metadata = Metadata::origin(request_id(request), actor.user.as_str());
        let mut commit = self.store.commit_builder(metadata, self.clock.now());
        commit
            .append_with(&workspace_stream(id), 0, &events, &ws, head_attributes(&ws))
            .and_then(|c| c.append::<CreditEvent>(&wallet_stream(id), 0, &wallet_events, &wallet))
            .map_err(|e| Problem::internal(&e))?;
        self.store
            .commit(commit)
            .await
            .map_err(|e| access::store_problem(&e))?;
        let mut response = json(201, &view(&ws, events.len() as u64));
        if let Ok(location) = format!("/workspaces/{id}").parse() {
            response.headers_mut().insert("location", location);
        }
        Ok(response)
    }

    async fn change(
        &self,
        request: &Request,
        id: Uuid,
        command: WorkspaceCommand,
        actor: Actor,
        status: u16,
    ) -> Result<Response<Body>, Problem> {
        let stream = workspace_stream(id);
        let metadata = Metadata::origin(request_id(request), actor.user.as_str());
        let result = retry::on_conflict(retry::DEFAULT_ATTEMPTS, |seen| {
            let (command, actor, stream, metadata) =
                (command.clone(), &actor, &stream, metadata.clone());
            async move {
                let head = match seen {
                    Some(h) => Some(h),
                    None => self.store.load(stream).await?,
                };
                let Some(head) = head else {
                    return Ok(Err(access::not_found(id)));
                };
                let ws: Workspace = head.state()?;
                if !ws.admits(actor) {
                    return Ok(Err(access::not_found(id)));
                }
                let events = match workspace::decide(Some(&ws), command, actor) {
                    Ok(events) => events,
                    // A stranger is told what a missing workspace would tell them.
                    Err(WorkspaceError::Forbidden) => return Ok(Err(access::not_found(id))),
                    Err(e) => return Ok(Err(refusal(e))),
                };
                let Some(next) = fold(Some(ws), &events) else {
                    return Err(StoreError::Corrupt("workspace vanished".into()));
                };
                let mut commit = self.store.commit_builder(metadata, self.clock.now());
                commit.append_with(stream, head.version, &events, &next, head_attributes(&next))?;
                self.store.commit(commit).await?;
                Ok(Ok((next, head.version + events.len() as u64)))
            }
        })
        .await
        .map_err(|e| access::store_problem(&e))?;
        let (ws, version) = result?;
        Ok(json(status, &view(&ws, version)))
    }
}

fn fold(state: Option<Workspace>, events: &[WorkspaceEvent]) -> Option<Workspace> {
    events.iter().fold(state, workspace::evolve)
}
