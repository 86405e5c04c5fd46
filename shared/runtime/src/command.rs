//! Running a command against one stream: load the head, decide, append, commit, and on a
//! lost race decide again on the head the failed condition returned. Every aggregate of
//! the payments and orders contexts goes through here.

use kassa_domain::event::DomainEvent;
use kassa_store::{retry, Commit, EventStore, Metadata, RecordedEvent, StoreError, StreamId};
use serde::de::DeserializeOwned;
use serde::Serialize;
use time::OffsetDateTime;

/// What a command did: the state after it and the events it recorded (none when the
/// decision was a no-op, in which case nothing was written).
#[derive(Debug)]
pub struct Done<S> {
    pub state: Option<S>,
    pub recorded: Vec<RecordedEvent>,
}

/// Decides a command on the stream's current state (`None` for a new stream).
pub type Decide<'a, S, E, X> = dyn Fn(Option<&S>) -> Result<Vec<E>, X> + Send + Sync + 'a;

/// Adds index, lock or receipt items to the commit, given the state after the events.
pub type Also<'a, S, E> =
    dyn Fn(&mut Commit, Option<&S>, &[E]) -> Result<(), StoreError> + Send + Sync + 'a;

/// A command's decision on one stream and the other items its commit must carry.
pub struct Command<'a, S, E, X> {
    pub stream: &'a StreamId,
    pub metadata: Metadata,
    pub decide: &'a Decide<'a, S, E, X>,
    pub evolve: fn(Option<S>, &E) -> Option<S>,
    pub also: &'a Also<'a, S, E>,
    pub attempts: u32,
}

/// Adds nothing to the commit.
pub fn nothing<S, E>(_: &mut Commit, _: Option<&S>, _: &[E]) -> Result<(), StoreError> {
    Ok(())
}

/// Runs `command` until it commits, decides nothing, is refused by the domain (`Ok(Err)`)
/// or fails in the store.
pub async fn run<S, E, X>(
    store: &EventStore,
    now: OffsetDateTime,
    command: Command<'_, S, E, X>,
) -> Result<Result<Done<S>, X>, StoreError>
where
    S: Serialize + DeserializeOwned + Clone + Send + Sync,
    E: DomainEvent + Send + Sync,
    X: Send,
{
    let command = &command;
    retry::on_conflict(command.attempts, |seen| async move {
        let head = match seen {
            Some(head) => Some(head),
            None => store.load(command.stream).await?,
        };
        let (version, state) = match &head {
            Some(h) => (h.version, Some(h.state::<S>()?)),
            None => (0, None),
        };
        let events = match (command.decide)(state.as_ref()) {
            Ok(events) => events,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if events.is_empty() {
            return Ok(Ok(Done {
                state,
                recorded: Vec::new(),
            }));
        }
        let next = events.iter().fold(state, command.evolve);
        let mut commit = store.commit_builder(command.metadata.clone(), now);
        commit.append(command.stream, version, &events, &next)?;
        (command.also)(&mut commit, next.as_ref(), &events)?;
        let recorded = store.commit(commit).await?;
        Ok(Ok(Done {
            state: next,
            recorded,
        }))
    })
    .await
}
