//! The SQS event source mapping: long-polls a queue, invokes the function with the
//! `SqsEvent` Lambda would build, deletes what succeeded and leaves reported failures for
//! redelivery (and, past maxReceiveCount, the dead-letter queue).

use crate::functions::Lambda;
use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use std::time::Duration;

pub struct QueueSource {
    pub client: aws_sdk_sqs::Client,
    pub url: String,
    pub arn: String,
    pub batch_size: i32,
    /// How long a failed message stays hidden before redelivery. Lambda waits the queue's
    /// visibility timeout; locally that is shortened so a retry is seen in seconds.
    pub retry_after: Duration,
    pub lambda: Lambda,
}

impl QueueSource {
    pub async fn run(self) {
        let Lambda::Sqs(handler) = &self.lambda else {
            return;
        };
        loop {
            let received = self
                .client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(self.batch_size.clamp(1, 10))
                .wait_time_seconds(1)
                .visibility_timeout(self.retry_after.as_secs().max(1) as i32)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await;
            let messages = match received {
                Ok(out) => out.messages.unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(queue = %self.url, error = ?e, "ReceiveMessage failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if messages.is_empty() {
                continue;
            }
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
            let event: SqsEvent =
                match serde_json::from_value(serde_json::json!({ "Records": records })) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::error!(error = %e, "SQS messages could not be converted");
                        continue;
                    }
                };
            let response = handler(event).await;
            let failed: Vec<String> = response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect();
            let done: Vec<DeleteMessageBatchRequestEntry> = messages
                .iter()
                .enumerate()
                .filter(|(_, m)| !m.message_id.as_ref().is_some_and(|id| failed.contains(id)))
                .filter_map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle.clone()?)
                        .build()
                        .ok()
                })
                .collect();
            if !done.is_empty() {
                if let Err(e) = self
                    .client
                    .delete_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(done))
                    .send()
                    .await
                {
                    tracing::warn!(error = ?e, "DeleteMessageBatch failed; the messages will be redelivered");
                }
            }
        }
    }
}
