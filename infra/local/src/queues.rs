//! The SQS event source mapping: polls a queue, invokes the function with the `SqsEvent`
//! Lambda would build, deletes what succeeded and leaves reported failures for redelivery
//! (and, past maxReceiveCount, the dead-letter queue).
//!
//! Like Lambda's pollers, a mapping runs up to `concurrency` invocations at once, each with
//! its own batch. So two messages of one queue may be handled at the same time and finish
//! in either order, locally as on AWS.

use crate::functions::{Boxed, Lambda};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// ScalingConfig.MaximumConcurrency when the template sets none. Lambda starts an SQS
/// mapping with five pollers.
pub const DEFAULT_CONCURRENCY: usize = 5;

/// Messages one ReceiveMessage call returns at most.
const RECEIVE_LIMIT: usize = 10;

/// How long a receive waits for a first message. Short, so a stopped stack leaves no long
/// poll behind in the emulator.
const LONG_POLL_SECONDS: i32 = 1;

type Handler = Arc<dyn Fn(SqsEvent) -> Boxed<SqsBatchResponse> + Send + Sync>;

pub struct QueueSource {
    pub client: aws_sdk_sqs::Client,
    pub url: String,
    pub arn: String,
    /// The event source's BatchSize: messages per invocation at most.
    pub batch_size: usize,
    /// MaximumBatchingWindowInSeconds: how long a batch keeps gathering toward
    /// `batch_size` after its first message; zero takes what one receive brings.
    pub batching_window: Duration,
    /// ScalingConfig.MaximumConcurrency: invocations running at once at most.
    pub concurrency: usize,
    /// How long a failed message stays hidden before redelivery. Lambda leaves it hidden
    /// for the queue's visibility timeout; locally that is shortened so a retry is seen in
    /// seconds.
    pub retry_after: Duration,
    pub lambda: Lambda,
}

impl QueueSource {
    pub async fn run(self) {
        let Lambda::Sqs(handler) = self.lambda.clone() else {
            return;
        };
        let source = Arc::new(self);
        // Owned here, so stopping the mapping stops its invocations too.
        let mut invocations = JoinSet::new();
        loop {
            while let Some(done) = invocations.try_join_next() {
                source.log_panic(done);
            }
            while invocations.len() >= source.concurrency.max(1) {
                if let Some(done) = invocations.join_next().await {
                    source.log_panic(done);
                }
            }
            let batch = source.gather().await;
            if batch.is_empty() {
                continue;
            }
            invocations.spawn(source.clone().invoke(handler.clone(), batch));
        }
    }

    /// A panicking handler fails its own batch only: its messages come back after the
    /// queue's visibility timeout, as when a Lambda invocation crashes.
    fn log_panic(&self, done: Result<(), tokio::task::JoinError>) {
        if let Err(e) = done {
            tracing::error!(queue = %self.url, error = %e, "an invocation panicked");
        }
    }

    /// One batch: what a first receive brings, then, within the batching window, more
    /// receives until the batch is full.
    async fn gather(&self) -> Vec<Message> {
        let batch_size = self.batch_size.max(1);
        let mut batch = self
            .receive(batch_size.min(RECEIVE_LIMIT), LONG_POLL_SECONDS)
            .await;
        if batch.is_empty() || self.batching_window.is_zero() {
            return batch;
        }
        let deadline = Instant::now() + self.batching_window;
        while batch.len() < batch_size {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let wanted = (batch_size - batch.len()).min(RECEIVE_LIMIT);
            // ReceiveMessage waits whole seconds; under one second left, poll briefly.
            let wait = i32::try_from(left.as_secs()).unwrap_or(20).min(20);
            let more = self.receive(wanted, wait).await;
            if more.is_empty() && wait == 0 {
                tokio::time::sleep(left.min(Duration::from_millis(50))).await;
            }
            batch.extend(more);
        }
        batch
    }

    async fn receive(&self, count: usize, wait_seconds: i32) -> Vec<Message> {
        // No visibility timeout of its own: a message stays hidden for the queue's while
        // its batch runs, as with Lambda.
        let received = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(i32::try_from(count).unwrap_or(10))
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await;
        match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(queue = %self.url, error = ?e, "ReceiveMessage failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                Vec::new()
            }
        }
    }

    async fn invoke(self: Arc<Self>, handler: Handler, messages: Vec<Message>) {
        let event = match self.event(&messages) {
            Ok(event) => event,
            Err(e) => {
                tracing::error!(error = %e, "SQS messages could not be converted");
                return;
            }
        };
        let response = handler(event).await;
        let failed: Vec<String> = response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        let (retry, done): (Vec<_>, Vec<_>) = messages
            .iter()
            .partition(|m| m.message_id.as_ref().is_some_and(|id| failed.contains(id)));
        self.delete(&done).await;
        self.hide_for_retry(&retry).await;
    }

    fn event(&self, messages: &[Message]) -> serde_json::Result<SqsEvent> {
        let records: Vec<serde_json::Value> = messages
            .iter()
            .map(|m| {
                let attributes: serde_json::Map<String, serde_json::Value> = m
                    .attributes
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.as_str().to_owned(), serde_json::Value::String(v.clone())))
                    .collect();
                serde_json::json!({
                    "messageId": m.message_id,
                    "receiptHandle": m.receipt_handle,
                    "body": m.body,
                    "md5OfBody": m.md5_of_body,
                    "attributes": attributes,
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.arn,
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records }))
    }

    async fn delete(&self, done: &[&Message]) {
        let entries: Vec<DeleteMessageBatchRequestEntry> = done
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle.clone()?)
                    .build()
                    .ok()
            })
            .collect();
        if entries.is_empty() {
            return;
        }
        if let Err(e) = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            tracing::warn!(error = ?e, "DeleteMessageBatch failed; the messages will be redelivered");
        }
    }

    /// Failed messages come back after `retry_after` rather than the queue's visibility
    /// timeout.
    async fn hide_for_retry(&self, retry: &[&Message]) {
        let seconds = i32::try_from(self.retry_after.as_secs().max(1)).unwrap_or(i32::MAX);
        let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = retry
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle.clone()?)
                    .visibility_timeout(seconds)
                    .build()
                    .ok()
            })
            .collect();
        if entries.is_empty() {
            return;
        }
        if let Err(e) = self
            .client
            .change_message_visibility_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            tracing::warn!(error = ?e, "ChangeMessageVisibilityBatch failed; the messages come back after the queue's visibility timeout");
        }
    }
}
