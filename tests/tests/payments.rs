//! Payments and orders through the local stack: credit purchases paid at localstripe, the
//! Stripe webhook (signatures, duplicates, out-of-order deliveries), refunds, expiry,
//! invoices, user deletion and bad input.

mod common;

use common::{eventually, Answer, Api};
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
    kassa_runtime::Clock::now(&api.stack.clock)
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
async fn deliver_raw(api: &Api, body: &str, header: Option<&str>) -> Answer {
    let mut req = api
        .http
        .post(format!("{}/stripe/webhook", api.stack.url))
        .header("content-type", "application/json; charset=utf-8")
        .body(body.to_owned());
    if let Some(h) = header {
        req = req.header("stripe-signature", h);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = res.text().await.unwrap();
    Answer {
        status,
        content_type,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

/// Signs `event` exactly as Stripe does (at the stack's clock) and delivers it.
async fn deliver(api: &Api, event: &Value) -> Answer {
    let body = serde_json::to_string_pretty(event).unwrap();
    let now = now(api).unix_timestamp();
    let header = webhook_signature::sign(body.as_bytes(), &webhook_secret(api), now);
    deliver_raw(api, &body, Some(&header)).await
}

fn stripe_event(event_type: &str, created: i64, object: Value) -> Value {
    json!({
        "id": format!("evt_{}", uuid::Uuid::now_v7().simple()),
        "object": "event",
        "api_version": "2024-06-20",
        "type": event_type,
        "created": created,
        "livemode": false,
        "data": { "object": object },
    })
}

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
    let id = kassa_runtime::invoicing::invoice_id(&format!("stripe:{invoice}"));
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
    assert_eq!(early["overdue"], 0, "{early}");
    api.stack.clock.advance(Duration::from_secs(5 * 86_400));
    let run = api.stack.fire("OverdueInvoicesFunction").await.unwrap();
    assert_eq!(run["overdue"], 1, "{run}");
    let again = api.stack.fire("OverdueInvoicesFunction").await.unwrap();
    assert_eq!(again["due"], 0, "taken off the agenda: {again}");

    let id = kassa_runtime::invoicing::invoice_id(&format!("stripe:{invoice}"));
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
    assert_eq!(early["expired"], 0, "{early}");
    api.stack.clock.advance(Duration::from_secs(31 * 60));
    let run = api.stack.fire("ExpireOrdersFunction").await.unwrap();
    assert_eq!(run["expired"], 1, "{run}");
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
            metadata: [(kassa_runtime::orders::USER_KEY.to_owned(), BUYER.to_owned())].into(),
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
    let book = kassa_runtime::orders::OrderBook::new(common::dynamodb().await, &mine.state_table);
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
