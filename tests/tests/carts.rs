//! Shopping carts through the HTTP API: a buyer fills, changes and empties their own cart
//! (`/cart` is always the caller's), within the per-level and per-cart limits and the seats
//! free now; confirming it makes one ticket order in the same commit, once per
//! Idempotency-Key, and nothing at all while a concert in it is no longer on sale.

mod common;

use common::{eventually, Answer, Api};
use kassa_commerce::seats::{self, Held};
use kassa_domain::reservation::Hold;
use kassa_store::{EventStore, Metadata, StreamId};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::str::FromStr;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use common::ORGANIZER;

fn in_days(days: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::days(days))
        .replace_nanosecond(0)
        .unwrap()
        .format(&Rfc3339)
        .unwrap()
}

fn concert(artist: &str, floor: u32, balcony: u32) -> Value {
    json!({
        "artist": artist,
        "venue": "Stadion Narodowy, Warsaw",
        "starts_at": in_days(30),
        "currency": "EUR",
        "levels": [
            { "level_id": "floor", "name": "Floor", "capacity": floor,
              "price": { "amount": "89.00", "currency": "EUR" } },
            { "level_id": "balcony", "name": "Balcony", "capacity": balcony,
              "price": { "amount": "49.50", "currency": "EUR" } },
        ],
    })
}

async fn cancel_concert(api: &Api, id: Uuid) {
    let canceled = api
        .call_as(
            "POST",
            format!("/concerts/{id}/cancel"),
            Some(ORGANIZER),
            Some(&json!({ "reason": "the artist is ill" }).to_string()),
        )
        .await;
    assert_eq!(canceled.status, 200, "{:?}", canceled.body);
}

async fn add(api: &Api, user: &str, concert: Uuid, level: &str, quantity: i64) -> Answer {
    let item = json!({ "concert_id": concert, "level_id": level, "quantity": quantity });
    api.post("/cart/items", user, item).await
}

async fn set_quantity(api: &Api, user: &str, concert: Uuid, level: &str, quantity: i64) -> Answer {
    api.call(
        "PUT",
        format!("/cart/items/{concert}/{level}"),
        Some(user),
        Some(&json!({ "quantity": quantity }).to_string()),
    )
    .await
}

async fn remove(api: &Api, user: &str, concert: Uuid, level: &str) -> Answer {
    api.call(
        "DELETE",
        format!("/cart/items/{concert}/{level}"),
        Some(user),
        None,
    )
    .await
}

async fn cart(api: &Api, user: &str) -> Value {
    let answer = api.get("/cart", user).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body
}

/// `POST /cart/confirm`, with an Idempotency-Key or without; and whether the answer is a
/// stored one.
async fn confirm(api: &Api, user: &str, key: Option<&str>) -> (Answer, bool) {
    let mut request = api
        .http
        .post(format!("{}/cart/confirm", api.stack.url))
        .bearer_auth(common::token(user, "user"));
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let res = request.send().await.unwrap();
    let replayed = res
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    (Answer::of(res).await, replayed)
}

/// A refusal: its status, its code, as problem+json.
#[track_caller]
fn refused(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{:?}", answer.body);
    assert_eq!(answer.body["code"], code, "{:?}", answer.body);
    assert_eq!(answer.content_type, "application/problem+json");
}

fn amount(money: &Value) -> Decimal {
    Decimal::from_str(money["amount"].as_str().unwrap()).unwrap()
}

fn eur(amount: &str) -> Value {
    json!({ "amount": amount, "currency": "EUR" })
}

/// The order a user's `confirmation`-th cart makes.
fn order_of(user: &str, confirmation: u32) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("cart:{user}:{confirmation}").as_bytes(),
    )
}

async fn store(api: &Api) -> EventStore {
    EventStore::new(common::dynamodb().await, api.stack.table("EventsTable"))
}

async fn event_types(store: &EventStore, stream: StreamId) -> Vec<String> {
    store
        .read_stream(&stream, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

#[tokio::test]
async fn a_buyer_fills_changes_and_empties_their_cart() {
    let api = Api::start().await;
    let id = common::put_on_sale(&api, &concert("Beyoncé", 500, 200)).await;

    let none = cart(&api, "ann").await;
    assert_eq!(
        none,
        json!({ "user_id": "ann", "open": false, "items": [], "total": null, "confirmed": 0 })
    );

    let first = add(&api, "ann", id, "floor", 2).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    assert_eq!(first.body["open"], true);
    assert_eq!(
        first.body["items"],
        json!([{
            "concert_id": id, "artist": "Beyoncé", "level_id": "floor", "level_name": "Floor",
            "quantity": 2, "unit_price": eur("89.00"), "amount": eur("178.00"),
        }])
    );
    assert_eq!(first.body["total"], eur("178.00"));
    let second = add(&api, "ann", id, "balcony", 1).await;
    assert_eq!(second.status, 201, "{:?}", second.body);
    assert_eq!(second.body["total"], eur("227.50"));

    // A level in the cart already is updated, not added again.
    let twice = add(&api, "ann", id, "floor", 1).await;
    refused(&twice, 409, "item_in_cart");
    assert!(
        twice.body["detail"]
            .as_str()
            .unwrap()
            .contains("update its quantity"),
        "{:?}",
        twice.body
    );

    let updated = set_quantity(&api, "ann", id, "floor", 4).await;
    assert_eq!(updated.status, 200, "{:?}", updated.body);
    assert_eq!(updated.body["items"][0]["amount"], eur("356.00"));
    assert_eq!(updated.body["total"], eur("405.50"));

    let removed = remove(&api, "ann", id, "balcony").await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    assert_eq!(removed.body["items"].as_array().unwrap().len(), 1);
    refused(
        &remove(&api, "ann", id, "balcony").await,
        404,
        "item_not_in_cart",
    );
    refused(
        &set_quantity(&api, "ann", id, "balcony", 1).await,
        404,
        "item_not_in_cart",
    );

    // Clearing empties the cart, which stays open; canceling closes it.
    let cleared = api.call("POST", "/cart/clear", Some("ann"), None).await;
    assert_eq!(cleared.status, 200, "{:?}", cleared.body);
    assert_eq!(cleared.body["open"], true);
    assert_eq!(cleared.body["items"], json!([]));
    assert_eq!(cleared.body["total"], Value::Null);
    add(&api, "ann", id, "balcony", 2).await;
    let canceled = api.call("DELETE", "/cart", Some("ann"), None).await;
    assert_eq!(canceled.status, 200, "{:?}", canceled.body);
    assert_eq!(canceled.body["open"], false);
    assert_eq!(canceled.body["items"], json!([]));
    refused(
        &api.call("DELETE", "/cart", Some("ann"), None).await,
        409,
        "cart_not_open",
    );
    refused(
        &api.call("POST", "/cart/clear", Some("ann"), None).await,
        409,
        "cart_not_open",
    );

    // The next item opens a new cart in the same stream.
    let reopened = add(&api, "ann", id, "floor", 1).await;
    assert_eq!(reopened.status, 201, "{:?}", reopened.body);
    assert_eq!(reopened.body["open"], true);
    let types = event_types(&store(&api).await, StreamId::new("Cart", "ann")).await;
    assert_eq!(
        types,
        [
            "cart.created",
            "cart.item_added",
            "cart.item_added",
            "cart.item_updated",
            "cart.item_removed",
            "cart.cleared",
            "cart.item_added",
            "cart.canceled",
            "cart.created",
            "cart.item_added",
        ]
    );
}

#[tokio::test]
async fn quantities_and_items_stay_within_the_limits_and_the_seats_free() {
    let api = Api::start().await;
    let id = common::put_on_sale(&api, &concert("Dua Lipa", 3, 200)).await;

    for quantity in [0, 11] {
        refused(
            &add(&api, "ann", id, "balcony", quantity).await,
            422,
            "invalid_quantity",
        );
    }
    let more_than_free = add(&api, "ann", id, "floor", 4).await;
    refused(&more_than_free, 422, "not_enough_tickets");
    let ten = add(&api, "ann", id, "balcony", 10).await;
    assert_eq!(ten.status, 201, "{:?}", ten.body);
    for quantity in [0, 11] {
        refused(
            &set_quantity(&api, "ann", id, "balcony", quantity).await,
            422,
            "invalid_quantity",
        );
    }

    // Seats held elsewhere count at once: 1 of the floor's 3 is left.
    let hold = Hold {
        concert_id: id,
        level_id: "floor".into(),
        seats: 2,
        hold_id: Uuid::now_v7(),
    };
    let held = seats::hold(
        &store(&api).await,
        Uuid::now_v7(),
        &hold,
        None,
        &Metadata::origin(Uuid::now_v7(), "test"),
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert_eq!(held, Held::Taken { free_after: 1 });
    refused(
        &add(&api, "ann", id, "floor", 2).await,
        422,
        "not_enough_tickets",
    );
    assert_eq!(add(&api, "ann", id, "floor", 1).await.status, 201);
    refused(
        &set_quantity(&api, "ann", id, "floor", 2).await,
        422,
        "not_enough_tickets",
    );

    // Only what exists is sold.
    refused(
        &add(&api, "ann", Uuid::now_v7(), "floor", 1).await,
        404,
        "concert_not_found",
    );
    refused(
        &add(&api, "ann", id, "vip", 1).await,
        404,
        "level_not_found",
    );

    // One cart, one currency.
    let mut dollars = concert("Taylor Swift", 10, 10);
    dollars["currency"] = json!("USD");
    for level in 0..2 {
        dollars["levels"][level]["price"]["currency"] = json!("USD");
    }
    let in_dollars = common::put_on_sale(&api, &dollars).await;
    refused(
        &add(&api, "ann", in_dollars, "floor", 1).await,
        422,
        "currency_mismatch",
    );

    let after = cart(&api, "ann").await;
    let quantities: Vec<(&str, u64)> = after["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["level_id"].as_str().unwrap(),
                i["quantity"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(quantities, [("balcony", 10), ("floor", 1)]);

    // At most 20 concert levels in one cart.
    let levels: Vec<Value> = (1..=20)
        .map(|n| {
            json!({ "level_id": format!("block-{n}"), "name": format!("Block {n}"),
                    "capacity": 5, "price": eur("10.00") })
        })
        .collect();
    let mut blocks = concert("Rammstein", 1, 1);
    blocks["levels"] = json!(levels);
    let many = common::put_on_sale(&api, &blocks).await;
    for n in 1..=18 {
        let added = add(&api, "ann", many, &format!("block-{n}"), 1).await;
        assert_eq!(added.status, 201, "block {n}: {:?}", added.body);
    }
    refused(
        &add(&api, "ann", many, "block-19", 1).await,
        409,
        "cart_full",
    );
    assert_eq!(
        cart(&api, "ann").await["items"].as_array().unwrap().len(),
        20
    );
}

#[tokio::test]
async fn each_user_reaches_only_their_own_cart() {
    let api = Api::start().await;
    let id = common::put_on_sale(&api, &concert("Coldplay", 100, 100)).await;
    assert_eq!(add(&api, "ann", id, "floor", 2).await.status, 201);
    let anns = cart(&api, "ann").await;

    let bobs = cart(&api, "bob").await;
    assert_eq!(bobs["user_id"], "bob");
    assert_eq!(bobs["items"], json!([]));
    // Bob's requests address his own cart, which has none of Ann's items.
    refused(
        &set_quantity(&api, "bob", id, "floor", 5).await,
        409,
        "cart_not_open",
    );
    refused(
        &remove(&api, "bob", id, "floor").await,
        409,
        "cart_not_open",
    );
    refused(
        &api.call("POST", "/cart/clear", Some("bob"), None).await,
        409,
        "cart_not_open",
    );
    refused(
        &api.call("DELETE", "/cart", Some("bob"), None).await,
        409,
        "cart_not_open",
    );
    refused(&confirm(&api, "bob", None).await.0, 409, "cart_empty");
    assert_eq!(add(&api, "bob", id, "balcony", 1).await.status, 201);
    refused(
        &set_quantity(&api, "bob", id, "floor", 5).await,
        404,
        "item_not_in_cart",
    );
    // The same Idempotency-Key from two users is two requests.
    let (bobs_order, _) = confirm(&api, "bob", Some("same-key")).await;
    assert_eq!(bobs_order.status, 201, "{:?}", bobs_order.body);
    let (anns_order, replayed) = confirm(&api, "ann", Some("same-key")).await;
    assert_eq!(anns_order.status, 201, "{:?}", anns_order.body);
    assert!(!replayed);
    assert_ne!(anns_order.body["order_id"], bobs_order.body["order_id"]);
    assert_eq!(anns_order.body["lines"][0]["quantity"], 2);
    assert_eq!(anns["items"][0]["quantity"], 2);

    // Nor does anyone read another's order.
    let order = anns_order.body["order_id"].as_str().unwrap();
    let foreign = api.get(format!("/orders/{order}"), "bob").await;
    assert_eq!(foreign.status, 404, "{:?}", foreign.body);

    let anonymous = api.call("GET", "/cart", None, None).await;
    assert_eq!(anonymous.status, 401);
}

#[tokio::test]
async fn confirming_makes_one_ticket_order_and_empties_the_cart() {
    let api = Api::start_with(&[("TaxRate", "0.2")]).await;
    let id = common::put_on_sale(&api, &concert("Beyoncé", 500, 200)).await;
    assert_eq!(add(&api, "ann", id, "floor", 2).await.status, 201);
    assert_eq!(add(&api, "ann", id, "balcony", 1).await.status, 201);

    let (first, replayed) = confirm(&api, "ann", Some("double-click")).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    assert!(!replayed);
    let order = &first.body;
    let order_id = order_of("ann", 1);
    assert_eq!(order["order_id"], order_id.to_string());
    assert_eq!(order["user_id"], "ann");
    assert_eq!(
        order["purpose"],
        json!({
            "kind": "tickets", "confirmation": 1, "delivery": { "method": "email" },
            "seats": [
                { "concert_id": id, "level_id": "floor", "seats": 2 },
                { "concert_id": id, "level_id": "balcony", "seats": 1 },
            ],
        })
    );
    assert_eq!(
        order["lines"],
        json!([
            { "description": "Beyoncé — Floor", "quantity": 2,
              "unit_price": eur("89.00"), "amount": eur("178.00") },
            { "description": "Beyoncé — Balcony", "quantity": 1,
              "unit_price": eur("49.50"), "amount": eur("49.50") },
        ])
    );
    let lines: Decimal = order["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| amount(&l["amount"]))
        .sum();
    assert_eq!(amount(&order["subtotal"]), lines);
    assert_eq!(order["tax"], eur("45.50"));
    assert_eq!(
        amount(&order["total"]),
        amount(&order["subtotal"]) + amount(&order["tax"])
    );
    assert_eq!(order["total"], eur("273.00"));
    let at = |field: &str| OffsetDateTime::parse(order[field].as_str().unwrap(), &Rfc3339).unwrap();
    assert_eq!(
        at("expires_at") - at("created_at"),
        time::Duration::minutes(15),
        "a ticket order waits ReservationMinutes for its payment"
    );

    // A double click with the same key is answered the same, and creates nothing more.
    let (again, replayed) = confirm(&api, "ann", Some("double-click")).await;
    assert_eq!(again.status, 201, "{:?}", again.body);
    assert!(replayed);
    assert_eq!(&again.body, order);
    // Without a key, the cart is empty by then.
    let (empty, _) = confirm(&api, "ann", None).await;
    refused(&empty, 409, "cart_empty");

    let read = api.get(format!("/orders/{order_id}"), "ann").await;
    assert_eq!(read.status, 200, "{:?}", read.body);
    assert!(
        ["created", "payment_pending"].contains(&read.body["status"].as_str().unwrap()),
        "{:?}",
        read.body
    );
    assert_eq!(read.body["lines"], order["lines"]);
    assert_eq!(read.body["total"], order["total"]);
    assert_eq!(read.body["purpose"], order["purpose"]);

    let after = cart(&api, "ann").await;
    assert_eq!(after["open"], false);
    assert_eq!(after["items"], json!([]));
    assert_eq!(after["confirmed"], 1);

    let store = store(&api).await;
    let cart_events = event_types(&store, StreamId::new("Cart", "ann")).await;
    assert_eq!(
        cart_events
            .iter()
            .filter(|t| *t == "cart.confirmed")
            .count(),
        1
    );
    let order_events = event_types(&store, StreamId::new("Order", order_id)).await;
    assert_eq!(
        order_events
            .iter()
            .filter(|t| *t == "order.created")
            .count(),
        1,
        "{order_events:?}"
    );
    let confirmed = store
        .read_stream(&StreamId::new("Cart", "ann"), 100)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event_type == "cart.confirmed")
        .unwrap();
    let created = store
        .read_stream(&StreamId::new("Order", order_id), 100)
        .await
        .unwrap()
        .remove(0);
    // One commit: the same request, the same instant.
    assert_eq!(confirmed.metadata, created.metadata);
    assert_eq!(confirmed.time, created.time);

    // The next cart is the next confirmation, and another order.
    assert_eq!(add(&api, "ann", id, "balcony", 1).await.status, 201);
    let (next, _) = confirm(&api, "ann", None).await;
    assert_eq!(next.status, 201, "{:?}", next.body);
    assert_eq!(next.body["order_id"], order_of("ann", 2).to_string());
    assert_eq!(next.body["purpose"]["confirmation"], 2);

    // The buyer's order list holds both.
    let mut orders = kassa_commerce::order_book::OrderBook::new(
        common::dynamodb().await,
        api.stack.table("StateTable"),
    )
    .orders_of("ann")
    .await
    .unwrap();
    orders.sort();
    let mut expected = vec![order_of("ann", 1), order_of("ann", 2)];
    expected.sort();
    assert_eq!(orders, expected);
}

#[tokio::test]
async fn a_concert_no_longer_on_sale_stops_its_items_and_the_confirmation_writes_nothing() {
    let api = Api::start().await;
    let beyonce = common::put_on_sale(&api, &concert("Beyoncé", 100, 100)).await;
    let coldplay = common::put_on_sale(&api, &concert("Coldplay", 100, 100)).await;
    assert_eq!(add(&api, "ann", beyonce, "floor", 2).await.status, 201);
    assert_eq!(add(&api, "ann", coldplay, "balcony", 1).await.status, 201);
    cancel_concert(&api, beyonce).await;

    // The cancellation withdraws its levels from every cart that holds them, as the
    // system; the cart stays open with the rest.
    let store = store(&api).await;
    let cart_stream = StreamId::new("Cart", "ann");
    let withdrawn = eventually("Beyoncé withdrawn from the cart", || async {
        let c = cart(&api, "ann").await;
        (c["items"].as_array().unwrap().len() == 1).then_some(c)
    })
    .await;
    assert_eq!(withdrawn["open"], true);
    assert_eq!(withdrawn["items"][0]["concert_id"], coldplay.to_string());
    let removal = store
        .read_stream(&cart_stream, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event_type == "cart.item_removed")
        .unwrap();
    assert_eq!(removal.metadata.actor, "system:ticket-orders");

    // Its items can be added no more.
    refused(
        &add(&api, "ann", beyonce, "balcony", 1).await,
        409,
        "concert_canceled",
    );
    let (confirmed, _) = confirm(&api, "ann", None).await;
    assert_eq!(confirmed.status, 201, "{:?}", confirmed.body);
    assert_eq!(
        confirmed.body["lines"][0]["description"],
        "Coldplay — Balcony"
    );
    assert_eq!(confirmed.body["lines"].as_array().unwrap().len(), 1);

    // A concert that has started sells nothing more either.
    assert_eq!(add(&api, "ann", coldplay, "floor", 1).await.status, 201);
    api.stack.clock.advance(Duration::from_secs(31 * 24 * 3600));
    refused(
        &add(&api, "ann", coldplay, "balcony", 1).await,
        409,
        "concert_started",
    );
    let before = event_types(&store, cart_stream.clone()).await;
    let (started, _) = confirm(&api, "ann", Some("after-start")).await;
    refused(&started, 409, "items_unavailable");
    assert_eq!(event_types(&store, cart_stream.clone()).await, before);
    assert!(store
        .load(&StreamId::new("Order", order_of("ann", 2)))
        .await
        .unwrap()
        .is_none());
    assert!(
        started.body["detail"]
            .as_str()
            .unwrap()
            .contains("Coldplay — Floor (the concert has started)"),
        "{:?}",
        started.body
    );
}

#[tokio::test]
async fn bad_input_on_every_route_is_a_problem_never_a_500() {
    let api = Api::start().await;
    let id = common::put_on_sale(&api, &concert("Adele", 100, 100)).await;
    assert_eq!(add(&api, "ann", id, "floor", 1).await.status, 201);

    let item = |body: &str| -> (String, String, Option<String>) {
        ("POST".into(), "/cart/items".into(), Some(body.to_owned()))
    };
    let floor = format!("/cart/items/{id}/floor");
    let quantity = |body: &str| -> (String, String, Option<String>) {
        ("PUT".into(), floor.clone(), Some(body.to_owned()))
    };
    let confirm_with = |body: &str| -> (String, String, Option<String>) {
        ("POST".into(), "/cart/confirm".into(), Some(body.to_owned()))
    };
    let cases = [
        (item("{"), 400, "malformed_json"),
        (item(""), 400, "missing_body"),
        (item("[]"), 400, "invalid_body"),
        (
            item(
                &json!({ "concert_id": id, "level_id": "floor", "quantity": 1, "colour": "red" })
                    .to_string(),
            ),
            400,
            "invalid_body",
        ),
        (
            item(
                &json!({ "concert_id": "not-a-uuid", "level_id": "floor", "quantity": 1 })
                    .to_string(),
            ),
            400,
            "invalid_body",
        ),
        (
            item(&json!({ "concert_id": id, "level_id": "floor", "quantity": -1 }).to_string()),
            400,
            "invalid_body",
        ),
        (
            item(&json!({ "concert_id": id, "level_id": "floor", "quantity": "2" }).to_string()),
            400,
            "invalid_body",
        ),
        (
            item(&json!({ "concert_id": id, "level_id": "floor" }).to_string()),
            400,
            "invalid_body",
        ),
        (
            item(
                &json!({ "concert_id": id, "level_id": "Floor Seats!", "quantity": 1 }).to_string(),
            ),
            404,
            "level_not_found",
        ),
        (quantity("{"), 400, "malformed_json"),
        (
            quantity(r#"{"quantity": 2, "level_id": "x"}"#),
            400,
            "invalid_body",
        ),
        (quantity(r#"{"quantity": 1.5}"#), 400, "invalid_body"),
        (
            (
                "PUT".into(),
                "/cart/items/not-a-uuid/floor".into(),
                Some(r#"{"quantity": 2}"#.into()),
            ),
            404,
            "item_not_in_cart",
        ),
        (
            ("DELETE".into(), "/cart/items/not-a-uuid/floor".into(), None),
            404,
            "item_not_in_cart",
        ),
        (
            (
                "DELETE".into(),
                format!("/cart/items/{id}/no%20such%20level"),
                None,
            ),
            404,
            "item_not_in_cart",
        ),
        (confirm_with("{"), 400, "malformed_json"),
        (confirm_with(r#"{"colour": "red"}"#), 400, "invalid_body"),
        (
            confirm_with(r#"{"reference": ""}"#),
            422,
            "invalid_reference",
        ),
    ];
    for ((method, path, body), status, code) in cases {
        let answer = api
            .call(&method, path.clone(), Some("ann"), body.as_deref())
            .await;
        assert_eq!(
            answer.status, status,
            "{method} {path} {body:?}: {:?}",
            answer.body
        );
        assert_eq!(answer.body["code"], code, "{method} {path} {body:?}");
        assert_eq!(answer.content_type, "application/problem+json");
    }
    let bad_key = api
        .http
        .post(format!("{}/cart/confirm", api.stack.url))
        .bearer_auth(common::token("ann", "user"))
        .header("idempotency-key", "")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_key.status(), 400);
    for (method, path) in [
        ("GET", "/cart"),
        ("POST", "/cart/items"),
        ("POST", "/cart/clear"),
        ("DELETE", "/cart"),
        ("POST", "/cart/confirm"),
    ] {
        let anonymous = api.call(method, path, None, None).await;
        assert_eq!(anonymous.status, 401, "{method} {path}");
    }

    // Nothing of the above touched the cart; a reference rides along on the order.
    let unchanged = cart(&api, "ann").await;
    assert_eq!(unchanged["items"].as_array().unwrap().len(), 1);
    assert_eq!(unchanged["items"][0]["quantity"], 1);
    let with_reference = api
        .call(
            "POST",
            "/cart/confirm",
            Some("ann"),
            Some(r#"{"reference": "PO-17"}"#),
        )
        .await;
    assert_eq!(with_reference.status, 201, "{:?}", with_reference.body);
    assert_eq!(with_reference.body["reference"], "PO-17");
}
