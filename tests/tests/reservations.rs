//! Reservations never oversell, whatever races them, and the ticket order saga gives seats
//! back exactly once, whichever of expiry, cancellation or a failed reservation comes first.

mod common;

use common::{eventually, Api};
use kassa_commerce::order_book::OrderBook;
use kassa_commerce::reservations::{self, Recorded, Request, Reservations, Reserved};
use kassa_commerce::seats;
use kassa_commerce::{Fail, Kernel};
use kassa_domain::aggregate::ByActor;
use kassa_domain::concert::{Concert, ConcertCommand, TicketLevel};
use kassa_domain::identity::{Actor, UserId};
use kassa_domain::money::{Currency, Money};
use kassa_domain::order::{NewOrder, Order, OrderCommand, OrderLine, Purpose, Seats};
use kassa_domain::reservation::{Reservation, ReservationStatus};
use kassa_store::{Agenda, EventStore, Metadata};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

fn eur(amount: &str) -> Money {
    Money::new(amount.parse::<Decimal>().unwrap(), Currency::Eur)
}

/// A concert with `levels` (id, capacity) on sale, committed as the concerts Lambda does.
async fn concert(kernel: &Kernel, levels: &[(&str, u32)]) -> Uuid {
    let id = Uuid::now_v7();
    let now = kernel.clock().now();
    let command = ConcertCommand::Create {
        concert_id: id,
        organizer: UserId::new("olga"),
        artist: "Beyoncé".into(),
        venue: "Stadion Narodowy".into(),
        starts_at: now + time::Duration::days(30),
        currency: Currency::Eur,
        levels: levels
            .iter()
            .map(|(level, capacity)| TicketLevel {
                level_id: (*level).into(),
                name: level.to_uppercase(),
                capacity: *capacity,
                price: eur("80.00"),
            })
            .collect(),
        now,
    };
    let command = &command;
    kernel
        .run(Metadata::origin(Uuid::now_v7(), "olga"), |tx| {
            Box::pin(async move {
                let mut concert = tx.load::<Concert>(&id).await?;
                tx.decide(
                    &mut concert,
                    ByActor {
                        command: command.clone(),
                        actor: Actor::organizer("olga"),
                    },
                )?;
                let after = concert.state.clone().unwrap();
                let store = tx.store();
                seats::follow(store, tx.commit(), None, &after).await?;
                Ok(())
            })
        })
        .await
        .unwrap();
    id
}

async fn free(store: &EventStore, concert: Uuid, level: &str) -> i64 {
    store
        .load(&seats::level_stream(concert, level))
        .await
        .unwrap()
        .and_then(|h| h.counter)
        .unwrap()
}

/// Fresh tables, the reservation service on them, and the order book orders are opened in.
async fn service() -> (EventStore, Reservations, OrderBook) {
    let (events, state) = common::tables().await;
    let client = common::dynamodb().await;
    let store = EventStore::new(client.clone(), events);
    let kernel = Kernel::new(store.clone(), Arc::new(kassa_commerce::clock::SystemClock));
    let agenda = Agenda::new(client.clone(), state.clone(), reservations::EXPIRY_AGENDA);
    let roster = kassa_commerce::rosters::concert_orders(client.clone(), &state);
    let book = OrderBook::new(client, state);
    (store, Reservations::new(kernel, agenda, roster), book)
}

/// Opens the ticket order `request` stands for, as confirming a cart does: recording a
/// reservation reads its buyer, its window and whether it is still open.
async fn open_order(kernel: &Kernel, book: &OrderBook, request: &Request) {
    let id = request.order_id;
    let new = NewOrder {
        order_id: id,
        user_id: request.user_id.clone(),
        purpose: Purpose::Tickets {
            confirmation: 1,
            seats: request.seats.clone(),
            delivery: Default::default(),
        },
        lines: request
            .seats
            .iter()
            .map(|s| OrderLine {
                description: format!("Beyoncé — {}", s.level_id),
                quantity: u64::from(s.seats),
                unit_price: eur("80.00"),
                amount: eur("80.00").times(u64::from(s.seats)),
            })
            .collect(),
        delivery_fee: None,
        tax_rate: Decimal::ZERO,
        reference: None,
        now: kernel.clock().now(),
        window: time::Duration::minutes(15),
    };
    let new = &new;
    kernel
        .run(
            Metadata::origin(Uuid::now_v7(), request.user_id.as_str()),
            |tx| {
                Box::pin(async move {
                    let mut order = tx.load::<Order>(&id).await?;
                    tx.decide(&mut order, OrderCommand::Create(new.clone()))?;
                    book.on_create(tx.commit(), order.state.as_ref().unwrap())?;
                    Ok(())
                })
            },
        )
        .await
        .map_err(|e: Fail<_>| format!("{e}"))
        .unwrap();
}

/// A request for `seats` (level, count) of `concert` by `buyer`, under a fresh order id.
fn request(concert: Uuid, buyer: &str, seats: &[(&str, u32)]) -> Request {
    Request {
        order_id: Uuid::now_v7(),
        user_id: UserId::new(buyer),
        seats: seats
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(level, seats)| Seats {
                concert_id: concert,
                level_id: (*level).into(),
                seats: *seats,
            })
            .collect(),
        expires_at: time::OffsetDateTime::now_utc() + time::Duration::minutes(15),
    }
}

/// The flash sale: two levels of 500, 64 buyers, 5,000 attempts of one or two seats, some
/// for both levels at once. No lock anywhere: each level is one conditional step, and
/// each completed set of holds is recorded as record-reservations records it, while the
/// other buyers go on taking seats.
#[tokio::test]
async fn a_flash_sale_of_five_thousand_attempts_sells_exactly_the_thousand_seats() {
    let (store, reservations, book) = service().await;
    let kernel = Kernel::new(store.clone(), Arc::new(kassa_commerce::clock::SystemClock));
    let concert = concert(&kernel, &[("floor", 500), ("balcony", 500)]).await;
    let (reservations, kernel, book) = (Arc::new(reservations), Arc::new(kernel), Arc::new(book));
    let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut buyers = tokio::task::JoinSet::new();
    for buyer in 0..64 {
        let (reservations, attempts) = (reservations.clone(), attempts.clone());
        let (kernel, book) = (kernel.clone(), book.clone());
        buyers.spawn(async move {
            let mut outcomes = Vec::new();
            while attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 5_000 {
                let n = outcomes.len();
                let seats = match (buyer + n) % 5 {
                    0 => vec![("floor", 1), ("balcony", 1)],
                    1 | 2 => vec![("floor", 1 + (n % 2) as u32)],
                    _ => vec![("balcony", 1 + (n % 2) as u32)],
                };
                let request = request(concert, &format!("buyer-{buyer}"), &seats);
                let metadata = Metadata::origin(Uuid::now_v7(), format!("buyer-{buyer}"));
                let outcome = reservations.reserve(&request, &metadata).await;
                let outcome = outcome.expect("no store failure");
                if let Reserved::Taken(holds) = &outcome {
                    open_order(&kernel, &book, &request).await;
                    let recorded = reservations
                        .record(request.order_id, holds, &metadata)
                        .await
                        .expect("no store failure");
                    assert!(
                        matches!(&recorded, Recorded::Created(r) if &r.holds == holds),
                        "{recorded:?}"
                    );
                }
                outcomes.push((request, outcome));
            }
            outcomes
        });
    }
    let outcomes: Vec<_> = buyers.join_all().await.into_iter().flatten().collect();
    assert_eq!(outcomes.len(), 5_000);
    let mut sold = std::collections::BTreeMap::<String, u32>::new();
    for (request, outcome) in &outcomes {
        match outcome {
            Reserved::Taken(holds) => {
                assert_eq!(holds.len(), request.seats.len(), "all or nothing");
                for hold in holds {
                    *sold.entry(hold.level_id.clone()).or_default() += hold.seats;
                }
            }
            Reserved::Refused {
                requested, free, ..
            } => assert!(free < requested, "refused with {free} free of {requested}"),
            Reserved::Recorded(r) => panic!("a fresh order found {r:?}"),
        }
    }
    assert_eq!(sold.get("floor"), Some(&500), "{sold:?}");
    assert_eq!(sold.get("balcony"), Some(&500), "{sold:?}");
    assert_eq!(free(&store, concert, "floor").await, 0);
    assert_eq!(free(&store, concert, "balcony").await, 0);

    // The recorded reservations agree with the counters.
    let held: u32 = seats_held_by(&store, &outcomes).await;
    assert_eq!(held, 1_000);
}

/// Sums the seats the recorded reservations of `outcomes` hold, read back from the store.
async fn seats_held_by(store: &EventStore, outcomes: &[(Request, Reserved)]) -> u32 {
    let mut total = 0;
    for (request, _) in outcomes {
        let reservation = store
            .load_aggregate::<Reservation>(&request.order_id)
            .await
            .unwrap()
            .state
            .unwrap();
        if reservation.status == ReservationStatus::Held {
            total += reservation.holds.iter().map(|h| h.seats).sum::<u32>();
        } else {
            assert_eq!(reservation.status, ReservationStatus::Failed);
        }
    }
    total
}

/// SQS hands one order.created to two invocations at once now and then: both take seats,
/// both last holds are recorded at once, and exactly one reservation owns seats; the
/// other's go back.
#[tokio::test]
async fn an_order_delivered_twice_at_once_holds_its_seats_once() {
    let (store, reservations, book) = service().await;
    let kernel = Kernel::new(store.clone(), Arc::new(kassa_commerce::clock::SystemClock));
    let concert = concert(&kernel, &[("floor", 20), ("balcony", 20)]).await;
    for round in 0..10 {
        let request = request(concert, "ana", &[("floor", 1), ("balcony", 1)]);
        open_order(&kernel, &book, &request).await;
        let metadata = Metadata::origin(Uuid::now_v7(), "ana");
        let (a, b) = tokio::join!(
            reservations.reserve(&request, &metadata),
            reservations.reserve(&request, &metadata)
        );
        let (Reserved::Taken(a), Reserved::Taken(b)) = (a.unwrap(), b.unwrap()) else {
            panic!("both deliveries find seats");
        };
        let (a, b) = tokio::join!(
            reservations.record(request.order_id, &a, &metadata),
            reservations.record(request.order_id, &b, &metadata)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(
            matches!(
                (&a, &b),
                (
                    Recorded::Created(_),
                    Recorded::GivenBack {
                        reason: "duplicate_reservation"
                    }
                ) | (
                    Recorded::GivenBack {
                        reason: "duplicate_reservation"
                    },
                    Recorded::Created(_)
                )
            ),
            "{a:?} {b:?}"
        );
        for level in ["floor", "balcony"] {
            assert_eq!(free(&store, concert, level).await, 20 - (round + 1));
        }
    }
}

/// The reservation service and the order book on an isolated stack's tables.
async fn isolated_service(iso: &common::Isolated) -> (Kernel, Reservations, OrderBook) {
    let client = common::dynamodb().await;
    let kernel = Kernel::new(
        iso.store.clone(),
        Arc::new(kassa_commerce::clock::SystemClock),
    );
    let reservations = Reservations::new(
        kernel.clone(),
        Agenda::new(
            client.clone(),
            iso.state_table.clone(),
            reservations::EXPIRY_AGENDA,
        ),
        kassa_commerce::rosters::concert_orders(client.clone(), &iso.state_table),
    );
    (
        kernel,
        reservations,
        OrderBook::new(client, iso.state_table.clone()),
    )
}

/// Every `seats.held` of `concert`'s floor and VIP levels, as the relay persisted them.
async fn seats_held(iso: &common::Isolated, concert: Uuid) -> Vec<kassa_store::RecordedEvent> {
    let mut held = Vec::new();
    for level in ["floor", "vip"] {
        held.extend(
            iso.events(&seats::level_stream(concert, level))
                .await
                .into_iter()
                .filter(|e| e.event_type == "seats.held"),
        );
    }
    held
}

/// The record of a completed set of holds, delivered as the bus delivers it (any number
/// of times): the reservation is recorded once, with its expiry on the agenda; a second
/// delivery of the order, and an order closed before its holds were recorded, get their
/// seats back, once.
#[tokio::test]
async fn record_reservations_records_a_reservation_once_and_gives_back_what_nobody_owns() {
    let iso = common::Isolated::new().await;
    let (kernel, reservations, book) = isolated_service(&iso).await;
    let agenda = reservations.agenda().clone();
    let concert = concert(&kernel, &[("floor", 10), ("vip", 2)]).await;
    let metadata = Metadata::origin(Uuid::now_v7(), "ana");

    let open = request(concert, "ana", &[("floor", 2), ("vip", 1)]);
    open_order(&kernel, &book, &open).await;
    let first = reservations.reserve(&open, &metadata).await.unwrap();
    // Redelivered after the first took its seats.
    let again = reservations.reserve(&open, &metadata).await.unwrap();
    assert!(matches!(first, Reserved::Taken(_)), "{first:?}");
    assert!(matches!(again, Reserved::Taken(_)), "{again:?}");
    let closed = request(concert, "ben", &[("floor", 1)]);
    open_order(&kernel, &book, &closed).await;
    kernel
        .run(Metadata::origin(Uuid::now_v7(), "ben"), |tx| {
            Box::pin(async move {
                let mut order = tx.load::<Order>(&closed.order_id).await?;
                tx.decide(
                    &mut order,
                    OrderCommand::Cancel {
                        reason: "changed my mind".into(),
                    },
                )?;
                Ok(())
            })
        })
        .await
        .map_err(|e: Fail<_>| format!("{e}"))
        .unwrap();
    let late = reservations.reserve(&closed, &metadata).await.unwrap();
    assert!(matches!(late, Reserved::Taken(_)), "{late:?}");
    assert_eq!(free(&iso.store, concert, "floor").await, 10 - 2 - 2 - 1);
    assert_eq!(free(&iso.store, concert, "vip").await, 0);

    let held = seats_held(&iso, concert).await;
    assert_eq!(held.len(), 5, "{held:?}");
    let completing: Vec<&_> = held
        .iter()
        .filter(|e| !e.payload["completes"].is_null())
        .collect();
    assert_eq!(completing.len(), 3, "one per delivery: {held:?}");
    let record = iso.function("RecordReservationsFunction").await;
    // Twice each, as if every handling were lost after its commit.
    for _ in 0..2 {
        assert!(iso.deliver(&record, &completing).await.is_empty());
        assert_eq!(free(&iso.store, concert, "floor").await, 8);
        assert_eq!(free(&iso.store, concert, "vip").await, 1);
    }

    let recorded = iso
        .store
        .load_aggregate::<Reservation>(&open.order_id)
        .await
        .unwrap()
        .state
        .unwrap();
    assert_eq!(recorded.status, ReservationStatus::Held);
    let Reserved::Taken(first) = first else {
        unreachable!()
    };
    let Reserved::Taken(again) = again else {
        unreachable!()
    };
    assert!(
        recorded.holds == first || recorded.holds == again,
        "{recorded:?}"
    );
    let due = agenda
        .due_by(&kassa_commerce::order_book::agenda_time(
            recorded.expires_at + time::Duration::minutes(1),
        ))
        .await
        .unwrap();
    assert!(
        due.iter().any(|e| e.subject == open.order_id.to_string()),
        "{due:?}"
    );
    assert!(iso
        .store
        .load_aggregate::<Reservation>(&closed.order_id)
        .await
        .unwrap()
        .state
        .is_none());
    let mut given_back: Vec<_> = iso
        .events(&seats::level_stream(concert, "floor"))
        .await
        .into_iter()
        .filter(|e| e.event_type == "seats.released")
        .map(|e| e.payload["reason"].as_str().unwrap().to_owned())
        .collect();
    given_back.sort();
    assert_eq!(
        given_back,
        ["duplicate_reservation", "order_closed"],
        "{given_back:?}"
    );
}

/// A reserve-tickets invocation that stops before an order's last step leaves the seats
/// of the levels before it held by nobody. reclaim-holds, handed each `seats.held` after
/// the queue's delay, gives such an orphan back once, and leaves alone the holds a
/// reservation owns, those a failed reservation already gave back, and every last hold
/// (record-reservations settles those); a message younger than the settle window comes
/// back for later.
#[tokio::test]
async fn an_orphaned_hold_is_given_back_once_and_owned_holds_are_left_alone() {
    let iso = common::Isolated::new().await;
    let (kernel, reservations, book) = isolated_service(&iso).await;
    let concert = concert(&kernel, &[("floor", 10), ("vip", 1)]).await;
    let metadata = Metadata::origin(Uuid::now_v7(), "ana");

    // Owned: a reservation holding one floor seat and the only VIP seat.
    let wanted = request(concert, "ana", &[("floor", 1), ("vip", 1)]);
    open_order(&kernel, &book, &wanted).await;
    let Reserved::Taken(holds) = reservations.reserve(&wanted, &metadata).await.unwrap() else {
        panic!("the seats are free");
    };
    let owned = reservations
        .record(wanted.order_id, &holds, &metadata)
        .await
        .unwrap();
    assert!(matches!(owned, Recorded::Created(_)), "{owned:?}");
    // Failed: its floor hold was taken, then VIP was out; the failure gave it back.
    let failed = reservations
        .reserve(
            &request(concert, "ana", &[("floor", 1), ("vip", 1)]),
            &metadata,
        )
        .await
        .unwrap();
    assert!(matches!(failed, Reserved::Refused { .. }), "{failed:?}");
    // Orphaned: two floor seats taken for an order whose invocation stopped there.
    let orphan = kassa_domain::reservation::Hold {
        concert_id: concert,
        level_id: "floor".into(),
        seats: 2,
        hold_id: Uuid::now_v7(),
    };
    let taken = seats::hold(
        &iso.store,
        Uuid::now_v7(),
        &orphan,
        None,
        &metadata,
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert!(matches!(taken, seats::Held::Taken { .. }), "{taken:?}");
    assert_eq!(free(&iso.store, concert, "floor").await, 7);

    let held = seats_held(&iso, concert).await;
    assert_eq!(held.len(), 4, "{held:?}");
    let reclaim = iso.function("ReclaimHoldsFunction").await;

    // Straight from the hold, before reserve-tickets' invocation could be judged over:
    // the three holds that are not their order's last come back for later.
    let young: Vec<&_> = held.iter().collect();
    assert_eq!(iso.deliver(&reclaim, &young).await.len(), 3);
    assert_eq!(free(&iso.store, concert, "floor").await, 7);

    // As the queue delivers them, two minutes on; then all again, as if each handling
    // were lost after its commit.
    let aged: Vec<_> = held
        .iter()
        .cloned()
        .map(|mut e| {
            e.time -= time::Duration::minutes(2);
            e
        })
        .collect();
    let aged: Vec<&_> = aged.iter().collect();
    assert!(iso.deliver(&reclaim, &aged).await.is_empty());
    assert_eq!(free(&iso.store, concert, "floor").await, 9);
    assert_eq!(free(&iso.store, concert, "vip").await, 0);
    for event in &aged {
        iso.forget("reclaim-holds", event).await;
    }
    assert!(iso.deliver(&reclaim, &aged).await.is_empty());
    assert_eq!(free(&iso.store, concert, "floor").await, 9);
    assert_eq!(free(&iso.store, concert, "vip").await, 0);

    let reclaimed: Vec<_> = iso
        .events(&seats::level_stream(concert, "floor"))
        .await
        .into_iter()
        .filter(|e| e.event_type == "seats.released" && e.payload["reason"] == "orphaned")
        .collect();
    assert_eq!(reclaimed.len(), 1, "{reclaimed:?}");
    assert_eq!(reclaimed[0].payload["hold_id"], orphan.hold_id.to_string());
}

// ---------------------------------------------------------------------------------------
// The saga through the stack: reserve-tickets on order.created, expiry on schedule,
// ticket-orders' compensations.

async fn stack_store(api: &Api) -> EventStore {
    EventStore::new(common::dynamodb().await, api.stack.table("EventsTable"))
}

/// A ticket order for `seats` of `level`, committed as confirming a cart does.
async fn ticket_order(api: &Api, concert: Uuid, level: &str, seats: u32) -> Uuid {
    ticket_order_for(api, "ana", concert, level, seats).await
}

/// As [`ticket_order`], bought by `buyer`.
async fn ticket_order_for(api: &Api, buyer: &str, concert: Uuid, level: &str, seats: u32) -> Uuid {
    let kernel = Kernel::new(stack_store(api).await, Arc::new(api.stack.clock.clone()));
    let book = OrderBook::new(common::dynamodb().await, api.stack.table("StateTable"));
    let order = request(concert, buyer, &[(level, seats)]);
    open_order(&kernel, &book, &order).await;
    order.order_id
}

async fn available(api: &Api, concert: Uuid) -> u64 {
    let view = api
        .call("GET", format!("/concerts/{concert}"), None, None)
        .await;
    view.body["levels"][0]["available"].as_u64().unwrap()
}

async fn reservation(api: &Api, order: Uuid) -> Reservation {
    let store = stack_store(api).await;
    eventually("the reservation", || {
        let store = store.clone();
        async move {
            store
                .load_aggregate::<Reservation>(&order)
                .await
                .unwrap()
                .state
        }
    })
    .await
}

/// Waits until `order`'s reservation is `status`.
async fn reservation_reaches(api: &Api, order: Uuid, status: ReservationStatus) {
    let store = stack_store(api).await;
    eventually("the reservation's status", || {
        let store = store.clone();
        async move {
            let r = store
                .load_aggregate::<Reservation>(&order)
                .await
                .unwrap()
                .state?;
            (r.status == status).then_some(())
        }
    })
    .await;
}

async fn order_of(api: &Api, order: Uuid) -> Value {
    order_of_buyer(api, "ana", order).await
}

async fn order_of_buyer(api: &Api, buyer: &str, order: Uuid) -> Value {
    let answer = api.get(format!("/orders/{order}"), buyer).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body
}

#[tokio::test]
async fn an_unpaid_reservation_expires_on_schedule_and_its_seats_come_back_once() {
    let api = Api::start().await;
    let concert =
        common::put_on_sale(&api, &common::concert_body("Beyoncé", &[("floor", 10)])).await;
    let order = ticket_order(&api, concert, "floor", 3).await;
    assert_eq!(
        reservation(&api, order).await.status,
        ReservationStatus::Held
    );
    assert_eq!(available(&api, concert).await, 7);

    let early = api.stack.fire("ExpireReservationsFunction").await.unwrap();
    assert_eq!(early["done"], 0, "{early}");
    api.stack.clock.advance(Duration::from_secs(16 * 60));
    let run = api.stack.fire("ExpireReservationsFunction").await.unwrap();
    assert_eq!(run["done"], 1, "{run}");
    assert_eq!(available(&api, concert).await, 10);

    // The order follows: canceled with the reason, its intent too.
    let canceled = eventually("the order canceled", || async {
        let o = order_of(&api, order).await;
        (o["status"] == "canceled" || o["status"] == "expired").then_some(o)
    })
    .await;
    assert_eq!(available(&api, concert).await, 10, "{canceled}");
    // The order's own expiry and cancellation give nothing back a second time.
    let _ = api.stack.fire("ExpireOrdersFunction").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(available(&api, concert).await, 10);
    assert_eq!(
        reservation(&api, order).await.status,
        ReservationStatus::Expired
    );
}

#[tokio::test]
async fn a_reservation_that_finds_too_few_seats_cancels_its_order_and_holds_nothing() {
    let api = Api::start().await;
    let concert =
        common::put_on_sale(&api, &common::concert_body("Beyoncé", &[("floor", 2)])).await;
    let order = ticket_order(&api, concert, "floor", 3).await;
    assert_eq!(
        reservation(&api, order).await.status,
        ReservationStatus::Failed
    );
    let canceled = eventually("the order canceled", || async {
        let o = order_of(&api, order).await;
        (o["status"] == "canceled").then_some(o)
    })
    .await;
    assert!(
        canceled["cancel_reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("seats_unavailable"),
        "{canceled}"
    );
    assert_eq!(available(&api, concert).await, 2);
}

#[tokio::test]
async fn a_buyer_canceling_their_order_gives_its_seats_back() {
    let api = Api::start().await;
    let concert =
        common::put_on_sale(&api, &common::concert_body("Beyoncé", &[("floor", 10)])).await;
    let order = ticket_order(&api, concert, "floor", 4).await;
    assert_eq!(
        reservation(&api, order).await.status,
        ReservationStatus::Held
    );
    assert_eq!(available(&api, concert).await, 6);
    // The intent exists before the buyer may cancel (payment-intents on order.created).
    eventually("the payment intent", || async {
        let o = order_of(&api, order).await;
        (o["status"] == "payment_pending").then_some(())
    })
    .await;
    let canceled = api
        .call("POST", format!("/orders/{order}/cancel"), Some("ana"), None)
        .await;
    assert_eq!(canceled.status, 200, "{:?}", canceled.body);
    eventually("the seats back", || async {
        (available(&api, concert).await == 10).then_some(())
    })
    .await;
    assert_eq!(
        reservation(&api, order).await.status,
        ReservationStatus::Canceled
    );
    // Its expiry later finds nothing to give back.
    api.stack.clock.advance(Duration::from_secs(16 * 60));
    let run = api.stack.fire("ExpireReservationsFunction").await.unwrap();
    assert_eq!(run["done"], 0, "{run}");
    assert_eq!(available(&api, concert).await, 10);
}

/// The PaymentIntent payment-intents made for `order`.
async fn intent_of(api: &Api, order: Uuid) -> String {
    intent_of_buyer(api, "ana", order).await
}

async fn intent_of_buyer(api: &Api, buyer: &str, order: Uuid) -> String {
    eventually("the payment intent", || async {
        order_of_buyer(api, buyer, order).await["payment_intent_id"]
            .as_str()
            .map(str::to_owned)
    })
    .await
}

#[tokio::test]
async fn a_ticket_order_paid_in_time_confirms_its_reservation_and_is_invoiced() {
    let api = Api::start().await;
    api.stack.register_stripe_webhook().await.unwrap();
    let concert =
        common::put_on_sale(&api, &common::concert_body("Beyoncé", &[("floor", 10)])).await;
    let order = ticket_order(&api, concert, "floor", 3).await;
    let intent = intent_of(&api, order).await;
    assert_eq!(
        reservation(&api, order).await.status,
        ReservationStatus::Held
    );
    let paid = common::pay_at_localstripe(&intent).await;
    assert_eq!(paid["status"], "succeeded", "{paid}");

    reservation_reaches(&api, order, ReservationStatus::Confirmed).await;
    // Sold seats stay taken, and the reservation's expiry later gives nothing back.
    assert_eq!(available(&api, concert).await, 7);
    api.stack.clock.advance(Duration::from_secs(16 * 60));
    let run = api.stack.fire("ExpireReservationsFunction").await.unwrap();
    assert_eq!(run["done"], 0, "{run}");
    assert_eq!(available(&api, concert).await, 7);

    // The buyer finds the invoice through their order.
    let paid_order = order_of(&api, order).await;
    assert_eq!(paid_order["status"], "completed");
    let invoice = paid_order["invoice_id"].as_str().unwrap().to_owned();
    let issued = eventually("the invoice", || async {
        let answer = api.get(format!("/invoices/{invoice}"), "ana").await;
        (answer.status == 200).then_some(answer.body)
    })
    .await;
    assert_eq!(issued["total"]["amount"], "240.00", "{issued}");
    assert_eq!(issued["status"], "paid", "{issued}");

    let sales = eventually("the sales figures", || async {
        let sales = api
            .call_as(
                "GET",
                format!("/concerts/{concert}/sales"),
                Some(("olga", "organizer")),
                None,
            )
            .await;
        let floor = &sales.body["levels"][0];
        (floor["sold"] == 3 && floor["revenue"]["amount"] == "240.00").then_some(sales.body)
    })
    .await;
    assert_eq!(sales["levels"][0]["reserved"], 0, "{sales}");
    assert_eq!(sales["levels"][0]["available"], 7, "{sales}");
    assert_eq!(sales["refunds"]["amount"], "0.00", "{sales}");
}

#[tokio::test]
async fn a_payment_arriving_after_the_reservation_expired_is_refunded_and_the_buyer_told() {
    let api = Api::start().await;
    // No webhook endpoint yet: the payment goes through at Stripe while kassa hears
    // nothing, as when Stripe's delivery is late.
    let registered = api
        .post(
            "/users",
            "ana",
            json!({ "email": "ana@example.com", "name": "Ana" }),
        )
        .await;
    assert_eq!(registered.status, 201, "{:?}", registered.body);
    let concert =
        common::put_on_sale(&api, &common::concert_body("Beyoncé", &[("floor", 10)])).await;
    let order = ticket_order(&api, concert, "floor", 2).await;
    let intent = intent_of(&api, order).await;
    assert_eq!(
        reservation(&api, order).await.status,
        ReservationStatus::Held
    );
    let paid = common::pay_at_localstripe(&intent).await;
    assert_eq!(paid["status"], "succeeded", "{paid}");

    // The window passes: the seats go back, and the cancellation of the intent is
    // refused by Stripe, since it was paid.
    api.stack.clock.advance(Duration::from_secs(16 * 60));
    let run = api.stack.fire("ExpireReservationsFunction").await.unwrap();
    assert_eq!(run["done"], 1, "{run}");
    assert_eq!(available(&api, concert).await, 10);

    // Now Stripe's word arrives.
    let base = std::env::var("KASSA_STRIPE_API_BASE").unwrap();
    let key = std::env::var("KASSA_STRIPE_SECRET_KEY").unwrap();
    let object: Value = reqwest::Client::new()
        .get(format!("{base}/v1/payment_intents/{intent}"))
        .basic_auth(&key, Some(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let now = kassa_commerce::Clock::now(&api.stack.clock).unix_timestamp();
    let event = json!({
        "id": format!("evt_{}", Uuid::now_v7().simple()), "object": "event",
        "api_version": "2024-06-20", "type": "payment_intent.succeeded", "created": now,
        "livemode": false, "data": { "object": object },
    });
    let body = event.to_string();
    let header = kassa_payments::webhook_signature::sign(
        body.as_bytes(),
        &api.stack.names.parameters["StripeWebhookSecret"],
        now,
    );
    let delivered = api
        .http
        .post(format!("{}/stripe/webhook", api.stack.url))
        .header("content-type", "application/json")
        .header("stripe-signature", header)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(delivered.status().as_u16(), 200);

    let refunded = eventually("the order refunded", || async {
        let o = order_of(&api, order).await;
        (o["status"] == "refunded").then_some(o)
    })
    .await;
    assert_eq!(refunded["refunded"]["amount"], "160.00", "{refunded}");
    assert_eq!(
        reservation(&api, order).await.status,
        ReservationStatus::Expired,
        "never a ticket without a seat"
    );
    assert_eq!(
        available(&api, concert).await,
        10,
        "the seats came back once"
    );
    let mails = kassa_runtime::mail::MailSink::new(&api.mail_dir)
        .read_all()
        .unwrap();
    let told: Vec<_> = mails
        .iter()
        .filter(|m| m.id == format!("seats_released_before_payment-{order}"))
        .collect();
    assert_eq!(told.len(), 1, "{mails:?}");
    assert_eq!(told[0].to, "ana@example.com");
    assert!(
        told[0].subject.contains("160.00 EUR"),
        "{}",
        told[0].subject
    );
    // At Stripe: one refund of the whole payment, whatever the redeliveries.
    let refunds: Value = reqwest::Client::new()
        .get(format!("{base}/v1/refunds?payment_intent={intent}"))
        .basic_auth(&key, Some(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let amounts: Vec<_> = refunds["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["amount"].clone())
        .collect();
    assert_eq!(amounts, vec![json!(16_000)], "{refunds}");

    // Redelivered after its commit, as if the inbox's record had not been completed:
    // still one refund, one mail, the order as it was.
    let completed = stack_store(&api)
        .await
        .read_stream(&kassa_store::StreamId::new("Order", order), 100)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event_type == "order.completed")
        .unwrap();
    let failed = common::redeliver(&api, "TicketOrdersFunction", "ticket-orders", &completed).await;
    assert!(failed.is_empty(), "{failed:?}");
    let again: Value = reqwest::Client::new()
        .get(format!("{base}/v1/refunds?payment_intent={intent}"))
        .basic_auth(&key, Some(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["data"].as_array().unwrap().len(), 1, "{again}");
    let mails = kassa_runtime::mail::MailSink::new(&api.mail_dir)
        .read_all()
        .unwrap();
    assert_eq!(
        mails
            .iter()
            .filter(|m| m.id == format!("seats_released_before_payment-{order}"))
            .count(),
        1
    );
    assert_eq!(order_of(&api, order).await["status"], "refunded");
}

async fn refunds_at_stripe(intent: &str) -> Vec<Value> {
    let base = std::env::var("KASSA_STRIPE_API_BASE").unwrap();
    let key = std::env::var("KASSA_STRIPE_SECRET_KEY").unwrap();
    let refunds: Value = reqwest::Client::new()
        .get(format!("{base}/v1/refunds?payment_intent={intent}"))
        .basic_auth(&key, Some(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    refunds["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_canceled_concert_refunds_what_was_paid_cancels_what_was_held_and_tells_every_buyer() {
    let api = Api::start().await;
    api.stack.register_stripe_webhook().await.unwrap();
    api.register("paula").await;
    api.register("hugo").await;
    let concert =
        common::put_on_sale(&api, &common::concert_body("Beyoncé", &[("floor", 10)])).await;
    let paid = ticket_order_for(&api, "paula", concert, "floor", 2).await;
    let held = ticket_order_for(&api, "hugo", concert, "floor", 3).await;
    let paid_intent = intent_of_buyer(&api, "paula", paid).await;
    intent_of_buyer(&api, "hugo", held).await;
    assert_eq!(
        common::pay_at_localstripe(&paid_intent).await["status"],
        "succeeded"
    );
    let store = stack_store(&api).await;
    reservation_reaches(&api, paid, ReservationStatus::Confirmed).await;
    assert_eq!(available(&api, concert).await, 5);

    let added = api
        .post(
            "/cart/items",
            "carla",
            json!({ "concert_id": concert, "level_id": "floor", "quantity": 2 }),
        )
        .await;
    assert_eq!(added.status, 201, "{:?}", added.body);

    let canceled = api
        .call_as(
            "POST",
            format!("/concerts/{concert}/cancel"),
            Some(("olga", "organizer")),
            Some(&json!({ "reason": "the artist is ill" }).to_string()),
        )
        .await;
    assert_eq!(canceled.status, 200, "{:?}", canceled.body);

    let refunded = eventually("paula refunded", || async {
        let o = order_of_buyer(&api, "paula", paid).await;
        (o["status"] == "refunded").then_some(o)
    })
    .await;
    assert_eq!(refunded["refunded"]["amount"], "160.00", "{refunded}");
    eventually("hugo's order canceled", || async {
        let o = order_of_buyer(&api, "hugo", held).await;
        (o["status"] == "canceled").then_some(())
    })
    .await;
    assert_eq!(
        store
            .load_aggregate::<Reservation>(&held)
            .await
            .unwrap()
            .state
            .unwrap()
            .status,
        ReservationStatus::Canceled
    );
    let mails = || {
        kassa_runtime::mail::MailSink::new(&api.mail_dir)
            .read_all()
            .unwrap()
    };
    let told = eventually("both buyers told", || async {
        let told: Vec<_> = mails()
            .into_iter()
            .filter(|m| m.id.starts_with("concert_canceled-"))
            .collect();
        (told.len() == 2).then_some(told)
    })
    .await;
    let paula = told.iter().find(|m| m.to == "paula@example.com").unwrap();
    assert!(paula.subject.contains("160.00 EUR"), "{}", paula.subject);
    assert!(told.iter().any(|m| m.to == "hugo@example.com"));
    assert_eq!(refunds_at_stripe(&paid_intent).await.len(), 1);
    // The level left the carts that held it.
    eventually("carla's cart emptied", || async {
        let cart = api.get("/cart", "carla").await;
        (cart.body["items"].as_array().is_some_and(Vec::is_empty)).then_some(())
    })
    .await;

    // The cancellation redelivered after its commit: nothing is refunded twice, nobody
    // mailed twice.
    let event = store
        .read_stream(&kassa_store::StreamId::new("Concert", concert), 100)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event_type == "concert.canceled")
        .unwrap();
    let failed = common::redeliver(&api, "TicketOrdersFunction", "ticket-orders", &event).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(refunds_at_stripe(&paid_intent).await.len(), 1);
    assert_eq!(
        mails()
            .iter()
            .filter(|m| m.id.starts_with("concert_canceled-"))
            .count(),
        2
    );
    assert_eq!(
        order_of_buyer(&api, "paula", paid).await["status"],
        "refunded"
    );
    assert_eq!(
        order_of_buyer(&api, "hugo", held).await["status"],
        "canceled"
    );

    // Paula's two tickets are voided and on the door's revocation list.
    let revoked = eventually("paula's tickets revoked", || async {
        let list = api
            .call_as(
                "GET",
                format!("/concerts/{concert}/revocations"),
                Some(("olga", "organizer")),
                None,
            )
            .await;
        assert_eq!(list.status, 200, "{:?}", list.body);
        let revoked = list.body["revocations"].as_array().unwrap().clone();
        (revoked.len() == 2).then_some(revoked)
    })
    .await;
    let mut ids: Vec<String> = revoked
        .iter()
        .map(|r| r["ticket_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut expected: Vec<String> = (1..=2)
        .map(|seat| kassa_commerce::tickets::ticket_id(paid, concert, "floor", seat).to_string())
        .collect();
    expected.sort();
    assert_eq!(ids, expected);

    // The organizer's figures: two seats sold and refunded, three reserved and let go.
    let sales = eventually("the sales figures", || async {
        let sales = api
            .call_as(
                "GET",
                format!("/concerts/{concert}/sales"),
                Some(("olga", "organizer")),
                None,
            )
            .await;
        assert_eq!(sales.status, 200, "{:?}", sales.body);
        let floor = &sales.body["levels"][0];
        (floor["refunds"]["amount"] == "160.00" && floor["reserved"] == 0).then_some(sales.body)
    })
    .await;
    let floor = &sales["levels"][0];
    assert_eq!(floor["level_id"], "floor");
    assert_eq!(floor["capacity"], 10);
    assert_eq!(floor["sold"], 2, "{sales}");
    assert_eq!(floor["revenue"]["amount"], "160.00", "{sales}");
    assert_eq!(sales["refunds"]["amount"], "160.00", "{sales}");
    for stranger in [("otto", "organizer"), ("paula", "user")] {
        let refused = api
            .call_as(
                "GET",
                format!("/concerts/{concert}/sales"),
                Some(stranger),
                None,
            )
            .await;
        assert_eq!(refused.status, 403, "{stranger:?}: {:?}", refused.body);
    }
}

/// A concert canceled while an order's last `seats.held` still waits for
/// record-reservations: the cancellation's walk of the concert's orders runs first and
/// cannot see that order, which is recorded afterwards and then paid. Settling the
/// payment finds the concert canceled: the seats go back, the whole payment is refunded
/// at Stripe and booked, and the reservation is never confirmed, so no ticket follows.
#[tokio::test]
async fn a_reservation_recorded_after_its_concerts_recall_is_refunded_when_paid() {
    let iso = common::Isolated::new().await;
    let (kernel, reservations, book) = isolated_service(&iso).await;
    let concert = concert(&kernel, &[("floor", 10)]).await;
    let metadata = Metadata::origin(Uuid::now_v7(), "ana");
    let order = request(concert, "ana", &[("floor", 2)]);
    open_order(&kernel, &book, &order).await;
    let taken = reservations.reserve(&order, &metadata).await.unwrap();
    assert!(matches!(taken, Reserved::Taken(_)), "{taken:?}");

    let cancel = ConcertCommand::Cancel {
        reason: "the singer is ill".into(),
        now: kernel.clock().now(),
    };
    let cancel = &cancel;
    kernel
        .run(Metadata::origin(Uuid::now_v7(), "olga"), |tx| {
            Box::pin(async move {
                let mut concert = tx.load::<Concert>(&concert).await?;
                tx.decide(
                    &mut concert,
                    ByActor {
                        command: cancel.clone(),
                        actor: Actor::organizer("olga"),
                    },
                )?;
                Ok(())
            })
        })
        .await
        .unwrap();
    let ticket_orders = iso.function("TicketOrdersFunction").await;
    let canceled: Vec<_> = iso
        .events(&kassa_store::StreamId::new("Concert", concert))
        .await
        .into_iter()
        .filter(|e| e.event_type == "concert.canceled")
        .collect();
    assert_eq!(canceled.len(), 1);
    assert!(iso
        .deliver(&ticket_orders, &[&canceled[0]])
        .await
        .is_empty());

    // Recorded only now, so the recall did not see it; then the buyer pays.
    let record = iso.function("RecordReservationsFunction").await;
    let held = seats_held(&iso, concert).await;
    let held: Vec<&_> = held.iter().collect();
    assert!(iso.deliver(&record, &held).await.is_empty());
    let recorded = iso
        .store
        .load_aggregate::<Reservation>(&order.order_id)
        .await
        .unwrap()
        .state
        .unwrap();
    assert_eq!(recorded.status, ReservationStatus::Held);
    let intent = common::stripe_post(
        "/v1/payment_intents",
        &[
            ("amount", "16000"),
            ("currency", "eur"),
            ("metadata[kassa_order_id]", &order.order_id.to_string()),
            ("metadata[kassa_user_id]", "ana"),
        ],
    )
    .await;
    let intent = common::id(&intent);
    let paid = common::pay_at_localstripe(&intent).await;
    assert_eq!(paid["status"], "succeeded", "{paid}");
    let complete = OrderCommand::Complete {
        payment_intent_id: intent.clone(),
        payment_id: paid["latest_charge"]
            .as_str()
            .unwrap_or("ch_paid")
            .to_owned(),
    };
    let complete = &complete;
    let order_id = order.order_id;
    kernel
        .run(Metadata::origin(Uuid::now_v7(), "ana"), |tx| {
            Box::pin(async move {
                let mut order = tx.load::<Order>(&order_id).await?;
                tx.decide(&mut order, complete.clone())?;
                Ok(())
            })
        })
        .await
        .map_err(|e: Fail<_>| format!("{e}"))
        .unwrap();
    let completed: Vec<_> = iso
        .events(&kassa_store::StreamId::new("Order", order_id))
        .await
        .into_iter()
        .filter(|e| e.event_type == "order.completed")
        .collect();
    // Twice, as if the first handling were lost after its effects.
    for _ in 0..2 {
        assert!(iso
            .deliver(&ticket_orders, &[&completed[0]])
            .await
            .is_empty());
    }

    let settled = iso
        .store
        .load_aggregate::<Reservation>(&order_id)
        .await
        .unwrap()
        .state
        .unwrap();
    assert_eq!(settled.status, ReservationStatus::Canceled);
    assert_eq!(free(&iso.store, concert, "floor").await, 10);
    let refunds: Vec<Value> = iso
        .events(&kassa_store::StreamId::new("Payment", &intent))
        .await
        .into_iter()
        .filter(|e| e.event_type == "payment.refunded")
        .map(|e| e.payload)
        .collect();
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(
        refunds[0]["amount"],
        json!({ "amount": "160.00", "currency": "EUR" })
    );
    assert_eq!(refunds[0]["reason"], "concert_canceled");
}
