//! Payments and orders through the local stack: credit purchases paid at localstripe, the
//! Stripe webhook (signatures, duplicates, out-of-order deliveries), refunds, expiry,
//! invoices, user deletion and bad input.

mod common;

use common::{deliver, deliver_raw, eventually, stripe_event, Api};
use kassa_domain::event::DomainEvent;
use kassa_payments::webhook_signature;
use kassa_store::{EventStore, RecordedEvent, StreamId};
use serde_json::{json, Value};
use std::time::Duration;

const BUYER: &str = "ada";

fn stripe_base() -> String {
    std::env::var("KASSA_STRIPE_API_BASE")
        .expect("KASSA_STRIPE_API_BASE: run through cargo xtask test")
}

fn stripe_key() -> String {
    std::env::var("KASSA_STRIPE_SECRET_KEY").unwrap()
}

fn now(api: &Api) -> time::OffsetDateTime {
    kassa_commerce::Clock::now(&api.stack.clock)
}

fn webhook_secret(api: &Api) -> String {
    api.stack.names.parameters["StripeWebhookSecret"].clone()
}

async fn events_of(api: &Api, stream: &str) -> Vec<RecordedEvent> {
    let store = EventStore::new(common::dynamodb().await, api.stack.table("EventsTable"));
    let (aggregate, id) = stream.split_once('#').unwrap();
    store
        .read_stream(&StreamId::new(aggregate, id), 100)
        .await
        .unwrap()
}

async fn types_of(api: &Api, stream: &str) -> Vec<String> {
    events_of(api, stream)
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

/// POSTs `body` to the webhook with `header` as its Stripe-Signature.
struct Bought {
    order: String,
    intent: String,
    amount_minor: i64,
}

fn intent_object(b: &Bought, status: &str) -> Value {
    json!({
        "id": b.intent, "object": "payment_intent", "amount": b.amount_minor,
        "currency": "usd", "status": status, "customer": null,
        "latest_charge": format!("ch_{}", &b.intent[3..]),
        "metadata": { "kassa_order_id": b.order, "kassa_user_id": BUYER },
        "last_payment_error": if status == "requires_payment_method" {
            json!({ "code": "card_declined", "message": "Your card was declined." })
        } else { Value::Null },
        "cancellation_reason": if status == "canceled" { json!("abandoned") } else { Value::Null },
    })
}

fn intent_event(api: &Api, b: &Bought, event_type: &str, offset: i64) -> Value {
    let status = match event_type {
        "payment_intent.succeeded" => "succeeded",
        "payment_intent.canceled" => "canceled",
        _ => "requires_payment_method",
    };
    stripe_event(
        event_type,
        now(api).unix_timestamp() + offset,
        intent_object(b, status),
    )
}

fn refund_event(api: &Api, b: &Bought, refund_id: &str, amount_minor: i64) -> Value {
    stripe_event(
        "charge.refunded",
        now(api).unix_timestamp(),
        json!({
            "id": format!("ch_{}", &b.intent[3..]), "object": "charge",
            "payment_intent": b.intent, "currency": "usd", "amount": b.amount_minor,
            "amount_refunded": amount_minor, "refunded": true,
            "refunds": { "object": "list", "data": [
                { "id": refund_id, "object": "refund", "amount": amount_minor,
                  "reason": "requested_by_customer", "status": "succeeded" }
            ]},
        }),
    )
}

async fn order(api: &Api, id: &str) -> Value {
    let answer = api.get(format!("/orders/{id}"), BUYER).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body
}

async fn order_status(api: &Api, id: &str) -> String {
    order(api, id).await["status"].as_str().unwrap().to_owned()
}

async fn wait_status(api: &Api, id: &str, status: &str) -> Value {
    eventually(&format!("order {id} {status}"), || async {
        let o = order(api, id).await;
        (o["status"] == status).then_some(o)
    })
    .await
}

async fn balance(api: &Api, ws: &str) -> i64 {
    api.get(format!("/workspaces/{ws}/credits/balance"), BUYER)
        .await
        .body["balance"]
        .as_i64()
        .unwrap()
}

/// Buys a pack and waits for its PaymentIntent (created by the side effect).
async fn buy(api: &Api, ws: &str, pack: &str) -> Bought {
    let created = api
        .post(
            format!("/workspaces/{ws}/credits/purchases"),
            BUYER,
            json!({ "pack": pack }),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["status"], "created");
    let id = created.body["order_id"].as_str().unwrap().to_owned();
    let pending = wait_status(api, &id, "payment_pending").await;
    let secret = pending["client_secret"]
        .as_str()
        .expect("the buyer sees the client secret");
    let intent = pending["payment_intent_id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with(&intent), "{secret} belongs to {intent}");
    let total: rust_decimal::Decimal = pending["total"]["amount"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    Bought {
        order: id,
        intent,
        amount_minor: (total * rust_decimal::Decimal::from(100))
            .try_into()
            .unwrap(),
    }
}

async fn intent_at_localstripe(intent: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}/v1/payment_intents/{intent}", stripe_base()))
        .basic_auth(stripe_key(), Some(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn mails(api: &Api) -> Vec<kassa_runtime::mail::Mail> {
    kassa_runtime::mail::MailSink::new(&api.mail_dir)
        .read_all()
        .unwrap()
}

#[tokio::test]
async fn credits_bought_and_paid_at_localstripe_are_added_invoiced_receipted_and_refunded() {
    let api = Api::start().await;
    api.stack.register_stripe_webhook().await.unwrap();
    let (ws, start) = api.workspace(BUYER, "pro").await;

    let bought = buy(&api, &ws, "starter").await;
    assert_eq!(bought.amount_minor, 1_000, "10.00 USD, no tax by default");
    let paid = common::pay_at_localstripe(&bought.intent).await;
    assert_eq!(paid["status"], "succeeded", "{paid}");

    // localstripe's signed payment_intent.succeeded → payment.completed → order.completed
    // → credits.purchased → order.fulfilled, invoice and receipt.
    let fulfilled = wait_status(&api, &bought.order, "fulfilled").await;
    assert!(
        fulfilled["client_secret"].is_null(),
        "the secret is gone once paid"
    );
    assert_eq!(balance(&api, &ws).await, start + 1_000);
    let invoices = eventually("the invoice", || async {
        let list = api.get(format!("/workspaces/{ws}/invoices"), BUYER).await;
        list.body["invoices"]
            .as_array()
            .filter(|l| !l.is_empty())
            .cloned()
    })
    .await;
    assert_eq!(invoices.len(), 1);
    let invoice = &invoices[0];
    let year = now(&api).year();
    assert_eq!(invoice["number"], format!("{year}-000001"));
    assert_eq!(invoice["status"], "paid");
    assert_eq!(
        invoice["total"],
        json!({ "amount": "10.00", "currency": "USD" })
    );
    assert_eq!(invoice["order_id"], bought.order.as_str());
    let receipt = eventually("the receipt", || async {
        mails(&api)
            .into_iter()
            .find(|m| m.subject.contains("receipt"))
    })
    .await;
    assert_eq!(receipt.to, "ops@acme.test");
    assert!(
        receipt.body.contains(&format!("{year}-000001")),
        "{}",
        receipt.body
    );
    let payment_stream = format!("Payment#{}", bought.intent);
    assert_eq!(
        types_of(&api, &payment_stream).await,
        ["payment.intent.created", "payment.completed"]
    );

    // Spend part of the credits, then refund the whole order: what is left is clawed back,
    // the rest recorded as a shortfall, and the balance never goes below zero.
    let spent = api
        .post(
            format!("/workspaces/{ws}/credits/consume"),
            BUYER,
            json!({ "feature": "api.call", "quantity": 1 }),
        )
        .await;
    assert_eq!(spent.status, 200, "{:?}", spent.body);
    let before_refund = balance(&api, &ws).await;
    let not_admin = api
        .post(format!("/orders/{}/refund", bought.order), BUYER, json!({}))
        .await;
    assert_eq!(not_admin.status, 403);
    for (amount, why) in [
        (r#"{"amount":"abc"}"#, "not a number"),
        (r#"{"amount":"10.01"}"#, "more than was paid"),
        (r#"{"amount":"0"}"#, "nothing"),
        (r#"{"amount":"1.005"}"#, "below a cent"),
    ] {
        let refused = api
            .call_as(
                "POST",
                format!("/orders/{}/refund", bought.order),
                Some(("support", "admin")),
                Some(amount),
            )
            .await;
        assert_eq!(refused.status, 422, "{why}: {:?}", refused.body);
        assert_eq!(refused.body["code"], "invalid_amount", "{why}");
    }
    assert_eq!(
        balance(&api, &ws).await,
        before_refund,
        "refused refunds change nothing"
    );
    let refund = api
        .call_as(
            "POST",
            format!("/orders/{}/refund", bought.order),
            Some(("support", "admin")),
            Some(r#"{"reason": "requested_by_customer"}"#),
        )
        .await;
    assert_eq!(refund.status, 202, "{:?}", refund.body);
    let refund_id = refund.body["refund_id"].as_str().unwrap().to_owned();
    wait_status(&api, &bought.order, "refunded").await;
    let wallet = format!("Wallet#{ws}");
    let clawed = eventually("the clawback", || async {
        events_of(&api, &wallet)
            .await
            .into_iter()
            .find(|e| e.event_type == "credits.clawed_back")
    })
    .await;
    let p = &clawed.payload;
    assert_eq!(p["requested"], 1_000);
    assert_eq!(
        p["clawed_back"].as_i64().unwrap() + p["shortfall"].as_i64().unwrap(),
        1_000
    );
    assert_eq!(
        balance(&api, &ws).await,
        (before_refund - 1_000).max(0).min(before_refund)
    );
    assert!(types_of(&api, &payment_stream)
        .await
        .contains(&"payment.refunded".to_owned()));

    // Stripe's own charge.refunded for the same refund arrives later: no second clawback.
    let answer = deliver(&api, &refund_event(&api, &bought, &refund_id, 1_000)).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let clawbacks = events_of(&api, &wallet)
        .await
        .into_iter()
        .filter(|e| e.event_type == "credits.clawed_back")
        .count();
    assert_eq!(clawbacks, 1);
}

#[tokio::test]
async fn webhook_signatures_are_verified_on_the_raw_body_before_anything_is_written() {
    let api = Api::start().await;
    let (ws, _) = api.workspace(BUYER, "pro").await;
    let bought = buy(&api, &ws, "starter").await;
    let event = intent_event(&api, &bought, "payment_intent.succeeded", 0);
    let body = serde_json::to_string(&event).unwrap();
    let secret = webhook_secret(&api);
    let now = now(&api).unix_timestamp();
    let valid = webhook_signature::sign(body.as_bytes(), &secret, now);
    let v1 = valid.split(",v1=").nth(1).unwrap().to_owned();

    let tampered = body.replace("\"usd\"", "\"eur\"");
    let wrong_secret = webhook_signature::sign(body.as_bytes(), "whsec_wrong", now);
    let stale = webhook_signature::sign(body.as_bytes(), &secret, now - 301);
    let cases: Vec<(&str, String, Option<String>)> = vec![
        ("tampered body", tampered, Some(valid.clone())),
        ("wrong secret", body.clone(), Some(wrong_secret)),
        ("stale timestamp", body.clone(), Some(stale)),
        ("missing header", body.clone(), None),
        ("garbage header", body.clone(), Some("v1=zz".into())),
    ];
    for (case, payload, header) in cases {
        let answer = deliver_raw(&api, &payload, header.as_deref()).await;
        assert_eq!(answer.status, 400, "{case}: {:?}", answer.body);
        assert_eq!(answer.content_type, "application/problem+json", "{case}");
        assert_eq!(answer.body["code"], "invalid_signature", "{case}");
    }
    assert_eq!(order_status(&api, &bought.order).await, "payment_pending");
    assert_eq!(
        types_of(&api, &format!("Payment#{}", bought.intent)).await,
        ["payment.intent.created"],
        "nothing was written for the refused deliveries"
    );

    // During a secret's rotation Stripe sends several v1 signatures: one match is enough.
    let rotated = format!("t={now},v1={},v1={v1}", "0".repeat(64));
    let answer = deliver_raw(&api, &body, Some(&rotated)).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    wait_status(&api, &bought.order, "fulfilled").await;

    // Signed but not a Stripe event: refused as such, nothing written.
    for (case, payload) in [
        ("not JSON", "{"),
        ("no id", r#"{"type":"payment_intent.succeeded"}"#),
    ] {
        let header = webhook_signature::sign(payload.as_bytes(), &secret, now);
        let answer = deliver_raw(&api, payload, Some(&header)).await;
        assert_eq!(answer.status, 400, "{case}: {:?}", answer.body);
        assert_eq!(answer.body["code"], "invalid_event", "{case}");
    }

    // A verified but unknown type is acknowledged and ignored.
    let answer = deliver(
        &api,
        &stripe_event("customer.created", now, json!({ "id": "cus_1" })),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert!(answer.body["ignored"].is_string(), "{:?}", answer.body);
}

#[tokio::test]
async fn fifty_concurrent_copies_of_one_stripe_event_have_one_effect() {
    let api = Api::start().await;
    let (ws, start) = api.workspace(BUYER, "pro").await;
    let bought = buy(&api, &ws, "growth").await;
    let event = intent_event(&api, &bought, "payment_intent.succeeded", 0);
    let body = serde_json::to_string(&event).unwrap();
    let now = now(&api).unix_timestamp();
    let header = webhook_signature::sign(body.as_bytes(), &webhook_secret(&api), now);
    let url = format!("{}/stripe/webhook", api.stack.url);
    let copies: Vec<_> = (0..50)
        .map(|_| {
            let (http, url, body, header) =
                (api.http.clone(), url.clone(), body.clone(), header.clone());
            tokio::spawn(async move {
                let res = http
                    .post(url)
                    .header("content-type", "application/json")
                    .header("stripe-signature", header)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                (res.status().as_u16(), res.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut recorded = 0;
    for copy in copies {
        let (status, answer) = copy.await.unwrap();
        assert_eq!(status, 200, "{answer:?}");
        if answer["recorded"].as_u64().unwrap_or(0) > 0 {
            recorded += 1;
        }
    }
    assert_eq!(recorded, 1, "exactly one copy records");
    wait_status(&api, &bought.order, "fulfilled").await;
    assert_eq!(balance(&api, &ws).await, start + 5_000);
    let payment_types = types_of(&api, &format!("Payment#{}", bought.intent)).await;
    assert_eq!(
        payment_types,
        ["payment.intent.created", "payment.completed"]
    );
    let order_types = types_of(&api, &format!("Order#{}", bought.order)).await;
    assert_eq!(
        order_types,
        [
            "order.created",
            "order.payment_pending",
            "order.completed",
            "order.fulfilled"
        ]
    );
}

#[tokio::test]
async fn out_of_order_payment_deliveries_end_in_the_state_their_facts_imply() {
    let api = Api::start().await;
    let (ws, _) = api.workspace(BUYER, "pro").await;

    // Failure reported after the success: still paid.
    let a = buy(&api, &ws, "starter").await;
    deliver(&api, &intent_event(&api, &a, "payment_intent.succeeded", 0)).await;
    deliver(
        &api,
        &intent_event(&api, &a, "payment_intent.payment_failed", -5),
    )
    .await;
    deliver(&api, &intent_event(&api, &a, "payment_intent.canceled", -3)).await;
    wait_status(&api, &a.order, "fulfilled").await;
    assert_eq!(
        types_of(&api, &format!("Payment#{}", a.intent)).await,
        ["payment.intent.created", "payment.completed"]
    );

    // Failure first, then the retried card succeeds: canceled, then completed.
    let b = buy(&api, &ws, "starter").await;
    deliver(
        &api,
        &intent_event(&api, &b, "payment_intent.payment_failed", 0),
    )
    .await;
    let canceled = wait_status(&api, &b.order, "canceled").await;
    assert_eq!(canceled["cancel_reason"], "payment_failed: card_declined");
    deliver(&api, &intent_event(&api, &b, "payment_intent.succeeded", 5)).await;
    wait_status(&api, &b.order, "fulfilled").await;

    // The refund arrives before the success it implies: completed, then refunded.
    let c = buy(&api, &ws, "starter").await;
    deliver(&api, &refund_event(&api, &c, "re_early", c.amount_minor)).await;
    deliver(
        &api,
        &intent_event(&api, &c, "payment_intent.succeeded", -5),
    )
    .await;
    let refunded = wait_status(&api, &c.order, "refunded").await;
    assert_eq!(refunded["refunded"], refunded["total"]);
    assert_eq!(
        types_of(&api, &format!("Payment#{}", c.intent)).await,
        [
            "payment.intent.created",
            "payment.completed",
            "payment.refunded"
        ]
    );
}

fn subscription_object(id: &str, price: &str, status: &str) -> Value {
    json!({
        "id": id, "object": "subscription", "customer": "cus_sub", "status": status,
        "cancel_at_period_end": false, "canceled_at": null, "ended_at": null,
        "current_period_end": 1_900_000_000,
        "items": { "object": "list", "data": [ { "id": "si_1", "price": { "id": price } } ] },
        "metadata": { "kassa_user_id": BUYER },
    })
}

fn invoice_object(id: &str, sub: &str, paid: bool, due: i64) -> Value {
    json!({
        "id": id, "object": "invoice", "number": "STRIPE-0001", "customer": "cus_sub",
        "subscription": sub, "currency": "usd", "amount_due": 2_900,
        "amount_paid": if paid { 2_900 } else { 0 }, "subtotal": 2_900, "tax": 0,
        "total": 2_900, "due_date": due, "attempt_count": 1,
        "status": if paid { "paid" } else { "open" },
        "lines": { "object": "list", "data": [
            { "description": "Pro plan", "amount": 2_900, "quantity": 1, "price": { "id": "price_pro" } }
        ]},
        "metadata": {},
        "subscription_details": { "metadata": { "kassa_user_id": BUYER } },
    })
}

#[tokio::test]
async fn out_of_order_subscription_and_invoice_deliveries_are_decided_by_state() {
    let api = Api::start().await;
    let now = now(&api).unix_timestamp();
    let sub = format!("sub_{}", uuid::Uuid::now_v7().simple());
    let stream = format!("Subscription#{sub}");

    // The update (newer) arrives before the creation (older): created once, newest plan.
    deliver(
        &api,
        &stripe_event(
            "customer.subscription.updated",
            now - 10,
            subscription_object(&sub, "price_pro", "active"),
        ),
    )
    .await;
    deliver(
        &api,
        &stripe_event(
            "customer.subscription.created",
            now - 60,
            subscription_object(&sub, "price_basic", "incomplete"),
        ),
    )
    .await;
    // An older update after a newer one is ignored.
    deliver(
        &api,
        &stripe_event(
            "customer.subscription.updated",
            now - 30,
            subscription_object(&sub, "price_team", "active"),
        ),
    )
    .await;
    assert_eq!(types_of(&api, &stream).await, ["subscription.created"]);
    let created = &events_of(&api, &stream).await[0];
    assert_eq!(created.payload["plan_id"], "price_pro");

    // A renewal invoice fails, then is paid; a late failure notice changes nothing.
    let invoice = format!("in_{}", uuid::Uuid::now_v7().simple());
    let due = now + 86_400;
    let failed = stripe_event(
        "invoice.payment_failed",
        now - 5,
        invoice_object(&invoice, &sub, false, due),
    );
    let answer = deliver(&api, &failed).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    deliver(
        &api,
        &stripe_event(
            "invoice.paid",
            now,
            invoice_object(&invoice, &sub, true, due),
        ),
    )
    .await;
    deliver(&api, &failed).await;
    let id = kassa_commerce::invoicing::invoice_id(&format!("stripe:{invoice}"));
    assert_eq!(
        types_of(&api, &format!("Invoice#{id}")).await,
        ["invoice.created", "invoice.paid"]
    );
    assert_eq!(
        types_of(&api, &stream).await,
        ["subscription.created", "subscription.payment_failed"]
    );

    // Deleted, then a stale update: canceled and expired, nothing after.
    deliver(
        &api,
        &stripe_event(
            "customer.subscription.deleted",
            now + 10,
            subscription_object(&sub, "price_pro", "canceled"),
        ),
    )
    .await;
    deliver(
        &api,
        &stripe_event(
            "customer.subscription.updated",
            now + 5,
            subscription_object(&sub, "price_team", "active"),
        ),
    )
    .await;
    assert_eq!(
        types_of(&api, &stream).await,
        [
            "subscription.created",
            "subscription.payment_failed",
            "subscription.canceled",
            "subscription.expired"
        ]
    );
}

#[tokio::test]
async fn unpaid_invoices_become_overdue_on_schedule_and_notify() {
    let api = Api::start().await;
    let (ws, _) = api.workspace(BUYER, "pro").await;
    let now = now(&api).unix_timestamp();
    let invoice = format!("in_{}", uuid::Uuid::now_v7().simple());
    let mut object = invoice_object(&invoice, "sub_overdue", false, now + 2 * 86_400);
    object["subscription_details"]["metadata"]["kassa_workspace_id"] = json!(ws);
    let answer = deliver(&api, &stripe_event("invoice.payment_failed", now, object)).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);

    let early = api.stack.fire("OverdueInvoicesFunction").await.unwrap();
    assert_eq!(early["done"], 0, "{early}");
    api.stack.clock.advance(Duration::from_secs(5 * 86_400));
    let run = api.stack.fire("OverdueInvoicesFunction").await.unwrap();
    assert_eq!(run["done"], 1, "{run}");
    let again = api.stack.fire("OverdueInvoicesFunction").await.unwrap();
    assert_eq!(again["due"], 0, "taken off the agenda: {again}");

    let id = kassa_commerce::invoicing::invoice_id(&format!("stripe:{invoice}"));
    let events = events_of(&api, &format!("Invoice#{id}")).await;
    let overdue = events
        .iter()
        .find(|e| e.event_type == "invoice.overdue")
        .unwrap();
    assert_eq!(overdue.payload["days_overdue"], 3);
    let notes = api
        .get(format!("/workspaces/{ws}/notifications"), BUYER)
        .await;
    let kinds: Vec<_> = notes.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(kinds.contains(&"invoice.overdue".to_owned()), "{kinds:?}");
    assert!(mails(&api).iter().any(|m| m.subject.contains("overdue")));
}

#[tokio::test]
async fn an_order_left_unpaid_expires_on_schedule_and_its_intent_is_canceled() {
    let api = Api::start().await;
    let (ws, _) = api.workspace(BUYER, "pro").await;
    let bought = buy(&api, &ws, "starter").await;

    let early = api.stack.fire("ExpireOrdersFunction").await.unwrap();
    assert_eq!(early["done"], 0, "{early}");
    api.stack.clock.advance(Duration::from_secs(31 * 60));
    let run = api.stack.fire("ExpireOrdersFunction").await.unwrap();
    assert_eq!(run["done"], 1, "{run}");
    assert_eq!(order_status(&api, &bought.order).await, "expired");
    assert_eq!(
        intent_at_localstripe(&bought.intent).await["status"],
        "canceled"
    );
    let again = api.stack.fire("ExpireOrdersFunction").await.unwrap();
    assert_eq!(again["due"], 0, "{again}");
}

#[tokio::test]
async fn deleting_a_user_cancels_their_open_orders() {
    let api = Api::start().await;
    let (ws, _) = api.workspace(BUYER, "pro").await;
    let bought = buy(&api, &ws, "starter").await;
    let other = api
        .call("DELETE", format!("/users/{BUYER}"), Some("mallory"), None)
        .await;
    assert_eq!(other.status, 403);
    let deleted = api
        .call("DELETE", format!("/users/{BUYER}"), Some(BUYER), None)
        .await;
    assert_eq!(deleted.status, 200, "{:?}", deleted.body);
    let canceled = eventually("the order canceled", || async {
        let o = api
            .call_as(
                "GET",
                format!("/orders/{}", bought.order),
                Some(("support", "admin")),
                None,
            )
            .await
            .body;
        (o["status"] == "canceled").then_some(o)
    })
    .await;
    assert_eq!(canceled["cancel_reason"], "user_deleted");
    assert_eq!(
        intent_at_localstripe(&bought.intent).await["status"],
        "canceled"
    );
}

/// (what, method, path, caller, body, expected status, expected problem code)
type Case<'a> = (
    &'a str,
    &'a str,
    String,
    Option<&'a str>,
    Option<&'a str>,
    u16,
    &'a str,
);

#[tokio::test]
async fn deleting_a_user_cancels_their_stripe_subscriptions() {
    let api = Api::start().await;
    api.stack.register_stripe_webhook().await.unwrap();
    let stripe = kassa_payments::stripe::StripeGateway::new(stripe_base(), stripe_key())
        .with_legacy_plan_items();
    let [plan, _] = common::monthly_plans(["1900", "4900"]).await;
    let customer = common::customer_with_card(&stripe).await;
    let subscription = kassa_payments::gateway::PaymentGateway::create_subscription(
        &stripe,
        &kassa_payments::gateway::SubscriptionRequest {
            customer,
            price: plan,
            metadata: [(
                kassa_commerce::order_book::USER_KEY.to_owned(),
                BUYER.to_owned(),
            )]
            .into(),
            billing_cycle_anchor: None,
        },
        &uuid::Uuid::now_v7().to_string(),
    )
    .await
    .unwrap();
    // localstripe's signed customer.subscription.created announces it to kassa.
    let stream = format!("Subscription#{}", subscription.id);
    eventually("subscription.created", || async {
        types_of(&api, &stream)
            .await
            .contains(&"subscription.created".to_owned())
            .then_some(())
    })
    .await;

    let deleted = api
        .call("DELETE", format!("/users/{BUYER}"), Some(BUYER), None)
        .await;
    assert_eq!(deleted.status, 200, "{:?}", deleted.body);
    eventually("the subscription canceled at Stripe", || async {
        let sub: Value = reqwest::Client::new()
            .get(format!(
                "{}/v1/subscriptions/{}",
                stripe_base(),
                subscription.id
            ))
            .basic_auth(stripe_key(), Some(""))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (sub["status"] == "canceled").then_some(())
    })
    .await;
    // Stripe's customer.subscription.deleted comes back: canceled, then expired.
    let types = eventually("subscription.expired", || async {
        let types = types_of(&api, &stream).await;
        types
            .contains(&"subscription.expired".to_owned())
            .then_some(types)
    })
    .await;
    assert_eq!(
        types,
        [
            "subscription.created",
            "subscription.canceled",
            "subscription.expired"
        ]
    );
}

#[tokio::test]
async fn bad_input_to_the_order_routes_is_a_clear_4xx_and_writes_nothing() {
    let api = Api::start().await;
    let (ws, _) = api.workspace(BUYER, "pro").await;
    let purchases = format!("/workspaces/{ws}/credits/purchases");
    let cases: Vec<Case> = vec![
        (
            "malformed",
            "POST",
            purchases.clone(),
            Some(BUYER),
            Some("{"),
            400,
            "malformed_json",
        ),
        (
            "unknown field",
            "POST",
            purchases.clone(),
            Some(BUYER),
            Some(r#"{"pack":"starter","price":"0"}"#),
            400,
            "invalid_body",
        ),
        (
            "unknown pack",
            "POST",
            purchases.clone(),
            Some(BUYER),
            Some(r#"{"pack":"gold"}"#),
            422,
            "unknown_pack",
        ),
        (
            "zero packs",
            "POST",
            purchases.clone(),
            Some(BUYER),
            Some(r#"{"pack":"starter","quantity":0}"#),
            422,
            "invalid_quantity",
        ),
        (
            "too many packs",
            "POST",
            purchases.clone(),
            Some(BUYER),
            Some(r#"{"pack":"starter","quantity":101}"#),
            422,
            "invalid_quantity",
        ),
        (
            "negative packs",
            "POST",
            purchases.clone(),
            Some(BUYER),
            Some(r#"{"pack":"starter","quantity":-1}"#),
            400,
            "invalid_body",
        ),
        (
            "bad reference",
            "POST",
            purchases.clone(),
            Some(BUYER),
            Some(r#"{"pack":"starter","reference":"  "}"#),
            422,
            "invalid_reference",
        ),
        (
            "not a member",
            "POST",
            purchases.clone(),
            Some("mallory"),
            Some(r#"{"pack":"starter"}"#),
            404,
            "workspace_not_found",
        ),
        (
            "no token",
            "POST",
            purchases.clone(),
            None,
            Some(r#"{"pack":"starter"}"#),
            401,
            "unauthorized",
        ),
        (
            "unknown workspace",
            "POST",
            format!("/workspaces/{}/credits/purchases", uuid::Uuid::now_v7()),
            Some(BUYER),
            Some(r#"{"pack":"starter"}"#),
            404,
            "workspace_not_found",
        ),
        (
            "malformed order id",
            "GET",
            "/orders/nope".into(),
            Some(BUYER),
            None,
            404,
            "order_not_found",
        ),
        (
            "unknown order",
            "GET",
            format!("/orders/{}", uuid::Uuid::now_v7()),
            Some(BUYER),
            None,
            404,
            "order_not_found",
        ),
        (
            "others' invoices",
            "GET",
            format!("/workspaces/{ws}/invoices"),
            Some("mallory"),
            None,
            404,
            "workspace_not_found",
        ),
        (
            "unknown invoice",
            "GET",
            format!("/invoices/{}", uuid::Uuid::now_v7()),
            Some(BUYER),
            None,
            404,
            "invoice_not_found",
        ),
        (
            "unknown event type",
            "GET",
            "/events/catalog/order.shipped".into(),
            Some(BUYER),
            None,
            404,
            "unknown_event_type",
        ),
        (
            "someone else's account",
            "DELETE",
            format!("/users/{BUYER}"),
            Some("mallory"),
            None,
            403,
            "forbidden",
        ),
    ];
    for (case, method, path, user, body, status, code) in cases {
        let answer = api.call(method, path, user, body).await;
        assert_eq!(answer.status, status, "{case}: {:?}", answer.body);
        assert_eq!(answer.content_type, "application/problem+json", "{case}");
        assert_eq!(answer.body["code"], code, "{case}: {:?}", answer.body);
    }
    let mine = api.stack.configs["OrdersFunction"].clone();
    let book =
        kassa_commerce::order_book::OrderBook::new(common::dynamodb().await, &mine.state_table);
    assert!(
        book.orders_of(BUYER).await.unwrap().is_empty(),
        "no order was created"
    );
    assert!(book.orders_of("mallory").await.unwrap().is_empty());

    // On an existing order: someone else sees nothing, a bad change changes nothing.
    let bought = buy(&api, &ws, "starter").await;
    let order_path = format!("/orders/{}", bought.order);
    let before = order(&api, &bought.order).await["version"].clone();
    let cases: Vec<Case> = vec![
        (
            "others' order",
            "GET",
            order_path.clone(),
            Some("mallory"),
            None,
            404,
            "order_not_found",
        ),
        (
            "others' cancel",
            "POST",
            format!("{order_path}/cancel"),
            Some("mallory"),
            None,
            404,
            "order_not_found",
        ),
        (
            "bad reference",
            "PATCH",
            order_path.clone(),
            Some(BUYER),
            Some(r#"{"reference":"\u0007"}"#),
            422,
            "invalid_reference",
        ),
        (
            "unknown change",
            "PATCH",
            order_path.clone(),
            Some(BUYER),
            Some(r#"{"total":"0"}"#),
            400,
            "invalid_body",
        ),
        (
            "refund unpaid",
            "POST",
            format!("{order_path}/refund"),
            Some(BUYER),
            Some("{}"),
            403,
            "forbidden",
        ),
    ];
    for (case, method, path, user, body, status, code) in cases {
        let answer = api.call(method, path, user, body).await;
        assert_eq!(answer.status, status, "{case}: {:?}", answer.body);
        assert_eq!(answer.body["code"], code, "{case}: {:?}", answer.body);
    }
    let unpaid_refund = api
        .call_as(
            "POST",
            format!("{order_path}/refund"),
            Some(("support", "admin")),
            Some("{}"),
        )
        .await;
    assert_eq!(unpaid_refund.status, 409, "{:?}", unpaid_refund.body);
    assert_eq!(unpaid_refund.body["code"], "order_not_paid");
    assert_eq!(order(&api, &bought.order).await["version"], before);

    // A valid change and cancellation work, and a second cancellation is refused.
    let changed = api
        .call(
            "PATCH",
            order_path.clone(),
            Some(BUYER),
            Some(r#"{"reference":"PO-17"}"#),
        )
        .await;
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    assert_eq!(changed.body["reference"], "PO-17");
    let canceled = api
        .post(format!("{order_path}/cancel"), BUYER, json!({}))
        .await;
    assert_eq!(canceled.status, 200, "{:?}", canceled.body);
    assert_eq!(canceled.body["cancel_reason"], "canceled_by_customer");
    assert_eq!(
        intent_at_localstripe(&bought.intent).await["status"],
        "canceled"
    );
    let twice = api
        .post(format!("{order_path}/cancel"), BUYER, json!({}))
        .await;
    assert_eq!(twice.status, 409);
    assert_eq!(twice.body["code"], "order_not_open");
}

#[tokio::test]
async fn the_event_catalog_route_serves_every_event_type() {
    let api = Api::start().await;
    let answer = api.get("/events/catalog", BUYER).await;
    assert_eq!(answer.status, 200);
    let events = answer.body["events"].as_object().unwrap();
    for t in kassa_domain::catalog::declared_types() {
        assert!(
            events.contains_key(t),
            "{t} is missing from the served catalog"
        );
    }
    let one = api.get("/events/catalog/payment.refunded", BUYER).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body["source"], "kassa.payments");
    assert_eq!(
        one.body["payload"]["title"],
        kassa_domain::payment::PaymentEvent::TYPES[4]
    );
}

/// A free workspace holding `balance` credits, and a starter order for it that a full
/// refund proved paid: `order.completed` and `order.refunded` committed together, as
/// order-payments records them when the refund is the first it hears of the payment.
async fn refunded_before_fulfilment(
    isolated: &common::Isolated,
    balance: u64,
) -> (uuid::Uuid, Vec<RecordedEvent>) {
    use kassa_domain::aggregate::ByActor;
    use kassa_domain::credits::{AllocationReason, CreditCommand, Wallet};
    use kassa_domain::identity::{Actor, UserId};
    use kassa_domain::money::{Currency, Money};
    use kassa_domain::order::{self, NewOrder, OrderCommand, OrderEvent, OrderLine, Purpose};
    use kassa_domain::tier::TierId;
    use kassa_domain::workspace::{Workspace, WorkspaceCommand};
    use kassa_runtime::access::order_stream;

    let store = &isolated.store;
    let ws = uuid::Uuid::now_v7();
    let meta = || kassa_store::Metadata::origin(uuid::Uuid::now_v7(), BUYER);
    // The workspace and its funded wallet, committed through the kernel as the workspaces
    // and allocate-credits functions do.
    let kernel = kassa_commerce::Kernel::new(
        store.clone(),
        std::sync::Arc::new(kassa_commerce::clock::SystemClock),
    );
    kernel
        .run::<(), String, _>(meta(), |tx| {
            Box::pin(async move {
                let mut workspace = tx.load::<Workspace>(&ws).await?;
                let create = WorkspaceCommand::Create {
                    id: ws,
                    name: "Acme".into(),
                    tier: TierId::Free,
                    billing_email: Some("ops@acme.test".into()),
                    anchor_day: 1,
                    at: time::OffsetDateTime::now_utc(),
                };
                tx.decide(
                    &mut workspace,
                    ByActor {
                        command: create,
                        actor: Actor::user(BUYER),
                    },
                )
                .map_err(|f| f.map(|e| e.to_string()))?;
                let mut wallet = tx.load::<Wallet>(&ws).await?;
                let open = CreditCommand::Open {
                    workspace_id: ws,
                    tier: TierId::Free,
                };
                let fund = CreditCommand::Allocate {
                    allocation_id: "signup".into(),
                    base: balance,
                    bonus: 0,
                    reason: AllocationReason::Signup,
                };
                for command in [open, fund] {
                    tx.decide(&mut wallet, command)
                        .map_err(|f| f.map(|e| e.to_string()))?;
                }
                Ok(())
            })
        })
        .await
        .unwrap();

    let ten = Money::new(rust_decimal::Decimal::new(1000, 2), Currency::Usd);
    let order_id = uuid::Uuid::now_v7();
    let mut events = order::decide(
        None,
        OrderCommand::Create(NewOrder {
            order_id,
            user_id: UserId::new(BUYER),
            purpose: Purpose::CreditPack {
                workspace_id: ws,
                pack: "starter".into(),
                quantity: 1,
                credits: 1_000,
            },
            lines: vec![OrderLine {
                description: "1000 credits (starter pack)".into(),
                quantity: 1,
                unit_price: ten,
                amount: ten,
            }],
            delivery_fee: None,
            tax_rate: rust_decimal::Decimal::ZERO,
            reference: None,
            now: time::OffsetDateTime::now_utc(),
            window: order::PAYMENT_WINDOW,
        }),
    )
    .unwrap();
    let open = events.iter().fold(None, order::evolve);
    let paid = order::decide(
        open.as_ref(),
        OrderCommand::Refund {
            payment_intent_id: "pi_isolated".into(),
            payment_id: "ch_isolated".into(),
            refund_id: "re_isolated".into(),
            amount: ten,
        },
    )
    .unwrap();
    events.extend(paid);
    let order = events.iter().fold(None, order::evolve);
    let mut commit = store.commit_builder(meta(), time::OffsetDateTime::now_utc());
    commit
        .append::<OrderEvent>(&order_stream(order_id), 0, &events, &order)
        .unwrap();
    let recorded = store.commit(commit).await.unwrap();
    let types: Vec<_> = recorded.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["order.created", "order.completed", "order.refunded"],
        "completed and refunded in one commit"
    );
    (ws, recorded)
}

#[tokio::test]
async fn a_refund_handled_before_its_purchase_leaves_the_wallet_as_purchase_then_refund() {
    a_refund_handled_before_its_purchase_leaves_the_wallet_as_purchase_then_refund_scenario().await;
}

async fn a_refund_handled_before_its_purchase_leaves_the_wallet_as_purchase_then_refund_scenario() {
    use kassa_runtime::access::{invoice_stream, order_stream, wallet_stream};
    for refund_first in [false, true] {
        let isolated = common::Isolated::new().await;
        let purchases = isolated.function("CreditPurchasesFunction").await;
        let order_payments = isolated.function("OrderPaymentsFunction").await;
        // 50 credits left: a refund that claws back before its purchase is applied takes
        // those 50 and records 950 as spent, then the purchase adds 1,000 for free.
        let (ws, recorded) = refunded_before_fulfilment(&isolated, 50).await;
        let (completed, refunded) = (&recorded[1], &recorded[2]);
        let arrival = if refund_first {
            [refunded, completed]
        } else {
            [completed, refunded]
        };
        let case = if refund_first {
            "refund first"
        } else {
            "purchase first"
        };
        for event in arrival {
            let failed = isolated.deliver(&purchases, &[event]).await;
            assert!(failed.is_empty(), "{case}: {failed:?}");
        }
        // Redelivered after the commit, before the idempotency record completed.
        for event in arrival {
            isolated.forget("credit-purchases", event).await;
            let failed = isolated.deliver(&purchases, &[event]).await;
            assert!(failed.is_empty(), "{case}, redelivered: {failed:?}");
        }

        let wallet = isolated.events(&wallet_stream(ws)).await;
        let of = |t: &str| {
            wallet
                .iter()
                .filter(|e| e.event_type == t)
                .collect::<Vec<_>>()
        };
        let purchased = of("credits.purchased");
        let clawed = of("credits.clawed_back");
        assert_eq!(purchased.len(), 1, "{case}: purchased once");
        assert_eq!(clawed.len(), 1, "{case}: clawed back once");
        assert_eq!(clawed[0].payload["clawed_back"], 1_000, "{case}");
        assert_eq!(clawed[0].payload["shortfall"], 0, "{case}");
        // The clawback takes the wallet back across its low-balance line, so it may be
        // followed by `credits.balance_low`; the balance is the last one recorded.
        let last_balance = wallet
            .iter()
            .rev()
            .find_map(|e| e.payload.get("balance_after"))
            .cloned();
        assert_eq!(
            last_balance,
            Some(serde_json::json!(50)),
            "{case}: the 50 credits the buyer had, no more, no less"
        );
        let order_id = completed.payload["order_id"].as_str().unwrap();
        let invoice = kassa_commerce::invoicing::invoice_id(&format!("order:{order_id}"));
        let invoice_events = isolated.events(&invoice_stream(invoice)).await;
        assert!(
            invoice_events
                .iter()
                .any(|e| e.event_type == "invoice.paid"),
            "{case}: the order is invoiced, paid"
        );
        let receipts = isolated
            .mails()
            .into_iter()
            .filter(|m| m.subject.contains("receipt"))
            .count();
        assert_eq!(receipts, 1, "{case}: one receipt");

        // order-payments fulfils the order on credits.purchased, once, though it was
        // refunded meanwhile: the credits were delivered.
        for _ in 0..2 {
            isolated.forget("order-payments", purchased[0]).await;
            let failed = isolated.deliver(&order_payments, &[purchased[0]]).await;
            assert!(failed.is_empty(), "{case}: {failed:?}");
        }
        let order_id = uuid::Uuid::parse_str(order_id).unwrap();
        let order = isolated.events(&order_stream(order_id)).await;
        let fulfilled = order
            .iter()
            .filter(|e| e.event_type == "order.fulfilled")
            .count();
        assert_eq!(fulfilled, 1, "{case}: order.fulfilled follows, once");
        let head = isolated
            .store
            .load(&order_stream(order_id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(head.state["status"], "refunded", "{case}");
    }
}

#[tokio::test]
async fn a_refund_reported_before_its_payment_leaves_the_wallet_as_purchase_then_refund() {
    a_refund_reported_before_its_payment_leaves_the_wallet_as_purchase_then_refund_scenario().await;
}

async fn a_refund_reported_before_its_payment_leaves_the_wallet_as_purchase_then_refund_scenario() {
    let api = Api::start().await;
    let (ws, start) = api.workspace(BUYER, "free").await;
    // Down to 100 credits: a clawback taken before its purchase would show as a shortfall
    // and as free credits.
    let spent = api
        .post(
            format!("/workspaces/{ws}/credits/consume"),
            BUYER,
            json!({ "feature": "api.call", "quantity": start - 100 }),
        )
        .await;
    assert_eq!(spent.status, 200, "{:?}", spent.body);
    let bought = buy(&api, &ws, "starter").await;

    // Stripe's refund arrives before its success: payment.completed and payment.refunded,
    // then order.completed and order.refunded, which credit-purchases may get either way.
    let answer = deliver(
        &api,
        &refund_event(&api, &bought, "re_first", bought.amount_minor),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    deliver(
        &api,
        &intent_event(&api, &bought, "payment_intent.succeeded", -5),
    )
    .await;
    wait_status(&api, &bought.order, "refunded").await;
    let wallet = format!("Wallet#{ws}");
    let order_stream = format!("Order#{}", bought.order);
    eventually("the clawback and the fulfilment", || async {
        let clawed = types_of(&api, &wallet)
            .await
            .contains(&"credits.clawed_back".to_owned());
        let fulfilled = types_of(&api, &order_stream)
            .await
            .contains(&"order.fulfilled".to_owned());
        (clawed && fulfilled).then_some(())
    })
    .await;
    eventually("the receipt", || async {
        mails(&api)
            .into_iter()
            .find(|m| m.subject.contains("receipt"))
    })
    .await;
    // Let any straggling delivery land before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;

    assert_eq!(balance(&api, &ws).await, 100);
    let wallet_events = events_of(&api, &wallet).await;
    let count = |t: &str| wallet_events.iter().filter(|e| e.event_type == t).count();
    assert_eq!(count("credits.purchased"), 1);
    assert_eq!(count("credits.clawed_back"), 1);
    let clawed = wallet_events
        .iter()
        .find(|e| e.event_type == "credits.clawed_back")
        .unwrap();
    assert_eq!(clawed.payload["clawed_back"], 1_000);
    assert_eq!(clawed.payload["shortfall"], 0);
    let order_types = types_of(&api, &order_stream).await;
    assert_eq!(
        order_types
            .iter()
            .filter(|t| *t == "order.fulfilled")
            .count(),
        1,
        "{order_types:?}"
    );
    assert_eq!(order_status(&api, &bought.order).await, "refunded");
    let invoices = api.get(format!("/workspaces/{ws}/invoices"), BUYER).await;
    assert_eq!(
        invoices.body["invoices"].as_array().unwrap().len(),
        1,
        "{:?}",
        invoices.body
    );
    let receipts = mails(&api)
        .into_iter()
        .filter(|m| m.subject.contains("receipt"))
        .count();
    assert_eq!(receipts, 1);
}

#[tokio::test]
async fn a_redelivered_order_created_leaves_the_buyers_payment_intent_alone() {
    a_redelivered_order_created_leaves_the_buyers_payment_intent_alone_scenario().await;
}

async fn a_redelivered_order_created_leaves_the_buyers_payment_intent_alone_scenario() {
    let api = Api::start().await;
    let (ws, start) = api.workspace(BUYER, "pro").await;
    let bought = buy(&api, &ws, "starter").await;
    let created = events_of(&api, &format!("Order#{}", bought.order)).await[0].clone();
    assert_eq!(created.event_type, "order.created");

    // The same order.created again, after the first delivery committed but before its
    // idempotency record completed (a crash, a timeout): SQS hands it over once more.
    let config = &api.stack.configs["PaymentIntentsFunction"];
    let intents = kassa_local::functions::build(
        "PaymentIntentsFunction",
        config,
        &kassa_runtime::config::aws().await,
        std::sync::Arc::new(api.stack.clock.clone()),
    )
    .unwrap();
    common::forget_handled(&config.state_table, "payment-intents", &created).await;
    let failed = common::deliver_batch(&intents, &[&created]).await;
    assert!(failed.is_empty(), "{failed:?}");

    // Nothing happened at Stripe: no second intent, and the buyer's is still payable.
    let at_stripe: Vec<String> = common::intents_of_order(&bought.order)
        .await
        .iter()
        .map(common::id)
        .collect();
    assert_eq!(at_stripe, [bought.intent.as_str()]);
    assert_eq!(
        intent_at_localstripe(&bought.intent).await["status"],
        "requires_payment_method"
    );
    let pending = order(&api, &bought.order).await;
    assert_eq!(pending["status"], "payment_pending");
    assert_eq!(pending["payment_intent_id"], bought.intent.as_str());
    api.stack.register_stripe_webhook().await.unwrap();
    let paid = common::pay_at_localstripe(&bought.intent).await;
    assert_eq!(paid["status"], "succeeded", "{paid}");
    wait_status(&api, &bought.order, "fulfilled").await;
    assert_eq!(balance(&api, &ws).await, start + 1_000);
}

/// A charge.refunded as API versions from 2022-11-15 send it: no `refunds` list, only
/// the charge's cumulative `amount_refunded`.
fn unlisted_refund_event(api: &Api, intent: &str, charge: &str, amount_refunded: i64) -> Value {
    stripe_event(
        "charge.refunded",
        now(api).unix_timestamp(),
        json!({
            "id": charge, "object": "charge", "payment_intent": intent, "currency": "usd",
            "amount": 1_000, "amount_refunded": amount_refunded,
            "refunded": amount_refunded >= 1_000,
        }),
    )
}

async fn refund_at_localstripe(intent: &str, amount_minor: i64) -> String {
    let refund = common::stripe_post(
        "/v1/refunds",
        &[
            ("payment_intent", intent),
            ("amount", &amount_minor.to_string()),
        ],
    )
    .await;
    common::id(&refund)
}

#[tokio::test]
async fn one_refund_is_booked_once_under_stripes_refund_id_however_it_is_reported() {
    one_refund_is_booked_once_under_stripes_refund_id_however_it_is_reported_scenario().await;
}

async fn one_refund_is_booked_once_under_stripes_refund_id_however_it_is_reported_scenario() {
    let api = Api::start().await;
    api.stack.register_stripe_webhook().await.unwrap();
    let (ws, start) = api.workspace(BUYER, "pro").await;
    let bought = buy(&api, &ws, "starter").await;
    let paid = common::pay_at_localstripe(&bought.intent).await;
    assert_eq!(paid["status"], "succeeded", "{paid}");
    let charge = paid["latest_charge"]["id"].as_str().unwrap().to_owned();
    wait_status(&api, &bought.order, "fulfilled").await;

    // 5.00 refunded at Stripe (its dashboard, or the refund route before it records): the
    // charge.refunded of a newer API version names no refund, an older one lists it.
    let first = refund_at_localstripe(&bought.intent, 500).await;
    let answer = deliver(
        &api,
        &unlisted_refund_event(&api, &bought.intent, &charge, 500),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let mut listed = refund_event(&api, &bought, &first, 500);
    listed["data"]["object"]["id"] = json!(charge);
    let answer = deliver(&api, &listed).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let refunded = wait_status(&api, &bought.order, "refunded").await;
    assert_eq!(refunded["refunded"]["amount"], "5.00");

    // The rest through the route, then Stripe's report of both, unlisted.
    let rest = api
        .call_as(
            "POST",
            format!("/orders/{}/refund", bought.order),
            Some(("support", "admin")),
            Some("{}"),
        )
        .await;
    assert_eq!(rest.status, 202, "{:?}", rest.body);
    assert_eq!(rest.body["amount"]["amount"], "5.00");
    let second = rest.body["refund_id"].as_str().unwrap().to_owned();
    let answer = deliver(
        &api,
        &unlisted_refund_event(&api, &bought.intent, &charge, 1_000),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    eventually("both refunds on the order", || async {
        let o = order(&api, &bought.order).await;
        (o["refunded"]["amount"] == "10.00").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut refund_ids: Vec<String> = events_of(&api, &format!("Payment#{}", bought.intent))
        .await
        .into_iter()
        .filter(|e| e.event_type == "payment.refunded")
        .map(|e| e.payload["refund_id"].as_str().unwrap().to_owned())
        .collect();
    refund_ids.sort();
    let mut expected = vec![first, second];
    expected.sort();
    assert_eq!(refund_ids, expected);
    assert_eq!(
        order(&api, &bought.order).await["refunded"]["amount"],
        "10.00"
    );
    let clawed: i64 = events_of(&api, &format!("Wallet#{ws}"))
        .await
        .iter()
        .filter(|e| e.event_type == "credits.clawed_back")
        .map(|e| e.payload["requested"].as_i64().unwrap())
        .sum();
    assert_eq!(clawed, 1_000, "500 credits per 5.00 refunded, no more");
    assert_eq!(balance(&api, &ws).await, start);
}

#[tokio::test]
async fn refunds_beyond_what_was_paid_are_recorded_as_a_mismatch_and_never_applied() {
    let api = Api::start().await;
    let (ws, start) = api.workspace(BUYER, "pro").await;
    let bought = buy(&api, &ws, "starter").await;
    deliver(
        &api,
        &intent_event(&api, &bought, "payment_intent.succeeded", 0),
    )
    .await;
    wait_status(&api, &bought.order, "fulfilled").await;

    let answer = deliver(&api, &refund_event(&api, &bought, "re_too_much", 1_500)).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let payment = format!("Payment#{}", bought.intent);
    let recorded = eventually("the mismatch", || async {
        events_of(&api, &payment)
            .await
            .into_iter()
            .find(|e| e.event_type == "payment.mismatched")
    })
    .await;
    assert_eq!(recorded.payload["reason"], "refund_exceeds_payment");
    assert_eq!(recorded.payload["refund_id"], "re_too_much");
    assert_eq!(
        recorded.payload["expected_amount"],
        json!({ "amount": "10.00", "currency": "USD" })
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!types_of(&api, &payment)
        .await
        .contains(&"payment.refunded".to_owned()));
    assert_eq!(order_status(&api, &bought.order).await, "fulfilled");
    assert_eq!(balance(&api, &ws).await, start + 1_000);
}

#[tokio::test]
async fn a_payment_report_that_is_not_the_orders_is_recorded_as_a_mismatch_and_not_applied() {
    let api = Api::start().await;
    let (ws, start) = api.workspace(BUYER, "pro").await;
    let bought = buy(&api, &ws, "starter").await;

    // Another intent whose metadata names the order, and the order's own intent with an
    // amount other than the order's total.
    let foreign = Bought {
        order: bought.order.clone(),
        intent: format!("pi_{}", uuid::Uuid::now_v7().simple()),
        amount_minor: bought.amount_minor,
    };
    let cheap = Bought {
        order: bought.order.clone(),
        intent: bought.intent.clone(),
        amount_minor: 1,
    };
    for (case, event, reason) in [
        (
            "another intent succeeded",
            intent_event(&api, &foreign, "payment_intent.succeeded", 0),
            "intent",
        ),
        (
            "another intent failed",
            intent_event(&api, &foreign, "payment_intent.payment_failed", 0),
            "intent",
        ),
        (
            "one cent paid",
            intent_event(&api, &cheap, "payment_intent.succeeded", 0),
            "amount",
        ),
    ] {
        let answer = deliver(&api, &event).await;
        assert_eq!(answer.status, 200, "{case}: {:?}", answer.body);
        assert_eq!(
            answer.body["mismatched"], reason,
            "{case}: {:?}",
            answer.body
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(order_status(&api, &bought.order).await, "payment_pending");
    assert_eq!(
        types_of(&api, &format!("Payment#{}", foreign.intent)).await,
        Vec::<String>::new(),
        "an intent that is not the order's gets no payment stream"
    );
    assert_eq!(
        types_of(&api, &format!("Payment#{}", bought.intent)).await,
        ["payment.intent.created"]
    );
    let foreign_mismatches = events_of(&api, &format!("PaymentMismatch#{}", foreign.intent)).await;
    assert_eq!(foreign_mismatches.len(), 2);
    assert_eq!(
        foreign_mismatches[0].payload["expected_payment_intent_id"],
        bought.intent.as_str()
    );
    let cheap_mismatches = events_of(&api, &format!("PaymentMismatch#{}", bought.intent)).await;
    assert_eq!(cheap_mismatches.len(), 1);
    assert_eq!(
        cheap_mismatches[0].payload["reported_amount"],
        json!({ "amount": "0.01", "currency": "USD" })
    );

    // The order's own payment still completes it.
    deliver(
        &api,
        &intent_event(&api, &bought, "payment_intent.succeeded", 0),
    )
    .await;
    wait_status(&api, &bought.order, "fulfilled").await;
    assert_eq!(balance(&api, &ws).await, start + 1_000);
}

/// Stripe's `data.previous_attributes` of an update that moved the subscription off `plan`.
fn previous_plan(plan: &str) -> Value {
    json!({
        "items": { "object": "list", "data": [ { "id": "si_1", "price": { "id": plan } } ] },
        "plan": { "id": plan },
    })
}

#[tokio::test]
async fn subscription_updates_stamped_in_one_second_end_the_same_whatever_their_arrival() {
    let api = Api::start().await;
    let now = now(&api).unix_timestamp();
    let store = EventStore::new(common::dynamodb().await, api.stack.table("EventsTable"));
    let updated = |sub: &str, plan: &str, previous: Option<&str>| {
        let mut event = stripe_event(
            "customer.subscription.updated",
            now - 10,
            subscription_object(sub, plan, "active"),
        );
        if let Some(previous) = previous {
            event["data"]["previous_attributes"] = previous_plan(previous);
        }
        event
    };
    for (case, chained) in [
        (
            "basic → pro → team, as previous_attributes chain them",
            true,
        ),
        ("no previous_attributes to tell", false),
    ] {
        let mut finals = Vec::new();
        for reversed in [false, true] {
            let sub = format!("sub_{}", uuid::Uuid::now_v7().simple());
            deliver(
                &api,
                &stripe_event(
                    "customer.subscription.created",
                    now - 60,
                    subscription_object(&sub, "price_basic", "active"),
                ),
            )
            .await;
            let (first, second) = if chained {
                (
                    updated(&sub, "price_pro", Some("price_basic")),
                    updated(&sub, "price_team", Some("price_pro")),
                )
            } else {
                (
                    updated(&sub, "price_pro", None),
                    updated(&sub, "price_team", None),
                )
            };
            let arrival = if reversed {
                [second, first]
            } else {
                [first, second]
            };
            for event in &arrival {
                let answer = deliver(&api, event).await;
                assert_eq!(answer.status, 200, "{case}: {:?}", answer.body);
            }
            let head = store
                .load(&StreamId::new("Subscription", &sub))
                .await
                .unwrap()
                .unwrap();
            finals.push(head.state["plan"].clone());
        }
        assert_eq!(finals[0], finals[1], "{case}: {finals:?}");
        if chained {
            assert_eq!(finals[0], "price_team", "{case}");
        }
    }
}

/// Items 1 to 3 of the money-path hardening, twenty rounds of all four at once: the local
/// runner delivers concurrently and out of order as Lambda does, so a consumer that is
/// right in only one order of arrival, or not after a redelivery, fails here sooner or
/// later.
#[tokio::test]
async fn the_money_paths_hold_twenty_rounds_over_under_concurrent_delivery() {
    let started = std::time::Instant::now();
    for round in 1..=20 {
        eprintln!(
            "hardening round {round} ({:.0} s in)",
            started.elapsed().as_secs_f64()
        );
        tokio::join!(
            a_refund_handled_before_its_purchase_leaves_the_wallet_as_purchase_then_refund_scenario(
            ),
            a_refund_reported_before_its_payment_leaves_the_wallet_as_purchase_then_refund_scenario(
            ),
            a_redelivered_order_created_leaves_the_buyers_payment_intent_alone_scenario(),
            one_refund_is_booked_once_under_stripes_refund_id_however_it_is_reported_scenario(),
        );
    }
}
