//! What every domain event shares: a stable type name and the context that publishes it.

use serde::{de::DeserializeOwned, Serialize};

/// A domain event enum. Enums are serialized adjacently tagged (`type` + `payload`) so a
/// stored event splits into the two columns the event store keeps.
pub trait DomainEvent: Serialize + DeserializeOwned + Clone {
    /// The bounded context, used as EventBridge `source` (`kassa.<context>`).
    const CONTEXT: &'static str;

    /// Every type this enum can carry, as `event_type` names them. The event catalog test
    /// checks it against the enum's generated schema, so it cannot fall behind.
    const TYPES: &'static [&'static str];

    /// `<aggregate>.<past_tense>`, e.g. `credits.consumed`.
    fn event_type(&self) -> &'static str;

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

    /// Rebuilds an event from its stored type and payload.
    fn from_parts(event_type: &str, payload: serde_json::Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(serde_json::json!({ "type": event_type, "payload": payload }))
    }
}
