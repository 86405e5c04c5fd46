//! Event items as stored and as read back.

use serde::{Deserialize, Serialize};
use std::fmt;
use time::OffsetDateTime;
use uuid::Uuid;

/// `<Aggregate>#<id>`, the partition key of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamId(String);

impl StreamId {
    pub fn new(aggregate: &str, id: impl fmt::Display) -> Self {
        Self(format!("{aggregate}#{id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn from_stored(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why an event happened and on whose behalf: the request or event that caused it, the
/// correlation id shared by everything one request set off, and the actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub actor: String,
}

impl Metadata {
    /// Metadata for a command that starts a new chain (an HTTP request).
    pub fn origin(request_id: Uuid, actor: impl Into<String>) -> Self {
        Self {
            correlation_id: request_id,
            causation_id: Some(request_id),
            actor: actor.into(),
        }
    }

    /// Metadata for what a handler does in reaction to `cause`.
    pub fn caused_by(cause: &RecordedEvent, actor: impl Into<String>) -> Self {
        Self {
            correlation_id: cause.metadata.correlation_id,
            causation_id: Some(cause.event_id),
            actor: actor.into(),
        }
    }
}

/// An event as committed: this is also the `detail` of the EventBridge event the relay
/// publishes, so side-effect handlers read exactly this shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub event_id: Uuid,
    pub stream: StreamId,
    pub version: u64,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The bounded context; EventBridge `source` is `kassa.<context>`.
    pub context: String,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub payload: serde_json::Value,
    pub metadata: Metadata,
    /// The schema version the payload was written under (see `DomainEvent::SCHEMA`);
    /// events from before versioning were all written under 1.
    #[serde(default = "first_schema")]
    pub schema: u32,
}

pub(crate) fn first_schema() -> u32 {
    1
}

impl RecordedEvent {
    /// The domain event, rebuilt from type and payload and upcast from the schema it was
    /// written under.
    pub fn decode<E: kassa_domain::event::DomainEvent>(&self) -> Result<E, serde_json::Error> {
        E::from_stored(kassa_domain::event::Stored {
            event_type: self.event_type.clone(),
            schema: self.schema,
            payload: self.payload.clone(),
        })
    }
}
