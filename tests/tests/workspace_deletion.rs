//! Cancelling and deleting: a subscription is cancelled to the end of the period it paid
//! for (the move to free, applied by the renewal, ends it at Stripe); a workspace that
//! pays for nothing and owes nothing can then be deleted. Its read models are purged, its
//! wallet closed, its event log kept.

mod common;

use common::{eventually, Api};
use kassa_commerce::Clock;
use serde_json::json;
use time::{Date, Month};

async fn rows(api: &Api, pk: String) -> usize {
    common::dynamodb()
        .await
        .query()
        .table_name(api.stack.table("StateTable"))
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", aws_sdk_dynamodb::types::AttributeValue::S(pk))
        .send()
        .await
        .unwrap()
        .count as usize
}

async fn types_of(api: &Api, stream: &str, id: &str) -> Vec<String> {
    kassa_store::EventStore::new(common::dynamodb().await, api.stack.table("EventsTable"))
        .read_stream(&kassa_store::StreamId::new(stream, id), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

#[tokio::test]
async fn a_cancelled_subscription_runs_out_and_the_workspace_is_deleted_keeping_its_log() {
    let api = Api::start().await;
    api.stack.create_stripe_prices().await.unwrap();
    let year = api.stack.clock.now().year() + 1;
    let day = |m: Month, d: u8| Date::from_calendar_date(year, m, d).unwrap();
    common::advance_to(&api, day(Month::July, 5), time::macros::time!(09:00));
    let (ws, _) = api.workspace("alice", "pro").await;
    let card = common::card("4242424242424242").await;
    let subscribed = api
        .post(
            format!("/workspaces/{ws}/subscription"),
            "alice",
            json!({ "payment_method": card }),
        )
        .await;
    assert_eq!(subscribed.status, 201, "{:?}", subscribed.body);
    let subscription = subscribed.body["subscription_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let spent = api
        .post(
            format!("/workspaces/{ws}/credits/consume"),
            "alice",
            json!({ "feature": "api.call", "quantity": 3 }),
        )
        .await;
    assert_eq!(spent.status, 200, "{:?}", spent.body);
    eventually("usage and the welcome notification", || async {
        (rows(&api, format!("usage#{ws}")).await > 0
            && rows(&api, format!("notifications#{ws}")).await > 0)
            .then_some(())
    })
    .await;

    let delete = || api.call("DELETE", format!("/workspaces/{ws}"), Some("alice"), None);
    let early = delete().await;
    assert_eq!(early.status, 409, "{:?}", early.body);
    assert_eq!(early.body["code"], "subscription_active");
    let stranger = api
        .call("DELETE", format!("/workspaces/{ws}"), Some("mallory"), None)
        .await;
    assert_eq!(stranger.status, 404, "{:?}", stranger.body);

    // Cancelling runs to the end of the period paid for.
    let cancelled = api
        .call(
            "DELETE",
            format!("/workspaces/{ws}/subscription"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(cancelled.status, 200, "{:?}", cancelled.body);
    assert_eq!(cancelled.body["tier"], "pro");
    assert_eq!(
        cancelled.body["scheduled_tier"],
        json!({ "tier": "free", "effective_on": format!("{year}-08-05") })
    );
    eventually("the subscription ending with the period", || async {
        let s = common::stripe_get(&format!("/v1/subscriptions/{subscription}")).await;
        (s["cancel_at_period_end"] == true).then_some(())
    })
    .await;

    common::advance_to(&api, day(Month::August, 5), time::macros::time!(09:00));
    let run = api.stack.fire("RenewCreditsFunction").await.unwrap();
    assert_eq!(run["done"], 1, "{run}");
    let after = eventually("the subscription ended", || async {
        let w = api.get(format!("/workspaces/{ws}"), "alice").await.body;
        w["subscription_id"].is_null().then_some(w)
    })
    .await;
    assert_eq!(after["tier"], "free");
    let at_stripe = common::stripe_get(&format!("/v1/subscriptions/{subscription}")).await;
    assert_eq!(at_stripe["status"], "canceled", "{at_stripe}");

    let deleted = delete().await;
    assert_eq!(deleted.status, 200, "{:?}", deleted.body);
    assert_eq!(deleted.body["deleted_on"], format!("{year}-08-05"));
    for path in [
        format!("/workspaces/{ws}"),
        format!("/workspaces/{ws}/credits/balance"),
        format!("/workspaces/{ws}/notifications"),
        format!("/workspaces/{ws}/usage"),
    ] {
        let gone = api.get(&path, "alice").await;
        assert_eq!(gone.status, 404, "{path}: {:?}", gone.body);
    }
    let consume = api
        .post(
            format!("/workspaces/{ws}/credits/consume"),
            "alice",
            json!({ "feature": "api.call", "quantity": 1 }),
        )
        .await;
    assert_eq!(consume.status, 404, "{:?}", consume.body);
    assert_eq!(delete().await.status, 404);

    // The read models are purged; the event log is whole.
    eventually("the read models purged", || async {
        (rows(&api, format!("usage#{ws}")).await == 0
            && rows(&api, format!("notifications#{ws}")).await == 0)
            .then_some(())
    })
    .await;
    let log = types_of(&api, "Workspace", &ws).await;
    assert_eq!(log.first().map(String::as_str), Some("workspace.created"));
    assert_eq!(log.last().map(String::as_str), Some("workspace.deleted"));
    assert!(log.contains(&"workspace.subscribed".to_owned()), "{log:?}");
    let wallet = eventually("the wallet closed", || async {
        let w = types_of(&api, "Wallet", &ws).await;
        w.contains(&"credits.wallet_closed".to_owned()).then_some(w)
    })
    .await;
    assert!(
        wallet.contains(&"credits.consumed".to_owned()),
        "{wallet:?}"
    );

    // The renewals stop: the next one's entry just goes.
    common::advance_to(&api, day(Month::September, 5), time::macros::time!(09:00));
    let run = api.stack.fire("RenewCreditsFunction").await.unwrap();
    assert_eq!(
        (run["failed"].clone(), run["done"].clone()),
        (json!(0), json!(0)),
        "{run}"
    );
    let again = api.stack.fire("RenewCreditsFunction").await.unwrap();
    assert_eq!(again["due"], 0, "{again}");
}
