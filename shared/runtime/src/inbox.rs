//! Where a side-effect function's events arrive: SQS batches of kassa events as
//! EventBridge delivered them. Each record is handled on its own, once per event id; a
//! retryable failure is reported for that message alone (ReportBatchItemFailures), and a
//! poison one is parked in the dead-letter queue at once with its reason.

use crate::effect::EffectError;
use crate::{Config, SdkConfig};
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::MessageAttributeValue;
use kassa_commerce::Clock;
use kassa_store::{Idempotency, IdempotencyError, Outcome, RecordedEvent};
use std::future::Future;
use std::sync::Arc;

/// The message attribute that says why a message was parked.
pub const POISON_REASON: &str = "kassa-poison-reason";

/// The kassa event inside one SQS message body.
pub fn decode(body: &str) -> Result<RecordedEvent, serde_json::Error> {
    serde_json::from_str::<EventBridgeEvent<RecordedEvent>>(body).map(|e| e.detail)
}

#[derive(Clone)]
pub struct Inbox {
    idempotency: Idempotency,
    dead_letters: Option<(aws_sdk_sqs::Client, String)>,
    clock: Arc<dyn Clock>,
}

impl Inbox {
    /// `scope` names the function, so two functions reacting to one event both run.
    pub fn new(
        idempotency: Idempotency,
        dead_letters: Option<(aws_sdk_sqs::Client, String)>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            idempotency,
            dead_letters,
            clock,
        }
    }

    pub fn from_config(
        config: &Config,
        aws: &SdkConfig,
        scope: &str,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let dynamodb = aws_sdk_dynamodb::Client::new(aws);
        Self::new(
            Idempotency::new(dynamodb, &config.state_table, scope),
            config
                .dead_letter_queue
                .clone()
                .map(|url| (aws_sdk_sqs::Client::new(aws), url)),
            clock,
        )
    }

    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// Runs `effect` for every event of the batch, at most once per event id: a
    /// redelivered event has no second effect, and a repeat while the first delivery is
    /// still running is retried later.
    pub async fn each_once<F, Fut>(&self, batch: SqsEvent, effect: F) -> SqsBatchResponse
    where
        F: Fn(RecordedEvent) -> Fut,
        Fut: Future<Output = Result<serde_json::Value, EffectError>>,
    {
        let effect = &effect;
        self.each(batch, |event| async move {
            let key = event.event_id.to_string();
            match self
                .idempotency
                .run(&key, self.clock.now(), || effect(event.clone()))
                .await
            {
                Ok(Outcome::Repeated(_)) => {
                    tracing::info!(event_id = %event.event_id, "already handled; skipped");
                    Ok(())
                }
                Ok(Outcome::Ran(_)) => Ok(()),
                Err(IdempotencyError::Handler(e)) => Err(e),
                Err(other) => Err(EffectError::from(other)),
            }
        })
        .await
    }

    /// Runs `handle` for every event of the batch, for effects idempotent on their own.
    pub async fn each<F, Fut>(&self, batch: SqsEvent, mut handle: F) -> SqsBatchResponse
    where
        F: FnMut(RecordedEvent) -> Fut,
        Fut: Future<Output = Result<(), EffectError>>,
    {
        let mut response = SqsBatchResponse::default();
        for message in batch.records {
            let result = match message.body.as_deref().map(decode) {
                Some(Ok(event)) => {
                    let (event_id, event_type) = (event.event_id, event.event_type.clone());
                    // Boxed: the nested effect futures are otherwise too deep for rustc's
                    // layout queries.
                    Box::pin(handle(event)).await.inspect_err(|e| {
                        tracing::warn!(%event_id, %event_type, error = %e, "effect failed");
                    })
                }
                Some(Err(e)) => Err(EffectError::from(e)),
                None => Err(EffectError::poison("the message has no body")),
            };
            let delivered = match result {
                Ok(()) => true,
                Err(EffectError::Poison(reason)) => self.park(&message, &reason).await,
                Err(EffectError::Retry(_)) => false,
            };
            if !delivered {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message.message_id.clone().unwrap_or_default();
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    /// Sends a poison message to the dead-letter queue with its reason; `false` when that
    /// was not possible, so the message is redelivered and reaches the dead-letter queue
    /// through its redrive policy instead.
    async fn park(&self, message: &SqsMessage, reason: &str) -> bool {
        let id = message.message_id.as_deref().unwrap_or_default();
        tracing::error!(message_id = %id, %reason, "poison message");
        let Some((sqs, url)) = &self.dead_letters else {
            return false;
        };
        let reason_attribute = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(reason)
            .build();
        let sent = match reason_attribute {
            Ok(attribute) => sqs
                .send_message()
                .queue_url(url)
                .message_body(message.body.clone().unwrap_or_default())
                .message_attributes(POISON_REASON, attribute)
                .send()
                .await
                .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string()),
            Err(e) => Err(e.to_string()),
        };
        match sent {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(message_id = %id, error = %e, "the poison message could not be parked");
                false
            }
        }
    }
}
