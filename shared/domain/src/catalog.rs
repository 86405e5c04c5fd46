//! The event catalog: every event kassa publishes, with the JSON Schema of its payload,
//! generated from the Rust types that produce it. `docs/event-catalog.json` is this
//! function's output; a test fails when the two differ.

use crate::event::DomainEvent;
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

/// One entry per event type, keyed by type, in a stable order.
pub fn catalog() -> Value {
    let mut events = Map::new();
    add::<crate::workspace::WorkspaceEvent>(&mut events);
    add::<crate::credits::CreditEvent>(&mut events);
    add::<crate::order::OrderEvent>(&mut events);
    add::<crate::payment::PaymentEvent>(&mut events);
    add::<crate::subscription::SubscriptionEvent>(&mut events);
    add::<crate::invoice::InvoiceEvent>(&mut events);
    add::<crate::user::UserEvent>(&mut events);
    add::<crate::concert::ConcertEvent>(&mut events);
    add::<crate::cart::CartEvent>(&mut events);
    add::<crate::reservation::ReservationEvent>(&mut events);
    add::<crate::availability::SeatEvent>(&mut events);
    add::<crate::ticket::TicketEvent>(&mut events);
    add::<crate::coupon::CouponEvent>(&mut events);
    add::<crate::promotion::PromotionEvent>(&mut events);
    add::<crate::coupon_usage::UsageEvent>(&mut events);
    add::<crate::coupon_usage::UseEvent>(&mut events);
    add::<crate::coupon_usage::AttemptEvent>(&mut events);
    json!({
        "title": "kassa event catalog",
        "description": "Events kassa publishes on its EventBridge bus. `source` is the \
            EventBridge source, the event type is the detail-type, and `payload` is the JSON \
            Schema of `detail.payload` (the detail also carries event_id, stream, version, \
            event_type, context, time and metadata).",
        "events": events,
    })
}

/// Every event type the catalog must describe, from each enum's own list.
pub fn declared_types() -> Vec<&'static str> {
    [
        crate::workspace::WorkspaceEvent::TYPES,
        crate::credits::CreditEvent::TYPES,
        crate::order::OrderEvent::TYPES,
        crate::payment::PaymentEvent::TYPES,
        crate::subscription::SubscriptionEvent::TYPES,
        crate::invoice::InvoiceEvent::TYPES,
        crate::user::UserEvent::TYPES,
        crate::concert::ConcertEvent::TYPES,
        crate::cart::CartEvent::TYPES,
        crate::reservation::ReservationEvent::TYPES,
        crate::availability::SeatEvent::TYPES,
        crate::ticket::TicketEvent::TYPES,
        crate::coupon::CouponEvent::TYPES,
        crate::promotion::PromotionEvent::TYPES,
        crate::coupon_usage::UsageEvent::TYPES,
        crate::coupon_usage::UseEvent::TYPES,
        crate::coupon_usage::AttemptEvent::TYPES,
    ]
    .concat()
}

/// The variants of an adjacently tagged enum's schema, as (type, payload schema), with the
/// definitions the payloads refer to.
fn variants<E: JsonSchema>() -> (Vec<(String, Value)>, Value) {
    let schema = schemars::schema_for!(E).to_value();
    let defs = schema.get("$defs").cloned().unwrap_or_else(|| json!({}));
    let list = schema
        .get("oneOf")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let found = list
        .into_iter()
        .filter_map(|variant| {
            let props = variant.get("properties")?;
            let tag = props.get("type")?;
            let name = tag
                .get("const")
                .and_then(Value::as_str)
                .or_else(|| tag.get("enum")?.get(0)?.as_str())?
                .to_owned();
            let payload = props.get("payload").cloned().unwrap_or(Value::Null);
            Some((name, payload))
        })
        .collect();
    (found, defs)
}

/// The event types the enum's schema describes: the catalog test compares them with `TYPES`.
pub fn schema_types<E: JsonSchema>() -> Vec<String> {
    variants::<E>().0.into_iter().map(|(t, _)| t).collect()
}

fn add<E: DomainEvent + JsonSchema>(events: &mut Map<String, Value>) {
    let (found, defs) = variants::<E>();
    for (event_type, payload) in found {
        let mut schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": event_type,
        });
        if let (Value::Object(target), Value::Object(source)) = (&mut schema, payload) {
            target.extend(source);
        }
        // Each entry stands alone: it carries the definitions it may refer to.
        let text = schema.to_string();
        let used: Map<String, Value> = defs
            .as_object()
            .map(|d| {
                d.iter()
                    .filter(|(name, _)| {
                        text.contains(&format!("#/$defs/{name}")) || defs_refer(d, &text, name)
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if !used.is_empty() {
            schema["$defs"] = Value::Object(used);
        }
        events.insert(
            event_type,
            json!({ "source": format!("kassa.{}", E::CONTEXT), "payload": schema }),
        );
    }
}

/// Whether definition `name` is reachable from `text` through other definitions.
fn defs_refer(defs: &Map<String, Value>, text: &str, name: &str) -> bool {
    let needle = format!("#/$defs/{name}");
    defs.iter().any(|(other, body)| {
        other != name
            && text.contains(&format!("#/$defs/{other}"))
            && body.to_string().contains(&needle)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Where `cargo xtask catalog` writes the catalog.
    const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/event-catalog.json");

    #[test]
    fn every_declared_event_type_has_a_schema() {
        let catalog = catalog();
        let described: BTreeSet<&str> = catalog["events"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let declared: BTreeSet<&str> = declared_types().into_iter().collect();
        assert_eq!(declared, described);
        for (event_type, entry) in catalog["events"].as_object().unwrap() {
            assert_eq!(entry["payload"]["type"], "object", "{event_type}");
        }
    }

    #[test]
    fn each_enums_type_list_matches_its_variants() {
        fn same<E: DomainEvent + JsonSchema>() {
            let mut from_schema = schema_types::<E>();
            let mut declared: Vec<String> = E::TYPES.iter().map(|t| t.to_string()).collect();
            from_schema.sort();
            declared.sort();
            assert_eq!(from_schema, declared, "{}", E::CONTEXT);
        }
        same::<crate::workspace::WorkspaceEvent>();
        same::<crate::credits::CreditEvent>();
        same::<crate::order::OrderEvent>();
        same::<crate::payment::PaymentEvent>();
        same::<crate::subscription::SubscriptionEvent>();
        same::<crate::invoice::InvoiceEvent>();
        same::<crate::user::UserEvent>();
        same::<crate::concert::ConcertEvent>();
        same::<crate::cart::CartEvent>();
        same::<crate::reservation::ReservationEvent>();
        same::<crate::availability::SeatEvent>();
        same::<crate::ticket::TicketEvent>();
        same::<crate::coupon::CouponEvent>();
        same::<crate::coupon_usage::UsageEvent>();
        same::<crate::coupon_usage::UseEvent>();
        same::<crate::coupon_usage::AttemptEvent>();
    }

    #[test]
    fn the_committed_catalog_is_current() {
        let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
        let current = serde_json::to_string_pretty(&catalog()).unwrap() + "\n";
        assert!(
            committed == current,
            "docs/event-catalog.json is missing or stale: an event type was added or its \
             payload changed. Regenerate it with `cargo xtask catalog` and commit it."
        );
    }
}
