//! What every domain event shares: a stable type name, the context that publishes it, and
//! the schema version its payload was written under.

use serde::{de::DeserializeOwned, Serialize};

/// An event as it was stored: its type, the schema version it was written under and its
/// payload. Upcasters turn an old one into the current shape before it is decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub event_type: String,
    pub schema: u32,
    pub payload: serde_json::Value,
}

/// A domain event enum. Enums are serialized adjacently tagged (`type` + `payload`) so a
/// stored event splits into the two columns the event store keeps.
pub trait DomainEvent: Serialize + DeserializeOwned + Clone {
    /// The bounded context, used as EventBridge `source` (`kassa.<context>`).
    const CONTEXT: &'static str;

    /// Every type this enum can carry, as `event_type` names them. The event catalog test
    /// checks it against the enum's generated schema, so it cannot fall behind.
    const TYPES: &'static [&'static str];

    /// The payload shape events of this enum are written with now. Bump it when a payload
    /// changes incompatibly, and teach [`DomainEvent::upcast`] the old shape: stored
    /// events are never rewritten.
    const SCHEMA: u32 = 1;

    /// `<aggregate>.<past_tense>`, e.g. `credits.consumed`.
    fn event_type(&self) -> &'static str;

    /// Brings an event written under an older schema to the current one. Events that
    /// never changed shape need no upcaster.
    fn upcast(stored: Stored) -> Stored {
        stored
    }

    /// The payload alone, without the type tag.
    fn payload(&self) -> serde_json::Value {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut map)) => {
                map.remove("payload").unwrap_or(serde_json::Value::Null)
            }
            // Serialization of these plain data enums cannot fail; keep the value anyway.
            Ok(other) => other,
            Err(_) => serde_json::Value::Null,
        }
    }

    /// Rebuilds an event from its stored type and payload, as written under the current
    /// schema.
    fn from_parts(event_type: &str, payload: serde_json::Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(serde_json::json!({ "type": event_type, "payload": payload }))
    }

    /// Rebuilds an event as stored under any schema, upcasting it first.
    fn from_stored(stored: Stored) -> Result<Self, serde_json::Error> {
        let current = Self::upcast(stored);
        Self::from_parts(&current.event_type, current.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// `thing.renamed` once carried `name`; schema 2 calls it `title`.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", content = "payload")]
    enum ThingEvent {
        #[serde(rename = "thing.renamed")]
        Renamed { title: String },
    }

    impl DomainEvent for ThingEvent {
        const CONTEXT: &'static str = "things";
        const TYPES: &'static [&'static str] = &["thing.renamed"];
        const SCHEMA: u32 = 2;

        fn event_type(&self) -> &'static str {
            "thing.renamed"
        }

        fn upcast(mut stored: Stored) -> Stored {
            if stored.schema < 2 {
                if let Some(map) = stored.payload.as_object_mut() {
                    if let Some(name) = map.remove("name") {
                        map.insert("title".into(), name);
                    }
                }
                stored.schema = 2;
            }
            stored
        }
    }

    #[test]
    fn an_event_written_under_an_old_schema_is_upcast_before_it_is_decoded() {
        let old = Stored {
            event_type: "thing.renamed".into(),
            schema: 1,
            payload: serde_json::json!({ "name": "kassa" }),
        };
        assert_eq!(
            ThingEvent::from_stored(old).unwrap(),
            ThingEvent::Renamed {
                title: "kassa".into()
            }
        );
        let current = Stored {
            event_type: "thing.renamed".into(),
            schema: 2,
            payload: serde_json::json!({ "title": "kassa" }),
        };
        assert!(ThingEvent::from_stored(current).is_ok());
    }
}
