//! The flash sale's reservation path, as deployed: many reserve-tickets sandboxes, each its
//! own `ReserveTickets` with its own connections, fed the `order.created` messages of one
//! concert's ticket orders as the SQS event source hands them to Lambda, all holding seats
//! of ONE level at once. Against it, as many bare clients doing the conditional decrement
//! a hold is (`ADD counter -1, version 1 SET carried` if `schema = :s AND counter >= 1 AND
//! attribute_not_exists(closed)`) on one copy of that level's counter head, in the same
//! run. The orders outnumber the seats by a tenth, so both sides sell out and meet refusals,
//! and each side's figures are checked afterwards: seats held never exceed capacity.
//!
//! A one-level reservation is one conditional step on the hot counter, carrying the
//! `seats.held` that completes it, and nothing else. Its cold half, record-reservations
//! recording `reservation.created` with its expiry on items of that order only, runs
//! after the timed part, fed the last holds read back from the table's stream as the bus
//! would hand them, and is timed on its own; the seats are counted from what it recorded.

use crate::api;
use crate::carried::carried_by;
use crate::hot_wallet::Throughput;
use anyhow::{bail, ensure, Context, Result};
use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use kassa_commerce::order_book::OrderBook;
use kassa_commerce::seats;
use kassa_commerce::{Kernel, SystemClock};
use kassa_concerts::Concerts;
use kassa_domain::identity::UserId;
use kassa_domain::money::{Currency, Money};
use kassa_domain::order::{NewOrder, Order, OrderCommand, OrderLine, Purpose, Seats};
use kassa_domain::reservation::{Reservation, ReservationStatus};
use kassa_record_reservations::RecordReservations;
use kassa_reserve_tickets::ReserveTickets;
use kassa_runtime::{Config, Function, HttpFunction, SdkConfig, SqsFunction};
use kassa_store::{EventStore, Metadata, RecordedEvent, StreamId};
use rust_decimal::Decimal;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::task::JoinSet;
use uuid::Uuid;

/// The level every order of the sale wants.
const LEVEL: &str = "floor";

/// Orders committed at once while the sale is set up (untimed).
const SETUP_WRITERS: usize = 8;

/// One side's run: the throughput figures, and the seats as counted afterwards.
pub struct Run {
    /// `successes` = reservations held (or bare decrements done); `conflicts` = orders
    /// refused for want of seats (or decrements refused by the condition); `others` =
    /// messages the handler reported failed (or errors).
    pub throughput: Throughput,
    pub capacity: i64,
    /// Seats held at the end, counted from what was recorded (the reservations; for the
    /// bare side, the decrements that succeeded).
    pub held: i64,
    /// The counter at the end.
    pub free: i64,
    /// record-reservations' half, after the timed part (none for the bare side).
    pub recording: Option<Recording>,
}

/// The reservations recorded from the sale's last holds, and how long that took.
pub struct Recording {
    pub holds: usize,
    pub sandboxes: usize,
    pub elapsed: std::time::Duration,
    /// Messages the handlers reported failed.
    pub failed: usize,
}

impl Run {
    /// Seats held beyond capacity, or a counter below zero: must be 0.
    pub fn oversold(&self) -> i64 {
        (self.held - self.capacity).max(0) + (-self.free).max(0)
    }
}

/// The flash sale's environment: the bench's tables, as the functions' configuration.
pub struct Sale {
    aws: SdkConfig,
    /// The events table's stream, where the level heads' carried events are read back.
    events_stream: Option<String>,
    config: Config,
    store: EventStore,
    kernel: Kernel,
    book: OrderBook,
}

impl Sale {
    pub fn new(
        aws: &SdkConfig,
        events_table: &str,
        state_table: &str,
        events_stream: Option<String>,
    ) -> Result<Self> {
        let config = Config::from_map(&HashMap::from([
            ("KASSA_EVENTS_TABLE".to_owned(), events_table.to_owned()),
            ("KASSA_STATE_TABLE".to_owned(), state_table.to_owned()),
        ]))
        .context("the functions' configuration")?;
        let client = Client::new(aws);
        let store = EventStore::new(client.clone(), events_table);
        Ok(Self {
            aws: aws.clone(),
            events_stream,
            config,
            kernel: Kernel::new(store.clone(), Arc::new(SystemClock)),
            store,
            book: OrderBook::new(client, state_table),
        })
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A concert on sale with `levels` (id, capacity), created through the concerts
    /// handler, so its counters are opened as the deployed function opens them.
    pub async fn concert(&self, levels: &[(&str, u32)]) -> Result<Uuid> {
        let concerts = Concerts::from_config(&self.config, &self.aws, Arc::new(SystemClock))
            .map_err(|e| anyhow::anyhow!("building the concerts handler: {e:?}"))?;
        let starts = (OffsetDateTime::now_utc() + time::Duration::days(30))
            .replace_nanosecond(0)?
            .format(&Rfc3339)?;
        let body = json!({
            "artist": "Bench", "venue": "Stadion Narodowy", "starts_at": starts,
            "currency": "EUR",
            "levels": levels.iter().map(|(id, capacity)| json!({
                "level_id": id, "name": id.to_uppercase(), "capacity": capacity,
                "price": { "amount": "80.00", "currency": "EUR" },
            })).collect::<Vec<_>>(),
        });
        let created = concerts
            .handle(api::create_concert("bench-organizer", &body)?)
            .await;
        if created.status() != 201 {
            bail!("creating the bench concert: {}", api::describe(&created));
        }
        let answer: serde_json::Value = serde_json::from_str(&api::body(&created))?;
        answer["concert_id"]
            .as_str()
            .and_then(|id| Uuid::parse_str(id).ok())
            .context("the created concert has no id")
    }

    /// `count` ticket orders of one seat of `level`, committed as confirm-cart commits
    /// them (the order, its agenda entry and its place in the buyer's list), answered with
    /// their `order.created` events. Untimed: this is the sale's input.
    pub async fn orders(
        &self,
        concert: Uuid,
        level: &str,
        count: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let next = Arc::new(AtomicUsize::new(0));
        let mut writers = JoinSet::new();
        for _ in 0..SETUP_WRITERS {
            let (kernel, book, next) = (self.kernel.clone(), self.book.clone(), next.clone());
            let level = level.to_owned();
            writers.spawn(async move {
                let mut mine = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    mine.push(order(&kernel, &book, concert, &level).await?);
                }
                anyhow::Ok(mine)
            });
        }
        let mut all = Vec::with_capacity(count);
        while let Some(mine) = writers.join_next().await {
            all.extend(mine??);
        }
        Ok(all)
    }

    /// `sandboxes` reserve-tickets sandboxes handling the `order.created` of
    /// `seats + seats / 10` one-seat orders on one level of `seats` seats, one message per
    /// invocation, each sandbox taking the next message as soon as it is done.
    pub async fn reserve(&self, sandboxes: usize, seats: u32) -> Result<Run> {
        let concert = self
            .concert(&[(LEVEL, seats + sandboxes as u32), ("warm-up", 1)])
            .await?;
        let orders = self
            .orders(concert, LEVEL, oversold_orders(seats) + sandboxes)
            .await?;
        let (warm_up, sale) = orders.split_at(sandboxes);
        let handlers: Vec<Arc<ReserveTickets>> = (0..sandboxes)
            .map(|_| {
                // `from_config` builds its own SDK clients, so sandboxes share no
                // connection pool, as on Lambda.
                ReserveTickets::from_config(&self.config, &self.aws, Arc::new(SystemClock))
                    .map(Arc::new)
                    .map_err(|e| anyhow::anyhow!("building reserve-tickets: {e:?}"))
            })
            .collect::<Result<_>>()?;
        // One order each, untimed, so every sandbox starts with open connections, as a
        // warm one would. They take `sandboxes` of the level's seats, which were added
        // to its capacity for them: the timed orders meet exactly `seats` free.
        for (handler, event) in handlers.iter().zip(warm_up) {
            let response = handler.handle(batch(&[event])?).await;
            ensure!(
                response.batch_item_failures.is_empty(),
                "a warm-up reservation failed"
            );
        }
        ensure!(
            self.free(concert).await? == i64::from(seats),
            "the warm-up did not leave {seats} seats"
        );

        let messages: Arc<Vec<SqsEvent>> = Arc::new(
            sale.iter()
                .map(|event| batch(&[event]))
                .collect::<Result<_>>()?,
        );
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut runs = JoinSet::new();
        for handler in &handlers {
            let (handler, messages, next) = (handler.clone(), messages.clone(), next.clone());
            runs.spawn(async move {
                let mut failed = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(message) = messages.get(i) else {
                        break failed;
                    };
                    let response = handler.handle(message.clone()).await;
                    failed += response.batch_item_failures.len();
                }
            });
        }
        let mut failed = 0;
        while let Some(mine) = runs.join_next().await {
            failed += mine?;
        }
        let elapsed = started.elapsed();
        let recording = self.record(concert, sandboxes).await?;

        // What was recorded, order by order: held, failed, or (a failed message) none.
        let mut throughput = Throughput {
            others: failed,
            elapsed,
            ..Throughput::default()
        };
        let mut held = 0;
        for event in sale {
            let reservation = self
                .store
                .load_aggregate::<Reservation>(&event.stream_id_uuid()?)
                .await?
                .state;
            match reservation.map(|r| (r.status, r.holds)) {
                Some((ReservationStatus::Held, holds)) => {
                    throughput.successes += 1;
                    held += holds.iter().map(|h| i64::from(h.seats)).sum::<i64>();
                }
                Some((ReservationStatus::Failed, _)) => throughput.conflicts += 1,
                Some((other, _)) => bail!("a fresh reservation is {other:?}"),
                None => {
                    throughput
                        .first_other
                        .get_or_insert_with(|| "an order got no reservation".to_owned());
                }
            }
        }
        Ok(Run {
            throughput,
            capacity: i64::from(seats),
            held,
            free: self.free(concert).await?,
            recording: Some(recording),
        })
    }

    /// record-reservations' half of the sale: the last holds of `concert`'s level, read
    /// back from the stream, handed to `sandboxes` record-reservations sandboxes in
    /// batches of ten (the template's BatchSize), timed on its own.
    async fn record(&self, concert: Uuid, sandboxes: usize) -> Result<Recording> {
        let arn = self
            .events_stream
            .as_deref()
            .context("the bench's events table has no stream")?;
        let last: Vec<RecordedEvent> =
            carried_by(&self.aws, arn, &seats::level_stream(concert, LEVEL))
                .await?
                .into_iter()
                .filter(|e| e.event_type == "seats.held" && !e.payload["completes"].is_null())
                .collect();
        let messages: Arc<Vec<SqsEvent>> = Arc::new(
            last.chunks(10)
                .map(|chunk| batch(&chunk.iter().collect::<Vec<_>>()))
                .collect::<Result<_>>()?,
        );
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut runs = JoinSet::new();
        for _ in 0..sandboxes {
            let handler =
                RecordReservations::from_config(&self.config, &self.aws, Arc::new(SystemClock))
                    .map_err(|e| anyhow::anyhow!("building record-reservations: {e:?}"))?;
            let (messages, next) = (messages.clone(), next.clone());
            runs.spawn(async move {
                let mut failed = 0;
                while let Some(message) = messages.get(next.fetch_add(1, Ordering::Relaxed)) {
                    failed += handler
                        .handle(message.clone())
                        .await
                        .batch_item_failures
                        .len();
                }
                failed
            });
        }
        let mut failed = 0;
        while let Some(mine) = runs.join_next().await {
            failed += mine?;
        }
        Ok(Recording {
            holds: last.len(),
            sandboxes,
            elapsed: started.elapsed(),
            failed,
        })
    }

    /// `clients` bare clients making as many one-seat decrements as the sandboxes get
    /// orders, on a copy of a level counter of `seats` seats.
    pub async fn decrement(&self, clients: usize, seats: u32) -> Result<Run> {
        let concert = self.concert(&[(LEVEL, seats + clients as u32)]).await?;
        let bare = BareLevel::copy(Client::new(&self.aws), &self.store, concert).await?;
        let spenders: Vec<Arc<BareLevel>> = (0..clients)
            .map(|_| Arc::new(bare.through(Client::new(&self.aws))))
            .collect();
        // One decrement each, untimed, as the sandboxes' warm-up: `seats` stay.
        for spender in &spenders {
            ensure!(
                spender.decrement().await?,
                "a warm-up decrement was refused"
            );
        }
        let total = oversold_orders(seats);
        let left = Arc::new(AtomicUsize::new(total));
        let started = Instant::now();
        let mut runs = JoinSet::new();
        for spender in &spenders {
            let (spender, left) = (spender.clone(), left.clone());
            runs.spawn(async move {
                let mut mine = Throughput::default();
                while left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    match spender.decrement().await {
                        Ok(true) => mine.successes += 1,
                        Ok(false) => mine.conflicts += 1,
                        Err(e) => {
                            mine.others += 1;
                            mine.first_other.get_or_insert(format!("{e:#}"));
                        }
                    }
                }
                mine
            });
        }
        let mut throughput = Throughput::default();
        while let Some(mine) = runs.join_next().await {
            let mine = mine?;
            throughput.successes += mine.successes;
            throughput.conflicts += mine.conflicts;
            throughput.others += mine.others;
            if throughput.first_other.is_none() {
                throughput.first_other = mine.first_other;
            }
        }
        throughput.elapsed = started.elapsed();
        Ok(Run {
            held: throughput.successes as i64,
            throughput,
            capacity: i64::from(seats),
            free: bare.counter().await?,
            recording: None,
        })
    }

    /// The level's free seats, as its counter head says.
    async fn free(&self, concert: Uuid) -> Result<i64> {
        self.store
            .load(&seats::level_stream(concert, LEVEL))
            .await?
            .and_then(|head| head.counter)
            .context("the level has no counter")
    }
}

/// A tenth more orders than seats: the sale sells out, and the last orders meet a level
/// with nothing left, as in a real one.
pub fn oversold_orders(seats: u32) -> usize {
    let seats = seats as usize;
    seats + seats / 10
}

/// The aggregate id of an `order.created`'s stream (`Order#<id>`).
pub trait OrderId {
    fn stream_id_uuid(&self) -> Result<Uuid>;
}

impl OrderId for RecordedEvent {
    fn stream_id_uuid(&self) -> Result<Uuid> {
        self.payload["order_id"]
            .as_str()
            .and_then(|id| Uuid::parse_str(id).ok())
            .with_context(|| format!("{} names no order", self.event_type))
    }
}

/// One ticket order of one seat of `level`, committed as confirm-cart commits it.
async fn order(
    kernel: &Kernel,
    book: &OrderBook,
    concert: Uuid,
    level: &str,
) -> Result<RecordedEvent> {
    let id = Uuid::now_v7();
    let price = Money::new(Decimal::new(8000, 2), Currency::Eur);
    let new = NewOrder {
        order_id: id,
        user_id: UserId::new(format!("fan-{}", &id.simple().to_string()[24..])),
        purpose: Purpose::Tickets {
            confirmation: 1,
            seats: vec![Seats {
                concert_id: concert,
                level_id: level.to_owned(),
                seats: 1,
            }],
            delivery: Default::default(),
        },
        lines: vec![OrderLine {
            description: format!("Bench — {level}"),
            quantity: 1,
            unit_price: price,
            amount: price,
        }],
        delivery_fee: None,
        tax_rate: Decimal::ZERO,
        reference: None,
        now: kernel.clock().now(),
        window: time::Duration::minutes(15),
    };
    let new = &new;
    let done = kernel
        .run(Metadata::origin(Uuid::now_v7(), "system:bench"), |tx| {
            Box::pin(async move {
                let mut order = tx.load::<Order>(&id).await?;
                tx.decide(&mut order, OrderCommand::Create(new.clone()))?;
                if let Some(created) = order.state.as_ref() {
                    book.on_create(tx.commit(), created)?;
                }
                Ok(())
            })
        })
        .await
        .map_err(|e| anyhow::anyhow!("committing a bench order: {e}"))?;
    done.recorded
        .into_iter()
        .find(|e| e.event_type == "order.created")
        .context("the order's commit recorded no order.created")
}

/// `events` as one SQS batch, each wrapped as EventBridge delivers it to the queue.
fn batch(events: &[&RecordedEvent]) -> Result<SqsEvent> {
    let records: Vec<serde_json::Value> = events
        .iter()
        .map(|e| {
            let body = json!({
                "version": "0", "id": Uuid::now_v7(), "detail-type": e.event_type,
                "source": format!("kassa.{}", e.context), "detail": e,
            });
            json!({
                "messageId": Uuid::now_v7().to_string(),
                "body": body.to_string(),
                "eventSource": "aws:sqs",
            })
        })
        .collect();
    Ok(serde_json::from_value(json!({ "Records": records }))?)
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A copy of a level's counter head under a key of its own, decremented by the
/// conditional `UpdateItem` a hold sends, its carried `seats.held` event built per call
/// as the hold builds its own.
#[derive(Clone)]
struct BareLevel {
    client: Client,
    table: String,
    pk: String,
    concert: Uuid,
    schema: String,
}

impl BareLevel {
    async fn copy(client: Client, store: &EventStore, concert: Uuid) -> Result<Self> {
        let source: StreamId = seats::level_stream(concert, LEVEL);
        let table = store.table().to_owned();
        let mut item = client
            .get_item()
            .table_name(&table)
            .key("pk", s(source.as_str()))
            .key("sk", n(0))
            .consistent_read(true)
            .send()
            .await
            .context("reading the level head the bare level copies")?
            .item
            .with_context(|| format!("{source} has no head to copy"))?;
        let schema = item
            .get("schema")
            .and_then(|v| v.as_n().ok())
            .cloned()
            .context("the level head has no schema")?;
        let pk = format!("BareLevel#{}", Uuid::now_v7());
        item.insert("pk".to_owned(), s(&pk));
        client
            .put_item()
            .table_name(&table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .context("seeding the bare level")?;
        Ok(Self {
            client,
            table,
            pk,
            concert,
            schema,
        })
    }

    fn through(&self, client: Client) -> Self {
        Self {
            client,
            ..self.clone()
        }
    }

    /// One seat: `Ok(true)` taken, `Ok(false)` refused by the condition (none free).
    async fn decrement(&self) -> Result<bool> {
        let request = Uuid::now_v7();
        let carried = json!([{
            "event_id": Uuid::now_v7(),
            "type": "seats.held",
            "context": "ticketing",
            "schema": 1,
            "time": OffsetDateTime::now_utc().format(&Rfc3339)?,
            "payload": {
                "concert_id": self.concert,
                "level_id": LEVEL,
                "seats": 1,
                "reservation_id": Uuid::now_v7(),
                "hold_id": Uuid::now_v7(),
                "free_after": 0,
                "completes": [],
            },
            "metadata": {
                "correlation_id": request,
                "causation_id": request,
                "actor": "system:reserve-tickets",
            },
            "fill": ["free_after"],
        }]);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&self.pk))
            .key("sk", n(0))
            .update_expression("ADD #c :delta, #v :k SET #carried = :carried")
            .condition_expression("#s = :schema AND #c >= :lo AND attribute_not_exists(#closed)")
            .expression_attribute_names("#c", "counter")
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#s", "schema")
            .expression_attribute_names("#carried", "carried")
            .expression_attribute_names("#closed", "closed")
            .expression_attribute_values(":delta", n(-1))
            .expression_attribute_values(":k", n(1))
            .expression_attribute_values(":schema", n(&self.schema))
            .expression_attribute_values(":lo", n(1))
            .expression_attribute_values(":carried", s(carried.to_string()))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) => {
                let service = error.into_service_error();
                if service.is_conditional_check_failed_exception() {
                    Ok(false)
                } else {
                    Err(service).context("bare UpdateItem")
                }
            }
        }
    }

    async fn counter(&self) -> Result<i64> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&self.pk))
            .key("sk", n(0))
            .consistent_read(true)
            .send()
            .await?
            .item
            .unwrap_or_default();
        item.get("counter")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .context("the bare level has no counter")
    }
}

/// Warm latency of the steps a reservation is made of, one sandbox, one order after
/// another: where a reservation's time goes beside the bare step's.
pub struct Profile {
    pub reservation: crate::sample::Sample,
    pub bare: crate::sample::Sample,
}

impl Sale {
    /// `calls` reservations by one warm sandbox and `calls` bare decrements by one
    /// client, alternating, each timed alone.
    pub async fn profile(&self, calls: usize) -> Result<Profile> {
        let warm = 20;
        let concert = self.concert(&[(LEVEL, (calls + warm) as u32 + 1)]).await?;
        let orders = self.orders(concert, LEVEL, calls + warm).await?;
        let handler = ReserveTickets::from_config(&self.config, &self.aws, Arc::new(SystemClock))
            .map_err(|e| anyhow::anyhow!("building reserve-tickets: {e:?}"))?;
        let bare = BareLevel::copy(Client::new(&self.aws), &self.store, concert).await?;
        let mut profile = Profile {
            reservation: Default::default(),
            bare: Default::default(),
        };
        for (i, event) in orders.iter().enumerate() {
            let message = batch(&[event])?;
            let started = Instant::now();
            let response = handler.handle(message).await;
            let took = started.elapsed();
            ensure!(
                response.batch_item_failures.is_empty(),
                "a profiled reservation failed"
            );
            let started = Instant::now();
            ensure!(bare.decrement().await?, "a profiled decrement was refused");
            let bare_took = started.elapsed();
            if i >= warm {
                profile.reservation.record(took);
                profile.bare.record(bare_took);
            }
        }
        Ok(profile)
    }
}

/// Per-request durations of the reservation path are not exposed by the handler; the
/// profile above times whole reservations, and `REQUESTS` says what each one sends.
pub const REQUESTS: &[(&str, &str)] = &[(
    "UpdateItem",
    "the hold: the ONE write, on the hot counter, carrying seats.held with the reservation",
)];

/// What record-reservations then sends for it, off the hot item.
pub const RECORD_REQUESTS: &[(&str, &str)] = &[
    ("GetItem", "the reservation, to see it is not recorded yet"),
    ("GetItem", "the order, to see it is still open"),
    (
        "TransactWriteItems",
        "reservation.created + its head + the expiry agenda entry + the concert's roster \
         + the hold's marker + the order's version, unchanged",
    ),
];
