//! The workspaces Lambda: create a workspace (and open its wallet in the same commit), read
//! it, add and remove collaborators, change its tier.
//!
//! A tier change that takes effect (a move up) moves the wallet in the same commit: its
//! prices and limits follow at once, and the prorated credits are added, once per change
//! (the wallet's marker of the workspace version that changed it).

use kassa_commerce::{Clock, Fail, Kernel, Tx};
use kassa_domain::aggregate::ByActor;
use kassa_domain::credits::{CreditCommand, Wallet};
use kassa_domain::identity::{Actor, UserId};
use kassa_domain::money::Money;
use kassa_domain::tier::TierId;
use kassa_domain::workspace::{
    Overdue, ScheduledTier, Trial, Workspace, WorkspaceCommand, WorkspaceError, WorkspaceEvent,
};
use kassa_runtime::access::{self, wallet_stream};
use kassa_runtime::function::StartError;
use kassa_runtime::http::{
    json, json_body, query_param, request_id, respond, route_key, string_param, uuid_param,
};
use kassa_runtime::{caller, problem, Config, Function, HttpFunction, Problem, SdkConfig};
use kassa_store::{EventStore, Loaded, Metadata};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

mod promotions;
pub mod subscription;

use subscription::{SubscribeBody, Subscriptions};

pub struct Workspaces {
    kernel: Kernel,
    /// The provider side of `POST /workspaces/{id}/subscription`; `None` without its
    /// configuration.
    subscriptions: Option<Subscriptions>,
    /// The free trials' schedule (`kassa_commerce::trials`).
    trials: Option<kassa_store::Agenda>,
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
struct TierBody {
    tier: TierId,
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
    /// The day of the month its billing period starts.
    billing_anchor_day: u8,
    scheduled_tier: Option<&'a ScheduledTier>,
    /// The provider's subscription that pays for the tier.
    subscription_id: Option<&'a str>,
    /// Suspended for an unpaid charge: debits are refused, reads work.
    suspended: bool,
    /// Charges that failed and are being retried.
    owed: &'a [Overdue],
    /// A free trial running now.
    trial: Option<&'a Trial>,
    version: u64,
    /// What a tier change that took effect in this request was worth.
    #[serde(skip_serializing_if = "Option::is_none")]
    tier_change: Option<TierChangeView>,
    /// What a cancellation at once in this request refunds (paid by collect-charges).
    #[serde(skip_serializing_if = "Option::is_none")]
    refund: Option<Money>,
}

#[derive(Debug, Serialize)]
struct TierChangeView {
    from: TierId,
    to: TierId,
    period_start: String,
    period_end: String,
    charge: Money,
    credits_top_up: u64,
    credits_taken_back: u64,
}

fn view(ws: &Workspace, version: u64) -> WorkspaceView<'_> {
    WorkspaceView {
        id: ws.id,
        name: &ws.name,
        tier: ws.tier,
        owner: &ws.owner,
        collaborators: ws.collaborators.iter().collect(),
        billing_email: ws.billing_email.as_deref(),
        billing_anchor_day: ws.anchor_day,
        scheduled_tier: ws.scheduled.as_ref(),
        subscription_id: ws.billing.as_ref().map(|b| b.subscription_id.as_str()),
        suspended: ws.suspended,
        owed: &ws.overdue,
        trial: ws.trial.as_ref(),
        version,
        tier_change: None,
        refund: None,
    }
}

pub(crate) fn refusal(e: WorkspaceError) -> Problem {
    let status = match e {
        WorkspaceError::NotFound | WorkspaceError::Forbidden => 404,
        WorkspaceError::OwnerOnly | WorkspaceError::OwnerOnlyTier => 403,
        WorkspaceError::FreeTier => 422,
        WorkspaceError::SubscriptionRequired
        | WorkspaceError::SubscriptionActive
        | WorkspaceError::PaymentOverdue(_)
        | WorkspaceError::NoSubscription
        | WorkspaceError::AlreadySubscribed
        | WorkspaceError::SubscribeDown
        | WorkspaceError::AlreadyExists
        | WorkspaceError::AlreadyCollaborator(_)
        | WorkspaceError::NotCollaborator(_)
        | WorkspaceError::TierUnchanged(_)
        | WorkspaceError::AlreadyScheduled(_)
        | WorkspaceError::NothingScheduled
        | WorkspaceError::TrialUsed
        | WorkspaceError::TrialUnavailable
        | WorkspaceError::TrialRunning(_) => 409,
        WorkspaceError::InvalidName | WorkspaceError::InvalidEmail(_) => 422,
    };
    Problem::new(status, e.code(), e.to_string())
}

impl Function for Workspaces {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        let mut workspaces =
            Self::new(EventStore::new(client.clone(), &config.events_table), clock);
        workspaces.subscriptions = Subscriptions::from_config(config, aws);
        workspaces.trials = Some(kassa_store::Agenda::new(
            client,
            &config.state_table,
            kassa_commerce::trials::TRIALS_AGENDA,
        ));
        Ok(workspaces)
    }
}

impl HttpFunction for Workspaces {
    async fn handle(&self, request: Request) -> Response<Body> {
        respond(self.route(request).await)
    }
}

fn unavailable() -> Problem {
    Problem::new(
        503,
        "subscriptions_unavailable",
        "this deployment has no payment provider configured",
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PaymentMethodBody {
    payment_method: String,
}

/// A failed command as an answer: its refusal already is one.
fn answer(fail: Fail<Problem>) -> Problem {
    match fail {
        Fail::Refused(problem) => problem,
        Fail::Store(e) => problem::store_problem(&e),
    }
}

impl Workspaces {
    pub fn new(store: EventStore, clock: Arc<dyn Clock>) -> Self {
        Self {
            kernel: Kernel::new(store, clock),
            subscriptions: None,
            trials: None,
        }
    }

    async fn route(&self, request: Request) -> Result<Response<Body>, Problem> {
        let actor = access::recorded(self.kernel.store(), caller(&request)?).await?;
        match route_key(&request).as_str() {
            "POST /workspaces" => self.create(&request, actor).await,
            "POST /promotions" => self.create_promotion(&request, actor).await,
            "POST /workspaces/{workspaceId}/promotions" => {
                let id = uuid_param(&request, "workspaceId", "workspace_not_found")?;
                self.apply_promotion(&request, id, actor).await
            }
            "GET /workspaces/{workspaceId}" => {
                let id = uuid_param(&request, "workspaceId", "workspace_not_found")?;
                let (head, ws) = access::load_admitted(self.kernel.store(), id, &actor).await?;
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
            "PUT /workspaces/{workspaceId}/tier" => {
                let id = uuid_param(&request, "workspaceId", "workspace_not_found")?;
                let body: TierBody = json_body(&request)?;
                let command = WorkspaceCommand::ChangeTier {
                    tier: body.tier,
                    at: self.kernel.clock().now(),
                };
                self.change(&request, id, command, actor, 200).await
            }
            "POST /workspaces/{workspaceId}/subscription" => {
                let id = uuid_param(&request, "workspaceId", "workspace_not_found")?;
                let body: SubscribeBody = json_body(&request)?;
                let payment_method = body.payment_method()?;
                let subscriptions = self.subscriptions.as_ref().ok_or_else(unavailable)?;
                let (head, ws) = access::load_admitted(self.kernel.store(), id, &actor).await?;
                let tier = body.tier.unwrap_or(ws.tier);
                let now = self.kernel.clock().now();
                let billing = subscriptions
                    .subscribe(&ws, head.version, payment_method, tier, &actor, now)
                    .await?;
                let command = WorkspaceCommand::Subscribe {
                    billing: billing.clone(),
                    tier,
                    at: now,
                };
                let recorded = self.change(&request, id, command, actor, 201).await;
                // A refusal means nothing was recorded; a failure of the store may hide a
                // commit, which the retried request finds (its key answers the same
                // subscription).
                if let Err(p) = &recorded {
                    if (400..500).contains(&p.status) {
                        subscriptions.abandon(id, &billing).await;
                    }
                }
                recorded
            }
            "POST /workspaces/{workspaceId}/setup-intent" => {
                let id = uuid_param(&request, "workspaceId", "workspace_not_found")?;
                let subscriptions = self.subscriptions.as_ref().ok_or_else(unavailable)?;
                let (head, ws) = access::load_admitted(self.kernel.store(), id, &actor).await?;
                let intent = subscriptions
                    .setup_intent(&ws, head.version, &actor)
                    .await?;
                Ok(json(
                    201,
                    &serde_json::json!({
                        "setup_intent": intent.id,
                        "client_secret": intent.client_secret,
                    }),
                ))
            }
            "PUT /workspaces/{workspaceId}/payment-method" => {
                let id = uuid_param(&request, "workspaceId", "workspace_not_found")?;
                let body: PaymentMethodBody = json_body(&request)?;
                let payment_method = subscription::payment_method_id(&body.payment_method)?;
                let subscriptions = self.subscriptions.as_ref().ok_or_else(unavailable)?;
                let (head, ws) = access::load_admitted(self.kernel.store(), id, &actor).await?;
                let command = WorkspaceCommand::ChangePaymentMethod {
                    payment_method: payment_method.to_owned(),
                };
                // Refused here (a collaborator, no subscription) before Stripe is asked.
                kassa_domain::workspace::decide(Some(&ws), command.clone(), &actor)
                    .map_err(refusal)?;
                subscriptions
                    .save_card(&ws, head.version, payment_method)
                    .await?;
                self.change(&request, id, command, actor.clone(), 200)
                    .await?;
                let settled = subscriptions
                    .settle(&self.kernel, id, &request_id(&request))
                    .await?;
                let (head, ws) = access::load_admitted(self.kernel.store(), id, &actor).await?;
                let mut answer = serde_json::to_value(view(&ws, head.version))
                    .map_err(|e| Problem::internal(&e))?;
                answer["settled"] = serde_json::json!(settled);
                Ok(json(200, &answer))
            }
            "DELETE /workspaces/{workspaceId}/subscription" => {
                // By default a move to the free tier at the period's end: the subscription
                // runs out with the period it paid for. `?when=now` ends it at once and
                // refunds the rest of the period (collect-charges pays the refund).
                let id = uuid_param(&request, "workspaceId", "workspace_not_found")?;
                let at = self.kernel.clock().now();
                let command = match query_param(&request, "when").as_deref() {
                    None | Some("period_end") => WorkspaceCommand::ChangeTier {
                        tier: TierId::Free,
                        at,
                    },
                    Some("now") => WorkspaceCommand::CancelNow { at },
                    Some(other) => {
                        return Err(Problem::new(
                            422,
                            "invalid_when",
                            format!(
                                "when must be `period_end` (the default) or `now`, not `{other}`"
                            ),
                        ))
                    }
                };
                let (_, ws) = access::load_admitted(self.kernel.store(), id, &actor).await?;
                if ws.billing.is_none() {
                    return Err(refusal(WorkspaceError::NoSubscription));
                }
                self.change(&request, id, command, actor, 200).await
            }
            "DELETE /workspaces/{workspaceId}" => {
                let id = uuid_param(&request, "workspaceId", "workspace_not_found")?;
                let command = WorkspaceCommand::Delete {
                    at: self.kernel.clock().now(),
                };
                self.delete(&request, id, command, actor).await
            }
            "DELETE /workspaces/{workspaceId}/tier/scheduled" => {
                let id = uuid_param(&request, "workspaceId", "workspace_not_found")?;
                self.change(
                    &request,
                    id,
                    WorkspaceCommand::CancelScheduledTier,
                    actor,
                    200,
                )
                .await
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
        let now = self.kernel.clock().now();
        let create = ByActor {
            command: WorkspaceCommand::Create {
                id,
                name: body.name,
                tier: body.tier,
                billing_email: body.billing_email,
                anchor_day: now.day(),
                at: now,
            },
            actor: actor.clone(),
        };
        let create = &create;
        let done = self
            .kernel
            .run(
                Metadata::origin(request_id(request), actor.user.as_str()),
                |tx| {
                    Box::pin(async move {
                        let mut ws = tx.load::<Workspace>(&id).await?;
                        tx.decide(&mut ws, create.clone())
                            .map_err(|f| f.map(refusal))?;
                        let tier = ws.state.as_ref().map(|w| w.tier).ok_or_else(|| {
                            Fail::Refused(Problem::internal(&"creation produced no workspace"))
                        })?;
                        let mut wallet = tx.load::<Wallet>(&id).await?;
                        let open = CreditCommand::Open {
                            workspace_id: id,
                            tier,
                        };
                        tx.decide(&mut wallet, open)
                            .map_err(|f| f.map(|e| Problem::internal(&e)))?;
                        mirror_members(tx, &ws)?;
                        Ok(ws)
                    })
                },
            )
            .await
            .map_err(answer)?;
        let Some(ws) = done.value.state else {
            return Err(Problem::internal(&"creation produced no workspace"));
        };
        let mut response = json(201, &view(&ws, done.value.version));
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
        let metadata = Metadata::origin(request_id(request), actor.user.as_str());
        let command = ByActor { command, actor };
        let command = &command;
        let done = self
            .kernel
            .run(metadata, |tx| {
                Box::pin(async move {
                    let (ws, events) = decide_admitted(tx, id, command).await?;
                    if matches!(
                        command.command,
                        WorkspaceCommand::AddCollaborator { .. }
                            | WorkspaceCommand::RemoveCollaborator { .. }
                    ) {
                        mirror_members(tx, &ws)?;
                    }
                    if let Some(retier) = kassa_commerce::wallet::retier(ws.version, &events) {
                        let mut wallet = tx.load::<Wallet>(&id).await?;
                        kassa_commerce::wallet::stage(tx, &mut wallet, retier)
                            .await
                            .map_err(|f| f.map(|e| Problem::internal(&e)))?;
                    }
                    let refund = events.iter().find_map(|e| match e {
                        WorkspaceEvent::SubscriptionCancelled { refund, .. } => Some(*refund),
                        _ => None,
                    });
                    Ok((ws, tier_change(&events), refund))
                })
            })
            .await
            .map_err(answer)?;
        let (loaded, change, refund) = done.value;
        let Some(ws) = loaded.state else {
            return Err(Problem::internal(&"workspace vanished"));
        };
        let mut answer = view(&ws, loaded.version);
        answer.tier_change = change;
        answer.refund = refund;
        Ok(json(status, &answer))
    }
}

impl Workspaces {
    /// Deletes the workspace and closes its wallet in one commit; read models are purged
    /// by purge-workspaces on `workspace.deleted`, and the event log is kept.
    async fn delete(
        &self,
        request: &Request,
        id: Uuid,
        command: WorkspaceCommand,
        actor: Actor,
    ) -> Result<Response<Body>, Problem> {
        let metadata = Metadata::origin(request_id(request), actor.user.as_str());
        let command = ByActor { command, actor };
        let command = &command;
        let done = self
            .kernel
            .run(metadata, |tx| {
                Box::pin(async move {
                    let (ws, _) = decide_admitted(tx, id, command).await?;
                    let mut wallet = tx.load::<Wallet>(&id).await?;
                    if wallet.state.is_some() {
                        tx.decide(&mut wallet, CreditCommand::Close)
                            .map_err(|f| f.map(|e| Problem::internal(&e)))?;
                    }
                    Ok(ws.state.and_then(|w| w.deleted_on))
                })
            })
            .await
            .map_err(answer)?;
        Ok(json(
            200,
            &serde_json::json!({ "id": id, "deleted_on": done.value }),
        ))
    }
}

/// Loads workspace `id` and decides `command` on it, in `tx`, for a caller it admits; a
/// stranger is told what a missing workspace would tell them.
async fn decide_admitted(
    tx: &mut Tx<'_>,
    id: Uuid,
    command: &ByActor<WorkspaceCommand>,
) -> Result<(Loaded<Workspace>, Vec<WorkspaceEvent>), Fail<Problem>> {
    let mut ws = load_admitted(tx, id, &command.actor).await?;
    let events = decide_on(tx, &mut ws, command)?;
    Ok((ws, events))
}

/// Workspace `id`, in `tx`, if it admits `actor`; else the answer a missing one gets.
async fn load_admitted(
    tx: &mut Tx<'_>,
    id: Uuid,
    actor: &Actor,
) -> Result<Loaded<Workspace>, Fail<Problem>> {
    let ws = tx.load::<Workspace>(&id).await?;
    match &ws.state {
        Some(current) if current.admits(actor) => Ok(ws),
        _ => Err(Fail::Refused(access::not_found(id))),
    }
}

/// Decides `command` on the admitted `ws`, its refusals as answers.
fn decide_on(
    tx: &mut Tx<'_>,
    ws: &mut Loaded<Workspace>,
    command: &ByActor<WorkspaceCommand>,
) -> Result<Vec<WorkspaceEvent>, Fail<Problem>> {
    let id = ws.state.as_ref().map(|w| w.id).unwrap_or_default();
    tx.decide(ws, command.clone()).map_err(|f| {
        f.map(|e| match e {
            WorkspaceError::Forbidden => access::not_found(id),
            e => refusal(e),
        })
    })
}

/// What the tier change among `events` that took effect was worth, for the answer.
fn tier_change(events: &[WorkspaceEvent]) -> Option<TierChangeView> {
    events.iter().find_map(|e| match e {
        WorkspaceEvent::TierChanged {
            from,
            to,
            period_start,
            period_end,
            charge,
            credits_top_up,
            credits_taken_back,
            ..
        } => Some(TierChangeView {
            from: *from,
            to: *to,
            period_start: period_start.clone(),
            period_end: period_end.clone(),
            charge: *charge,
            credits_top_up: *credits_top_up,
            credits_taken_back: *credits_taken_back,
        }),
        _ => None,
    })
}

/// The wallet's debit tests membership on the wallet's own head, so every change of the
/// member set is written there too, in the same commit.
fn mirror_members(tx: &mut Tx<'_>, ws: &Loaded<Workspace>) -> Result<(), Fail<Problem>> {
    let Some(state) = &ws.state else {
        return Ok(());
    };
    let members = state.members().map(|u| u.as_str().to_owned()).collect();
    tx.commit()
        .mirror_members(&wallet_stream(state.id), members)?;
    Ok(())
}
