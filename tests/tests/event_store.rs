//! The event store against DynamoDB Local.

mod common;

use kassa_domain::credits::{AllocationReason, CreditEvent};
use kassa_store::{EventStore, Metadata, StoreError, StreamId};
use uuid::Uuid;

fn allocated(n: u64) -> CreditEvent {
    CreditEvent::Allocated {
        workspace_id: Uuid::nil(),
        allocation_id: format!("a{n}"),
        reason: AllocationReason::Purchase,
        base: 1,
        bonus: 0,
        total: 1,
        balance_after: n as i64,
    }
}

fn meta() -> Metadata {
    Metadata::origin(Uuid::now_v7(), "test")
}

/// Appends `count` events in commits of 99 events plus the head (100 items).
async fn fill(store: &EventStore, stream: &StreamId, count: u64) {
    let mut version = 0;
    while version < count {
        let n = (count - version).min(99);
        let events: Vec<_> = (version + 1..=version + n).map(allocated).collect();
        let mut commit = store.commit_builder(meta(), time::OffsetDateTime::now_utc());
        commit
            .append(
                stream,
                version,
                &events,
                &serde_json::json!({ "n": version + n }),
            )
            .unwrap();
        assert_eq!(commit.len(), 100.min(n as usize + 1));
        store.commit(commit).await.unwrap();
        version += n;
    }
}

#[tokio::test]
async fn two_concurrent_appends_at_one_version_have_one_winner() {
    let store = common::event_store().await;
    for round in 0..20 {
        let stream = StreamId::new("Test", Uuid::now_v7());
        fill(&store, &stream, 3).await;
        let attempt = |tag: u64| {
            let (store, stream) = (store.clone(), stream.clone());
            async move {
                let mut commit = store.commit_builder(meta(), time::OffsetDateTime::now_utc());
                commit
                    .append(
                        &stream,
                        3,
                        &[allocated(100 + tag)],
                        &serde_json::json!({ "by": tag }),
                    )
                    .unwrap();
                store.commit(commit).await
            }
        };
        let (a, b) = tokio::join!(attempt(1), attempt(2));
        assert_eq!(
            a.is_ok() as u8 + b.is_ok() as u8,
            1,
            "round {round}: {a:?} {b:?}"
        );
        let loser = if a.is_err() { a } else { b };
        assert!(
            matches!(loser, Err(StoreError::Conflict { .. })),
            "{loser:?}"
        );
        let events = store.read_stream(&stream, 100).await.unwrap();
        assert_eq!(events.len(), 4, "one event appended, not two");
        assert_eq!(store.load(&stream).await.unwrap().unwrap().version, 4);
    }
}

#[tokio::test]
async fn a_2500_event_stream_reads_back_whole_and_in_order() {
    let store = common::event_store().await;
    let stream = StreamId::new("Test", Uuid::now_v7());
    fill(&store, &stream, 2_500).await;
    // Pages of 100 force the read to follow LastEvaluatedKey 25 times.
    let events = store.read_stream(&stream, 100).await.unwrap();
    assert_eq!(events.len(), 2_500);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.version, i as u64 + 1);
        assert_eq!(e.decode::<CreditEvent>().unwrap(), allocated(i as u64 + 1));
    }
}

#[tokio::test]
async fn loading_reads_one_item_whatever_the_history() {
    let store = common::event_store().await;
    let short = StreamId::new("Test", Uuid::now_v7());
    let long = StreamId::new("Test", Uuid::now_v7());
    fill(&store, &short, 10).await;
    fill(&store, &long, 10_000).await;

    let before = store.items_read();
    let head = store.load(&short).await.unwrap().unwrap();
    let short_reads = store.items_read() - before;
    assert_eq!(head.version, 10);

    let before = store.items_read();
    let head = store.load(&long).await.unwrap().unwrap();
    let long_reads = store.items_read() - before;
    assert_eq!(head.version, 10_000);
    assert_eq!(head.state, serde_json::json!({ "n": 10_000 }));

    assert_eq!(short_reads, 1);
    assert!(
        long_reads <= short_reads,
        "{long_reads} reads for 10,000 events vs {short_reads} for 10"
    );
}

#[tokio::test]
async fn a_commit_over_100_items_is_refused_before_it_is_sent() {
    let store = common::event_store().await;
    let stream = StreamId::new("Test", Uuid::now_v7());
    let events: Vec<_> = (1..=100).map(allocated).collect();
    let mut commit = store.commit_builder(meta(), time::OffsetDateTime::now_utc());
    commit
        .append(&stream, 0, &events, &serde_json::json!({}))
        .unwrap();
    assert!(matches!(
        store.commit(commit).await,
        Err(StoreError::TooManyItems(101))
    ));
    assert!(store.load(&stream).await.unwrap().is_none());
}
