//! The consume-credits Lambda: prices a feature's use by the workspace's tier and debits the
//! wallet atomically.
//!
//! The debit is an append to the wallet's stream at the version the decision was made on,
//! committed together with an in-transaction check that the caller is a member of the
//! workspace. A warm instance keeps the last wallet head it saw: when it is current, the
//! request costs one `TransactWriteItems` and no read; when it is stale, the failed
//! condition returns the current head and the command decides again on that.

use kassa_domain::credits::{self, CreditCommand, CreditError, CreditEvent, Wallet};
use kassa_domain::identity::{Actor, Role};
use kassa_runtime::access::{self, wallet_stream, workspace_stream, MEMBERSHIP};
use kassa_runtime::function::StartError;
use kassa_runtime::http::{json, json_body, request_id, respond, uuid_param};
use kassa_runtime::idempotency_key::IdempotentRequests;
use kassa_runtime::{caller, Clock, Config, Function, HttpFunction, Problem, SdkConfig};
use kassa_store::lease::LEASE;
use kassa_store::{retry, EventStore, Head, Leases, Metadata, StoreError};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The function's name: the scope of its requests' idempotency records.
pub const NAME: &str = "consume-credits";

/// Wallet heads a warm instance remembers; past this the memory is simply cleared.
const CACHED_WALLETS: usize = 1024;

/// How long a debit waits for its turn on a contended wallet before answering 409; well
/// inside the function's 10 s timeout.
const TURN_PATIENCE: Duration = Duration::from_secs(6);

/// How long a turn may last; a sandbox that dies holding it blocks the wallet no longer.
const TURN_LEASE: Duration = Duration::from_secs(5);

pub struct ConsumeCredits {
    store: EventStore,
    leases: Leases,
    clock: Arc<dyn Clock>,
    heads: Mutex<HashMap<Uuid, Head>>,
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
        CreditError::AlreadyOpen
        | CreditError::EmptyAllocation
        | CreditError::PurchaseNotApplied(_) => 409,
    };
    Problem::new(status, e.code(), e.to_string())
}

/// Why one attempt did not commit.
enum Refused {
    Domain(CreditError),
    Problem(Problem),
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
            leases: Leases::new(store.client().clone(), store.table()),
            store,
            clock,
            heads: Mutex::default(),
            requests: None,
        }
    }

    /// Answers repeats of requests with an `Idempotency-Key` from `requests`.
    pub fn keeping(mut self, requests: IdempotentRequests) -> Self {
        self.requests = Some(requests);
        self
    }

    async fn consume(&self, request: &Request) -> Result<Consumption, Problem> {
        let actor = caller(request)?;
        let workspace = uuid_param(request, "workspaceId", "workspace_not_found")?;
        let body: ConsumeBody = json_body(request)?;
        let command = CreditCommand::Consume {
            consumption_id: Uuid::now_v7(),
            feature: body.feature,
            quantity: body.quantity,
        };
        let metadata = Metadata::origin(request_id(request), actor.user.as_str());

        // Optimistic first: an uncontended debit costs one transaction and nothing more.
        let first = self
            .attempt(
                workspace,
                &actor,
                command.clone(),
                metadata.clone(),
                self.cached(workspace),
                None,
            )
            .await;
        let outcome = match first {
            Err(StoreError::Conflict { current, .. }) => {
                self.take_turn(workspace, &actor, &command, &metadata, current.map(|h| *h))
                    .await
            }
            other => other,
        };
        match outcome {
            Ok(Ok(consumption)) => Ok(consumption),
            Ok(Err(Refused::Problem(p))) => Err(p),
            Ok(Err(Refused::Domain(e))) => Err(refusal(&e)),
            Err(StoreError::Refused(MEMBERSHIP)) => {
                self.forget(workspace);
                Err(self.why_not_member(workspace, &actor).await)
            }
            Err(e) => {
                self.forget(workspace);
                Err(access::store_problem(&e))
            }
        }
    }

    /// After a lost race the wallet is contended: rather than every loser racing again
    /// (most of them losing again), contenders take turns through the wallet's lease. The
    /// holder still retries on a conflict (a newcomer's optimistic attempt may win), and
    /// its commit releases the lease.
    async fn take_turn(
        &self,
        workspace: Uuid,
        actor: &Actor,
        command: &CreditCommand,
        metadata: &Metadata,
        seen: Option<Head>,
    ) -> Result<Result<Consumption, Refused>, StoreError> {
        let key = format!("Lease#{}", wallet_stream(workspace));
        let holder = Uuid::now_v7().to_string();
        let deadline = Instant::now() + TURN_PATIENCE;
        let mut waits = 0u32;
        while !self
            .leases
            .acquire(&key, &holder, self.clock.now(), TURN_LEASE)
            .await?
        {
            if Instant::now() >= deadline {
                return Err(StoreError::Conflict {
                    stream: wallet_stream(workspace),
                    current: None,
                });
            }
            waits += 1;
            let cap_ms = (1u64 << waits.min(6)).clamp(2, 50);
            tokio::time::sleep(Duration::from_millis(fastrand::u64(1..=cap_ms))).await;
        }
        let mut seen = seen;
        let outcome = retry::on_conflict(retry::DEFAULT_ATTEMPTS, |current| {
            let head = current.or_else(|| seen.take());
            self.attempt(
                workspace,
                actor,
                command.clone(),
                metadata.clone(),
                head,
                Some((&key, &holder)),
            )
        })
        .await;
        if !matches!(outcome, Ok(Ok(_))) {
            // Nothing committed, so the lease is still ours: pass the turn on.
            self.leases.abandon(&key, &holder).await?;
        }
        match outcome {
            // The turn outlasted its lease and someone else has the wallet now.
            Err(StoreError::Refused(LEASE)) => Err(StoreError::Conflict {
                stream: wallet_stream(workspace),
                current: None,
            }),
            other => other,
        }
    }

    /// One decide-and-commit. `head` is the wallet as last seen (cache or failed
    /// condition); without one, or when the decision on it is a refusal, it reads. A held
    /// `lease` (key, holder) is released by the commit.
    async fn attempt(
        &self,
        workspace: Uuid,
        actor: &Actor,
        command: CreditCommand,
        metadata: Metadata,
        head: Option<Head>,
        lease: Option<(&str, &str)>,
    ) -> Result<Result<Consumption, Refused>, StoreError> {
        let stream = wallet_stream(workspace);
        let mut head = head;
        let mut fresh = false;
        let (head, wallet, events) = loop {
            let current = match head.take() {
                Some(h) => h,
                None => {
                    fresh = true;
                    match self.store.load(&stream).await? {
                        Some(h) => h,
                        // No wallet: either no workspace, or not yet visible. Answer as
                        // the workspace's existence and the caller's rights say.
                        None => {
                            return Ok(Err(Refused::Problem(
                                self.why_not_member(workspace, actor).await,
                            )))
                        }
                    }
                }
            };
            let wallet: Wallet = current.state()?;
            match credits::decide(Some(&wallet), command.clone()) {
                Ok(events) => break (current, wallet, events),
                // A refusal on a remembered head may be stale (a top-up since): decide
                // again on a fresh read before answering.
                Err(_) if !fresh => continue,
                Err(e) => {
                    // Never tell a stranger about a wallet's balance.
                    if actor.role != Role::Admin {
                        access::load_admitted(&self.store, workspace, actor)
                            .await
                            .map_err(|_| StoreError::Refused(MEMBERSHIP))?;
                    }
                    return Ok(Err(Refused::Domain(e)));
                }
            }
        };
        let next = events.iter().fold(Some(wallet), credits::evolve);
        let mut commit = self.store.commit_builder(metadata, self.clock.now());
        if actor.role != Role::Admin {
            commit.require_member(
                &workspace_stream(workspace),
                actor.user.as_str(),
                MEMBERSHIP,
            )?;
        }
        commit.append::<CreditEvent>(&stream, head.version, &events, &next)?;
        if let Some((key, holder)) = lease {
            commit.delete(self.leases.release(key, holder)?, LEASE);
        }
        self.store.commit(commit).await?;
        self.remember(
            workspace,
            Head {
                stream,
                version: head.version + events.len() as u64,
                state: serde_json::to_value(&next)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                schema: 1,
            },
        );
        Ok(Ok(summarize(&events)))
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

    fn cached(&self, workspace: Uuid) -> Option<Head> {
        self.heads.lock().ok()?.get(&workspace).cloned()
    }

    fn remember(&self, workspace: Uuid, head: Head) {
        if let Ok(mut heads) = self.heads.lock() {
            if heads.len() >= CACHED_WALLETS {
                heads.clear();
            }
            heads.insert(workspace, head);
        }
    }

    fn forget(&self, workspace: Uuid) {
        if let Ok(mut heads) = self.heads.lock() {
            heads.remove(&workspace);
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
