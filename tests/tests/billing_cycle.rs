//! The billing cycle: the renewal that closes a period charges its overage to the cent
//! and starts the next at zero, expires granted credits over the tier's rollover cap,
//! keeps purchased ones, and does all of it once per period however often it runs.

mod common;

use common::{eventually, Api};
use kassa_commerce::Clock;
use serde_json::{json, Value};
use time::{Date, Month};

async fn balance(api: &Api, ws: &str) -> i64 {
    api.get(format!("/workspaces/{ws}/credits/balance"), "alice")
        .await
        .body["balance"]
        .as_i64()
        .unwrap()
}

/// The wallet's recorded events of `kind`, once the relay has persisted `count` of them.
async fn wallet_events(api: &Api, ws: &str, kind: &str, count: usize) -> Vec<Value> {
    let store =
        kassa_store::EventStore::new(common::dynamodb().await, api.stack.table("EventsTable"));
    let stream = kassa_store::StreamId::new("Wallet", ws);
    eventually(&format!("{count} {kind}"), || async {
        let events: Vec<Value> = store
            .read_stream(&stream, 100)
            .await
            .ok()?
            .into_iter()
            .filter(|e| e.event_type == kind)
            .map(|e| e.payload)
            .collect();
        (events.len() == count).then_some(events)
    })
    .await
}

#[tokio::test]
async fn a_cycle_charges_the_overage_expires_over_the_cap_and_runs_once() {
    let api = Api::start().await;
    api.stack.create_stripe_prices().await.unwrap();
    let year = api.stack.clock.now().year() + 1;
    common::advance_to(
        &api,
        Date::from_calendar_date(year, Month::February, 3).unwrap(),
        time::macros::time!(06:00),
    );
    let (ws, signup) = api.workspace("alice", "pro").await;
    assert_eq!(signup, 11_000);
    let card = common::card("4242424242424242").await;
    let subscribed = api
        .post(
            format!("/workspaces/{ws}/subscription"),
            "alice",
            json!({ "payment_method": card }),
        )
        .await;
    assert_eq!(subscribed.status, 201, "{:?}", subscribed.body);
    let store =
        kassa_store::EventStore::new(common::dynamodb().await, api.stack.table("EventsTable"));
    let workspace = kassa_store::StreamId::new("Workspace", &ws);
    let charged_for = |reason: &'static str| {
        let (store, workspace) = (&store, &workspace);
        async move {
            eventually(&format!("the {reason} charged to the card"), || async {
                store
                    .read_stream(workspace, 100)
                    .await
                    .ok()?
                    .into_iter()
                    .find(|e| e.event_type == "workspace.charged" && e.payload["reason"] == reason)
            })
            .await
        }
    };
    // The rest of February's first period is collected before the clock moves on.
    charged_for("subscription").await;

    // 11,000 held, 11,333 spent: 333 credits of overage (pro allows 2,000).
    for (feature, quantity) in [("ai.generate", 1_100), ("api.call", 333)] {
        let spent = api
            .post(
                format!("/workspaces/{ws}/credits/consume"),
                "alice",
                json!({ "feature": feature, "quantity": quantity }),
            )
            .await;
        assert_eq!(spent.status, 200, "{:?}", spent.body);
    }
    assert_eq!(balance(&api, &ws).await, -333);

    common::advance_to(
        &api,
        Date::from_calendar_date(year, Month::March, 3).unwrap(),
        time::macros::time!(06:00),
    );
    for _ in 0..2 {
        let run = api.stack.fire("RenewCreditsFunction").await.unwrap();
        assert_eq!(run["failed"], 0, "{run}");
    }
    let [charged] = wallet_events(&api, &ws, "overage.charged", 1)
        .await
        .try_into()
        .unwrap();
    // 333 × 0.005 USD = 1.665, half up to the cent.
    assert_eq!(charged["credits"], 333);
    assert_eq!(
        charged["credit_price"],
        json!({"amount": "0.005", "currency": "USD"})
    );
    assert_eq!(
        charged["amount"],
        json!({"amount": "1.67", "currency": "USD"})
    );
    assert_eq!(charged["due"], format!("{year}-03-03"));
    assert_eq!(charged["balance_after"], 0);
    // The cycle's own events sum it up, once, whatever the second run did.
    let [completed] = wallet_events(&api, &ws, "billing_cycle.completed", 1)
        .await
        .try_into()
        .unwrap();
    assert_eq!(completed["period_end"], format!("{year}-03-03"));
    assert_eq!(completed["overage_credits"], 333);
    assert_eq!(completed["overage_charged"], charged["amount"]);
    let [started] = wallet_events(&api, &ws, "billing_cycle.started", 1)
        .await
        .try_into()
        .unwrap();
    assert_eq!(started["period_start"], format!("{year}-03-03"));
    assert_eq!(
        (started["tier"].as_str(), started["allocated"].as_u64()),
        (Some("pro"), Some(10_000))
    );
    assert_eq!(
        balance(&api, &ws).await,
        10_000,
        "the new period starts at zero"
    );
    // Billed to the saved card, once.
    let billed = charged_for("overage").await;
    let overage_charges = store
        .read_stream(&workspace, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type == "workspace.charged" && e.payload["reason"] == "overage")
        .count();
    assert_eq!(overage_charges, 1);
    assert_eq!(billed.payload["amount"], charged["amount"]);
    let intent = common::stripe_get(&format!(
        "/v1/payment_intents/{}",
        billed.payload["payment_intent"].as_str().unwrap()
    ))
    .await;
    assert_eq!(intent["amount"], 167);
    assert_eq!(intent["status"], "succeeded");

    // The revenue read models, for operators: March has the overage; February the new
    // subscription and the rest of its first period (49.00 × (28 days - 6 h) / 28 days).
    let revenue = |from: String, to: String| {
        let api = &api;
        async move {
            api.call_as(
                "GET",
                format!("/analytics/revenue?from={from}&to={to}"),
                Some(("support", "admin")),
                None,
            )
            .await
        }
    };
    let march = eventually("March's revenue", || async {
        let r = revenue(format!("{year}-03-01"), format!("{year}-04-01"))
            .await
            .body;
        (r["overage_revenue"]["amount"] == "1.67").then_some(r)
    })
    .await;
    assert_eq!(march["mrr"], json!({"amount": "49.00", "currency": "USD"}));
    assert_eq!(march["active_subscriptions"], json!({"pro": 1}));
    assert_eq!(march["active_at_start"], 1);
    assert_eq!(march["new_subscriptions"], 0);
    assert_eq!(march["churned"], 0);
    let february = revenue(format!("{year}-02-01"), format!("{year}-03-01"))
        .await
        .body;
    assert_eq!(february["new_subscriptions"], 1, "{february}");
    assert_eq!(february["charged"]["subscription"]["amount"], "48.56");
    assert_eq!(february["overage_revenue"]["amount"], "0.00");
    let user = api
        .get(
            format!("/analytics/revenue?from={year}-02-01&to={year}-03-01"),
            "alice",
        )
        .await;
    assert_eq!(user.status, 403, "{:?}", user.body);
    let backwards = revenue(format!("{year}-03-01"), format!("{year}-02-01")).await;
    assert_eq!(backwards.status, 400, "{:?}", backwards.body);

    // A credit pack bought mid-period (the wallet's command credit-purchases gives on a
    // paid order) never expires.
    kassa_commerce::wallet::allocate(
        &kassa_store::EventStore::new(common::dynamodb().await, api.stack.table("EventsTable")),
        std::sync::Arc::new(api.stack.clock.clone()),
        ws.parse().unwrap(),
        kassa_domain::credits::CreditCommand::Purchase {
            order_id: uuid::Uuid::now_v7(),
            pack: "starter".into(),
            credits: 700,
        },
        kassa_store::Metadata::origin(uuid::Uuid::now_v7(), "test"),
        |_| Ok(()),
    )
    .await
    .unwrap();
    assert_eq!(balance(&api, &ws).await, 10_700);

    // Nothing spent in March: of the 10,000 granted, pro keeps 5,000; the 700 bought stay.
    common::advance_to(
        &api,
        Date::from_calendar_date(year, Month::April, 3).unwrap(),
        time::macros::time!(06:00),
    );
    for _ in 0..2 {
        let run = api.stack.fire("RenewCreditsFunction").await.unwrap();
        assert_eq!(run["failed"], 0, "{run}");
    }
    let [expired] = wallet_events(&api, &ws, "credits.expired", 1)
        .await
        .try_into()
        .unwrap();
    assert_eq!(expired["credits"], 5_000);
    let rolled = wallet_events(&api, &ws, "credits.rolled_over", 1).await;
    assert_eq!(rolled[0]["granted"], 5_000);
    assert_eq!(rolled[0]["purchased"], 700);
    assert_eq!(balance(&api, &ws).await, 5_000 + 700 + 10_000);
    // Run twice each time, the cycle charged and renewed once per period.
    wallet_events(&api, &ws, "overage.charged", 1).await;
    let renewals = wallet_events(&api, &ws, "credits.allocated", 3).await;
    let reasons: Vec<&Value> = renewals.iter().map(|r| &r["reason"]).collect();
    assert_eq!(
        reasons,
        [
            &json!("signup"),
            &json!("monthly_renewal"),
            &json!("monthly_renewal")
        ]
    );
}
