//! Loading and appending whole aggregates: the head's state decoded under the aggregate's
//! schema, or rebuilt from the stream's events when it was written under another one (or
//! no longer decodes), and heads written with their schema and the sets other commits test.

use crate::attribute::Item;
use crate::commit::Commit;
use crate::event::StreamId;
use crate::store::{EventStore, Head};
use crate::StoreError;
use aws_sdk_dynamodb::types::AttributeValue;
use kassa_domain::aggregate::Aggregate;

/// The stream of aggregate `A` named `id`: `<A::NAME>#<id>`.
pub fn stream_of<A: Aggregate>(id: &A::Id) -> StreamId {
    StreamId::new(A::NAME, id)
}

/// An aggregate as loaded: its stream, the version its state is as of (0 for a stream
/// with no events) and the state.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    pub stream: StreamId,
    pub version: u64,
    pub state: Option<A>,
}

/// Events read per page when a state is rebuilt from its stream.
const REBUILD_PAGE: i32 = 500;

impl EventStore {
    /// `A` named `id`, as of its latest event: one `GetItem` unless the head must be
    /// rebuilt.
    pub async fn load_aggregate<A: Aggregate>(&self, id: &A::Id) -> Result<Loaded<A>, StoreError> {
        let stream = stream_of::<A>(id);
        match self.load(&stream).await? {
            Some(head) => self.state_of(head).await,
            None => Ok(Loaded {
                stream,
                version: 0,
                state: None,
            }),
        }
    }

    /// The state a head holds, or, when it was written under another schema or does not
    /// decode as `A` any more, the state its events fold into.
    pub async fn state_of<A: Aggregate>(&self, head: Head) -> Result<Loaded<A>, StoreError> {
        let decoded = (head.schema == A::SCHEMA)
            .then(|| serde_json::from_value::<Option<A>>(head.state.clone()).ok())
            .flatten();
        let state = match decoded {
            Some(state) => state,
            None => {
                tracing::info!(stream = %head.stream, schema = head.schema, current = A::SCHEMA, "rebuilding a head from its events");
                self.rebuild::<A>(&head.stream, head.version).await?
            }
        };
        Ok(Loaded {
            stream: head.stream,
            version: head.version,
            state,
        })
    }

    /// Folds the events of `stream` up to `version` into `A`'s state.
    pub async fn rebuild<A: Aggregate>(
        &self,
        stream: &StreamId,
        version: u64,
    ) -> Result<Option<A>, StoreError> {
        let mut state = None;
        let mut after = 0;
        loop {
            let page = self.read_page(stream, after, REBUILD_PAGE).await?;
            for recorded in page.events.iter().filter(|e| e.version <= version) {
                let event: A::Event = recorded.decode().map_err(|e| {
                    StoreError::Corrupt(format!("{stream}@{}: {e}", recorded.version))
                })?;
                state = A::evolve(state, &event);
            }
            match page.next_after {
                Some(next) if next < version => after = next,
                _ => return Ok(state),
            }
        }
    }
}

impl Commit {
    /// Appends `events` of aggregate `A` to `stream` at `expected` and writes its head
    /// with `state`, the schema it is written under and the sets other commits test.
    pub fn append_aggregate<A: Aggregate>(
        &mut self,
        stream: &StreamId,
        expected: u64,
        events: &[A::Event],
        state: &Option<A>,
    ) -> Result<&mut Self, StoreError> {
        let mut head = Item::new();
        head.insert("schema".into(), AttributeValue::N(A::SCHEMA.to_string()));
        for (name, members) in state.iter().flat_map(A::head_sets) {
            if !members.is_empty() {
                head.insert(name.to_owned(), AttributeValue::Ss(members));
            }
        }
        self.append_with(stream, expected, events, state, head)
    }
}
