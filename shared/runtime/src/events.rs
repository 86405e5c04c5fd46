//! The kassa event inside an SQS message, as EventBridge delivered it. Side effects are
//! run through [`crate::inbox::Inbox`]; what is left here serves the functions not moved
//! onto it yet.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use kassa_store::RecordedEvent;

pub type EffectError = lambda_runtime::Error;

/// The kassa event inside one SQS message body.
pub fn decode(body: &str) -> Result<RecordedEvent, serde_json::Error> {
    serde_json::from_str::<EventBridgeEvent<RecordedEvent>>(body).map(|e| e.detail)
}
