//! Dunning: a charge of the saved card that fails is retried 1, 3, 5 and 7 days later by
//! the daily schedule; each failure is noticed once by mail, the one before the last warns
//! of suspension, and the last suspends the workspace (debits 403, reads work). The owner's
//! new card settles what is owed and reactivates it.

mod common;

use common::{eventually, Api};
use kassa_commerce::Clock;
use kassa_runtime::mail::MailSink;
use serde_json::{json, Value};
use time::{Date, Month};

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

#[tokio::test]
async fn a_failed_charge_is_retried_warned_suspended_and_settled_by_a_new_card() {
    let api = Api::start().await;
    api.stack.create_stripe_prices().await.unwrap();
    let year = api.stack.clock.now().year() + 1;
    let day = |m: Month, d: u8| Date::from_calendar_date(year, m, d).unwrap();
    common::advance_to(&api, day(Month::June, 1), time::macros::time!(07:00));
    let (ws, _) = api.workspace("alice", "pro").await;
    let subscribed = api
        .post(
            format!("/workspaces/{ws}/subscription"),
            "alice",
            json!({ "payment_method": common::card("4242424242424242").await }),
        )
        .await;
    assert_eq!(subscribed.status, 201, "{:?}", subscribed.body);
    // The rest of June on pro is collected with the first card before it is replaced.
    let store =
        kassa_store::EventStore::new(common::dynamodb().await, api.stack.table("EventsTable"));
    let stream = kassa_store::StreamId::new("Workspace", &ws);
    eventually("the subscription's charge", || async {
        store
            .read_stream(&stream, 100)
            .await
            .ok()?
            .into_iter()
            .find(|e| e.event_type == "workspace.charged")
    })
    .await;
    // The card on file now declines charges (localstripe declines 4000000000000341).
    let declining = put(
        &api,
        format!("/workspaces/{ws}/payment-method"),
        json!({ "payment_method": common::card("4000000000000341").await }),
    )
    .await;
    assert_eq!(declining.status, 200, "{:?}", declining.body);
    assert_eq!(declining.body["settled"], json!([]));

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

    // A new card settles what is owed at once and reactivates the workspace.
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
