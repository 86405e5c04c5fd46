//! The outbox relay against moto's EventBridge and SQS: chunks of at most 10 entries, only
//! event items published, and what cannot be published reported by sequence number.

use aws_lambda_events::event::dynamodb::Event;
use kassa_event_relay::EventRelay;
use kassa_store::EventItem;
use serde_json::json;
use std::collections::HashSet;
use uuid::Uuid;

fn record(seq: u64, image: serde_json::Value) -> serde_json::Value {
    json!({
        "eventID": format!("e{seq}"), "eventName": "INSERT", "eventVersion": "1.1",
        "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x",
        "dynamodb": {
            "Keys": {}, "NewImage": image, "SequenceNumber": format!("{seq:021}"),
            "SizeBytes": 100, "StreamViewType": "NEW_IMAGE",
        },
    })
}

fn event_image(stream: &str, version: u64) -> serde_json::Value {
    let item = EventItem {
        pk: stream.into(),
        sk: version,
        kind: "event".into(),
        event_type: "credits.consumed".into(),
        event_id: Uuid::now_v7().to_string(),
        context: "credits".into(),
        time: "2026-11-21T10:00:00Z".into(),
        payload: json!({ "n": version }).to_string(),
        metadata: json!({ "correlation_id": Uuid::nil(), "causation_id": null, "actor": "t" })
            .to_string(),
        schema: 1,
    };
    let item: serde_dynamo::Item = serde_dynamo::to_item(item).unwrap();
    serde_json::to_value(item).unwrap()
}

fn head_image(stream: &str) -> serde_json::Value {
    json!({ "pk": { "S": stream }, "sk": { "N": "0" }, "kind": { "S": "head" }, "version": { "N": "25" }, "state": { "S": "{}" } })
}

fn batch(stream: &str) -> Event {
    let mut records: Vec<_> = (1..=25)
        .map(|v| record(v, event_image(stream, v)))
        .collect();
    records.push(record(26, head_image(stream)));
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

#[tokio::test]
async fn events_reach_the_bus_in_chunks_and_heads_stay_home() {
    let aws = kassa_runtime::config::aws().await;
    let events = aws_sdk_eventbridge::Client::new(&aws);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let suffix = &Uuid::now_v7().simple().to_string()[24..];
    let bus = format!("relay-{suffix}");
    events.create_event_bus().name(&bus).send().await.unwrap();
    let queue = sqs
        .create_queue()
        .queue_name(format!("relay-{suffix}"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    events
        .put_rule()
        .name("all-credits")
        .event_bus_name(&bus)
        .event_pattern(json!({ "source": ["kassa.credits"] }).to_string())
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("all-credits")
        .event_bus_name(&bus)
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

    let relay = EventRelay::new(events.clone(), &bus);
    let stream = format!("Wallet#{}", Uuid::now_v7());
    let response = relay.handle(batch(&stream)).await;
    assert!(response.batch_item_failures.is_empty());

    let mut versions = HashSet::new();
    for _ in 0..20 {
        let out = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for m in out.messages.unwrap_or_default() {
            let event = kassa_runtime::events::decode(m.body.as_deref().unwrap()).unwrap();
            assert_eq!(event.stream.as_str(), stream);
            assert_eq!(event.event_type, "credits.consumed");
            assert!(
                versions.insert(event.version),
                "version {} twice",
                event.version
            );
            sqs.delete_message()
                .queue_url(&queue)
                .receipt_handle(m.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
        }
        if versions.len() == 25 {
            break;
        }
    }
    assert_eq!(
        versions,
        (1..=25).collect::<HashSet<u64>>(),
        "every event once; the head not at all"
    );
}

#[tokio::test]
async fn what_cannot_be_published_is_reported_by_sequence_number() {
    let aws = kassa_runtime::config::aws().await;
    let relay = EventRelay::new(aws_sdk_eventbridge::Client::new(&aws), "no-such-bus");
    let response = relay.handle(batch("Wallet#x")).await;
    let failed: Vec<_> = response
        .batch_item_failures
        .into_iter()
        .filter_map(|f| f.item_identifier)
        .collect();
    let expected: Vec<_> = (1..=25u64).map(|s| format!("{s:021}")).collect();
    assert_eq!(
        failed, expected,
        "every event, and not the head, is handed back"
    );
}
