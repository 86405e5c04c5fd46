//! Coupons through the HTTP API (seed 002): one use locked per apply under the coupon's
//! and the buyer's limits, raced with real requests against DynamoDB Local; the order and
//! its PaymentIntent repriced; uses given back when orders end unpaid, kept when paid;
//! every refusal alike to the buyer and kept in the audit.

mod common;

use common::{eventually, Api};
use futures::future::join_all;
use kassa_commerce::order_book::{agenda_time, OrderBook};
use kassa_expire_orders::ExpireOrders;
use kassa_runtime::Function;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const ADMIN: (&str, &str) = ("root", "admin");

/// A coupon for credit packs, active, valid for a year.
fn credit_coupon(code: &str, discount: Value, max_uses: u32, per_user: u32) -> Value {
    let now = time::OffsetDateTime::now_utc();
    let at = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    json!({
        "code": code,
        "discount": discount,
        "valid_from": at(now - time::Duration::hours(1)),
        "valid_until": at(now + time::Duration::days(365)),
        "max_uses": max_uses,
        "max_uses_per_user": per_user,
        "scope": { "kind": "credit_packs" },
        "active": true,
    })
}

async fn create_coupon(api: &Api, body: &Value) -> String {
    let created = api
        .call_as("POST", "/coupons", Some(ADMIN), Some(&body.to_string()))
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    created.body["coupon_id"].as_str().unwrap().to_owned()
}

/// A workspace of `user`'s and an order of one starter pack (10.00) in it.
async fn credit_order(api: &Api, user: &str) -> String {
    let ws = workspace_of(api, user).await;
    another_order(api, user, &ws).await
}

/// A credit-pack coupon of `percent` off, created and active.
async fn percent_off(api: &Api, code: &str, percent: &str, max_uses: u32, per_user: u32) -> String {
    let discount = json!({ "type": "percent", "percent": percent });
    create_coupon(api, &credit_coupon(code, discount, max_uses, per_user)).await
}

/// The PaymentIntent payment-intents creates for `user`'s `order`, once it has.
async fn intent_of(api: &Api, order: &str, user: &str) -> String {
    eventually("the payment intent", || async {
        let o = api.get(format!("/orders/{order}"), user).await;
        o.body["payment_intent_id"].as_str().map(str::to_owned)
    })
    .await
}

async fn workspace_of(api: &Api, user: &str) -> String {
    let ws = api
        .post(
            "/workspaces",
            user,
            json!({ "name": "Shop", "tier": "free", "billing_email": "ops@shop.test" }),
        )
        .await;
    assert_eq!(ws.status, 201, "{:?}", ws.body);
    ws.body["id"].as_str().unwrap().to_owned()
}

async fn another_order(api: &Api, user: &str, ws: &str) -> String {
    let order = api
        .post(
            format!("/workspaces/{ws}/credits/purchases"),
            user,
            json!({ "pack": "starter" }),
        )
        .await;
    assert_eq!(order.status, 201, "{:?}", order.body);
    order.body["order_id"].as_str().unwrap().to_owned()
}

async fn apply(api: &Api, user: &str, order: &str, code: &str) -> common::Answer {
    api.post(
        format!("/orders/{order}/coupons"),
        user,
        json!({ "code": code }),
    )
    .await
}

async fn uses(api: &Api, coupon: &str) -> u64 {
    let got = api
        .call_as("GET", format!("/coupons/{coupon}"), Some(ADMIN), None)
        .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    got.body["uses"].as_u64().unwrap()
}

async fn audit(api: &Api, coupon: &str) -> Vec<Value> {
    let got = api
        .call_as(
            "GET",
            format!("/coupons/{coupon}/audit?limit=500"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    got.body["entries"].as_array().unwrap().clone()
}

fn count(entries: &[Value], event_type: &str) -> usize {
    entries.iter().filter(|e| e["type"] == event_type).count()
}

/// `user`'s ticket order of `quantity` seats of `level` at `concert`, through the cart.
async fn ticket_order(
    api: &Api,
    user: &str,
    concert: uuid::Uuid,
    level: &str,
    quantity: u32,
) -> String {
    let added = api
        .post(
            "/cart/items",
            user,
            json!({ "concert_id": concert, "level_id": level, "quantity": quantity }),
        )
        .await;
    assert!(matches!(added.status, 200 | 201), "{:?}", added.body);
    let confirmed = api.call("POST", "/cart/confirm", Some(user), None).await;
    assert_eq!(confirmed.status, 201, "{:?}", confirmed.body);
    confirmed.body["order_id"].as_str().unwrap().to_owned()
}

/// `user`'s invoice `id`, once issued.
async fn invoice_of(api: &Api, id: &str, user: &str) -> Value {
    eventually("the invoice", || async {
        let i = api.get(format!("/invoices/{id}"), user).await;
        (i.status == 200).then_some(i.body)
    })
    .await
}

/// What the PaymentIntent `intent` charges at localstripe, in minor units.
async fn charged(intent: &str) -> Option<i64> {
    let at_stripe = common::stripe_get(&format!("/v1/payment_intents/{intent}")).await;
    // localstripe echoes an updated amount as the digits it was sent.
    at_stripe["amount"]
        .as_i64()
        .or_else(|| at_stripe["amount"].as_str().and_then(|s| s.parse().ok()))
}

#[tokio::test]
async fn two_hundred_buyers_race_for_fifty_uses_and_expired_orders_give_theirs_back() {
    let api = Api::start().await;
    let coupon = percent_off(&api, "RACE-50", "10", 50, 1).await;
    let buyers: Vec<String> = (0..200).map(|i| format!("buyer-{i:03}")).collect();
    let orders: Vec<String> = join_all(buyers.iter().map(|b| credit_order(&api, b))).await;

    let answers = join_all(
        buyers
            .iter()
            .zip(&orders)
            .map(|(b, o)| apply(&api, b, o, "race-50")),
    )
    .await;
    let locked: Vec<usize> = (0..200).filter(|i| answers[*i].status == 200).collect();
    for answer in &answers {
        assert!(
            answer.status == 200
                || (answer.status == 422 && answer.body["code"] == "coupon_not_applicable"),
            "{} {:?}",
            answer.status,
            answer.body
        );
    }
    assert_eq!(locked.len(), 50, "exactly the coupon's 50 uses are locked");
    for i in &locked {
        assert_eq!(
            answers[*i].body["total"]["amount"], "9.00",
            "10 % off 10.00"
        );
    }
    assert_eq!(uses(&api, &coupon).await, 50);

    // 20 of the locked orders expire unpaid: their uses come back.
    api.stack.clock.advance(Duration::from_secs(31 * 60));
    let config = &api.stack.configs["ExpireOrdersFunction"];
    let aws = kassa_runtime::config::aws().await;
    let book = OrderBook::new(aws_sdk_dynamodb::Client::new(&aws), &config.state_table);
    let due = book
        .expiry()
        .due_by(&agenda_time(kassa_commerce::Clock::now(&api.stack.clock)))
        .await
        .unwrap();
    let expiring: Vec<String> = locked[..20].iter().map(|i| orders[*i].clone()).collect();
    let entries: Vec<_> = due
        .into_iter()
        .filter(|e| expiring.contains(&e.subject))
        .collect();
    assert_eq!(entries.len(), 20, "{entries:?}");
    let expiry =
        ExpireOrders::from_config(config, &aws, Arc::new(api.stack.clock.clone())).unwrap();
    let run = expiry.run(entries).await.unwrap();
    assert_eq!(run.failed, 0, "{run:?}");
    eventually("the expired orders' uses back", || async {
        (uses(&api, &coupon).await == 30).then_some(())
    })
    .await;

    // The 150 refused buyers race again: exactly the 20 uses given back are taken.
    let refused: Vec<usize> = (0..200).filter(|i| !locked.contains(i)).collect();
    let again = join_all(
        refused
            .iter()
            .map(|i| apply(&api, &buyers[*i], &orders[*i], "RACE-50")),
    )
    .await;
    assert_eq!(again.iter().filter(|a| a.status == 200).count(), 20);
    assert_eq!(
        uses(&api, &coupon).await,
        50,
        "locked + redeemed never pass 50"
    );
    let entries = audit(&api, &coupon).await;
    assert_eq!(count(&entries, "coupon.applied"), 70);
    assert_eq!(count(&entries, "coupon.released"), 20);
    assert_eq!(count(&entries, "coupon.rejected"), 150 + 130);
}

#[tokio::test]
async fn one_buyer_limited_to_one_use_locks_once_across_twenty_orders() {
    let api = Api::start().await;
    let coupon = create_coupon(
        &api,
        &credit_coupon(
            "ONCE",
            json!({ "type": "fixed", "amount": { "amount": "2.50", "currency": "USD" } }),
            100,
            1,
        ),
    )
    .await;
    let ws = workspace_of(&api, "solo").await;
    let mut orders = Vec::new();
    for _ in 0..20 {
        orders.push(another_order(&api, "solo", &ws).await);
    }
    let answers = join_all(orders.iter().map(|o| apply(&api, "solo", o, "once"))).await;
    let statuses: Vec<_> = answers
        .iter()
        .map(|a| (a.status, a.body["code"].clone()))
        .collect();
    assert_eq!(
        answers.iter().filter(|a| a.status == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        answers
            .iter()
            .all(|a| a.status == 200 || a.body["code"] == "coupon_not_applicable"),
        "{statuses:?}"
    );
    assert_eq!(uses(&api, &coupon).await, 1);
    let entries = audit(&api, &coupon).await;
    assert_eq!(count(&entries, "coupon.applied"), 1);
    let limits = entries
        .iter()
        .filter(|e| e["details"]["reason"] == "user_limit")
        .count();
    assert_eq!(limits, 19, "{entries:#?}");
}

#[tokio::test]
async fn a_coupon_reprices_the_order_and_its_intent_and_payment_redeems_it() {
    let api = Api::start().await;
    api.stack.register_stripe_webhook().await.unwrap();
    let coupon = percent_off(&api, "QUARTER", "25", 10, 1).await;
    let order = credit_order(&api, "payer").await;
    let intent = intent_of(&api, &order, "payer").await;
    let applied = apply(&api, "payer", &order, " quarter ").await;
    assert_eq!(applied.status, 200, "{:?}", applied.body);
    assert_eq!(applied.body["discount"]["amount"], "2.50");
    assert_eq!(applied.body["total"]["amount"], "7.50");
    let again = apply(&api, "payer", &order, "QUARTER").await;
    assert_eq!(
        again.status, 200,
        "applying twice is once: {:?}",
        again.body
    );
    assert_eq!(uses(&api, &coupon).await, 1);

    let seen = api.get(format!("/orders/{order}"), "payer").await;
    assert_eq!(seen.body["total"]["amount"], "7.50", "{:?}", seen.body);
    assert_eq!(seen.body["coupons"][0]["code"], "QUARTER");
    assert_eq!(
        charged(&intent).await,
        Some(750),
        "the intent charges the discounted total"
    );

    // Someone else's order is not there for them.
    let stranger = apply(&api, "mallory", &order, "QUARTER").await;
    assert_eq!(stranger.status, 404, "{:?}", stranger.body);

    let paid = common::pay_at_localstripe(&intent).await;
    assert_eq!(paid["status"], "succeeded", "{paid}");
    eventually("the usage redeemed", || async {
        let entries = audit(&api, &coupon).await;
        (count(&entries, "coupon.redeemed") == 1).then_some(())
    })
    .await;
    let completed = eventually("the order fulfilled", || async {
        let o = api.get(format!("/orders/{order}"), "payer").await;
        (o.body["status"] == "fulfilled").then_some(o)
    })
    .await;
    let invoice_id = completed.body["invoice_id"].as_str().unwrap().to_owned();
    let invoice = invoice_of(&api, &invoice_id, "payer").await;
    assert_eq!(invoice["total"]["amount"], "7.50", "{invoice}");
    assert_eq!(
        invoice["lines"][1]["description"], "Coupon QUARTER",
        "{invoice}"
    );
    assert_eq!(
        invoice["lines"][1]["amount"]["amount"], "-2.50",
        "{invoice}"
    );
    assert_eq!(uses(&api, &coupon).await, 1, "a redeemed use stays used");
    let late = api
        .call(
            "DELETE",
            format!("/orders/{order}/coupons/QUARTER"),
            Some("payer"),
            None,
        )
        .await;
    assert_eq!(late.status, 409, "{:?}", late.body);

    // Refunded in full, the order still used the coupon: its use is not given back.
    let refund = api
        .call_as(
            "POST",
            format!("/orders/{order}/refund"),
            Some(("support", "admin")),
            Some(r#"{"reason":"requested_by_customer"}"#),
        )
        .await;
    assert_eq!(refund.status, 202, "{:?}", refund.body);
    eventually("the order refunded", || async {
        let o = api.get(format!("/orders/{order}"), "payer").await;
        (o.body["status"] == "refunded").then_some(())
    })
    .await;
    // A release would follow `order.refunded` within the relay's lag: give it that long.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let entries = audit(&api, &coupon).await;
    assert_eq!(count(&entries, "coupon.released"), 0, "{entries:?}");
    assert_eq!(uses(&api, &coupon).await, 1, "a refund keeps the use used");
}

#[tokio::test]
async fn an_organizers_coupon_discounts_a_ticket_order_paid_at_localstripe() {
    let api = Api::start().await;
    api.stack.register_stripe_webhook().await.unwrap();
    api.register("tom").await;
    let concert = common::put_on_sale(&api, &common::concert_body("Nina", &[("floor", 10)])).await;
    let mut body = credit_coupon(
        "floor-10",
        json!({ "type": "fixed", "amount": { "amount": "10.00", "currency": "EUR" } }),
        10,
        1,
    );
    let as_organizer = |body: &Value| {
        let body = body.to_string();
        let api = &api;
        async move {
            api.call_as("POST", "/coupons", Some(common::ORGANIZER), Some(&body))
                .await
        }
    };
    let anything = as_organizer(&body).await;
    assert_eq!(
        anything.status, 403,
        "an organizer's coupon is for their own concerts: {:?}",
        anything.body
    );
    body["scope"] = json!({ "kind": "concert", "concert_id": concert });
    let created = as_organizer(&body).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let coupon = created.body["coupon_id"].as_str().unwrap().to_owned();

    let order = ticket_order(&api, "tom", concert, "floor", 2).await;
    // Applied once the intent exists: the intent is updated, not replaced.
    let intent = intent_of(&api, &order, "tom").await;
    let applied = apply(&api, "tom", &order, "Floor-10").await;
    assert_eq!(applied.status, 200, "{:?}", applied.body);
    assert_eq!(applied.body["subtotal"]["amount"], "160.00");
    assert_eq!(applied.body["total"]["amount"], "150.00");
    assert_eq!(applied.body["total"]["currency"], "EUR");
    let seen = api.get(format!("/orders/{order}"), "tom").await;
    assert_eq!(
        seen.body["payment_intent_id"],
        json!(intent),
        "{:?}",
        seen.body
    );
    assert_eq!(charged(&intent).await, Some(15_000));

    let paid = common::pay_at_localstripe(&intent).await;
    assert_eq!(paid["status"], "succeeded", "{paid}");
    let completed = eventually("the ticket order completed", || async {
        let o = api.get(format!("/orders/{order}"), "tom").await;
        (o.body["status"] == "completed" && o.body["invoice_id"].is_string()).then_some(o.body)
    })
    .await;
    let invoice_id = completed["invoice_id"].as_str().unwrap().to_owned();
    let invoice = invoice_of(&api, &invoice_id, "tom").await;
    assert_eq!(invoice["total"]["amount"], "150.00", "{invoice}");
    assert_eq!(
        invoice["lines"][1]["description"], "Coupon FLOOR-10",
        "{invoice}"
    );
    assert_eq!(
        invoice["lines"][1]["amount"]["amount"], "-10.00",
        "{invoice}"
    );
    eventually("two tickets", || async {
        let t = api.get("/tickets", "tom").await;
        let mine = t.body["tickets"]
            .as_array()?
            .iter()
            .filter(|t| t["order_id"] == json!(order))
            .count();
        (mine == 2).then_some(())
    })
    .await;
    let entries = eventually("the usage redeemed", || async {
        let entries = audit(&api, &coupon).await;
        (count(&entries, "coupon.redeemed") == 1).then_some(entries)
    })
    .await;
    let steps: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("coupon.created", "olga"),
            ("coupon.activated", "olga"),
            ("coupon.applied", "tom"),
            ("coupon.redeemed", "system:coupon-usages"),
        ],
        "{entries:#?}"
    );
    assert_eq!(uses(&api, &coupon).await, 1);
}

/// A shipping coupon waives a courier order's delivery fee (`CourierFee`, 4.90 by default),
/// taxed with the seats, so tax and total fall with it; an order by email has no fee to
/// waive, and the code is refused there as any code that does not apply.
#[tokio::test]
async fn a_shipping_coupon_waives_the_courier_fee_and_nothing_on_an_email_order() {
    let api = Api::start_with(&[("TaxRate", "0.2")]).await;
    api.stack.register_stripe_webhook().await.unwrap();
    api.register("ivy").await;
    let concert = common::put_on_sale(&api, &common::concert_body("Nina", &[("floor", 10)])).await;
    let mut body = credit_coupon("ship-free", json!({ "type": "shipping" }), 10, 2);
    body["scope"] = json!({ "kind": "concert", "concert_id": concert });
    let coupon = create_coupon(&api, &body).await;

    let by_email = ticket_order(&api, "ivy", concert, "floor", 1).await;
    let refused = apply(&api, "ivy", &by_email, "SHIP-FREE").await;
    assert_eq!(refused.status, 422, "{:?}", refused.body);
    assert_eq!(refused.body["code"], "coupon_not_applicable");

    let added = api
        .post(
            "/cart/items",
            "ivy",
            json!({ "concert_id": concert, "level_id": "floor", "quantity": 2 }),
        )
        .await;
    assert!(matches!(added.status, 200 | 201), "{:?}", added.body);
    let courier = json!({
        "delivery": "courier",
        "address": { "name": "Ivy Park", "line1": "Hauptstraße 1", "postal_code": "10115",
                     "city": "Berlin", "country": "DE" },
    });
    let confirmed = api.post("/cart/confirm", "ivy", courier).await;
    assert_eq!(confirmed.status, 201, "{:?}", confirmed.body);
    let figures = |body: &Value| {
        ["subtotal", "delivery_fee", "discount", "tax", "total"]
            .map(|field| body[field]["amount"].as_str().unwrap_or("-").to_owned())
    };
    // 160.00 of seats and 4.90 of delivery, tax 20 % on 164.90.
    assert_eq!(
        figures(&confirmed.body),
        ["160.00", "4.90", "-", "32.98", "197.88"],
        "{:?}",
        confirmed.body
    );
    let order = confirmed.body["order_id"].as_str().unwrap().to_owned();
    let intent = intent_of(&api, &order, "ivy").await;
    assert_eq!(charged(&intent).await, Some(19_788));

    let applied = apply(&api, "ivy", &order, "ship-free").await;
    assert_eq!(applied.status, 200, "{:?}", applied.body);
    assert_eq!(
        figures(&applied.body),
        ["160.00", "4.90", "4.90", "32.00", "192.00"],
        "{:?}",
        applied.body
    );
    assert_eq!(charged(&intent).await, Some(19_200));

    let paid = common::pay_at_localstripe(&intent).await;
    assert_eq!(paid["status"], "succeeded", "{paid}");
    let completed = eventually("the courier order completed", || async {
        let o = api.get(format!("/orders/{order}"), "ivy").await;
        (o.body["status"] == "completed").then_some(o.body)
    })
    .await;
    let invoice_id = completed["invoice_id"].as_str().unwrap().to_owned();
    let invoice = invoice_of(&api, &invoice_id, "ivy").await;
    let lines = common::invoice_lines(&invoice);
    assert_eq!(
        lines,
        [
            "Nina — FLOOR 160.00",
            "Courier delivery 4.90",
            "Coupon SHIP-FREE -4.90",
        ],
        "{invoice}"
    );
    assert_eq!(
        (
            invoice["tax"]["amount"].as_str(),
            invoice["total"]["amount"].as_str()
        ),
        (Some("32.00"), Some("192.00")),
        "{invoice}"
    );

    let entries = eventually("the usage redeemed", || async {
        let entries = audit(&api, &coupon).await;
        (count(&entries, "coupon.redeemed") == 1).then_some(entries)
    })
    .await;
    let rejected: Vec<&Value> = entries
        .iter()
        .filter(|e| e["type"] == "coupon.rejected")
        .map(|e| &e["details"]["reason"])
        .collect();
    assert_eq!(rejected, [&json!("nothing_to_waive")], "{entries:#?}");
    assert_eq!(count(&entries, "coupon.applied"), 1, "{entries:#?}");
    assert_eq!(uses(&api, &coupon).await, 1);
}

#[tokio::test]
async fn a_payment_declined_at_localstripe_cancels_the_order_and_releases_its_coupon() {
    let api = Api::start().await;
    api.stack.register_stripe_webhook().await.unwrap();
    let coupon = percent_off(&api, "DECLINE", "25", 1, 1).await;
    let order = credit_order(&api, "payer").await;
    let intent = intent_of(&api, &order, "payer").await;
    assert_eq!(apply(&api, "payer", &order, "DECLINE").await.status, 200);
    assert_eq!(uses(&api, &coupon).await, 1);

    let declined = common::pay_at_localstripe_with(&intent, "4000000000000341").await;
    assert_ne!(declined["status"], "succeeded", "{declined}");
    let canceled = eventually("the order canceled", || async {
        let o = api.get(format!("/orders/{order}"), "payer").await;
        (o.body["status"] == "canceled").then_some(o)
    })
    .await;
    assert!(
        canceled.body["cancel_reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("payment_failed")),
        "{:?}",
        canceled.body
    );
    // A declined attempt is not final at Stripe; the intent was canceled with the order,
    // so no other card can pay the canceled order.
    let at_stripe = common::stripe_get(&format!("/v1/payment_intents/{intent}")).await;
    assert_eq!(at_stripe["status"], "canceled", "{at_stripe}");
    let released = eventually("the use given back", || async {
        let entries = audit(&api, &coupon).await;
        (count(&entries, "coupon.released") == 1 && count(&entries, "coupon.redeemed") == 0)
            .then_some(entries)
    })
    .await;
    let last = released.last().unwrap();
    assert_eq!(last["type"], "coupon.released", "{released:?}");
    assert_eq!(uses(&api, &coupon).await, 0, "its one use is free again");
    let other = credit_order(&api, "next").await;
    assert_eq!(apply(&api, "next", &other, "DECLINE").await.status, 200);
}

#[tokio::test]
async fn taking_a_coupon_off_gives_its_use_back_and_restores_the_total() {
    let api = Api::start().await;
    let coupon = percent_off(&api, "TAKEOFF", "50", 1, 1).await;
    let order = credit_order(&api, "ann").await;
    assert_eq!(apply(&api, "ann", &order, "TAKEOFF").await.status, 200);
    let other = credit_order(&api, "bob").await;
    let full = apply(&api, "bob", &other, "TAKEOFF").await;
    assert_eq!(full.status, 422, "its one use is taken: {:?}", full.body);

    let removed = api
        .call(
            "DELETE",
            format!("/orders/{order}/coupons/takeoff"),
            Some("ann"),
            None,
        )
        .await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    assert_eq!(removed.body["total"]["amount"], "10.00");
    assert_eq!(uses(&api, &coupon).await, 0);
    assert_eq!(apply(&api, "bob", &other, "TAKEOFF").await.status, 200);
    let back = apply(&api, "ann", &order, "TAKEOFF").await;
    assert_eq!(back.status, 422, "{:?}", back.body);
    let missing = api
        .call(
            "DELETE",
            format!("/orders/{order}/coupons/NOPE"),
            Some("ann"),
            None,
        )
        .await;
    assert_eq!(missing.status, 404, "{:?}", missing.body);
}

#[tokio::test]
async fn codes_that_do_not_apply_answer_alike_and_guessing_waits() {
    let api = Api::start().await;
    let now = time::OffsetDateTime::now_utc();
    let mut expired = credit_coupon("GONE", json!({ "type": "percent", "percent": "10" }), 5, 1);
    expired["valid_from"] = json!((now - time::Duration::days(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap());
    expired["valid_until"] = json!((now - time::Duration::days(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap());
    let gone = create_coupon(&api, &expired).await;
    let mut sleeping = credit_coupon(
        "SLEEPING",
        json!({ "type": "percent", "percent": "10" }),
        5,
        1,
    );
    sleeping["active"] = json!(false);
    let sleeping = create_coupon(&api, &sleeping).await;
    let disabled = percent_off(&api, "STOPPED", "10", 5, 1).await;
    let stopped = api
        .call_as(
            "POST",
            format!("/coupons/{disabled}/disable"),
            Some(ADMIN),
            Some(r#"{"reason":"printed by mistake"}"#),
        )
        .await;
    assert_eq!(stopped.status, 200, "{:?}", stopped.body);
    // Another organizer's concert coupon: not this order's (a credit pack).
    let concert = common::put_on_sale(&api, &common::concert_body("Otto", &[("floor", 10)])).await;
    let mut theirs = credit_coupon(
        "OLGAS-ONLY",
        json!({ "type": "percent", "percent": "10" }),
        5,
        1,
    );
    theirs["scope"] = json!({ "kind": "concert", "concert_id": concert });
    theirs["active"] = json!(true);
    let theirs = api
        .call_as(
            "POST",
            "/coupons",
            Some(common::ORGANIZER),
            Some(&theirs.to_string()),
        )
        .await;
    assert_eq!(theirs.status, 201, "{:?}", theirs.body);
    let theirs = theirs.body["coupon_id"].as_str().unwrap().to_owned();
    let order = credit_order(&api, "eve").await;

    let mut bodies = Vec::new();
    for code in [
        "NO-SUCH-CODE",
        "gone",
        "SLEEPING",
        "!!",
        "stopped",
        "OLGAS-ONLY",
    ] {
        let answer = apply(&api, "eve", &order, code).await;
        assert_eq!(answer.status, 422, "{code}: {:?}", answer.body);
        assert_eq!(answer.content_type, "application/problem+json");
        bodies.push((answer.body["code"].clone(), answer.body["detail"].clone()));
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every refusal reads the same: {bodies:?}"
    );
    let reasons = |entries: Vec<Value>| -> Vec<Value> {
        entries
            .iter()
            .filter(|e| e["type"] == "coupon.rejected")
            .map(|e| e["details"]["reason"].clone())
            .collect()
    };
    assert_eq!(reasons(audit(&api, &gone).await), vec![json!("expired")]);
    assert_eq!(
        reasons(audit(&api, &sleeping).await),
        vec![json!("not_active")]
    );
    assert_eq!(reasons(audit(&api, &disabled).await).len(), 1);
    assert_eq!(reasons(audit(&api, &theirs).await).len(), 1);

    for i in 0..4 {
        let answer = apply(&api, "eve", &order, &format!("GUESS-{i}")).await;
        assert_eq!(answer.status, 422, "{:?}", answer.body);
    }
    let held = api
        .call(
            "POST",
            format!("/orders/{order}/coupons"),
            Some("eve"),
            Some(r#"{"code":"GUESS-7"}"#),
        )
        .await;
    assert_eq!(held.status, 429, "{:?}", held.body);
    assert_eq!(held.body["code"], "too_many_attempts");
    let wait: u64 = held
        .retry_after
        .as_deref()
        .expect("a 429 says when to come back")
        .parse()
        .unwrap();
    assert!((1..=600).contains(&wait), "{wait}");
    api.stack.clock.advance(Duration::from_secs(10 * 60));
    let later = apply(&api, "eve", &order, "GUESS-8").await;
    assert_eq!(later.status, 422, "the window passed: {:?}", later.body);
}

#[tokio::test]
async fn who_may_create_see_and_change_coupons_and_bad_input_writes_nothing() {
    let api = Api::start().await;
    let body = credit_coupon(
        "ADMINS-ONLY",
        json!({ "type": "percent", "percent": "10" }),
        5,
        1,
    );
    for caller in [("ursula", "user"), ("olga", "organizer")] {
        let refused = api
            .call_as("POST", "/coupons", Some(caller), Some(&body.to_string()))
            .await;
        assert_eq!(refused.status, 403, "{caller:?}: {:?}", refused.body);
    }
    let concert = common::put_on_sale(&api, &common::concert_body("Nina", &[("floor", 100)])).await;
    let mut organizers = body.clone();
    organizers["code"] = json!("OLGA-10");
    organizers["scope"] = json!({ "kind": "concert", "concert_id": concert });
    let mine = api
        .call_as(
            "POST",
            "/coupons",
            Some(common::ORGANIZER),
            Some(&organizers.to_string()),
        )
        .await;
    assert_eq!(mine.status, 201, "{:?}", mine.body);
    let id = mine.body["coupon_id"].as_str().unwrap();
    let other = ("otto", "organizer");
    organizers["code"] = json!("OTTO-10");
    let theirs = api
        .call_as(
            "POST",
            "/coupons",
            Some(other),
            Some(&organizers.to_string()),
        )
        .await;
    assert_eq!(theirs.status, 403, "not otto's concert: {:?}", theirs.body);
    let peek = api
        .call_as("GET", format!("/coupons/{id}/audit"), Some(other), None)
        .await;
    assert_eq!(peek.status, 404, "{:?}", peek.body);
    let disable = api
        .call_as(
            "POST",
            format!("/coupons/{id}/disable"),
            Some(other),
            Some(r#"{"reason":"mine now"}"#),
        )
        .await;
    assert_eq!(disable.status, 404, "{:?}", disable.body);
    let disabled = api
        .call_as(
            "POST",
            format!("/coupons/{id}/disable"),
            Some(common::ORGANIZER),
            Some(r#"{"reason":"sold out"}"#),
        )
        .await;
    assert_eq!(disabled.body["status"], "disabled", "{:?}", disabled.body);

    let taken = api
        .call_as(
            "POST",
            "/coupons",
            Some(common::ORGANIZER),
            Some(&organizers.to_string().replace("OTTO-10", "olga-10")),
        )
        .await;
    assert_eq!(
        taken.status, 409,
        "a code names one coupon: {:?}",
        taken.body
    );

    let mut bad = body.clone();
    bad["discount"] = json!({ "type": "percent", "percent": "150" });
    let cases = [
        "{".to_owned(),
        json!({ "code": "X" }).to_string(),
        bad.to_string(),
        body.to_string().replace("\"max_uses\":5", "\"max_uses\":0"),
        body.to_string().replace("ADMINS-ONLY", "not a code!"),
    ];
    for case in cases {
        let answer = api
            .call_as("POST", "/coupons", Some(ADMIN), Some(&case))
            .await;
        assert!(
            (400..500).contains(&answer.status),
            "{case}: {} {:?}",
            answer.status,
            answer.body
        );
        assert_eq!(answer.content_type, "application/problem+json");
    }
    // Amounts a coupon could never meet or pay out: refused before any code is claimed.
    let mut below_zero = body.clone();
    below_zero["code"] = json!("BELOW-ZERO");
    below_zero["min_order"] = json!({ "amount": "-5.001", "currency": "EUR" });
    let mut too_dear = body.clone();
    too_dear["code"] = json!("TOO-DEAR");
    too_dear["discount"] = json!({ "type": "fixed",
        "amount": { "amount": "79228162514264337593543950335", "currency": "EUR" } });
    for (case, code) in [
        (below_zero, "invalid_min_order"),
        (too_dear, "invalid_discount"),
    ] {
        let answer = api
            .call_as("POST", "/coupons", Some(ADMIN), Some(&case.to_string()))
            .await;
        assert_eq!(
            (answer.status, answer.body["code"].as_str()),
            (422, Some(code)),
            "{case}: {:?}",
            answer.body
        );
    }
    let batch = api
        .call_as(
            "POST",
            "/coupons/batches",
            Some(ADMIN),
            Some(&{
                let mut b = body.clone();
                b.as_object_mut().unwrap().remove("code");
                b.as_object_mut().unwrap().remove("max_uses");
                b["count"] = json!(45);
                b.to_string()
            }),
        )
        .await;
    assert_eq!(batch.status, 201, "{:?}", batch.body);
    let codes: std::collections::BTreeSet<String> = batch.body["coupons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 45, "every generated code differs");
    assert!(codes.iter().all(|c| c.len() == 10
        && c.bytes()
            .all(|b| kassa_domain::coupon_code::ALPHABET.contains(&b))));
    let one = batch.body["coupons"][0]["coupon_id"].as_str().unwrap();
    let single = api
        .call_as("GET", format!("/coupons/{one}"), Some(ADMIN), None)
        .await;
    assert_eq!(
        single.body["max_uses"], 1,
        "batch codes are single-use: {:?}",
        single.body
    );
}

#[tokio::test]
async fn stacking_minimum_and_first_order_rules_hold_through_the_api() {
    let api = Api::start().await;
    api.stack.register_stripe_webhook().await.unwrap();
    let stackable = json!({ "kind": "stackable", "max_per_order": 2 });
    for (code, percent) in [("TEN", "10"), ("FIVE", "5"), ("TWO", "2")] {
        let mut body = credit_coupon(
            code,
            json!({ "type": "percent", "percent": percent }),
            10,
            1,
        );
        body["stacking"] = stackable.clone();
        create_coupon(&api, &body).await;
    }
    percent_off(&api, "ALONE", "50", 10, 1).await;
    let mut big = credit_coupon(
        "BIG-SPENDER",
        json!({ "type": "percent", "percent": "50" }),
        10,
        1,
    );
    big["min_order"] = json!({ "amount": "20.00", "currency": "USD" });
    create_coupon(&api, &big).await;
    let mut first = credit_coupon(
        "WELCOME",
        json!({ "type": "percent", "percent": "20" }),
        10,
        1,
    );
    first["first_order_only"] = json!(true);
    create_coupon(&api, &first).await;

    let ws = workspace_of(&api, "sam").await;
    let order = another_order(&api, "sam", &ws).await;
    assert_eq!(apply(&api, "sam", &order, "TEN").await.status, 200);
    let both = apply(&api, "sam", &order, "FIVE").await;
    assert_eq!(both.status, 200, "{:?}", both.body);
    // 10.00 less 10 % = 9.00, less 5 % of that = 8.55.
    assert_eq!(both.body["total"]["amount"], "8.55", "{:?}", both.body);
    for code in ["TWO", "ALONE"] {
        let refused = apply(&api, "sam", &order, code).await;
        assert_eq!(refused.status, 422, "{code}: {:?}", refused.body);
    }
    let below = apply(&api, "sam", &order, "BIG-SPENDER").await;
    assert_eq!(
        below.status, 422,
        "a 10.00 order is below 20.00: {:?}",
        below.body
    );

    // WELCOME applies to a first order, not once the buyer has paid for one.
    let fresh = another_order(&api, "sam", &ws).await;
    assert_eq!(apply(&api, "sam", &fresh, "WELCOME").await.status, 200);
    let removed = api
        .call(
            "DELETE",
            format!("/orders/{fresh}/coupons/WELCOME"),
            Some("sam"),
            None,
        )
        .await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    let intent = eventually("the payment intent", || async {
        let o = api.get(format!("/orders/{order}"), "sam").await;
        o.body["payment_intent_id"].as_str().map(str::to_owned)
    })
    .await;
    let paid = common::pay_at_localstripe(&intent).await;
    assert_eq!(paid["status"], "succeeded", "{paid}");
    eventually("the first order paid", || async {
        let o = api.get(format!("/orders/{order}"), "sam").await;
        (o.body["status"] != "payment_pending").then_some(())
    })
    .await;
    let later = another_order(&api, "sam", &ws).await;
    let second = apply(&api, "sam", &later, "WELCOME").await;
    assert_eq!(second.status, 422, "not a first order: {:?}", second.body);
}

#[tokio::test]
async fn coupons_raced_onto_one_order_stack_up_to_its_limit_and_exclusive_ones_lock_once() {
    let api = Api::start().await;
    let stackable = json!({ "kind": "stackable", "max_per_order": 2 });
    let mut stacking = Vec::new();
    for code in ["RACE-A", "RACE-B", "RACE-C"] {
        let mut body = credit_coupon(code, json!({ "type": "percent", "percent": "10" }), 10, 1);
        body["stacking"] = stackable.clone();
        stacking.push(create_coupon(&api, &body).await);
    }
    let mut exclusive = Vec::new();
    for code in ["SOLO-A", "SOLO-B"] {
        exclusive.push(percent_off(&api, code, "50", 10, 1).await);
    }
    let ws = workspace_of(&api, "rita").await;
    let uses_of = |coupons: Vec<String>| {
        let api = &api;
        async move {
            join_all(coupons.iter().map(|c| uses(api, c)))
                .await
                .iter()
                .sum::<u64>()
        }
    };

    // Three stackable codes at once on an order that takes two of them.
    let order = another_order(&api, "rita", &ws).await;
    let answers =
        join_all(["RACE-A", "RACE-B", "RACE-C"].map(|code| apply(&api, "rita", &order, code)))
            .await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        2,
        "{answers:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 422).count(),
        1,
        "{answers:?}"
    );
    let seen = api.get(format!("/orders/{order}"), "rita").await;
    assert_eq!(
        seen.body["coupons"].as_array().unwrap().len(),
        2,
        "{:?}",
        seen.body
    );
    // 10.00 less 10 % = 9.00, less 10 % of that = 8.10.
    assert_eq!(seen.body["total"]["amount"], "8.10", "{:?}", seen.body);
    assert_eq!(
        uses_of(stacking).await,
        2,
        "the refused code's use was given back"
    );

    // Two exclusive codes at once: one locks, the other's use goes back.
    let order = another_order(&api, "rita", &ws).await;
    let answers =
        join_all(["SOLO-A", "SOLO-B"].map(|code| apply(&api, "rita", &order, code))).await;
    let locked = answers.iter().filter(|a| a.status == 200).count();
    assert_eq!(locked, 1, "{answers:?}");
    assert!(
        answers.iter().all(|a| matches!(a.status, 200 | 422)),
        "{answers:?}"
    );
    let seen = api.get(format!("/orders/{order}"), "rita").await;
    assert_eq!(
        seen.body["coupons"].as_array().unwrap().len(),
        1,
        "{:?}",
        seen.body
    );
    assert_eq!(seen.body["total"]["amount"], "5.00", "{:?}", seen.body);
    assert_eq!(uses_of(exclusive).await, 1);
}

#[tokio::test]
async fn an_order_a_coupon_makes_free_completes_without_a_payment() {
    let api = Api::start().await;
    percent_off(&api, "ON-US", "100", 10, 1).await;
    let order = credit_order(&api, "fay").await;
    let applied = apply(&api, "fay", &order, "ON-US").await;
    assert_eq!(applied.status, 200, "{:?}", applied.body);
    assert_eq!(applied.body["total"]["amount"], "0.00");
    assert_eq!(applied.body["status"], "completed", "{:?}", applied.body);
    let fulfilled = eventually("the free order fulfilled", || async {
        let o = api.get(format!("/orders/{order}"), "fay").await;
        (o.body["status"] == "fulfilled").then_some(o.body)
    })
    .await;
    assert_eq!(fulfilled["payment_id"], format!("free:{order}"));
    let invoice_id = fulfilled["invoice_id"].as_str().unwrap().to_owned();
    let invoice = invoice_of(&api, &invoice_id, "fay").await;
    assert_eq!(invoice["total"]["amount"], "0.00", "{invoice}");

    // A ticket order: it completes once its seats are held, and its tickets are issued.
    api.register("fay").await;
    let concert = common::put_on_sale(&api, &common::concert_body("Nina", &[("floor", 10)])).await;
    let mut free_seats = credit_coupon(
        "FRONT-ROW",
        json!({ "type": "percent", "percent": "100" }),
        5,
        1,
    );
    free_seats["scope"] = json!({ "kind": "concert", "concert_id": concert });
    let created = api
        .call_as(
            "POST",
            "/coupons",
            Some(common::ORGANIZER),
            Some(&free_seats.to_string()),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let tickets_order = ticket_order(&api, "fay", concert, "floor", 2).await;
    let applied = apply(&api, "fay", &tickets_order, "FRONT-ROW").await;
    assert_eq!(applied.status, 200, "{:?}", applied.body);
    let tickets = eventually("the free tickets", || async {
        let t = api.get("/tickets", "fay").await;
        let mine: Vec<Value> = t.body["tickets"]
            .as_array()?
            .iter()
            .filter(|t| t["order_id"] == json!(tickets_order))
            .cloned()
            .collect();
        (mine.len() == 2).then_some(mine)
    })
    .await;
    assert!(
        tickets.iter().all(|t| t["status"] == "valid"),
        "{tickets:?}"
    );
    let sales = api
        .call_as(
            "GET",
            format!("/concerts/{concert}/sales"),
            Some(common::ORGANIZER),
            None,
        )
        .await;
    assert_eq!(sales.body["levels"][0]["sold"], 2, "{:?}", sales.body);

    // Free seats need no coupon: the order owes nothing from the start.
    let mut body = common::concert_body("Open Air", &[("lawn", 100)]);
    body["levels"][0]["price"]["amount"] = json!("0.00");
    let open_air = common::put_on_sale(&api, &body).await;
    let free_order = ticket_order(&api, "fay", open_air, "lawn", 1).await;
    let done = eventually("the free ticket order completed", || async {
        let o = api.get(format!("/orders/{free_order}"), "fay").await;
        (o.body["payment_id"] == json!(format!("free:{free_order}"))).then_some(o.body)
    })
    .await;
    assert_eq!(
        done["payment_intent_id"],
        json!(""),
        "Stripe was never asked: {done}"
    );
    eventually("the free ticket", || async {
        let t = api.get("/tickets", "fay").await;
        t.body["tickets"]
            .as_array()?
            .iter()
            .any(|t| t["order_id"] == json!(free_order))
            .then_some(())
    })
    .await;
}

/// The coupon read models over the test stack's tables, with the store and the rows
/// beneath them.
async fn read_models(
    api: &Api,
) -> (
    kassa_commerce::coupon_views::CouponViews,
    kassa_store::EventStore,
    kassa_store::Views,
) {
    let config = &api.stack.configs["CouponViewsFunction"];
    let client = aws_sdk_dynamodb::Client::new(&kassa_runtime::config::aws().await);
    let store = kassa_store::EventStore::new(client.clone(), &config.events_table);
    let rows = kassa_store::Views::new(client, &config.state_table);
    (
        kassa_commerce::coupon_views::CouponViews::new(store.clone(), rows.clone()),
        store,
        rows,
    )
}

fn codes(list: &common::Answer) -> Vec<(String, String)> {
    let mut codes: Vec<(String, String)> = list.body["coupons"]
        .as_array()
        .unwrap_or_else(|| panic!("{:?}", list.body))
        .iter()
        .map(|c| {
            (
                c["code"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    codes.sort();
    codes
}

#[tokio::test]
async fn read_models_follow_the_events_and_a_rebuild_from_the_log_equals_them() {
    use kassa_commerce::coupon_views::View;
    use kassa_store::{Over, ViewRow};

    let api = Api::start().await;
    let ten = json!({ "type": "percent", "percent": "10" });
    let ops = ("ops", "admin");
    let alpha = create_coupon(&api, &credit_coupon("ALPHA", ten.clone(), 10, 1)).await;
    let mut idle = credit_coupon("IDLE", ten.clone(), 10, 1);
    idle["active"] = json!(false);
    create_coupon(&api, &idle).await;
    let gone = create_coupon(&api, &credit_coupon("GONE", ten.clone(), 10, 1)).await;
    let disabled = api
        .call_as(
            "POST",
            format!("/coupons/{gone}/disable"),
            Some(ADMIN),
            Some(&json!({ "reason": "campaign over" }).to_string()),
        )
        .await;
    assert_eq!(disabled.status, 200, "{:?}", disabled.body);
    percent_off(&api, "FREE", "100", 10, 1).await;
    let theirs = api
        .call_as(
            "POST",
            "/coupons",
            Some(ops),
            Some(&credit_coupon("DELTA", ten.clone(), 10, 1).to_string()),
        )
        .await;
    assert_eq!(theirs.status, 201, "{:?}", theirs.body);

    // ann holds ALPHA and DELTA on two orders; bob takes ALPHA off again; cy's order
    // costs nothing with FREE, so it completes and the use is redeemed.
    let ws = workspace_of(&api, "ann").await;
    let (first, second) = (
        another_order(&api, "ann", &ws).await,
        another_order(&api, "ann", &ws).await,
    );
    assert_eq!(apply(&api, "ann", &first, "alpha").await.status, 200);
    assert_eq!(apply(&api, "ann", &second, "delta").await.status, 200);
    let bobs = credit_order(&api, "bob").await;
    assert_eq!(apply(&api, "bob", &bobs, "ALPHA").await.status, 200);
    let off = api
        .call(
            "DELETE",
            format!("/orders/{bobs}/coupons/alpha"),
            Some("bob"),
            None,
        )
        .await;
    assert_eq!(off.status, 200, "{:?}", off.body);
    let cys = credit_order(&api, "cy").await;
    assert_eq!(apply(&api, "cy", &cys, "FREE").await.status, 200);

    let mine = eventually("the seller and usage views caught up", || async {
        let mine = api.call_as("GET", "/coupons", Some(ADMIN), None).await;
        let cy = api.get("/users/cy/coupon-usages", "cy").await;
        let bob = api.get("/users/bob/coupon-usages", "bob").await;
        let ready = codes(&mine).len() == 4
            && codes(&mine).contains(&("GONE".into(), "disabled".into()))
            && cy.body["coupons"][0]["redeemed"] == 1
            && bob.body["coupons"][0]["released"] == 1;
        ready.then_some(mine)
    })
    .await;
    assert_eq!(
        codes(&mine),
        [
            ("ALPHA".into(), "active".into()),
            ("FREE".into(), "active".into()),
            ("GONE".into(), "disabled".into()),
            ("IDLE".into(), "inactive".into()),
        ]
    );
    let active = api
        .call_as("GET", "/coupons?active=true", Some(ADMIN), None)
        .await;
    assert_eq!(
        codes(&active),
        [
            ("ALPHA".into(), "active".into()),
            ("DELTA".into(), "active".into()),
            ("FREE".into(), "active".into()),
        ],
        "every seller's active coupons"
    );
    // Page by page, each row once, and the same rows as in one page.
    for (path, limit, all) in [
        ("/coupons?", 1, &mine),
        ("/coupons?active=true&", 2, &active),
    ] {
        let mut paged = Vec::new();
        let mut after = String::new();
        let mut pages = 0;
        loop {
            let page = api
                .call_as(
                    "GET",
                    format!("{path}limit={limit}{after}"),
                    Some(ADMIN),
                    None,
                )
                .await;
            assert_eq!(page.status, 200, "{:?}", page.body);
            let rows = codes(&page);
            assert!(rows.len() <= limit, "{:?}", page.body);
            paged.extend(rows);
            pages += 1;
            match page.body["next"].as_str() {
                Some(next) => after = format!("&after={next}"),
                None => break,
            }
        }
        paged.sort();
        assert_eq!(paged, codes(all), "{path}");
        assert!(pages > codes(all).len() / limit, "{path}: {pages} pages");
    }
    let bad_limit = api
        .call_as("GET", "/coupons?limit=0", Some(ADMIN), None)
        .await;
    assert_eq!(bad_limit.status, 400, "{:?}", bad_limit.body);
    assert_eq!(bad_limit.body["code"], "invalid_limit");
    let own = api.call_as("GET", "/coupons", Some(ops), None).await;
    assert_eq!(codes(&own), [("DELTA".into(), "active".into())]);
    let anns = eventually("ann's usages", || async {
        let anns = api.get("/users/ann/coupon-usages", "ann").await;
        (anns.body["coupons"].as_array().map(Vec::len) == Some(2)).then_some(anns)
    })
    .await;
    for coupon in anns.body["coupons"].as_array().unwrap() {
        assert_eq!(coupon["locked"], 1, "{coupon}");
        assert_eq!(coupon["orders"].as_array().unwrap().len(), 1);
    }
    let alpha_row = anns.body["coupons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == "ALPHA")
        .unwrap();
    assert_eq!(alpha_row["coupon_id"], alpha.as_str());
    assert_eq!(alpha_row["orders"][0]["order_id"], first.as_str());
    assert_eq!(alpha_row["orders"][0]["discount"]["amount"], "1.00");

    // Who may read what, and bad input.
    assert_eq!(api.get("/users/ann/coupon-usages", "bob").await.status, 403);
    let admin_reads = api
        .call_as("GET", "/users/ann/coupon-usages", Some(ADMIN), None)
        .await;
    assert_eq!(admin_reads.status, 200);
    assert_eq!(api.get("/coupons?seller=root", "bob").await.status, 403);
    let theirs = api
        .call_as("GET", "/coupons?seller=ops", Some(ADMIN), None)
        .await;
    assert_eq!(codes(&theirs), [("DELTA".into(), "active".into())]);
    let bad = api.get("/coupons?active=maybe", "ann").await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    assert_eq!(bad.body["code"], "invalid_query");
    // Cursors that no page hands out: answered before the store sees them.
    let long = "9".repeat(1_100);
    for path in [
        "/coupons?after=".to_owned(),
        format!("/coupons?after={long}"),
        format!(
            "/coupons/{}/audit?after=",
            alpha_row["coupon_id"].as_str().unwrap()
        ),
        format!(
            "/coupons/{}/audit?after={long}",
            alpha_row["coupon_id"].as_str().unwrap()
        ),
    ] {
        let answer = api.call_as("GET", path.as_str(), Some(ADMIN), None).await;
        assert_eq!(
            (answer.status, answer.body["code"].as_str()),
            (400, Some("invalid_cursor")),
            "{path}: {:?}",
            answer.body
        );
    }
    assert_eq!(api.call("GET", "/coupons", None, None).await.status, 401);

    // The live rows, as the projector wrote them.
    let (views, store, states) = read_models(&api).await;
    let mut live = Vec::new();
    for view in View::ALL {
        live.push(views.rows(view).await.unwrap());
    }
    assert_eq!(
        live[0].len(),
        5,
        "a row (or tombstone) per coupon: {:?}",
        live[0]
    );
    assert_eq!(live[0].iter().filter(|r| r.body.is_none()).count(), 2);
    assert_eq!(live[1].len(), 5);
    assert_eq!(live[2].len(), 4, "ann's two, bob's and cy's one each");

    // A redelivered event rewrites nothing: the rows are as of the latest version.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for stream in ["Coupon", "CouponUsage"] {
        for (id, _) in store.scan_events(stream).await.unwrap() {
            assert_eq!(views.follow(&id, now).await.unwrap(), 0, "{id}");
        }
    }

    // Damage every view: a row lost, a row gone wrong at its own version, a stray row.
    let lost = &live[1][0];
    assert!(states
        .remove(&lost.pk, &lost.sk, lost.version)
        .await
        .unwrap());
    let wrong = ViewRow {
        body: Some(json!({ "code": "TAMPERED" })),
        ..live[2][0].clone()
    };
    assert!(states.write(&wrong, Over::NotNewer, now).await.unwrap());
    let stray = ViewRow {
        pk: live[0][0].pk.clone(),
        sk: uuid::Uuid::now_v7().to_string(),
        version: 1,
        body: Some(json!({ "code": "STRAY" })),
    };
    assert!(states.write(&stray, Over::Older, now).await.unwrap());

    let mut rebuilt = Vec::new();
    for view in View::ALL {
        let done = views.rebuild(view, now).await.unwrap();
        assert!(done.streams >= 4, "{view:?}: {done:?}");
        rebuilt.push((done, views.rows(view).await.unwrap()));
    }
    assert_eq!(
        (rebuilt[0].0.written, rebuilt[0].0.removed),
        (0, 1),
        "the stray row"
    );
    assert_eq!(
        (rebuilt[1].0.written, rebuilt[1].0.removed),
        (1, 0),
        "the lost row"
    );
    assert_eq!(
        (rebuilt[2].0.written, rebuilt[2].0.removed),
        (1, 0),
        "the wrong row"
    );
    for (i, view) in View::ALL.iter().enumerate() {
        assert_eq!(
            rebuilt[i].1, live[i],
            "{view:?}: rebuilt from the log = live"
        );
    }
}

/// Bad input on every coupon and promotion route answers a 4xx problem, never a 500, and
/// changes nothing: no coupon, code, use, order total or trial comes of it.
#[tokio::test]
async fn bad_input_on_every_coupon_route_is_a_problem_and_writes_nothing() {
    let api = Api::start().await;
    let coupon = percent_off(&api, "STEADY", "10", 5, 1).await;
    let ws = workspace_of(&api, "bea").await;
    let order = another_order(&api, "bea", &ws).await;
    let coupon_before = api
        .call_as("GET", format!("/coupons/{coupon}"), Some(ADMIN), None)
        .await
        .body;
    let order_before = api.get(format!("/orders/{order}"), "bea").await.body;
    let mut batch = credit_coupon(
        "UNUSED",
        json!({ "type": "percent", "percent": "10" }),
        1,
        1,
    );
    batch.as_object_mut().unwrap().remove("code");
    batch.as_object_mut().unwrap().remove("max_uses");
    let batch_of = |count: Value| {
        let mut b = batch.clone();
        b["count"] = count;
        b.to_string()
    };
    let bea = ("bea", "user");
    let long_code = json!({ "code": "X".repeat(65) }).to_string();
    let long_reason = json!({ "reason": "r".repeat(201) }).to_string();
    // Method, path, caller, body.
    type Case = (
        &'static str,
        String,
        (&'static str, &'static str),
        Option<String>,
    );
    let cases: Vec<Case> = vec![
        ("POST", "/coupons/batches".into(), ADMIN, Some("{".into())),
        (
            "POST",
            "/coupons/batches".into(),
            ADMIN,
            Some(batch_of(json!(0))),
        ),
        (
            "POST",
            "/coupons/batches".into(),
            ADMIN,
            Some(batch_of(json!(501))),
        ),
        (
            "POST",
            "/coupons/batches".into(),
            ADMIN,
            Some(batch_of(json!("ten"))),
        ),
        ("GET", "/coupons/not-a-uuid".into(), ADMIN, None),
        ("POST", "/coupons/not-a-uuid/activate".into(), ADMIN, None),
        (
            "POST",
            format!("/coupons/{coupon}/disable"),
            ADMIN,
            Some("{}".into()),
        ),
        (
            "POST",
            format!("/coupons/{coupon}/disable"),
            ADMIN,
            Some(r#"{"reason":"  "}"#.into()),
        ),
        (
            "POST",
            format!("/coupons/{coupon}/disable"),
            ADMIN,
            Some(long_reason),
        ),
        (
            "POST",
            format!("/orders/{order}/coupons"),
            bea,
            Some("{".into()),
        ),
        (
            "POST",
            format!("/orders/{order}/coupons"),
            bea,
            Some("{}".into()),
        ),
        (
            "POST",
            format!("/orders/{order}/coupons"),
            bea,
            Some(r#"{"code":""}"#.into()),
        ),
        (
            "POST",
            format!("/orders/{order}/coupons"),
            bea,
            Some(long_code),
        ),
        (
            "POST",
            format!("/orders/{order}/coupons"),
            bea,
            Some(r#"{"code":"STEADY","extra":1}"#.into()),
        ),
        (
            "POST",
            "/orders/not-a-uuid/coupons".into(),
            bea,
            Some(r#"{"code":"STEADY"}"#.into()),
        ),
        (
            "DELETE",
            "/orders/not-a-uuid/coupons/STEADY".into(),
            bea,
            None,
        ),
        (
            "DELETE",
            format!("/orders/{order}/coupons/NOT-ON-IT"),
            bea,
            None,
        ),
        (
            "POST",
            format!("/workspaces/{ws}/promotions"),
            bea,
            Some("{".into()),
        ),
        (
            "POST",
            format!("/workspaces/{ws}/promotions"),
            bea,
            Some(r#"{"code":7}"#.into()),
        ),
    ];
    for (method, path, caller, body) in &cases {
        let answer = api
            .call_as(method, path.as_str(), Some(*caller), body.as_deref())
            .await;
        assert!(
            (400..500).contains(&answer.status),
            "{method} {path} {body:?}: {} {:?}",
            answer.status,
            answer.body
        );
        assert_eq!(
            answer.content_type, "application/problem+json",
            "{method} {path}"
        );
    }

    let coupon_after = api
        .call_as("GET", format!("/coupons/{coupon}"), Some(ADMIN), None)
        .await
        .body;
    assert_eq!(coupon_after, coupon_before, "the coupon is as it was");
    let order_after = api.get(format!("/orders/{order}"), "bea").await.body;
    for field in ["total", "coupons"] {
        assert_eq!(order_after[field], order_before[field], "{field}");
    }
    let w = api.get(format!("/workspaces/{ws}"), "bea").await.body;
    assert_eq!(w["trial"], Value::Null, "{w}");
}
