//! The command kernel and the inbox against DynamoDB Local and moto's SQS: heads rebuilt
//! from their events, commands across streams, retries under contention, poison messages
//! parked in the dead-letter queue with their reason.

mod common;

use aws_lambda_events::event::sqs::SqsEvent;
use kassa_commerce::{Clock, Kernel, SystemClock};
use kassa_domain::credits::{AllocationReason, CreditCommand, CreditEvent, Wallet};
use kassa_domain::tier::TierId;
use kassa_runtime::effect::EffectError;
use kassa_runtime::inbox::{Inbox, POISON_REASON};
use kassa_store::{stream_of, EventStore, Idempotency, Metadata};
use std::sync::Arc;
use uuid::Uuid;

fn meta() -> Metadata {
    Metadata::origin(Uuid::now_v7(), "test")
}

fn kernel(store: &EventStore) -> Kernel {
    Kernel::new(store.clone(), Arc::new(SystemClock))
}

fn allocate(id: &str, credits: u64) -> CreditCommand {
    CreditCommand::Allocate {
        allocation_id: id.into(),
        base: credits,
        bonus: 0,
        reason: AllocationReason::Purchase,
    }
}

/// Opens a wallet and gives it `credits` through the kernel.
async fn open_wallet(kernel: &Kernel, credits: u64) -> Uuid {
    let workspace = Uuid::now_v7();
    kernel
        .run(meta(), |tx| {
            Box::pin(async move {
                let mut wallet = tx.load::<Wallet>(&workspace).await?;
                tx.decide(
                    &mut wallet,
                    CreditCommand::Open {
                        workspace_id: workspace,
                        tier: TierId::Free,
                    },
                )?;
                // A second decision on the same stream in the same commit.
                tx.decide(&mut wallet, allocate("first", credits))?;
                Ok(())
            })
        })
        .await
        .expect("the wallet opens");
    workspace
}

/// What the relay does for a counter head: persists the events its last write carried.
async fn persist_carried(store: &EventStore, workspace: Uuid) -> Vec<String> {
    let item = store
        .client()
        .get_item()
        .table_name(store.table())
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("Wallet#{workspace}")),
        )
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::N("0".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let image = kassa_store::counter::HeadImage {
        pk: format!("Wallet#{workspace}"),
        kind: "head".into(),
        version: item["version"].as_n().unwrap().parse().unwrap(),
        counter: Some(item["counter"].as_n().unwrap().parse().unwrap()),
        carried: item.get("carried").map(|c| c.as_s().unwrap().clone()),
    };
    let events = kassa_store::counter::derive(&image).unwrap();
    for outcome in store.persist(&events).await {
        outcome.unwrap();
    }
    events.iter().map(|e| e.event_type.clone()).collect()
}

async fn balance(kernel: &Kernel, workspace: Uuid) -> (u64, i64) {
    let loaded = kernel
        .store()
        .load_aggregate::<Wallet>(&workspace)
        .await
        .unwrap();
    (loaded.version, loaded.state.expect("a wallet").balance)
}

#[tokio::test]
async fn two_decisions_on_one_stream_commit_as_one_append() {
    let store = common::event_store().await;
    let kernel = kernel(&store);
    let workspace = open_wallet(&kernel, 300).await;
    assert_eq!(balance(&kernel, workspace).await, (2, 300));
    // The wallet's head carries both events of its one write.
    assert_eq!(
        persist_carried(&store, workspace).await,
        ["credits.wallet_opened", "credits.allocated"]
    );
    let events = store
        .read_stream(&stream_of::<Wallet>(&workspace), 100)
        .await
        .unwrap();
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["credits.wallet_opened", "credits.allocated"]);
    assert!(events.iter().all(|e| e.schema == 1));
}

#[tokio::test]
async fn a_head_that_does_not_decode_is_rebuilt_from_its_events() {
    let store = common::event_store().await;
    let kernel = kernel(&store);
    let workspace = open_wallet(&kernel, 300).await;
    persist_carried(&store, workspace).await;
    let stream = stream_of::<Wallet>(&workspace);
    // An allocation written by an older shape of the code: the head's state is not a
    // wallet any more, and its schema is not the current one.
    let mut commit = store.commit_builder(meta(), time::OffsetDateTime::now_utc());
    commit
        .append(
            &stream,
            2,
            &[CreditEvent::Allocated {
                workspace_id: workspace,
                allocation_id: "second".into(),
                reason: AllocationReason::Purchase,
                base: 50,
                bonus: 0,
                total: 50,
                balance_after: 350,
            }],
            &serde_json::json!({ "legacy": true }),
        )
        .unwrap();
    store.commit(commit).await.unwrap();

    assert_eq!(balance(&kernel, workspace).await, (3, 350));
    // The next command decides on the rebuilt state and writes a current head.
    kernel
        .run(meta(), |tx| {
            Box::pin(async move {
                let mut wallet = tx.load::<Wallet>(&workspace).await?;
                tx.decide(&mut wallet, allocate("third", 25))?;
                Ok(())
            })
        })
        .await
        .unwrap();
    let head = store.load(&stream).await.unwrap().unwrap();
    assert_eq!(head.version, 4);
    assert_eq!(head.state::<Wallet>().unwrap().balance, 375);
}

#[tokio::test]
async fn concurrent_commands_on_one_stream_all_commit_through_retries() {
    let store = common::event_store().await;
    let kernel = kernel(&store);
    let workspace = open_wallet(&kernel, 1).await;
    let runs = (0..16).map(|n| {
        let kernel = kernel.clone();
        tokio::spawn(async move {
            let id = format!("top-up-{n}");
            let id = &id;
            kernel
                .run(meta(), |tx| {
                    Box::pin(async move {
                        let mut wallet = tx.load::<Wallet>(&workspace).await?;
                        tx.decide(&mut wallet, allocate(id, 10))?;
                        Ok(())
                    })
                })
                .await
                .map(|done| done.recorded.len())
        })
    });
    let mut recorded = 0;
    for run in runs {
        recorded += run
            .await
            .unwrap()
            .expect("a conflict is retried, not answered");
    }
    assert_eq!(recorded, 16);
    assert_eq!(balance(&kernel, workspace).await, (18, 161));
}

#[tokio::test]
async fn a_refusal_writes_nothing_and_is_typed() {
    let store = common::event_store().await;
    let kernel = kernel(&store);
    let workspace = open_wallet(&kernel, 5).await;
    let outcome = kernel
        .run(meta(), |tx| {
            Box::pin(async move {
                let mut wallet = tx.load::<Wallet>(&workspace).await?;
                tx.decide(&mut wallet, allocate("empty", 0))?;
                Ok(())
            })
        })
        .await;
    assert!(matches!(
        outcome,
        Err(kassa_commerce::Fail::Refused(
            kassa_domain::credits::CreditError::EmptyAllocation
        ))
    ));
    assert_eq!(balance(&kernel, workspace).await, (2, 5));
}

async fn sqs_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(format!("{name}-{}", Uuid::now_v7().simple()))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

fn batch(bodies: &[(&str, String)]) -> SqsEvent {
    let records: Vec<_> = bodies
        .iter()
        .map(|(id, body)| serde_json::json!({ "messageId": id, "body": body }))
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
}

fn envelope(event_type: &str) -> String {
    serde_json::json!({
        "version": "0", "id": Uuid::now_v7(), "detail-type": event_type,
        "source": "kassa.credits", "account": "123456789012", "time": "2026-11-23T10:00:00Z",
        "region": "us-east-1", "resources": [],
        "detail": {
            "event_id": Uuid::now_v7(), "stream": "Wallet#x", "version": 1, "type": event_type,
            "context": "credits", "time": "2026-11-23T10:00:00Z", "payload": {},
            "metadata": { "correlation_id": Uuid::now_v7(), "causation_id": null, "actor": "test" }
        }
    })
    .to_string()
}

#[tokio::test]
async fn poison_is_parked_in_the_dead_letter_queue_with_its_reason_and_retries_are_reported() {
    let aws = kassa_runtime::config::aws().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let dead_letters = sqs_queue(&sqs, "kernel-dlq").await;
    let (_, state_table) = common::tables().await;
    let inbox = Inbox::new(
        Idempotency::new(common::dynamodb().await, &state_table, "kernel-test"),
        Some((sqs.clone(), dead_letters.clone())),
        Arc::new(SystemClock) as Arc<dyn Clock>,
    );
    let response = inbox
        .each_once(
            batch(&[
                ("garbled", "not an event".into()),
                ("refused", envelope("thing.refused")),
                ("busy", envelope("thing.busy")),
                ("fine", envelope("thing.fine")),
            ]),
            |event| async move {
                match event.event_type.as_str() {
                    "thing.refused" => Err(EffectError::poison("the provider refused it")),
                    "thing.busy" => Err(EffectError::retry("the store is busy")),
                    _ => Ok(serde_json::json!({})),
                }
            },
        )
        .await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        ["busy"],
        "only the retryable failure is redelivered"
    );

    let parked = sqs
        .receive_message()
        .queue_url(&dead_letters)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    let mut reasons: Vec<_> = parked
        .iter()
        .map(|m| {
            m.message_attributes.as_ref().unwrap()[POISON_REASON]
                .string_value()
                .unwrap()
                .to_owned()
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons.len(),
        2,
        "both poison messages are parked: {reasons:?}"
    );
    assert!(reasons[0].contains("does not decode"), "{reasons:?}");
    assert!(
        reasons[1].contains("the provider refused it"),
        "{reasons:?}"
    );
}
