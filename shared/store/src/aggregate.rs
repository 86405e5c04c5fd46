//! Loading and appending whole aggregates: the head's state decoded under the aggregate's
//! schema, or rebuilt from the stream's events when it was written under another one (or
//! no longer decodes), and heads written with their schema and the sets other commits test.

use crate::attribute::{n, s, Item};
use crate::commit::Commit;
use crate::event::StreamId;
use crate::store::{EventStore, Head};
use crate::StoreError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::{
    PutRequest, ReturnValuesOnConditionCheckFailure, Update, WriteRequest,
};
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
        if A::COUNTER && head.schema != A::SCHEMA {
            return self.upgrade_counter::<A>(head).await;
        }
        let decoded = (head.schema == A::SCHEMA)
            .then(|| serde_json::from_value::<Option<A>>(head.state.clone()).ok())
            .flatten();
        let state = match decoded {
            Some(state) if A::COUNTER => state.map(|mut s: A| {
                s.set_counter(head.counter.unwrap_or_default());
                s
            }),
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

    /// Rewrites a counter head written under an older schema into the counter shape: its
    /// apply-once markers become marker items, its state is rebuilt from its events, its
    /// counter set from that state and the member set of the aggregate it mirrors copied
    /// onto it, all conditional on both heads being as read. Markers go first and are
    /// idempotent, so an upgrade that loses a race leaves nothing wrong behind.
    pub async fn upgrade_counter<A: Aggregate>(&self, head: Head) -> Result<Loaded<A>, StoreError> {
        tracing::info!(stream = %head.stream, schema = head.schema, current = A::SCHEMA, "upgrading a counter head");
        let markers: Vec<Item> = A::legacy_markers(&head.state)
            .iter()
            .map(|key| crate::counter::marker_item(&head.stream, key))
            .collect();
        for chunk in markers.chunks(25) {
            let mut pending: Vec<WriteRequest> = chunk
                .iter()
                .map(|item| {
                    PutRequest::builder()
                        .set_item(Some(item.clone()))
                        .build()
                        .map(|put| WriteRequest::builder().put_request(put).build())
                        .map_err(StoreError::dynamo)
                })
                .collect::<Result<_, _>>()?;
            while !pending.is_empty() {
                let out = self
                    .client()
                    .batch_write_item()
                    .request_items(self.table(), pending)
                    .send()
                    .await
                    .map_err(StoreError::sdk)?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(self.table()))
                    .unwrap_or_default();
            }
        }
        let state = self.rebuild::<A>(&head.stream, head.version).await?;
        let owner = A::MIRRORS.and_then(|name| {
            let id = head.stream.as_str().split_once('#')?.1;
            Some(StreamId::new(name, id))
        });
        let owner_head = match &owner {
            Some(o) => self.load(o).await?,
            None => None,
        };
        let mut commit = self.commit_builder(
            crate::event::Metadata {
                correlation_id: uuid::Uuid::nil(),
                causation_id: None,
                actor: "system:upgrade".into(),
            },
            time::OffsetDateTime::now_utc(),
        );
        let mut update = Update::builder()
            .table_name(self.table())
            .key("pk", s(head.stream.as_str()))
            .key("sk", n(0))
            .condition_expression("#v = :expected")
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#st", "state")
            .expression_attribute_names("#s", "schema")
            .expression_attribute_names("#c", crate::counter::COUNTER)
            .expression_attribute_names("#carried", crate::counter::CARRIED)
            .expression_attribute_values(":expected", n(head.version))
            .expression_attribute_values(
                ":state",
                s(
                    serde_json::to_string(&state)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                ),
            )
            .expression_attribute_values(":schema", n(A::SCHEMA))
            .expression_attribute_values(
                ":counter",
                n(state.as_ref().map(A::counter).unwrap_or_default()),
            )
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let mut set = "SET #st = :state, #s = :schema, #c = :counter".to_owned();
        if let Some(members) = owner_head.as_ref().filter(|h| !h.members.is_empty()) {
            set.push_str(", #m = :members");
            update = update
                .expression_attribute_names("#m", crate::counter::MEMBERS)
                .expression_attribute_values(
                    ":members",
                    AttributeValue::Ss(members.members.clone()),
                );
        }
        let update = update
            .update_expression(format!("{set} REMOVE #carried"))
            .build()
            .map_err(StoreError::dynamo)?;
        commit.push_guarded(
            aws_sdk_dynamodb::types::TransactWriteItem::builder()
                .update(update)
                .build(),
            crate::commit::Guard::Head(head.stream.clone()),
        );
        if let Some(owner_head) = &owner_head {
            commit.require_version(&owner_head.stream, owner_head.version)?;
        }
        self.commit(commit).await?;
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
        if A::COUNTER {
            let counter = state.as_ref().map(A::counter).unwrap_or_default();
            self.append_counter(stream, expected, events, state, counter, A::SCHEMA)?;
            return match state.as_ref().and_then(A::terms) {
                Some(terms) => self.counter_terms(stream, terms),
                None => Ok(self),
            };
        }
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
