//! The DynamoDB stream event source mapping: polls every shard of a table's stream and
//! invokes the function with the `dynamodb::Event` Lambda would build. On reported item
//! failures it retries from the first failed record, like Lambda with
//! ReportBatchItemFailures; after the retry budget the batch is described on the on-failure
//! queue.

use crate::functions::Lambda;
use anyhow::Result;
use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use std::collections::HashMap;
use std::time::Duration;

pub struct StreamSource {
    pub client: aws_sdk_dynamodbstreams::Client,
    pub stream_arn: String,
    pub batch_size: usize,
    pub max_retries: u32,
    pub on_failure: Option<(aws_sdk_sqs::Client, String)>,
    pub lambda: Lambda,
}

impl StreamSource {
    pub async fn run(self) {
        let mut iterators: HashMap<String, Option<String>> = HashMap::new();
        // The last sequence number delivered per shard, to reopen an iterator after it.
        let mut positions: HashMap<String, String> = HashMap::new();
        let mut last_describe = None::<std::time::Instant>;
        loop {
            if last_describe.is_none_or(|t| t.elapsed() > Duration::from_secs(2)) {
                if let Err(e) = self.discover(&mut iterators).await {
                    tracing::warn!(error = %e, "describing the stream failed");
                }
                last_describe = Some(std::time::Instant::now());
            }
            let mut delivered = false;
            for (shard, iterator) in iterators.iter_mut() {
                let Some(it) = iterator.clone() else { continue };
                match self
                    .client
                    .get_records()
                    .shard_iterator(it)
                    .limit(self.batch_size as i32)
                    .send()
                    .await
                {
                    Ok(out) => {
                        *iterator = out.next_shard_iterator;
                        let records = out.records.unwrap_or_default();
                        if let Some(seq) = records
                            .last()
                            .and_then(|r| r.dynamodb.as_ref())
                            .and_then(|d| d.sequence_number.clone())
                        {
                            positions.insert(shard.clone(), seq);
                        }
                        if !records.is_empty() {
                            delivered = true;
                            self.deliver(shard, records).await;
                        }
                    }
                    // An expired or trimmed iterator: reopen after what was delivered.
                    Err(e) => {
                        tracing::debug!(%shard, error = ?e, "GetRecords failed; reopening the shard");
                        *iterator = self.open(shard, positions.get(shard)).await.ok().flatten();
                    }
                }
            }
            if !delivered {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Opens an iterator for every shard not yet seen.
    async fn discover(&self, iterators: &mut HashMap<String, Option<String>>) -> Result<()> {
        let out = self
            .client
            .describe_stream()
            .stream_arn(&self.stream_arn)
            .send()
            .await?;
        for shard in out
            .stream_description
            .and_then(|d| d.shards)
            .unwrap_or_default()
        {
            let Some(id) = shard.shard_id else { continue };
            if iterators.contains_key(&id) {
                continue;
            }
            let it = self.open(&id, None).await?;
            iterators.insert(id, it);
        }
        Ok(())
    }

    async fn open(&self, shard: &str, after: Option<&String>) -> Result<Option<String>> {
        let request = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(shard);
        let request = match after {
            Some(seq) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(seq),
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        Ok(request.send().await?.shard_iterator)
    }

    async fn deliver(&self, shard: &str, records: Vec<Record>) {
        let Lambda::Stream(handler) = &self.lambda else {
            return;
        };
        let mut records: Vec<EventRecord> = records
            .into_iter()
            .filter_map(|r| match lambda_record(r, &self.stream_arn) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::error!(error = %e, "stream record could not be converted");
                    None
                }
            })
            .collect();
        let mut attempt = 0;
        while !records.is_empty() {
            let mut batch = Event::default();
            batch.records = records.clone();
            let response = handler(batch).await;
            let failed: Vec<String> = response
                .batch_item_failures
                .into_iter()
                .filter_map(|f| f.item_identifier)
                .collect();
            let Some(first) = records.iter().position(|r| {
                r.change
                    .sequence_number
                    .as_ref()
                    .is_some_and(|s| failed.contains(s))
            }) else {
                return;
            };
            attempt += 1;
            records.drain(..first);
            if attempt > self.max_retries {
                tracing::error!(
                    records = records.len(),
                    "stream batch failed past its retries"
                );
                if let Some((sqs, url)) = &self.on_failure {
                    // Lambda's on-failure record, which `cargo xtask redrive` reads.
                    let body = serde_json::json!({
                        "requestContext": { "condition": "RetryAttemptsExhausted", "approximateInvokeCount": attempt },
                        "version": "1.0",
                        "timestamp": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                        "DDBStreamBatchInfo": {
                            "shardId": shard,
                            "startSequenceNumber": records.first().and_then(|r| r.change.sequence_number.clone()),
                            "endSequenceNumber": records.last().and_then(|r| r.change.sequence_number.clone()),
                            "batchSize": records.len(),
                            "streamArn": self.stream_arn,
                        },
                    });
                    let _ = sqs
                        .send_message()
                        .queue_url(url)
                        .message_body(body.to_string())
                        .send()
                        .await;
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
        }
    }
}

/// A stream record in Lambda's wire format, read back through aws_lambda_events.
/// A stream record as Lambda hands it to a function (the relay reads these).
pub fn lambda_record(r: Record, arn: &str) -> Result<EventRecord> {
    let change = r
        .dynamodb
        .unwrap_or_else(|| aws_sdk_dynamodbstreams::types::StreamRecord::builder().build());
    let new_image: serde_dynamo::Item = change.new_image.unwrap_or_default().into();
    let keys: serde_dynamo::Item = change.keys.unwrap_or_default().into();
    let json = serde_json::json!({
        "eventID": r.event_id,
        "eventName": r.event_name.map(|n| n.as_str().to_owned()),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": arn,
        "dynamodb": {
            "ApproximateCreationDateTime": change.approximate_creation_date_time.map(|t| t.secs()),
            "Keys": keys,
            "NewImage": new_image,
            "SequenceNumber": change.sequence_number,
            "SizeBytes": change.size_bytes.unwrap_or_default(),
            "StreamViewType": "NEW_IMAGE",
        },
    });
    Ok(serde_json::from_value(json)?)
}
