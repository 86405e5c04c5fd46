//! Side-effect handlers receive kassa events from SQS, wrapped as EventBridge delivered
//! them. Each record is handled on its own; failures are reported per message
//! (ReportBatchItemFailures) so one bad event does not redeliver its neighbours.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use kassa_store::{Idempotency, IdempotencyError, Outcome, RecordedEvent};
use std::future::Future;
use time::OffsetDateTime;

pub type EffectError = lambda_runtime::Error;

/// The kassa event inside one SQS message body.
pub fn decode(body: &str) -> Result<RecordedEvent, serde_json::Error> {
    serde_json::from_str::<EventBridgeEvent<RecordedEvent>>(body).map(|e| e.detail)
}

/// Runs `handle` for every event in the batch; answers the messages that failed.
pub async fn each<F, Fut>(batch: SqsEvent, mut handle: F) -> SqsBatchResponse
where
    F: FnMut(RecordedEvent) -> Fut,
    Fut: Future<Output = Result<(), EffectError>>,
{
    let mut response = SqsBatchResponse::default();
    for message in batch.records {
        let id = message.message_id.clone().unwrap_or_default();
        let result = match message.body.as_deref().map(decode) {
            Some(Ok(event)) => {
                let (event_id, event_type) = (event.event_id, event.event_type.clone());
                // Boxed: the nested effect futures are otherwise too deep for rustc's layout queries.
                Box::pin(handle(event)).await.map_err(|e| {
                    tracing::warn!(%event_id, %event_type, error = %e, "effect failed; SQS will redeliver");
                })
            }
            // A body that is not a kassa event will never be one: let it go to the DLQ.
            Some(Err(e)) => {
                tracing::error!(message_id = %id, error = %e, "not a kassa event");
                Err(())
            }
            None => Err(()),
        };
        if result.is_err() {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// Runs `effect` once per event id under `idempotency`: a redelivered event has no second
/// effect. A repeat while the first delivery is still running fails, so SQS retries later.
pub async fn once<F, Fut>(
    idempotency: &Idempotency,
    event: &RecordedEvent,
    now: OffsetDateTime,
    effect: F,
) -> Result<Outcome, EffectError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<serde_json::Value, EffectError>>,
{
    match idempotency
        .run(&event.event_id.to_string(), now, effect)
        .await
    {
        Ok(outcome) => {
            if let Outcome::Repeated(_) = outcome {
                tracing::info!(event_id = %event.event_id, "already handled; skipped");
            }
            Ok(outcome)
        }
        Err(IdempotencyError::Handler(e)) => Err(e),
        Err(IdempotencyError::InProgress(k)) => Err(format!("{k} is in progress").into()),
        Err(IdempotencyError::Mismatch(k)) => Err(format!("{k} belongs to another event").into()),
        Err(IdempotencyError::Store(e)) => Err(e.into()),
    }
}

/// The usual shape of a side-effect handler: every event of the batch, each run once per
/// event id under `idempotency`, failures reported per message.
pub async fn each_once<F, Fut>(
    batch: SqsEvent,
    idempotency: &Idempotency,
    clock: &dyn crate::Clock,
    effect: F,
) -> SqsBatchResponse
where
    F: Fn(RecordedEvent) -> Fut,
    Fut: Future<Output = Result<serde_json::Value, EffectError>>,
{
    let effect = &effect;
    each(batch, |event| async move {
        once(idempotency, &event, clock.now(), || effect(event.clone()))
            .await
            .map(drop)
    })
    .await
}
