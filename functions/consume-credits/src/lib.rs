//! The consume-credits Lambda: prices a feature's use by the workspace's tier and debits the
//! wallet atomically.
//!
//! A debit is ONE conditional `UpdateItem` on the wallet's head, its hot counter
//! (`kassa_store::counter`): subtract the credits if the balance lies where the decision
//! holds (`credits::debit_holds`: at or above what the debit needs, and on the same side of
//! the threshold and of zero) and the caller is in the head's mirrored member set; the
//! update carries the debit's events, which the relay publishes and persists. Concurrent
//! debits do not invalidate each other: DynamoDB applies each whose condition still holds.
//! Only a debit that crosses a line (the low-balance threshold, zero) is pinned to the exact
//! balance it was decided on, since its events carry figures of their own.
//!
//! A warm instance remembers the last wallet it saw, so a debit usually costs no read at
//! all; a failed condition returns the head as it is, and the debit is decided again on it.

use kassa_commerce::Clock;
use kassa_domain::aggregate::Aggregate;
use kassa_domain::credits::{self, CreditCommand, CreditError, CreditEvent, Wallet};
use kassa_domain::identity::{Actor, Role};
use kassa_runtime::access::{self, wallet_stream};
use kassa_runtime::function::StartError;
use kassa_runtime::http::{json, json_body, request_id, respond, uuid_param};
use kassa_runtime::idempotency_key::IdempotentRequests;
use kassa_runtime::{caller, problem, Config, Function, HttpFunction, Problem, SdkConfig};
use kassa_store::{retry, Bounds, Carried, EventStore, Head, Metadata, Step, Stepped, StoreError};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// The function's name: the scope of its requests' idempotency records.
pub const NAME: &str = "consume-credits";

/// Wallets a warm instance remembers; past this the memory is simply cleared.
const CACHED_WALLETS: usize = 1024;

/// Attempts of one debit. Each failed condition means the balance moved (others' debits
/// went through) or the remembered wallet was stale; the next attempt decides on the head
/// the failure returned.
const ATTEMPTS: u32 = 16;

pub struct ConsumeCredits {
    store: EventStore,
    clock: Arc<dyn Clock>,
    seen: Mutex<HashMap<Uuid, Wallet>>,
    /// Answers to requests that carried an `Idempotency-Key`.
    requests: Option<IdempotentRequests>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsumeBody {
    feature: String,
    quantity: u64,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Consumption {
    pub consumption_id: Uuid,
    pub feature: String,
    pub quantity: u64,
    pub credits: u64,
    pub balance: i64,
    pub overage_credits: u64,
    pub balance_low: bool,
}

fn refusal(e: &CreditError) -> Problem {
    let status = match e {
        CreditError::InsufficientCredits { .. } => 402,
        CreditError::UnknownFeature(..) | CreditError::InvalidQuantity => 422,
        CreditError::NoWallet => 404,
        // Reads still work; only spending stops until the workspace is paid up.
        CreditError::Suspended => 403,
        CreditError::AlreadyOpen
        | CreditError::EmptyAllocation
        | CreditError::PurchaseNotApplied(_) => 409,
    };
    Problem::new(status, e.code(), e.to_string())
}

impl Function for ConsumeCredits {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        let requests = IdempotentRequests::new(client.clone(), &config.state_table, NAME);
        Ok(Self::new(EventStore::new(client, &config.events_table), clock).keeping(requests))
    }
}

impl HttpFunction for ConsumeCredits {
    async fn handle(&self, request: Request) -> Response<Body> {
        let consume = || async { respond(self.consume(&request).await.map(|c| json(200, &c))) };
        match &self.requests {
            Some(requests) => {
                requests
                    .serve(&request, self.clock.now(), |_| consume())
                    .await
            }
            None => match kassa_runtime::idempotency_key::IdempotencyKey::from_request(&request) {
                Err(problem) => problem.into_response(),
                Ok(_) => consume().await,
            },
        }
    }
}

impl ConsumeCredits {
    /// The debit alone, as the benches measure it: without [`ConsumeCredits::keeping`], a
    /// request's `Idempotency-Key` is checked but not remembered.
    pub fn new(store: EventStore, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            seen: Mutex::default(),
            requests: None,
        }
    }

    /// Answers repeats of requests with an `Idempotency-Key` from `requests`.
    pub fn keeping(mut self, requests: IdempotentRequests) -> Self {
        self.requests = Some(requests);
        self
    }

    async fn consume(&self, request: &Request) -> Result<Consumption, Problem> {
        let mut actor = caller(request)?;
        // Only an admin's claim widens what the debit may touch, so only that claim is
        // checked against kassa's record; a member's right is the wallet's member set,
        // a condition of the write itself, and the hot path keeps its single request.
        if actor.role == Role::Admin {
            actor = access::recorded(&self.store, actor).await?;
        }
        let workspace = uuid_param(request, "workspaceId", "workspace_not_found")?;
        let body: ConsumeBody = json_body(request)?;
        let command = CreditCommand::Consume {
            consumption_id: Uuid::now_v7(),
            feature: body.feature,
            quantity: body.quantity,
        };
        let metadata = Metadata::origin(request_id(request), actor.user.as_str());
        let outcome = self.debit(workspace, &actor, &command, &metadata).await;
        if outcome.is_err() {
            self.forget(workspace);
        }
        outcome
    }

    async fn debit(
        &self,
        workspace: Uuid,
        actor: &Actor,
        command: &CreditCommand,
        metadata: &Metadata,
    ) -> Result<Consumption, Problem> {
        let stream = wallet_stream(workspace);
        // Admins may debit any wallet; everyone else must be in its member set.
        let member = (actor.role != Role::Admin).then(|| actor.user.as_str());
        let (mut wallet, mut fresh) = match self.cached(workspace) {
            Some(w) => (w, false),
            None => (self.read(workspace, actor).await?, true),
        };
        let (mut throttled, mut conflicts) = (0, 0);
        for _ in 0..ATTEMPTS {
            let events = match credits::decide(Some(&wallet), command.clone()) {
                Ok(events) => events,
                // A refusal on a remembered wallet may be stale (a top-up since).
                Err(_) if !fresh => {
                    wallet = self.read(workspace, actor).await?;
                    fresh = true;
                    continue;
                }
                Err(e) => {
                    // Never tell a stranger about a wallet's balance.
                    if member.is_some() {
                        access::load_admitted(&self.store, workspace, actor).await?;
                    }
                    return Err(refusal(&e));
                }
            };
            let credits = match events.first() {
                Some(CreditEvent::Consumed { credits, .. }) => *credits,
                _ => return Err(Problem::internal(&"a debit decided no consumption")),
            };
            let holds = credits::debit_holds(wallet.policy(), wallet.balance, credits);
            let terms = wallet.terms();
            let now = self.clock.now();
            let step = Step {
                stream: &stream,
                schema: Wallet::SCHEMA,
                delta: -i64::try_from(credits).map_err(|e| Problem::internal(&e))?,
                bounds: Bounds {
                    at_least: holds.at_least,
                    below: holds.below,
                },
                member,
                // Decided on the remembered tier's prices and limits: a tier change since
                // makes the step refused, and it is decided again on the head.
                terms: terms.as_deref(),
                while_open: false,
                carried: events
                    .iter()
                    .map(|e| Carried::new(e, metadata, now, &["balance_after"]))
                    .collect(),
                measure: false,
            };
            match self.store.step(step).await {
                Ok(Stepped::Moved {
                    counter, recorded, ..
                }) => {
                    wallet.balance = counter;
                    self.remember(workspace, wallet);
                    let events: Vec<CreditEvent> = recorded
                        .iter()
                        .map(|r| r.decode())
                        .collect::<Result<_, _>>()
                        .map_err(|e| Problem::internal(&e))?;
                    return Ok(summarize(&events));
                }
                Ok(Stepped::Refused(None)) => {
                    return Err(self.why_not_member(workspace, actor).await)
                }
                Ok(Stepped::Refused(Some(head))) => {
                    if let Some(user) = member {
                        // An old head has no member set yet: reading it upgrades it.
                        if head.schema == Wallet::SCHEMA && !head.members.iter().any(|m| m == user)
                        {
                            return Err(self.why_not_member(workspace, actor).await);
                        }
                    }
                    wallet = self.wallet_of(*head, workspace, actor).await?;
                    fresh = true;
                }
                // A cold command's transaction holds the head for a moment.
                Err(StoreError::Conflict { .. }) => {
                    conflicts += 1;
                    retry::pause(conflicts).await;
                }
                Err(StoreError::Throttled(code)) if throttled < retry::THROTTLED_RETRIES => {
                    throttled += 1;
                    tracing::warn!(%code, throttled, "DynamoDB throttled a debit; retrying after a pause");
                    retry::pause_throttled(throttled).await;
                }
                Err(e) => return Err(problem::store_problem(&e)),
            }
        }
        Err(problem::store_problem(&StoreError::Conflict {
            stream,
            current: None,
        }))
    }

    /// The wallet as stored now (one consistent read).
    async fn read(&self, workspace: Uuid, actor: &Actor) -> Result<Wallet, Problem> {
        match self
            .store
            .load(&wallet_stream(workspace))
            .await
            .map_err(|e| problem::store_problem(&e))?
        {
            Some(head) => self.wallet_of(head, workspace, actor).await,
            None => Err(self.why_not_member(workspace, actor).await),
        }
    }

    /// The wallet a head holds; a head of an older shape is upgraded on the way.
    async fn wallet_of(
        &self,
        head: Head,
        workspace: Uuid,
        actor: &Actor,
    ) -> Result<Wallet, Problem> {
        match self
            .store
            .state_of::<Wallet>(head)
            .await
            .map_err(|e| problem::store_problem(&e))?
            .state
        {
            Some(wallet) => Ok(wallet),
            None => Err(self.why_not_member(workspace, actor).await),
        }
    }

    async fn why_not_member(&self, workspace: Uuid, actor: &Actor) -> Problem {
        match access::load_admitted(&self.store, workspace, actor).await {
            Err(p) => p,
            // A member whose wallet is not readable yet: the creation is still settling.
            Ok(_) => Problem::conflict(
                "wallet_not_ready",
                "the wallet is being opened; retry shortly",
            ),
        }
    }

    fn cached(&self, workspace: Uuid) -> Option<Wallet> {
        self.seen.lock().ok()?.get(&workspace).cloned()
    }

    fn remember(&self, workspace: Uuid, wallet: Wallet) {
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() >= CACHED_WALLETS {
                seen.clear();
            }
            seen.insert(workspace, wallet);
        }
    }

    fn forget(&self, workspace: Uuid) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.remove(&workspace);
        }
    }
}

fn summarize(events: &[CreditEvent]) -> Consumption {
    let mut c = Consumption {
        consumption_id: Uuid::nil(),
        feature: String::new(),
        quantity: 0,
        credits: 0,
        balance: 0,
        overage_credits: 0,
        balance_low: false,
    };
    for event in events {
        match event {
            CreditEvent::Consumed {
                consumption_id,
                feature,
                quantity,
                credits,
                balance_after,
                ..
            } => {
                c.consumption_id = *consumption_id;
                c.feature = feature.clone();
                c.quantity = *quantity;
                c.credits = *credits;
                c.balance = *balance_after;
            }
            CreditEvent::Overage {
                overage_credits, ..
            } => c.overage_credits = *overage_credits,
            CreditEvent::BalanceLow { .. } => c.balance_low = true,
            _ => {}
        }
    }
    c
}
