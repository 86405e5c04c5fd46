//! What one counter head carried, read back from the events table's stream as the relay
//! reads it: each stream image of the head, its carried events derived the relay's way.
//! The flash sale hands the last holds it finds here to record-reservations, as the bus
//! would, without a relay running beside the timed part.

use anyhow::{Context, Result};
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use kassa_local::stream::lambda_record;
use kassa_runtime::SdkConfig;
use kassa_store::counter::{derive, HeadImage};
use kassa_store::{RecordedEvent, StreamId};

/// Every event the head of `stream` carried, in stream order, from the start of `arn`.
pub async fn carried_by(
    aws: &SdkConfig,
    arn: &str,
    stream: &StreamId,
) -> Result<Vec<RecordedEvent>> {
    let client = aws_sdk_dynamodbstreams::Client::new(aws);
    let shards = client
        .describe_stream()
        .stream_arn(arn)
        .send()
        .await
        .context("describing the events table's stream")?
        .stream_description
        .and_then(|d| d.shards)
        .unwrap_or_default();
    let mut events = Vec::new();
    for shard in shards {
        let Some(shard) = shard.shard_id else {
            continue;
        };
        let mut iterator = client
            .get_shard_iterator()
            .stream_arn(arn)
            .shard_id(&shard)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .context("opening a shard of the events table's stream")?
            .shard_iterator;
        while let Some(it) = iterator {
            let out = client
                .get_records()
                .shard_iterator(it)
                .limit(1000)
                .send()
                .await
                .context("reading the events table's stream")?;
            let records = out.records.unwrap_or_default();
            // An open shard answers empty pages once it is read to its end.
            if records.is_empty() {
                break;
            }
            for record in records {
                let record = lambda_record(record, arn)?;
                let image = &record.change.new_image;
                let ours = matches!(
                    image.get("pk"),
                    Some(serde_dynamo::AttributeValue::S(pk)) if pk == stream.as_str()
                );
                if ours && record.event_name != "REMOVE" {
                    let head: HeadImage = serde_dynamo::from_item(image.clone())?;
                    events.extend(derive(&head)?);
                }
            }
            iterator = out.next_shard_iterator;
        }
    }
    Ok(events)
}
