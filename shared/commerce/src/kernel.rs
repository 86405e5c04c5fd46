//! The command kernel: every command, HTTP or side effect, loads what it decides on,
//! decides, commits everything it wrote across its streams in one transaction, and on a
//! lost race decides again, here.
//!
//! ```ignore
//! let done = kernel
//!     .run(metadata, |tx| Box::pin(async move {
//!         let mut order = tx.load::<Order>(&order_id).await?;
//!         tx.decide(&mut order, OrderCommand::Cancel { reason: reason.clone() })?;
//!         Ok(order.state)
//!     }))
//!     .await?;
//! ```
//!
//! The body runs once per attempt. It may load several aggregates, decide on each (even
//! twice on one), require typed guards and add lock, index or agenda items; nothing is
//! written until it returns. A conflict on any head retries the whole body, with the heads
//! the failed conditions returned standing in for reads; throttling is retried a few times
//! after longer pauses, then answered (503 with Retry-After over HTTP).

use crate::clock::Clock;
use kassa_domain::aggregate::Aggregate;
use kassa_store::{
    retry, stream_of, Commit, EventStore, Head, Loaded, Metadata, RecordedEvent, StoreError,
    StreamId,
};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use time::OffsetDateTime;

/// The body's future, boxed so that it may borrow the transaction it is given.
pub type Attempt<'t, T, E> = Pin<Box<dyn Future<Output = Result<T, Fail<E>>> + Send + 't>>;

/// Why a command did not commit: its own refusal, or the store's failure (a conflict
/// that outlived its retries among them).
#[derive(Debug, thiserror::Error)]
pub enum Fail<E> {
    #[error("refused: {0}")]
    Refused(E),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<E> Fail<E> {
    /// Converts the refusal, keeping store failures as they are.
    pub fn map<F>(self, f: impl FnOnce(E) -> F) -> Fail<F> {
        match self {
            Self::Refused(e) => Fail::Refused(f(e)),
            Self::Store(e) => Fail::Store(e),
        }
    }
}

/// What a command came to: the body's value and the events its commit recorded (none
/// when it decided nothing, in which case nothing was written).
#[derive(Debug)]
pub struct Done<T> {
    pub value: T,
    pub recorded: Vec<RecordedEvent>,
}

/// Loads, decides, commits and retries commands against one event store.
#[derive(Clone)]
pub struct Kernel {
    store: EventStore,
    clock: Arc<dyn Clock>,
    attempts: u32,
}

impl Kernel {
    pub fn new(store: EventStore, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            attempts: retry::DEFAULT_ATTEMPTS,
        }
    }

    /// The same kernel deciding up to `attempts` times: for a command whose stream many
    /// requests of one caller append to at once, where losing a race is expected.
    pub fn patient(&self, attempts: u32) -> Self {
        Self {
            attempts,
            ..self.clone()
        }
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// Runs `body` until its commit goes through, it refuses, or the store fails.
    pub async fn run<'k, T, E, F>(&'k self, metadata: Metadata, body: F) -> Result<Done<T>, Fail<E>>
    where
        F: for<'t> FnMut(&'t mut Tx<'k>) -> Attempt<'t, T, E>,
    {
        self.run_seeded(metadata, Vec::new(), Vec::new(), body)
            .await
    }

    /// As [`Kernel::run`], with what the caller has just read standing in for the first
    /// attempt's reads: `seeds`, heads it found, and `absent`, streams it found missing.
    /// A stale one costs a conflict, after which the head the failed condition returned
    /// is used.
    pub async fn run_seeded<'k, T, E, F>(
        &'k self,
        metadata: Metadata,
        seeds: Vec<Head>,
        absent: Vec<StreamId>,
        body: F,
    ) -> Result<Done<T>, Fail<E>>
    where
        F: for<'t> FnMut(&'t mut Tx<'k>) -> Attempt<'t, T, E>,
    {
        self.attempt(metadata, seeds, absent, body).await
    }

    /// As [`Kernel::run`], for a command that creates `stream`, which the caller has just
    /// read and found absent, or knows to be absent nearly always: the first attempt
    /// takes that for its read (a hot path saves the request). Had the stream been created meanwhile, the commit's condition fails
    /// and the next attempt decides on the head that condition returned.
    pub async fn run_creating<'k, T, E, F>(
        &'k self,
        metadata: Metadata,
        stream: StreamId,
        body: F,
    ) -> Result<Done<T>, Fail<E>>
    where
        F: for<'t> FnMut(&'t mut Tx<'k>) -> Attempt<'t, T, E>,
    {
        self.attempt(metadata, Vec::new(), vec![stream], body).await
    }

    async fn attempt<'k, T, E, F>(
        &'k self,
        metadata: Metadata,
        seeds: Vec<Head>,
        absent: Vec<StreamId>,
        mut body: F,
    ) -> Result<Done<T>, Fail<E>>
    where
        F: for<'t> FnMut(&'t mut Tx<'k>) -> Attempt<'t, T, E>,
    {
        let mut seen: HashMap<StreamId, Head> =
            seeds.into_iter().map(|h| (h.stream.clone(), h)).collect();
        let mut absent: HashSet<StreamId> = absent.into_iter().collect();
        let (mut tries, mut throttled) = (0, 0);
        loop {
            tries += 1;
            let now = self.clock.now();
            let mut tx = Tx {
                store: &self.store,
                now,
                commit: self.store.commit_builder(metadata.clone(), now),
                seen: std::mem::take(&mut seen),
                absent: std::mem::take(&mut absent),
            };
            let outcome = match body(&mut tx).await {
                Ok(value) => {
                    let Tx { commit, .. } = tx;
                    match self.store.commit(commit).await {
                        Ok(recorded) => return Ok(Done { value, recorded }),
                        Err(e) => Err(e),
                    }
                }
                Err(Fail::Store(e)) => Err(e),
                Err(refusal) => return Err(refusal),
            };
            match outcome {
                Err(StoreError::Conflict { current, .. }) if tries < self.attempts => {
                    if let Some(head) = current {
                        seen.insert(head.stream.clone(), *head);
                    }
                    retry::pause(tries).await;
                }
                // A rival applied the same apply-once command first: the next attempt
                // sees its marker and decides nothing.
                Err(StoreError::Refused(kassa_store::Refusal::AlreadyApplied))
                    if tries < self.attempts =>
                {
                    retry::pause(tries).await;
                }
                Err(StoreError::Throttled(code))
                    if throttled < retry::THROTTLED_RETRIES && tries < self.attempts =>
                {
                    throttled += 1;
                    tracing::warn!(%code, throttled, "DynamoDB throttled; retrying after a pause");
                    retry::pause_throttled(throttled).await;
                }
                Err(e) => return Err(Fail::Store(e)),
                Ok(()) => unreachable!("a committed attempt returns"),
            }
        }
    }
}

/// One attempt of a command: what it read and what it will write.
pub struct Tx<'k> {
    store: &'k EventStore,
    now: OffsetDateTime,
    commit: Commit,
    seen: HashMap<StreamId, Head>,
    /// Streams the caller read as absent just before (first attempt only).
    absent: HashSet<StreamId>,
}

impl<'k> Tx<'k> {
    /// The time this attempt decides at.
    pub fn now(&self) -> OffsetDateTime {
        self.now
    }

    pub fn store(&self) -> &'k EventStore {
        self.store
    }

    /// `A` named `id`: from the head a failed condition returned, or read.
    pub async fn load<A: Aggregate>(&mut self, id: &A::Id) -> Result<Loaded<A>, StoreError> {
        let stream = stream_of::<A>(id);
        if self.absent.remove(&stream) {
            return Ok(Loaded {
                stream,
                version: 0,
                state: None,
            });
        }
        match self.seen.remove(&stream) {
            Some(head) => self.store.state_of(head).await,
            None => self.store.load_aggregate::<A>(id).await,
        }
    }

    /// Decides `command` on `aggregate`, stages the events and the new head in this
    /// attempt's commit, and moves `aggregate` to the state after them. Returns the events
    /// (none when the decision was a no-op).
    pub fn decide<A: Aggregate>(
        &mut self,
        aggregate: &mut Loaded<A>,
        command: A::Command,
    ) -> Result<Vec<A::Event>, Fail<A::Error>> {
        let events = A::decide(aggregate.state.as_ref(), command).map_err(Fail::Refused)?;
        self.record(aggregate, &events)?;
        Ok(events)
    }

    /// Stages events decided elsewhere (a decider with extra inputs) on `aggregate`.
    pub fn record<A: Aggregate>(
        &mut self,
        aggregate: &mut Loaded<A>,
        events: &[A::Event],
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let next = events.iter().fold(aggregate.state.take(), A::evolve);
        self.commit
            .append_aggregate::<A>(&aggregate.stream, aggregate.version, events, &next)?;
        aggregate.version += events.len() as u64;
        aggregate.state = next;
        Ok(())
    }

    /// The commit, for lock, index, agenda and guard items beside the events.
    pub fn commit(&mut self) -> &mut Commit {
        &mut self.commit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kassa_domain::order::{Order, OrderCommand, OrderError};
    use uuid::Uuid;

    /// The shape every command takes: borrowed inputs, several loads, a typed refusal.
    #[allow(dead_code)]
    async fn cancel(
        kernel: &Kernel,
        metadata: Metadata,
        id: Uuid,
        reason: &str,
    ) -> Result<Done<Option<Order>>, Fail<OrderError>> {
        let command = OrderCommand::Cancel {
            reason: reason.to_owned(),
        };
        let command = &command;
        kernel
            .run(metadata, |tx| {
                Box::pin(async move {
                    let mut order = tx.load::<Order>(&id).await?;
                    tx.decide(&mut order, command.clone())?;
                    tx.decide(&mut order, command.clone())?;
                    Ok(order.state)
                })
            })
            .await
    }
}
