//! Dunning: a charge of the saved card that fails is retried 1, 3, 5 and 7 days later by
//! the daily schedule; each failure is noticed once by mail, the one before the last warns
//! of suspension, and the last suspends the workspace (debits 403, reads work). The owner's
//! new card settles what is owed and reactivates it.

mod common;

use common::{eventually, Api};
use kassa_commerce::{dunning, Clock};
use kassa_domain::money::{Currency, Money};
use kassa_domain::workspace::{Billing, Workspace};
use kassa_payments::dues;
use kassa_payments::gateway::{PaymentGateway, SavedCardCharge};
use kassa_payments::stripe::StripeGateway;
use kassa_runtime::mail::MailSink;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use time::{Date, Month};

/// The workspace's billing as recorded now.
async fn billing_of(api: &Api, ws: uuid::Uuid) -> Billing {
    kassa_store::EventStore::new(common::dynamodb().await, api.stack.table("EventsTable"))
        .load_aggregate::<Workspace>(&ws)
        .await
        .unwrap()
        .state
        .and_then(|w| w.billing)
        .expect("a subscribed workspace")
}

async fn put(api: &Api, path: String, body: Value) -> common::Answer {
    api.call("PUT", path, Some("alice"), Some(&body.to_string()))
        .await
}

/// The dunning mails so far, by kind, oldest first.
fn notices(api: &Api) -> Vec<String> {
    let mut mails: Vec<_> = MailSink::new(&api.mail_dir)
        .read_all()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| {
            m.id.starts_with("payment.")
                || m.id.starts_with("workspace.s")
                || m.id.starts_with("workspace.r")
        })
        .map(|m| m.id)
        .collect();
    mails.sort();
    mails
}

fn kinds(ids: &[String]) -> Vec<&str> {
    let mut kinds: Vec<&str> = ids
        .iter()
        .map(|id| id.rsplitn(6, '-').last().unwrap())
        .collect();
    kinds.sort();
    kinds
}

/// Subscribes `ws` to its tier with a card that pays, waits until the rest of the period
/// is collected with it, then puts a card that declines (localstripe declines
/// 4000000000000341) in its place. Answers the subscription's id.
async fn subscribed_with_a_failing_card(api: &Api, ws: &str) -> String {
    let subscribed = api
        .post(
            format!("/workspaces/{ws}/subscription"),
            "alice",
            json!({ "payment_method": common::card("4242424242424242").await }),
        )
        .await;
    assert_eq!(subscribed.status, 201, "{:?}", subscribed.body);
    let store =
        kassa_store::EventStore::new(common::dynamodb().await, api.stack.table("EventsTable"));
    let stream = kassa_store::StreamId::new("Workspace", ws);
    eventually("the subscription's charge", || async {
        store
            .read_stream(&stream, 100)
            .await
            .ok()?
            .into_iter()
            .find(|e| e.event_type == "workspace.charged")
    })
    .await;
    let declining = put(
        api,
        format!("/workspaces/{ws}/payment-method"),
        json!({ "payment_method": common::card("4000000000000341").await }),
    )
    .await;
    assert_eq!(declining.status, 200, "{:?}", declining.body);
    assert_eq!(declining.body["settled"], json!([]));
    subscribed.body["subscription_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_failed_charge_is_retried_warned_suspended_and_settled_by_a_new_card() {
    let api = Api::start().await;
    api.stack.create_stripe_prices().await.unwrap();
    let year = api.stack.clock.now().year() + 1;
    let day = |m: Month, d: u8| Date::from_calendar_date(year, m, d).unwrap();
    common::advance_to(&api, day(Month::June, 1), time::macros::time!(07:00));
    let (ws, _) = api.workspace("alice", "pro").await;
    // The rest of June on pro is collected with the first card before it is replaced.
    subscribed_with_a_failing_card(&api, &ws).await;

    // The move up's charge fails: the workspace owes it, and dunning begins.
    let upgraded = put(
        &api,
        format!("/workspaces/{ws}/tier"),
        json!({ "tier": "enterprise" }),
    )
    .await;
    assert_eq!(upgraded.status, 200, "{:?}", upgraded.body);
    let owed = eventually("the charge failed", || async {
        let w = api.get(format!("/workspaces/{ws}"), "alice").await.body;
        w["owed"].as_array().filter(|o| !o.is_empty()).cloned()
    })
    .await;
    assert_eq!(owed[0]["failures"], 1);
    assert_eq!(owed[0]["amount"], upgraded.body["tier_change"]["charge"]);
    assert_eq!(owed[0]["first_failed_on"], format!("{year}-06-01"));

    // The daily run, every day for ten days: retries on the 2nd, 4th, 6th and 8th.
    let mut retried_on = Vec::new();
    for d in 2..=11 {
        common::advance_to(&api, day(Month::June, d), time::macros::time!(07:00));
        let run = api.stack.fire("RetryPaymentsFunction").await.unwrap();
        assert_eq!(run["failed"], 0, "June {d}: {run}");
        if run["done"] == 1 {
            retried_on.push(d);
        }
    }
    assert_eq!(retried_on, [2, 4, 6, 8]);
    let w = api.get(format!("/workspaces/{ws}"), "alice").await.body;
    assert_eq!(w["suspended"], true, "{w}");
    assert_eq!(w["owed"][0]["failures"], 5);

    // Suspended: spending is refused, reading is not.
    let consume = api
        .post(
            format!("/workspaces/{ws}/credits/consume"),
            "alice",
            json!({ "feature": "api.call", "quantity": 1 }),
        )
        .await;
    assert_eq!(consume.status, 403, "{:?}", consume.body);
    assert_eq!(consume.body["code"], "workspace_suspended");
    let balance = api
        .get(format!("/workspaces/{ws}/credits/balance"), "alice")
        .await;
    assert_eq!(balance.status, 200);

    // Every notice went out once: the failure, two failed retries, the warning before the
    // last retry, the last failure and the suspension.
    let sent = eventually("six notices", || async {
        let n = notices(&api);
        (n.len() >= 6).then_some(n)
    })
    .await;
    assert_eq!(
        kinds(&sent),
        [
            "payment.failed",
            "payment.retry_failed",
            "payment.retry_failed",
            "payment.retry_failed",
            "payment.suspension_warning",
            "workspace.suspended",
        ],
        "{sent:?}"
    );

    // While another attempt holds the debt's turn (a retry charging the saved card), the
    // owner's new card waits for it rather than charging the same debt beside it.
    let source: uuid::Uuid = w["owed"][0]["source_event"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let leases =
        kassa_store::lease::Leases::new(common::dynamodb().await, api.stack.table("EventsTable"));
    let ws_id: uuid::Uuid = ws.parse().unwrap();
    let now = api.stack.clock.now();
    let other = dunning::take_turn(&leases, ws_id, source, now)
        .await
        .unwrap()
        .expect("nobody is charging the debt");
    let waiting = put(
        &api,
        format!("/workspaces/{ws}/payment-method"),
        json!({ "payment_method": common::card("4242424242424242").await }),
    )
    .await;
    assert_eq!(
        (waiting.status, waiting.body["code"].as_str()),
        (409, Some("payment_in_progress")),
        "{:?}",
        waiting.body
    );
    let w = api.get(format!("/workspaces/{ws}"), "alice").await.body;
    assert_eq!(w["owed"][0]["failures"], 5, "nothing was charged: {w}");
    dunning::end_turn(&leases, other).await;

    // That attempt paid the debt with a card and died before recording it. The next one
    // finds the payment at Stripe (by the debt's event on it) and records it, rather than
    // charging the owner's new card a second time.
    let customer = billing_of(&api, ws_id).await.customer;
    let amount = &w["owed"][0]["amount"];
    let dead = StripeGateway::new(
        std::env::var("KASSA_STRIPE_API_BASE").unwrap(),
        std::env::var("KASSA_STRIPE_SECRET_KEY").unwrap(),
    )
    .charge_saved_card(
        &SavedCardCharge {
            customer: customer.clone(),
            payment_method: common::card("4242424242424242").await,
            amount: Money::new(
                amount["amount"].as_str().unwrap().parse().unwrap(),
                Currency::Usd,
            ),
            description: "kassa workspace: settling".into(),
            metadata: BTreeMap::from([
                (dues::WORKSPACE_KEY.to_owned(), ws.clone()),
                (dues::EVENT_KEY.to_owned(), source.to_string()),
            ]),
        },
        &uuid::Uuid::now_v7().to_string(),
    )
    .await
    .unwrap();

    // Its turn over, a new card settles what is owed at once and reactivates the workspace.
    let settled = put(
        &api,
        format!("/workspaces/{ws}/payment-method"),
        json!({ "payment_method": common::card("4242424242424242").await }),
    )
    .await;
    assert_eq!(settled.status, 200, "{:?}", settled.body);
    assert_eq!(settled.body["settled"].as_array().unwrap().len(), 1);
    assert_eq!(settled.body["suspended"], false);
    assert_eq!(settled.body["owed"], json!([]));
    let store =
        kassa_store::EventStore::new(common::dynamodb().await, api.stack.table("EventsTable"));
    let charged: Vec<Value> = store
        .read_stream(&kassa_store::StreamId::new("Workspace", &ws), 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type == "workspace.charged")
        .map(|e| e.payload)
        .filter(|p| p["source_event"] == source.to_string())
        .collect();
    assert_eq!(charged.len(), 1, "{charged:?}");
    assert_eq!(charged[0]["payment_intent"], dead.id.as_str());
    let intents = common::stripe_get(&format!(
        "/v1/payment_intents?customer={customer}&limit=100"
    ))
    .await;
    let paid: Vec<&Value> = intents["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| {
            i["status"] == "succeeded" && i["metadata"]["kassa_event"] == source.to_string()
        })
        .collect();
    assert_eq!(paid.len(), 1, "the debt is paid once: {intents}");
    let consume = api
        .post(
            format!("/workspaces/{ws}/credits/consume"),
            "alice",
            json!({ "feature": "api.call", "quantity": 1 }),
        )
        .await;
    assert_eq!(consume.status, 200, "{:?}", consume.body);
    let sent = eventually("the reactivation notice", || async {
        let n = notices(&api);
        (n.len() >= 7).then_some(n)
    })
    .await;
    assert_eq!(
        kinds(&sent)
            .iter()
            .filter(|k| **k == "workspace.reactivated")
            .count(),
        1
    );
    // Nothing is left to retry.
    common::advance_to(&api, day(Month::June, 20), time::macros::time!(07:00));
    let run = api.stack.fire("RetryPaymentsFunction").await.unwrap();
    assert_eq!(run["due"], 0, "{run}");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(notices(&api).len(), 7, "each notice once");
}

/// POSTs to localstripe as Stripe's own billing would, whatever it answers (localstripe
/// answers a declined invoice payment 200, with the invoice left open).
async fn stripe_attempt(path: &str) -> u16 {
    let base = std::env::var("KASSA_STRIPE_API_BASE").unwrap();
    let secret = std::env::var("KASSA_STRIPE_SECRET_KEY").unwrap();
    reqwest::Client::new()
        .post(format!("{base}{path}"))
        .basic_auth(&secret, Some(""))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_renewal_invoice_that_fails_is_dunned_and_paid_as_that_invoice() {
    // On the stack's clock as it starts, which is localstripe's: its webhooks are signed
    // at its own time, and kassa refuses signatures from another moment.
    let api = Api::start().await;
    api.stack.create_stripe_prices().await.unwrap();
    api.stack.register_stripe_webhook().await.unwrap();
    let today = api.stack.clock.now().date();
    let (ws, _) = api.workspace("alice", "pro").await;
    let sub = subscribed_with_a_failing_card(&api, &ws).await;
    let store =
        kassa_store::EventStore::new(common::dynamodb().await, api.stack.table("EventsTable"));
    let stream = kassa_store::StreamId::new("Workspace", &ws);
    let renewals_charged = || async {
        store
            .read_stream(&stream, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.event_type == "workspace.charged" && e.payload["reason"] == "renewal")
            .count()
    };

    // Stripe renews the subscription and cannot collect the invoice (localstripe has no
    // clock: the renewal is made and attempted here, as Stripe's billing would).
    let customer = common::stripe_get(&format!("/v1/subscriptions/{sub}")).await["customer"]
        .as_str()
        .unwrap()
        .to_owned();
    let renew = || async {
        common::id(
            &common::stripe_post(
                "/v1/invoices",
                &[
                    ("customer", customer.as_str()),
                    ("subscription", sub.as_str()),
                ],
            )
            .await,
        )
    };
    let invoice = renew().await;
    stripe_attempt(&format!("/v1/invoices/{invoice}/pay")).await;
    let open = common::stripe_get(&format!("/v1/invoices/{invoice}")).await;
    assert_eq!(open["status"], "open", "{open}");
    let owed = eventually("the renewal is owed", || async {
        let w = api.get(format!("/workspaces/{ws}"), "alice").await.body;
        w["owed"].as_array().filter(|o| !o.is_empty()).cloned()
    })
    .await;
    assert_eq!(owed.len(), 1, "{owed:?}");
    assert_eq!(owed[0]["reason"], "renewal");
    assert_eq!(owed[0]["invoice"], invoice.as_str());
    assert_eq!(
        owed[0]["amount"],
        json!({ "amount": "49.00", "currency": "USD" })
    );
    // Stripe's notice delivered again is not a second failure.
    let failed_notice = common::stripe_event(
        "invoice.payment_failed",
        api.stack.clock.now().unix_timestamp(),
        open.clone(),
    );
    assert_eq!(common::deliver(&api, &failed_notice).await.status, 200);

    // The retry a day later pays that invoice, and fails again.
    common::advance_to(&api, today.next_day().unwrap(), time::macros::time!(07:00));
    let run = api.stack.fire("RetryPaymentsFunction").await.unwrap();
    assert_eq!(
        (run["done"].as_i64(), run["failed"].as_i64()),
        (Some(1), Some(0)),
        "{run}"
    );
    let w = api.get(format!("/workspaces/{ws}"), "alice").await.body;
    assert_eq!(w["owed"][0]["failures"], 2, "{w}");
    let sent = eventually("two notices", || async {
        let n = notices(&api);
        (n.len() >= 2).then_some(n)
    })
    .await;
    assert_eq!(kinds(&sent), ["payment.failed", "payment.retry_failed"]);

    // The owner's new card pays the invoice itself, and Stripe's books show it paid.
    let settled = put(
        &api,
        format!("/workspaces/{ws}/payment-method"),
        json!({ "payment_method": common::card("4242424242424242").await }),
    )
    .await;
    assert_eq!(settled.status, 200, "{:?}", settled.body);
    assert_eq!(settled.body["settled"].as_array().unwrap().len(), 1);
    assert_eq!(settled.body["owed"], json!([]));
    let paid = common::stripe_get(&format!("/v1/invoices/{invoice}")).await;
    assert_eq!(paid["status"], "paid", "{paid}");
    assert_eq!(renewals_charged().await, 1);
    // Stripe's report of the payment, and a failure notice arriving after it, change
    // nothing: the invoice is settled for good.
    let now = api.stack.clock.now().unix_timestamp();
    for (kind, object) in [
        ("invoice.payment_succeeded", paid.clone()),
        ("invoice.paid", paid),
        ("invoice.payment_failed", open),
    ] {
        let answer = common::deliver(&api, &common::stripe_event(kind, now, object)).await;
        assert_eq!(answer.status, 200, "{kind}: {:?}", answer.body);
    }
    let w = api.get(format!("/workspaces/{ws}"), "alice").await.body;
    assert_eq!(
        (w["owed"].clone(), w["suspended"].clone()),
        (json!([]), json!(false))
    );
    assert_eq!(renewals_charged().await, 1);
    let run = api.stack.fire("RetryPaymentsFunction").await.unwrap();
    assert_eq!(run["done"], 0, "{run}");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(notices(&api).len(), 2, "each notice once");

    // A renewal Stripe collects on time is recorded as paid, once.
    let next = renew().await;
    stripe_attempt(&format!("/v1/invoices/{next}/pay")).await;
    let paid = common::stripe_get(&format!("/v1/invoices/{next}")).await;
    assert_eq!(paid["status"], "paid", "{paid}");
    let answer = common::deliver(&api, &common::stripe_event("invoice.paid", now, paid)).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    eventually("the on-time renewal", || async {
        (renewals_charged().await == 2).then_some(())
    })
    .await;
}
