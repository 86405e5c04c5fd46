//! The outbox relay against moto's EventBridge and SQS: chunks of at most 10 entries, only
//! event items published, relaying stops at the first record that can be neither published
//! nor parked, what cannot be published is parked with its envelope, and the redrive
//! publishes what was parked or given up on.

mod common;

use aws_lambda_events::event::dynamodb::Event;
use kassa_event_relay::redrive::Redrive;
use kassa_event_relay::EventRelay;
use kassa_runtime::StreamFunction;
use kassa_store::EventItem;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;
use uuid::Uuid;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn record(seq: u64, image: Value, created: i64) -> Value {
    json!({
        "eventID": format!("e{seq}"), "eventName": "INSERT", "eventVersion": "1.1",
        "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x",
        "dynamodb": {
            "ApproximateCreationDateTime": created,
            "Keys": {}, "NewImage": image, "SequenceNumber": format!("{seq:021}"),
            "SizeBytes": 100, "StreamViewType": "NEW_IMAGE",
        },
    })
}

fn event_item(stream: &str, version: u64, event_type: &str) -> EventItem {
    EventItem {
        pk: stream.into(),
        sk: version,
        kind: "event".into(),
        event_type: event_type.into(),
        event_id: Uuid::now_v7().to_string(),
        context: "credits".into(),
        time: "2026-11-21T10:00:00Z".into(),
        payload: json!({ "n": version }).to_string(),
        metadata: json!({ "correlation_id": Uuid::nil(), "causation_id": null, "actor": "t" })
            .to_string(),
        schema: 1,
    }
}

fn image(item: EventItem) -> Value {
    let item: serde_dynamo::Item = serde_dynamo::to_item(item).unwrap();
    serde_json::to_value(item).unwrap()
}

fn head_image(stream: &str) -> Value {
    json!({ "pk": { "S": stream }, "sk": { "N": "0" }, "kind": { "S": "head" }, "version": { "N": "25" }, "state": { "S": "{}" } })
}

/// Events 1..=25 of `stream` and its head, created at `created`; `image_of` may replace
/// an event's image.
fn batch_with(stream: &str, created: i64, image_of: impl Fn(u64) -> Option<Value>) -> Event {
    let mut records: Vec<_> = (1..=25)
        .map(|v| {
            let image =
                image_of(v).unwrap_or_else(|| image(event_item(stream, v, "credits.consumed")));
            record(v, image, created)
        })
        .collect();
    records.push(record(26, head_image(stream), created));
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn batch(stream: &str) -> Event {
    batch_with(stream, now(), |_| None)
}

fn sequence_numbers(seqs: impl IntoIterator<Item = u64>) -> Vec<String> {
    seqs.into_iter().map(|s| format!("{s:021}")).collect()
}

fn handed_back(response: aws_lambda_events::event::streams::DynamoDbEventResponse) -> Vec<String> {
    response
        .batch_item_failures
        .into_iter()
        .filter_map(|f| f.item_identifier)
        .collect()
}

fn suffix() -> String {
    Uuid::now_v7().simple().to_string()[20..].to_owned()
}

async fn queue(sqs: &aws_sdk_sqs::Client, name: &str) -> (String, String) {
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    (url, arn)
}

/// Every message body on the queue, each taken off it.
async fn drain(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return bodies;
        }
        for m in messages {
            bodies.push(m.body.unwrap_or_default());
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

/// A bus whose every `kassa.credits` event lands on a queue.
struct Bus {
    name: String,
    queue: String,
    sqs: aws_sdk_sqs::Client,
    events: aws_sdk_eventbridge::Client,
}

impl Bus {
    async fn create() -> Bus {
        let aws = kassa_runtime::config::aws().await;
        let events = aws_sdk_eventbridge::Client::new(&aws);
        let sqs = aws_sdk_sqs::Client::new(&aws);
        let name = format!("relay-{}", suffix());
        events.create_event_bus().name(&name).send().await.unwrap();
        let (queue, arn) = queue(&sqs, &name).await;
        events
            .put_rule()
            .name("all-credits")
            .event_bus_name(&name)
            .event_pattern(json!({ "source": ["kassa.credits"] }).to_string())
            .send()
            .await
            .unwrap();
        events
            .put_targets()
            .rule("all-credits")
            .event_bus_name(&name)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("q")
                    .arn(arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        Bus {
            name,
            queue,
            sqs,
            events,
        }
    }

    fn relay(&self) -> EventRelay {
        EventRelay::new(self.events.clone(), &self.name)
    }

    /// The versions of `stream` that reached the bus, each exactly once.
    async fn versions(&self, stream: &str) -> BTreeSet<u64> {
        let mut versions = BTreeSet::new();
        for body in drain(&self.sqs, &self.queue).await {
            let event = kassa_runtime::events::decode(&body).unwrap();
            assert_eq!(event.stream.as_str(), stream);
            assert!(
                versions.insert(event.version),
                "version {} twice",
                event.version
            );
        }
        versions
    }
}

async fn sqs() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&kassa_runtime::config::aws().await)
}

#[tokio::test]
async fn events_reach_the_bus_in_chunks_and_heads_stay_home() {
    let bus = Bus::create().await;
    let stream = format!("Wallet#{}", Uuid::now_v7());
    let response = bus.relay().handle(batch(&stream)).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        bus.versions(&stream).await,
        (1..=25).collect(),
        "every event once; the head not at all"
    );
}

#[tokio::test]
async fn what_cannot_be_published_yet_is_handed_back_from_the_first_record_on() {
    let aws = kassa_runtime::config::aws().await;
    let sqs = sqs().await;
    let (failures, _) = queue(&sqs, &format!("relay-failures-{}", suffix())).await;
    let relay = EventRelay::new(aws_sdk_eventbridge::Client::new(&aws), "no-such-bus")
        .with_failure_queue(sqs.clone(), &failures);
    let response = relay.handle(batch("Wallet#x")).await;
    assert_eq!(
        handed_back(response),
        sequence_numbers(1..=26),
        "the first record and everything after it, the head included"
    );
    assert!(
        drain(&sqs, &failures).await.is_empty(),
        "records failing only for moments are left to Lambda's retry, not parked"
    );
}

#[tokio::test]
async fn relaying_stops_at_a_record_that_can_be_neither_published_nor_parked() {
    let bus = Bus::create().await;
    let stream = format!("Wallet#{}", Uuid::now_v7());
    // EventBridge refuses an entry without a detail-type; parking fails too.
    let batch = batch_with(&stream, now(), |v| {
        (v == 13).then(|| image(event_item(&stream, v, "")))
    });
    let relay = bus.relay().with_failure_queue(sqs().await, "no-such-queue");
    let response = relay.handle(batch).await;
    assert_eq!(handed_back(response), sequence_numbers(13..=26));
    let versions = bus.versions(&stream).await;
    assert!(
        (1..=12).all(|v| versions.contains(&v)),
        "what came before is out: {versions:?}"
    );
    assert!(
        versions.iter().all(|v| *v < 21),
        "nothing was published past the chunk that failed: {versions:?}"
    );
}

#[tokio::test]
async fn records_that_will_never_publish_are_parked_with_their_envelope_and_the_rest_flow() {
    let bus = Bus::create().await;
    let sqs = sqs().await;
    let (failures, _) = queue(&sqs, &format!("relay-failures-{}", suffix())).await;
    let stream = format!("Wallet#{}", Uuid::now_v7());
    let refused = event_item(&stream, 13, "");
    let refused_id = refused.event_id.clone();
    let batch = batch_with(&stream, now(), |v| match v {
        // An event item that is not readable as one.
        7 => Some(json!({ "pk": { "S": stream }, "sk": { "N": "7" }, "kind": { "S": "event" } })),
        13 => Some(image(refused.clone())),
        _ => None,
    });
    let relay = bus.relay().with_failure_queue(sqs.clone(), &failures);
    let response = relay.handle(batch).await;
    assert!(handed_back(response).is_empty());
    let expected: BTreeSet<u64> = (1..=25).filter(|v| *v != 7 && *v != 13).collect();
    assert_eq!(bus.versions(&stream).await, expected);

    let parked: Vec<Value> = drain(&sqs, &failures)
        .await
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    assert_eq!(parked.len(), 2, "{parked:#?}");
    let unreadable = parked
        .iter()
        .find(|p| p["sequence_number"] == format!("{:021}", 7))
        .expect("the unreadable record is parked");
    assert_eq!(
        unreadable["image"]["sk"],
        json!({ "N": "7" }),
        "{unreadable}"
    );
    let event = parked
        .iter()
        .find(|p| p["sequence_number"] == format!("{:021}", 13))
        .expect("the refused event is parked");
    assert_eq!(event["event"]["event_id"], refused_id, "{event}");
    assert_eq!(event["event"]["version"], 13);
    assert_eq!(event["event"]["stream"], stream.as_str());
    assert!(event["reason"].as_str().is_some_and(|r| !r.is_empty()));
}

#[tokio::test]
async fn records_failing_for_long_are_parked_and_the_redrive_publishes_them() {
    let bus = Bus::create().await;
    let aws = kassa_runtime::config::aws().await;
    let sqs = sqs().await;
    let (failures, _) = queue(&sqs, &format!("relay-failures-{}", suffix())).await;
    let stream = format!("Wallet#{}", Uuid::now_v7());

    // The bus is unreachable, and these records have been failing for an hour.
    let broken = EventRelay::new(aws_sdk_eventbridge::Client::new(&aws), "no-such-bus")
        .with_failure_queue(sqs.clone(), &failures);
    let response = broken
        .handle(batch_with(&stream, now() - 3_600, |_| None))
        .await;
    assert!(
        handed_back(response).is_empty(),
        "parked rather than blocking the shard"
    );

    let redrive = Redrive::new(
        bus.relay().with_failure_queue(sqs.clone(), &failures),
        sqs.clone(),
        aws_sdk_dynamodbstreams::Client::new(&aws),
        &failures,
    );
    let summary = redrive.run().await.unwrap();
    assert_eq!((summary.republished, summary.left), (25, 0), "{summary:?}");
    assert_eq!(bus.versions(&stream).await, (1..=25).collect());
    assert!(drain(&sqs, &failures).await.is_empty());
}

#[tokio::test]
async fn the_redrive_publishes_a_batch_the_stream_mapping_gave_up_on() {
    let aws = kassa_runtime::config::aws().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let streams = aws_sdk_dynamodbstreams::Client::new(&aws);
    let template = kassa_local::template::Template::load(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../template.yaml"),
    )
    .unwrap();
    let names =
        kassa_local::resources::tables_only(&template, &dynamodb, &format!("relay-{}", suffix()))
            .await
            .unwrap();
    let (table, stream_arn) = (
        &names.physical["EventsTable"],
        &names.stream_arns["EventsTable"],
    );
    let stream = format!("Wallet#{}", Uuid::now_v7());
    for v in 1..=3 {
        dynamodb
            .put_item()
            .table_name(table)
            .set_item(Some(
                serde_dynamo::to_item(event_item(&stream, v, "credits.consumed")).unwrap(),
            ))
            .send()
            .await
            .unwrap();
    }

    // Where the records sit in the stream, as Lambda's on-failure record names them.
    let shard = streams
        .describe_stream()
        .stream_arn(stream_arn)
        .send()
        .await
        .unwrap()
        .stream_description
        .unwrap()
        .shards
        .unwrap()
        .remove(0)
        .shard_id
        .unwrap();
    let iterator = streams
        .get_shard_iterator()
        .stream_arn(stream_arn)
        .shard_id(&shard)
        .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let records = streams
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .unwrap()
        .records
        .unwrap();
    assert_eq!(records.len(), 3);
    let seq = |i: usize| {
        records[i]
            .dynamodb
            .as_ref()
            .unwrap()
            .sequence_number
            .clone()
            .unwrap()
    };
    let on_failure = json!({
        "requestContext": { "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 11 },
        "responseContext": { "statusCode": 200, "functionError": "Unhandled" },
        "version": "1.0",
        "timestamp": "2026-11-23T10:00:00.000Z",
        "DDBStreamBatchInfo": {
            "shardId": shard,
            "startSequenceNumber": seq(1),
            "endSequenceNumber": seq(2),
            "approximateArrivalOfFirstRecord": "2026-11-23T09:00:00Z",
            "approximateArrivalOfLastRecord": "2026-11-23T09:00:00Z",
            "batchSize": 2,
            "streamArn": stream_arn,
        },
    });
    let sqs = sqs().await;
    let (failures, _) = queue(&sqs, &format!("relay-failures-{}", suffix())).await;
    sqs.send_message()
        .queue_url(&failures)
        .message_body(on_failure.to_string())
        .send()
        .await
        .unwrap();

    let bus = Bus::create().await;
    let redrive = Redrive::new(
        bus.relay().with_failure_queue(sqs.clone(), &failures),
        sqs.clone(),
        streams,
        &failures,
    );
    let summary = redrive.run().await.unwrap();
    assert_eq!((summary.republished, summary.left), (2, 0), "{summary:?}");
    assert_eq!(
        bus.versions(&stream).await,
        BTreeSet::from([2, 3]),
        "the range the mapping gave up on, and only it"
    );
    assert!(drain(&sqs, &failures).await.is_empty());
}

mod carried {
    //! Events carried by hot counter heads: persisted once, published, never twice from
    //! the persisted items, whatever the redelivery.

    use super::*;
    use kassa_domain::credits::CreditEvent;
    use kassa_store::{Carried, EventStore, Metadata, StreamId};

    /// Head images of `stream` after writes 1..=writes, each carrying one debit (and, every
    /// third write, a low-balance event too), as consume-credits' steps leave them.
    fn images(stream: &str, writes: u64) -> (Vec<Value>, Vec<Carried>) {
        let (mut images, mut all, mut version) = (Vec::new(), Vec::new(), 0);
        let metadata = Metadata::origin(Uuid::now_v7(), "alice");
        for w in 1..=writes {
            let balance = 10_000 - w as i64;
            let mut carried = vec![Carried::new(
                &CreditEvent::Consumed {
                    workspace_id: Uuid::nil(),
                    consumption_id: Uuid::now_v7(),
                    feature: "api.call".into(),
                    quantity: 1,
                    credits: 1,
                    balance_after: 0,
                },
                &metadata,
                time::OffsetDateTime::now_utc(),
                &["balance_after"],
            )];
            if w % 3 == 0 {
                carried.push(Carried::new(
                    &CreditEvent::BalanceLow {
                        workspace_id: Uuid::nil(),
                        balance,
                        threshold: 10_000,
                    },
                    &metadata,
                    time::OffsetDateTime::now_utc(),
                    &["balance_after"],
                ));
            }
            version += carried.len() as u64;
            images.push(json!({
                "pk": { "S": stream }, "sk": { "N": "0" }, "kind": { "S": "head" },
                "version": { "N": version.to_string() }, "counter": { "N": balance.to_string() },
                "schema": { "N": "2" }, "state": { "S": "{}" },
                "carried": { "S": serde_json::to_string(&carried).unwrap() },
            }));
            all.extend(carried);
        }
        (images, all)
    }

    fn modified(records: &[(u64, Value)]) -> Event {
        let records: Vec<Value> = records
            .iter()
            .map(|(seq, image)| {
                let mut r = record(*seq, image.clone(), now());
                r["eventName"] = json!("MODIFY");
                r
            })
            .collect();
        serde_json::from_value(json!({ "Records": records })).unwrap()
    }

    async fn store() -> EventStore {
        let (events, _) = common::tables().await;
        EventStore::new(common::dynamodb().await, events)
    }

    #[tokio::test]
    async fn carried_events_are_persisted_once_and_published_whatever_the_redelivery() {
        let bus = Bus::create().await;
        let store = store().await;
        let stream = format!("Wallet#{}", Uuid::now_v7());
        let (images, carried) = images(&stream, 20);
        let total = carried.len() as u64;
        let records: Vec<(u64, Value)> = images
            .into_iter()
            .enumerate()
            .map(|(i, im)| (i as u64 + 1, im))
            .collect();
        let relay = bus.relay().persisting(store.clone());

        let response = relay.handle(modified(&records)).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(bus.versions(&stream).await, (1..=total).collect());

        // The same batch again, then its two halves as two shards' worth of work, the
        // second half first and both at once.
        relay.handle(modified(&records)).await;
        let (first, second) = records.split_at(records.len() / 2);
        let other_shard = bus.relay().persisting(store.clone());
        let (a, b) = tokio::join!(
            relay.handle(modified(second)),
            other_shard.handle(modified(first)),
        );
        assert!(a.batch_item_failures.is_empty() && b.batch_item_failures.is_empty());

        let history = store
            .read_stream(
                &StreamId::new("Wallet", stream.split_once('#').unwrap().1),
                100,
            )
            .await
            .unwrap();
        assert_eq!(
            history.iter().map(|e| e.version).collect::<Vec<_>>(),
            (1..=total).collect::<Vec<_>>(),
            "each event once, in version order"
        );
        for (recorded, carried) in history.iter().zip(&carried) {
            assert_eq!(recorded.event_id, carried.event_id);
        }
        // Consumed events take the balance the write left.
        let first_consumed = history[0].decode::<CreditEvent>().unwrap();
        assert!(matches!(
            first_consumed,
            CreditEvent::Consumed {
                balance_after: 9_999,
                ..
            }
        ));

        // The persisted items come down the stream too: they are not published again.
        drain(&bus.sqs, &bus.queue).await;
        let persisted: Vec<(u64, Value)> = history
            .iter()
            .map(|e| {
                let mut item: serde_dynamo::Item =
                    serde_dynamo::to_item(kassa_store::EventItem::from_recorded(e).unwrap())
                        .unwrap();
                item.insert(
                    kassa_store::counter::CARRIED_BY.into(),
                    serde_dynamo::AttributeValue::S("head".into()),
                );
                (e.version, serde_json::to_value(item).unwrap())
            })
            .collect();
        let events: Vec<Value> = persisted
            .iter()
            .map(|(seq, image)| record(*seq, image.clone(), now()))
            .collect();
        let inserted: Event = serde_json::from_value(json!({ "Records": events })).unwrap();
        assert!(relay.handle(inserted).await.batch_item_failures.is_empty());
        assert!(
            bus.versions(&stream).await.is_empty(),
            "persisted carried events are not published a second time"
        );
    }

    #[tokio::test]
    async fn a_relay_that_cannot_persist_hands_the_carrying_record_back() {
        let bus = Bus::create().await;
        let stream = format!("Wallet#{}", Uuid::now_v7());
        let (images, _) = images(&stream, 3);
        let records: Vec<(u64, Value)> = images
            .into_iter()
            .enumerate()
            .map(|(i, im)| (i as u64 + 1, im))
            .collect();
        // No store to persist to: nothing carried may be published.
        let response = bus.relay().handle(modified(&records)).await;
        assert_eq!(handed_back(response), sequence_numbers(1..=3));
        assert!(bus.versions(&stream).await.is_empty());
    }
}
