//! Throughput on one hot wallet: many Lambda sandboxes debiting the same wallet at once,
//! against as many clients debiting one head like it with the same conditional
//! `UpdateItem` (membership, floor, carried events), which DynamoDB serializes on the item
//! without any optimistic retry. Kassa's debit is that one write too, so the ratio is what
//! its decision, cache and retries cost under contention.

use crate::api;
use crate::baseline::{BareHead, Debit};
use crate::workspace::BenchWorkspace;
use anyhow::Result;
use kassa_commerce::SystemClock;
use kassa_consume_credits::ConsumeCredits;
use kassa_runtime::{HttpFunction, SdkConfig};
use kassa_store::EventStore;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use uuid::Uuid;

/// How one run went: what succeeded, what gave up, and how long it all took.
#[derive(Default, Clone)]
pub struct Throughput {
    pub successes: usize,
    /// Consumes answered 409: still conflicting after the handler's retries.
    pub conflicts: usize,
    /// Any other answer or error.
    pub others: usize,
    pub first_other: Option<String>,
    pub elapsed: Duration,
    /// Items the handlers read during the run (none for the baseline).
    pub reads: u64,
}

impl Throughput {
    /// Every call made, whatever its answer.
    pub fn calls(&self) -> usize {
        self.successes + self.conflicts + self.others
    }

    pub fn per_second(&self) -> f64 {
        self.successes as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    pub(crate) fn tally(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Success => self.successes += 1,
            Outcome::Conflict => self.conflicts += 1,
            Outcome::Other(why) => {
                self.others += 1;
                self.first_other.get_or_insert(why);
            }
        }
    }

    pub(crate) fn add(&mut self, other: Throughput) {
        self.successes += other.successes;
        self.conflicts += other.conflicts;
        self.others += other.others;
        if self.first_other.is_none() {
            self.first_other = other.first_other;
        }
    }
}

pub(crate) enum Outcome {
    Success,
    Conflict,
    Other(String),
}

/// One concurrent client of a hot item: a Lambda sandbox or a bare SDK client.
pub(crate) trait Spender: Send + Sync + 'static {
    fn spend(&self) -> impl Future<Output = Outcome> + Send;
}

/// A consume-credits sandbox: its own handler, cache and connections. `Client::new`
/// builds its own HTTP client, so sandboxes share no connection pool, as on Lambda.
struct Sandbox {
    handler: ConsumeCredits,
    store: EventStore,
    workspace: Uuid,
    owner: String,
}

impl Spender for Sandbox {
    async fn spend(&self) -> Outcome {
        let request = match api::consume(self.workspace, &self.owner) {
            Ok(request) => request,
            Err(e) => return Outcome::Other(format!("{e:#}")),
        };
        let response = self.handler.handle(request).await;
        match response.status().as_u16() {
            200 => Outcome::Success,
            409 => Outcome::Conflict,
            _ => Outcome::Other(api::describe(&response)),
        }
    }
}

impl Spender for BareHead {
    async fn spend(&self) -> Outcome {
        match self.debit(1).await {
            Ok(Debit::Done) => Outcome::Success,
            Ok(Debit::Refused) => Outcome::Other("the bare head refused a debit".to_owned()),
            Err(e) => Outcome::Other(format!("{e:#}")),
        }
    }
}

/// `consumers` sandboxes consuming `total` times in all from the bench wallet.
pub async fn consume(
    aws: &SdkConfig,
    workspace: &BenchWorkspace,
    consumers: usize,
    total: usize,
) -> Result<Throughput> {
    let sandboxes: Vec<Arc<Sandbox>> = (0..consumers)
        .map(|_| {
            let store =
                EventStore::new(aws_sdk_dynamodb::Client::new(aws), &workspace.events_table);
            Arc::new(Sandbox {
                handler: ConsumeCredits::new(store.clone(), Arc::new(SystemClock)),
                store,
                workspace: workspace.id,
                owner: workspace.owner.clone(),
            })
        })
        .collect();
    warm(&sandboxes).await;
    let reads = || sandboxes.iter().map(|s| s.store.items_read()).sum::<u64>();
    let before = reads();
    let mut throughput = race(&sandboxes, total).await?;
    throughput.reads = reads() - before;
    Ok(throughput)
}

/// `clients` bare clients debiting one copy of the bench wallet's head `total` times in
/// all (its balance is the wallet's, far more than a run spends).
pub async fn debit(
    aws: &SdkConfig,
    workspace: &BenchWorkspace,
    clients: usize,
    total: usize,
) -> Result<Throughput> {
    let head = BareHead::copy(
        aws_sdk_dynamodb::Client::new(aws),
        &workspace.events_table,
        &workspace.wallet_pk(),
        &workspace.owner,
        workspace.id,
    )
    .await?;
    let spenders: Vec<Arc<BareHead>> = (0..clients)
        .map(|_| Arc::new(head.through(aws_sdk_dynamodb::Client::new(aws))))
        .collect();
    warm(&spenders).await;
    race(&spenders, total).await
}

/// One spend each, one after another and untimed, so every spender starts the race with
/// an open connection (and a sandbox with a cached head), as a warm sandbox would.
async fn warm<S: Spender>(spenders: &[Arc<S>]) {
    for spender in spenders {
        let _ = spender.spend().await;
    }
}

/// Every spender at once, taking calls from one shared count until `total` are made.
pub(crate) async fn race<S: Spender>(spenders: &[Arc<S>], total: usize) -> Result<Throughput> {
    let left = Arc::new(AtomicUsize::new(total));
    let started = Instant::now();
    let mut runs = JoinSet::new();
    for spender in spenders {
        let (spender, left) = (spender.clone(), left.clone());
        runs.spawn(async move {
            let mut mine = Throughput::default();
            while left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                mine.tally(spender.spend().await);
            }
            mine
        });
    }
    let mut all = Throughput::default();
    while let Some(mine) = runs.join_next().await {
        all.add(mine?);
    }
    all.elapsed = started.elapsed();
    Ok(all)
}
