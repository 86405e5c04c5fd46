//! The wallet as a hot counter: debits raced by many consumers through the local stack
//! (HTTP → consume-credits → one conditional UpdateItem → stream → relay → history and
//! bus), the overage floor, a collaborator removed mid-race, a head whose size does not
//! grow with history, and a head of the old shape upgraded on first use.

mod common;

use common::{eventually, Api};
use kassa_domain::credits::{AllocationReason, CreditCommand, CreditEvent, Wallet};
use kassa_domain::tier::TierId;
use kassa_store::{Bounds, Carried, EventStore, Metadata, RecordedEvent, Step, Stepped, StreamId};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use uuid::Uuid;

async fn store(api: &Api) -> EventStore {
    EventStore::new(common::dynamodb().await, api.stack.table("EventsTable"))
}

async fn version(api: &Api, ws: &str) -> u64 {
    let b = api
        .get(format!("/workspaces/{ws}/credits/balance"), "alice")
        .await;
    b.body["version"].as_u64().unwrap()
}

async fn balance(api: &Api, ws: &str) -> i64 {
    let b = api
        .get(format!("/workspaces/{ws}/credits/balance"), "alice")
        .await;
    b.body["balance"].as_i64().unwrap()
}

/// The wallet's persisted history once it holds every event the head counts. The relay
/// persists debits' events as it publishes them; after a burst of thousands that takes a
/// while on a small machine, so this waits longer than `eventually`.
async fn history(api: &Api, ws: &str) -> Vec<RecordedEvent> {
    let (store, version) = (store(api).await, version(api, ws).await);
    let started = Instant::now();
    loop {
        let events = store
            .read_stream(&StreamId::new("Wallet", ws), 1_000)
            .await
            .unwrap();
        if events.len() as u64 == version {
            println!(
                "history of {version} events persisted {:.1} s after the last debit",
                started.elapsed().as_secs_f64()
            );
            return events;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(240),
            "{} of {version} events persisted after 240 s",
            events.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

fn decoded(events: &[RecordedEvent]) -> Vec<CreditEvent> {
    events.iter().map(|e| e.decode().unwrap()).collect()
}

/// A queue receiving every `kassa.credits` event of the stack's bus.
struct Tap {
    sqs: aws_sdk_sqs::Client,
    url: String,
}

impl Tap {
    async fn on(api: &Api) -> Tap {
        let aws = kassa_runtime::config::aws().await;
        let (sqs, events) = (
            aws_sdk_sqs::Client::new(&aws),
            aws_sdk_eventbridge::Client::new(&aws),
        );
        let name = format!("tap-{}", &Uuid::now_v7().simple().to_string()[20..]);
        let url = sqs
            .create_queue()
            .queue_name(&name)
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
        let bus = api.stack.table("EventBus").to_owned();
        assert!(!bus.is_empty(), "the stack has a bus");
        events
            .put_rule()
            .name(&name)
            .event_bus_name(&bus)
            .event_pattern(json!({ "source": ["kassa.credits"] }).to_string())
            .send()
            .await
            .unwrap();
        events
            .put_targets()
            .rule(&name)
            .event_bus_name(&bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("tap")
                    .arn(arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        Tap { sqs, url }
    }

    /// Every event that reached the bus, by id, until `done` says enough arrived and one
    /// more second brings nothing new. Panics on an event id seen twice.
    async fn collect(
        &self,
        done: impl Fn(&BTreeMap<Uuid, RecordedEvent>) -> bool,
    ) -> BTreeMap<Uuid, RecordedEvent> {
        let mut seen = BTreeMap::new();
        let deadline = Instant::now() + std::time::Duration::from_secs(240);
        let mut quiet = 0;
        while quiet < 2 && Instant::now() < deadline {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() && done(&seen) {
                quiet += 1;
            }
            for m in messages {
                let event = kassa_runtime::events::decode(m.body().unwrap()).unwrap();
                assert!(
                    seen.insert(event.event_id, event.clone()).is_none(),
                    "{} {} reached the bus twice",
                    event.event_type,
                    event.event_id
                );
                self.sqs
                    .delete_message()
                    .queue_url(&self.url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        seen
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_racing_debits_each_record_one_event_and_the_floor_holds() {
    let api = Arc::new(Api::start().await);
    let tap = Tap::on(&api).await;
    let (ws, start) = api.workspace("alice", "free").await;
    let policy = TierId::Free.policy();
    let (next, ok, refused, conflicts) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let answered = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..64 {
        let (api, ws, next, answered) = (api.clone(), ws.clone(), next.clone(), answered.clone());
        let (ok, refused, conflicts) = (ok.clone(), refused.clone(), conflicts.clone());
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::SeqCst) < 2_000 {
                let a = api
                    .post(
                        format!("/workspaces/{ws}/credits/consume"),
                        "alice",
                        json!({ "feature": "api.call", "quantity": 1 }),
                    )
                    .await;
                match a.status {
                    200 => {
                        ok.fetch_add(1, Ordering::SeqCst);
                        answered.lock().unwrap().push(a.body);
                    }
                    402 => {
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                    409 => {
                        conflicts.fetch_add(1, Ordering::SeqCst);
                    }
                    other => panic!("unexpected {other}: {:?}", a.body),
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let (ok, refused, conflicts) = (
        ok.load(Ordering::SeqCst),
        refused.load(Ordering::SeqCst),
        conflicts.load(Ordering::SeqCst),
    );
    println!(
        "2,000 racing debits: {ok} consumed, {refused} refused for credit, {conflicts} gave up"
    );
    assert_eq!(ok + refused + conflicts, 2_000);
    assert_eq!(conflicts, 0, "a debit never gives up on contention alone");
    // 1 credit each: every credit there was is spent, and not one more.
    assert_eq!(ok as i64, start);
    assert_eq!(balance(&api, &ws).await, 0);

    // Each answer names a balance of its own: the debits were applied one after another.
    let answered = answered.lock().unwrap().clone();
    let balances: HashSet<i64> = answered
        .iter()
        .map(|b| b["balance"].as_i64().unwrap())
        .collect();
    assert_eq!(balances, (0..start).collect::<HashSet<_>>());
    let low: Vec<_> = answered
        .iter()
        .filter(|b| b["balance_low"] == true)
        .collect();
    assert_eq!(low.len(), 1, "one answer reports the crossing");

    let history = history(&api, &ws).await;
    assert_eq!(
        history.iter().map(|e| e.version).collect::<Vec<_>>(),
        (1..=history.len() as u64).collect::<Vec<_>>(),
        "one log, no gaps"
    );
    let events = decoded(&history);
    let consumed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            CreditEvent::Consumed {
                consumption_id,
                balance_after,
                ..
            } => Some((*consumption_id, *balance_after)),
            _ => None,
        })
        .collect();
    assert_eq!(
        consumed.len() as u64,
        ok,
        "one credits.consumed per success"
    );
    let ids: HashSet<_> = consumed.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len() as u64, ok);
    let answered_ids: HashSet<Uuid> = answered
        .iter()
        .map(|b| b["consumption_id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        ids, answered_ids,
        "the history holds exactly the answered debits"
    );
    assert!(consumed.iter().all(|(_, b)| *b >= 0), "never below zero");
    let lows: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, CreditEvent::BalanceLow { .. }))
        .collect();
    assert_eq!(
        lows.len(),
        1,
        "one credits.balance_low for the one crossing"
    );
    assert!(matches!(
        lows[0],
        CreditEvent::BalanceLow { balance, .. } if *balance == policy.low_balance_threshold as i64 - 1
    ));

    // And on the bus: each event once.
    let wallet = format!("Wallet#{ws}");
    let on_bus = tap
        .collect(|seen| {
            seen.values()
                .filter(|e| e.stream.as_str() == wallet && e.event_type == "credits.consumed")
                .count() as u64
                >= ok
        })
        .await;
    let bus_consumed: HashSet<Uuid> = on_bus
        .values()
        .filter(|e| e.stream.as_str() == wallet && e.event_type == "credits.consumed")
        .map(|e| e.event_id)
        .collect();
    let history_consumed: HashSet<Uuid> = history
        .iter()
        .filter(|e| e.event_type == "credits.consumed")
        .map(|e| e.event_id)
        .collect();
    assert_eq!(bus_consumed, history_consumed);
    assert_eq!(
        on_bus
            .values()
            .filter(|e| e.stream.as_str() == wallet && e.event_type == "credits.balance_low")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_overage_wallet_raced_across_its_floor_bills_exactly_the_uncovered_part() {
    let api = Arc::new(Api::start().await);
    let (ws, start) = api.workspace("alice", "pro").await;
    let policy = TierId::Pro.policy();
    let allowance = policy.overage_allowance as i64;
    const DEBIT: i64 = 700;
    let attempts = ((start + allowance) / DEBIT + 40) as u64;
    let (next, ok) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut workers = Vec::new();
    for _ in 0..64 {
        let (api, ws, next, ok) = (api.clone(), ws.clone(), next.clone(), ok.clone());
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::SeqCst) < attempts {
                let a = api
                    .post(
                        format!("/workspaces/{ws}/credits/consume"),
                        "alice",
                        json!({ "feature": "api.call", "quantity": DEBIT }),
                    )
                    .await;
                match a.status {
                    200 => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    402 => assert_eq!(a.body["code"], "insufficient_credits"),
                    other => panic!("unexpected {other}: {:?}", a.body),
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let ok = ok.load(Ordering::SeqCst) as i64;
    let end = balance(&api, &ws).await;
    assert_eq!(end, start - DEBIT * ok);
    assert!(end >= -allowance, "never below the allowance: {end}");
    assert!(
        end - DEBIT < -allowance,
        "refused only when it did not fit: {end}"
    );

    let events = decoded(&history(&api, &ws).await);
    let overage: u64 = events
        .iter()
        .filter_map(|e| match e {
            CreditEvent::Overage {
                overage_credits, ..
            } => Some(*overage_credits),
            _ => None,
        })
        .sum();
    assert_eq!(
        overage as i64, -end,
        "credits.overage sums to the uncovered part"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, CreditEvent::BalanceLow { .. }))
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_collaborator_removed_mid_race_debits_nothing_after_the_removal() {
    let api = Arc::new(Api::start().await);
    let (ws, _) = api.workspace("alice", "pro").await;
    let added = api
        .post(
            format!("/workspaces/{ws}/collaborators"),
            "alice",
            json!({ "user_id": "bob" }),
        )
        .await;
    assert_eq!(added.status, 201, "{:?}", added.body);

    let removed_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..16 {
        let (api, ws, removed_at, outcomes) = (
            api.clone(),
            ws.clone(),
            removed_at.clone(),
            outcomes.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut after_removal = 0;
            while after_removal < 10 {
                let started = Instant::now();
                let a = api
                    .post(
                        format!("/workspaces/{ws}/credits/consume"),
                        "bob",
                        json!({ "feature": "api.call", "quantity": 1 }),
                    )
                    .await;
                if removed_at.lock().unwrap().is_some_and(|r| started > r) {
                    after_removal += 1;
                }
                outcomes.lock().unwrap().push((started, a.status));
            }
        }));
    }
    // Let bob's debits run, then remove him while they still do.
    eventually("some of bob's debits", || async {
        (outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| *s == 200)
            .count()
            >= 20)
            .then_some(())
    })
    .await;
    let removed = api
        .call(
            "DELETE",
            format!("/workspaces/{ws}/collaborators/bob"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    *removed_at.lock().unwrap() = Some(Instant::now());
    for w in workers {
        w.await.unwrap();
    }

    let removal = removed_at.lock().unwrap().unwrap();
    let outcomes = outcomes.lock().unwrap().clone();
    let late: Vec<_> = outcomes
        .iter()
        .filter(|(started, _)| *started > removal)
        .collect();
    assert!(late.len() >= 160);
    assert!(
        late.iter().all(|(_, status)| *status == 404),
        "every debit begun after the removal is refused: {late:?}"
    );
    let granted = outcomes.iter().filter(|(_, s)| *s == 200).count();
    let by_bob = history(&api, &ws)
        .await
        .iter()
        .filter(|e| e.event_type == "credits.consumed" && e.metadata.actor == "bob")
        .count();
    assert_eq!(
        by_bob, granted,
        "every debit bob's answers granted, and none they did not"
    );
}

/// The size of an item as DynamoDB counts it: names and values.
fn item_size(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    V::S(s) | V::N(s) => s.len(),
                    V::Ss(set) => set.iter().map(String::len).sum(),
                    V::Bool(_) => 1,
                    other => panic!("unexpected attribute {other:?}"),
                }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_with_two_thousand_purchases_has_a_new_wallets_head_and_debit_cost() {
    let (events, _) = common::tables().await;
    let client = common::dynamodb().await;
    let store = EventStore::new(client.clone(), &events);
    let clock: Arc<dyn kassa_commerce::Clock> = Arc::new(kassa_commerce::clock::SystemClock);
    let kernel = kassa_commerce::Kernel::new(store.clone(), clock.clone());

    let open = |id: Uuid| {
        let kernel = kernel.clone();
        async move {
            kernel
                .run(Metadata::origin(Uuid::now_v7(), "system:test"), |tx| {
                    Box::pin(async move {
                        let mut wallet = tx.load::<Wallet>(&id).await?;
                        kassa_commerce::wallet::stage(
                            tx,
                            &mut wallet,
                            CreditCommand::Open {
                                workspace_id: id,
                                tier: TierId::Enterprise,
                            },
                        )
                        .await?;
                        kassa_commerce::wallet::stage(
                            tx,
                            &mut wallet,
                            CreditCommand::Allocate {
                                allocation_id: "signup".into(),
                                base: 1_000_000,
                                bonus: 0,
                                reason: AllocationReason::Signup,
                            },
                        )
                        .await?;
                        Ok(())
                    })
                })
                .await
                .unwrap();
        }
    };
    let (fresh, old) = (Uuid::now_v7(), Uuid::now_v7());
    open(fresh).await;
    open(old).await;
    // The fresh wallet buys as many credits in one purchase as the old one in 2,000: the
    // heads then hold the same figures, and only the history behind them differs.
    kassa_commerce::wallet::allocate(
        &store,
        clock.clone(),
        fresh,
        CreditCommand::Purchase {
            order_id: Uuid::now_v7(),
            pack: "scale".into(),
            credits: 2_000_000,
        },
        Metadata::origin(Uuid::now_v7(), "system:test"),
        |_| Ok(()),
    )
    .await
    .unwrap();
    for _ in 0..2_000 {
        let added = kassa_commerce::wallet::allocate(
            &store,
            clock.clone(),
            old,
            CreditCommand::Purchase {
                order_id: Uuid::now_v7(),
                pack: "starter".into(),
                credits: 1_000,
            },
            Metadata::origin(Uuid::now_v7(), "system:test"),
            |_| Ok(()),
        )
        .await
        .unwrap();
        assert_eq!(added.len(), 1);
    }

    let head = |id: Uuid| {
        let client = client.clone();
        let events = events.clone();
        async move {
            client
                .get_item()
                .table_name(events)
                .key(
                    "pk",
                    aws_sdk_dynamodb::types::AttributeValue::S(format!("Wallet#{id}")),
                )
                .key("sk", aws_sdk_dynamodb::types::AttributeValue::N("0".into()))
                .send()
                .await
                .unwrap()
                .item
                .unwrap()
        }
    };
    let debit = |id: Uuid| {
        let store = store.clone();
        async move {
            let stream = StreamId::new("Wallet", id);
            let event = CreditEvent::Consumed {
                workspace_id: id,
                consumption_id: Uuid::now_v7(),
                feature: "api.call".into(),
                quantity: 1,
                credits: 1,
                balance_after: 0,
            };
            let carried = vec![Carried::new(
                &event,
                &Metadata::origin(Uuid::now_v7(), "alice"),
                time::OffsetDateTime::now_utc(),
                &["balance_after"],
            )];
            match store
                .step(Step {
                    stream: &stream,
                    schema: 2,
                    delta: -1,
                    bounds: Bounds {
                        at_least: Some(1),
                        below: None,
                    },
                    member: None,
                    terms: None,
                    while_open: false,
                    carried,
                    measure: true,
                })
                .await
                .unwrap()
            {
                Stepped::Moved { write_units, .. } => write_units,
                Stepped::Refused(head) => panic!("debit refused on {head:?}"),
            }
        }
    };
    // A write costs by the larger of the item before and after it, and the item before
    // carries the previous write's events: measure each wallet's second debit, so both
    // follow a debit.
    debit(fresh).await;
    debit(old).await;
    let (fresh_units, old_units) = (debit(fresh).await, debit(old).await);
    let (fresh_head, old_head) = (head(fresh).await, head(old).await);
    let (fresh_size, old_size) = (item_size(&fresh_head), item_size(&old_head));
    println!("head: {fresh_size} B new, {old_size} B after 2,000 purchases; debit: {fresh_units:?} / {old_units:?} WCU");
    // Only the digits of the version differ.
    assert!(
        old_size.abs_diff(fresh_size) <= 8,
        "{fresh_size} vs {old_size}"
    );
    assert!(
        old_size < 1_024,
        "a debit's write fits in one write unit: {old_size} B"
    );
    assert_eq!(fresh_units, old_units);
    assert!(
        old_units.is_some(),
        "DynamoDB reports the debit's write units"
    );
    assert!(
        !old_head.contains_key("allocations")
            && !old_head["state"].as_s().unwrap().contains("purchase:"),
        "no applied-ids set on the head"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_head_of_the_old_shape_is_upgraded_by_its_first_debit() {
    let api = Api::start().await;
    let (ws, start) = api.workspace("alice", "pro").await;
    let store = store(&api).await;
    let stream = StreamId::new("Wallet", &ws);
    let persisted = history(&api, &ws).await;
    let version = persisted.len() as u64;

    // The head as the previous release wrote it: the balance and the applied ids in the
    // state, no counter, no member set; and no marker items.
    let client = common::dynamodb().await;
    let table = api.stack.table("EventsTable");
    let workspace_id: Uuid = ws.parse().unwrap();
    let legacy = json!({
        "workspace_id": workspace_id,
        "tier": "pro",
        "balance": start,
        "low_balance_armed": true,
        "allocations": ["signup"],
    });
    use aws_sdk_dynamodb::types::AttributeValue as V;
    client
        .put_item()
        .table_name(table)
        .item("pk", V::S(stream.to_string()))
        .item("sk", V::N("0".into()))
        .item("kind", V::S("head".into()))
        .item("version", V::N(version.to_string()))
        .item("state", V::S(legacy.to_string()))
        .send()
        .await
        .unwrap();
    client
        .delete_item()
        .table_name(table)
        .key("pk", V::S(format!("Marker#{stream}#signup")))
        .key("sk", V::N("0".into()))
        .send()
        .await
        .unwrap();

    let consumed = api
        .post(
            format!("/workspaces/{ws}/credits/consume"),
            "alice",
            json!({ "feature": "api.call", "quantity": 5 }),
        )
        .await;
    assert_eq!(consumed.status, 200, "{:?}", consumed.body);
    assert_eq!(consumed.body["balance"], start - 5);
    let head = store.load(&stream).await.unwrap().unwrap();
    assert_eq!(head.schema, 2);
    assert_eq!(head.counter, Some(start - 5));
    assert_eq!(head.members, vec!["alice".to_owned()]);

    // The signup allocation it had applied is still applied once.
    let again = kassa_commerce::wallet::allocate(
        &store,
        Arc::new(kassa_commerce::clock::SystemClock),
        workspace_id,
        CreditCommand::Allocate {
            allocation_id: "signup".into(),
            base: 10,
            bonus: 0,
            reason: AllocationReason::Signup,
        },
        Metadata::origin(Uuid::now_v7(), "system:test"),
        |_| Ok(()),
    )
    .await
    .unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(balance(&api, &ws).await, start - 5);
    // A stranger is still a stranger after the upgrade.
    let stranger = api
        .post(
            format!("/workspaces/{ws}/credits/consume"),
            "mallory",
            json!({ "feature": "api.call", "quantity": 1 }),
        )
        .await;
    assert_eq!(stranger.status, 404);
}
