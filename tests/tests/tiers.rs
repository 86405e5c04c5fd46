//! Subscriptions and tier changes. A paid tier is paid by a Stripe subscription kassa
//! creates with the owner's card. A move up takes effect at once, prorated exactly on the
//! seconds left in the billing period, charged to the saved card, and the wallet's prices
//! and limits follow in the same commit; a move down waits for the period's end, where
//! the renewal applies it, and the owner can call it off until then.

mod common;

use common::{eventually, Api};
use kassa_commerce::dunning::{self, Attempt, DUNNING_AGENDA};
use kassa_commerce::{Clock, Kernel};
use kassa_domain::money::{Currency, Money};
use kassa_domain::workspace::{Billing, ChargeFor, Workspace};
use kassa_payments::dues;
use kassa_payments::gateway::{PaymentGateway, SavedCardCharge};
use kassa_payments::stripe::StripeGateway;
use kassa_store::{Agenda, Metadata};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use time::{Date, Month};

fn day(year: i32, month: Month, d: u8) -> Date {
    Date::from_calendar_date(year, month, d).unwrap()
}

async fn put_tier(api: &Api, ws: &str, user: &str, tier: &str) -> common::Answer {
    api.call(
        "PUT",
        format!("/workspaces/{ws}/tier"),
        Some(user),
        Some(&json!({ "tier": tier }).to_string()),
    )
    .await
}

async fn subscribe(api: &Api, ws: &str, user: &str, body: Value) -> common::Answer {
    api.post(format!("/workspaces/{ws}/subscription"), user, body)
        .await
}

/// Subscribes `ws` (alice's) to its tier with a card that pays; answers the
/// subscription's id.
async fn subscribed(api: &Api, ws: &str) -> String {
    let answer = subscribe(
        api,
        ws,
        "alice",
        json!({ "payment_method": common::card("4242424242424242").await }),
    )
    .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    answer.body["subscription_id"].as_str().unwrap().to_owned()
}

/// The stack, with the tiers' plans at localstripe.
async fn stack() -> Api {
    let api = Api::start().await;
    api.stack.create_stripe_prices().await.unwrap();
    api
}

/// The charge kassa recorded for the event `source`, once collect-charges handled it.
async fn charge_for(api: &Api, ws: &str, source: &str) -> Value {
    let source = source.to_owned();
    eventually("the charge", || async {
        let charged = recorded(api, ws, "Workspace", "workspace.charged").await;
        charged
            .into_iter()
            .find(|c| c["source_event"] == source.as_str())
    })
    .await
}

async fn consume(api: &Api, ws: &str, feature: &str, quantity: u64) -> Value {
    let answer = api
        .post(
            format!("/workspaces/{ws}/credits/consume"),
            "alice",
            json!({ "feature": feature, "quantity": quantity }),
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body
}

async fn balance(api: &Api, ws: &str) -> Value {
    api.get(format!("/workspaces/{ws}/credits/balance"), "alice")
        .await
        .body
}

async fn workspace(api: &Api, ws: &str) -> Value {
    let answer = api.get(format!("/workspaces/{ws}"), "alice").await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body
}

/// The recorded events of `type` on the workspace's stream.
async fn recorded(api: &Api, ws: &str, stream: &str, kind: &str) -> Vec<Value> {
    recorded_events(api, ws, stream, kind)
        .await
        .into_iter()
        .map(|e| e.payload)
        .collect()
}

async fn recorded_events(
    api: &Api,
    ws: &str,
    stream: &str,
    kind: &str,
) -> Vec<kassa_store::RecordedEvent> {
    let store =
        kassa_store::EventStore::new(common::dynamodb().await, api.stack.table("EventsTable"));
    let stream = kassa_store::StreamId::new(stream, ws);
    store
        .read_stream(&stream, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type == kind)
        .collect()
}

#[tokio::test]
async fn an_upgrade_mid_period_is_prorated_exactly_charged_to_the_card_and_prices_follow_at_once() {
    let api = stack().await;
    let year = api.stack.clock.now().year() + 1;
    // A 31-day period: 1 March to 1 April.
    common::advance_to(
        &api,
        day(year, Month::March, 1),
        time::Time::from_hms(12, 0, 0).unwrap(),
    );
    let (ws, signup) = api.workspace("alice", "pro").await;
    assert_eq!(signup, 11_000);
    assert_eq!(workspace(&api, &ws).await["billing_anchor_day"], 1);
    let unpaid = put_tier(&api, &ws, "alice", "enterprise").await;
    assert_eq!(unpaid.status, 409, "{:?}", unpaid.body);
    assert_eq!(unpaid.body["code"], "subscription_required");

    // Subscribing saves the card, makes the subscription at Stripe, and charges the rest
    // of this period on the tier the workspace was on unpaid.
    let subscription_id = subscribed(&api, &ws).await;
    let at_stripe = common::stripe_get(&format!("/v1/subscriptions/{subscription_id}")).await;
    assert_eq!(at_stripe["plan"]["id"], "kassa-pro-monthly", "{at_stripe}");
    assert_eq!(at_stripe["metadata"]["workspace_id"], ws.as_str());
    let [sub_event] = recorded_events(&api, &ws, "Workspace", "workspace.subscribed")
        .await
        .try_into()
        .unwrap();
    assert_eq!(sub_event.payload["period_end"], format!("{year}-04-01"));
    let first = charge_for(&api, &ws, &sub_event.event_id.to_string()).await;
    assert_eq!(first["reason"], "subscription");
    assert_eq!(first["amount"], sub_event.payload["charge"]);
    // 49.00 × (31 days - 12 h) / 31 days, give or take the seconds the test took.
    let paid = Decimal::from_str(first["amount"]["amount"].as_str().unwrap()).unwrap();
    assert!(
        (Decimal::new(4_820, 2)..=Decimal::new(4_821, 2)).contains(&paid),
        "{paid}"
    );
    let intent = common::stripe_get(&format!(
        "/v1/payment_intents/{}",
        first["payment_intent"].as_str().unwrap()
    ))
    .await;
    assert_eq!(intent["status"], "succeeded");
    assert_eq!(
        Decimal::from(intent["amount"].as_i64().unwrap()),
        paid * Decimal::from(100),
        "{intent}"
    );
    let again = subscribe(
        &api,
        &ws,
        "alice",
        json!({ "payment_method": common::card("4242424242424242").await }),
    )
    .await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    assert_eq!(again.body["code"], "already_subscribed");
    // Pro prices an export at 5 credits; this debit leaves the wallet remembered warm.
    assert_eq!(consume(&api, &ws, "export.pdf", 1).await["credits"], 5);

    // Halfway through, to the second, as the clock goes on ticking.
    common::advance_to(
        &api,
        day(year, Month::March, 16),
        time::Time::from_hms(12, 0, 0).unwrap(),
    );
    let upgraded = put_tier(&api, &ws, "alice", "enterprise").await;
    assert_eq!(upgraded.status, 200, "{:?}", upgraded.body);
    assert_eq!(upgraded.body["tier"], "enterprise");
    let change = &upgraded.body["tier_change"];
    assert_eq!(change["from"], "pro");
    assert_eq!(change["period_start"], format!("{year}-03-01"));
    assert_eq!(change["period_end"], format!("{year}-04-01"));

    // The answer's figures are the recorded event's, and follow from its seconds exactly:
    // (499.00 - 49.00) × left / period, half up to the cent; (100,000 - 10,000) × left /
    // period, rounded down.
    let [event] = recorded(&api, &ws, "Workspace", "workspace.tier_changed")
        .await
        .try_into()
        .unwrap();
    let (left, whole) = (
        event["seconds_left"].as_i64().unwrap(),
        event["period_seconds"].as_i64().unwrap(),
    );
    assert_eq!(whole, 31 * 86_400);
    assert!(
        (15 * 86_400 + 12 * 3_600 - 60..=15 * 86_400 + 12 * 3_600).contains(&left),
        "{left} s left"
    );
    let mut charge = (Decimal::from(450) * Decimal::from(left) / Decimal::from(whole))
        .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    charge.rescale(2);
    assert_eq!(change["charge"]["amount"], charge.to_string());
    assert_eq!(event["charge"], change["charge"]);
    assert_eq!(change["charge"]["currency"], "USD");
    let top_up = 90_000 * left / whole;
    assert_eq!(change["credits_top_up"], top_up);
    assert_eq!(event["credits_top_up"], top_up);
    assert!((44_990..=45_000).contains(&top_up), "{top_up}");
    assert!(
        Decimal::from_str(change["charge"]["amount"].as_str().unwrap()).unwrap()
            > Decimal::from(224),
        "{change}"
    );

    // Charged to the saved card, once, and the subscription moved to enterprise's price
    // without proration there (kassa charged the rest of the period itself).
    let [changed] = recorded_events(&api, &ws, "Workspace", "workspace.tier_changed")
        .await
        .try_into()
        .unwrap();
    let charged = charge_for(&api, &ws, &changed.event_id.to_string()).await;
    assert_eq!(charged["reason"], "tier_change");
    assert_eq!(charged["amount"], change["charge"]);
    let intent = common::stripe_get(&format!(
        "/v1/payment_intents/{}",
        charged["payment_intent"].as_str().unwrap()
    ))
    .await;
    assert_eq!(intent["status"], "succeeded");
    assert_eq!(intent["customer"], at_stripe["customer"]);
    let at_stripe = eventually("the subscription on enterprise", || async {
        let s = common::stripe_get(&format!("/v1/subscriptions/{subscription_id}")).await;
        (s["plan"]["id"] == "kassa-enterprise-monthly").then_some(s)
    })
    .await;
    assert_eq!(at_stripe["status"], "active");
    // Delivered again after its commit, the event charges nothing more.
    let failed =
        common::redeliver(&api, "CollectChargesFunction", "collect-charges", &changed).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(
        recorded(&api, &ws, "Workspace", "workspace.charged")
            .await
            .len(),
        2
    );

    // A move down is billed from the subscription's next invoice: its price changes now,
    // without proration, and changes back when the move is called off. A move down to
    // free lets the subscription end with the period.
    let plan_and_end = || async {
        let s = common::stripe_get(&format!("/v1/subscriptions/{subscription_id}")).await;
        (
            s["plan"]["id"].as_str().unwrap_or_default().to_owned(),
            s["cancel_at_period_end"].as_bool().unwrap_or_default(),
        )
    };
    let until = |plan: &'static str, ends: bool| {
        let plan_and_end = &plan_and_end;
        async move {
            eventually(&format!("{plan}, ending {ends}"), || async {
                (plan_and_end().await == (plan.to_owned(), ends)).then_some(())
            })
            .await
        }
    };
    assert_eq!(put_tier(&api, &ws, "alice", "pro").await.status, 200);
    until("kassa-pro-monthly", false).await;
    let off = api
        .call(
            "DELETE",
            format!("/workspaces/{ws}/tier/scheduled"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(off.status, 200, "{:?}", off.body);
    until("kassa-enterprise-monthly", false).await;
    assert_eq!(put_tier(&api, &ws, "alice", "free").await.status, 200);
    until("kassa-enterprise-monthly", true).await;
    assert_eq!(put_tier(&api, &ws, "alice", "enterprise").await.status, 200);
    until("kassa-enterprise-monthly", false).await;
    assert_eq!(workspace(&api, &ws).await["tier"], "enterprise");

    // The wallet moved in the same commit: the credits, the tier and its limits.
    let after = balance(&api, &ws).await;
    assert_eq!(after["balance"], 11_000 - 5 + top_up);
    assert_eq!(after["tier"], "enterprise");
    assert_eq!(after["overage_allowance"], 50_000);
    // The warm consume-credits instance remembers the pro wallet; its debit must not go
    // through at the pro price.
    assert_eq!(consume(&api, &ws, "export.pdf", 1).await["credits"], 4);
    // The history trails the wallet by the relay's lag.
    let retier: Vec<Value> = eventually("the move in the history", || async {
        let transactions = api
            .get(format!("/workspaces/{ws}/credits/transactions"), "alice")
            .await;
        let moves: Vec<Value> = transactions.body["items"]
            .as_array()?
            .iter()
            .filter(|t| t["kind"] == "tier_change")
            .cloned()
            .collect();
        (!moves.is_empty()).then_some(moves)
    })
    .await;
    assert_eq!(retier.len(), 1, "{retier:?}");
    assert_eq!(retier[0]["credits"], top_up);
    assert_eq!(retier[0]["reason"], "pro->enterprise");
}

#[tokio::test]
async fn a_downgrade_waits_for_the_period_end_can_be_called_off_and_the_renewal_applies_it() {
    let api = stack().await;
    let year = api.stack.clock.now().year() + 1;
    common::advance_to(
        &api,
        day(year, Month::May, 10),
        time::Time::from_hms(9, 0, 0).unwrap(),
    );
    let (ws, signup) = api.workspace("alice", "enterprise").await;
    assert_eq!(signup, 110_000);
    // Paid from the start: subscribing calls off billing setup's move to free.
    subscribed(&api, &ws).await;
    assert_eq!(workspace(&api, &ws).await["scheduled_tier"], Value::Null);

    common::advance_to(
        &api,
        day(year, Month::May, 20),
        time::Time::from_hms(9, 0, 0).unwrap(),
    );
    let scheduled = put_tier(&api, &ws, "alice", "free").await;
    assert_eq!(scheduled.status, 200, "{:?}", scheduled.body);
    assert_eq!(scheduled.body["tier"], "enterprise", "nothing changes now");
    assert_eq!(
        scheduled.body["scheduled_tier"],
        json!({ "tier": "free", "effective_on": format!("{year}-06-10") })
    );
    assert!(scheduled.body.get("tier_change").is_none());
    assert_eq!(balance(&api, &ws).await["tier"], "enterprise");
    let again = put_tier(&api, &ws, "alice", "free").await;
    assert_eq!(again.status, 409);
    assert_eq!(again.body["code"], "tier_change_scheduled");

    // Called off, then scheduled again, to a different tier.
    let off = api
        .call(
            "DELETE",
            format!("/workspaces/{ws}/tier/scheduled"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(off.status, 200, "{:?}", off.body);
    assert_eq!(off.body["scheduled_tier"], Value::Null);
    let none = api
        .call(
            "DELETE",
            format!("/workspaces/{ws}/tier/scheduled"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(none.status, 409);
    assert_eq!(none.body["code"], "no_scheduled_tier_change");
    let pro = put_tier(&api, &ws, "alice", "pro").await;
    assert_eq!(pro.body["scheduled_tier"]["tier"], "pro", "{:?}", pro.body);

    // The daily renewal run, day by day: nothing before the period's end.
    common::advance_to(
        &api,
        day(year, Month::June, 9),
        time::Time::from_hms(9, 0, 0).unwrap(),
    );
    let run = api.stack.fire("RenewCreditsFunction").await.unwrap();
    assert_eq!(run["done"], 0, "{run}");
    assert_eq!(workspace(&api, &ws).await["tier"], "enterprise");
    let before = balance(&api, &ws).await["balance"].as_i64().unwrap();

    common::advance_to(
        &api,
        day(year, Month::June, 10),
        time::Time::from_hms(9, 0, 0).unwrap(),
    );
    let run = api.stack.fire("RenewCreditsFunction").await.unwrap();
    assert_eq!(run["done"], 1, "{run}");
    let after = workspace(&api, &ws).await;
    assert_eq!(after["tier"], "pro");
    assert_eq!(after["scheduled_tier"], Value::Null);
    let wallet = balance(&api, &ws).await;
    assert_eq!(wallet["tier"], "pro");
    // The closing period's granted credits are kept up to enterprise's rollover cap
    // (50,000), the rest expire; the new period's credits are the new tier's, and nothing
    // is added for the move itself.
    assert_eq!(before, 110_000);
    assert_eq!(wallet["balance"], 50_000 + 10_000);
    let [changed] = recorded(&api, &ws, "Workspace", "workspace.tier_changed")
        .await
        .try_into()
        .unwrap();
    assert_eq!(changed["from"], "enterprise");
    assert_eq!(changed["to"], "pro");
    assert_eq!(changed["charge"]["amount"], "0.00");
    assert_eq!(changed["credits_top_up"], 0);
    assert_eq!(consume(&api, &ws, "export.pdf", 1).await["credits"], 5);

    // A second run the same day finds nothing to do.
    let run = api.stack.fire("RenewCreditsFunction").await.unwrap();
    assert_eq!(run["done"], 0, "{run}");
    assert_eq!(
        recorded(&api, &ws, "Workspace", "workspace.tier_changed")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn only_the_owner_changes_the_tier_or_subscribes_and_bad_requests_change_nothing() {
    let api = stack().await;
    let (ws, _) = api.workspace("alice", "free").await;
    let added = api
        .post(
            format!("/workspaces/{ws}/collaborators"),
            "alice",
            json!({ "user_id": "bob" }),
        )
        .await;
    assert_eq!(added.status, 201, "{:?}", added.body);
    let version = workspace(&api, &ws).await["version"].clone();

    let collaborator = put_tier(&api, &ws, "bob", "pro").await;
    assert_eq!(collaborator.status, 403, "{:?}", collaborator.body);
    assert_eq!(collaborator.body["code"], "owner_only");
    let stranger = put_tier(&api, &ws, "mallory", "pro").await;
    assert_eq!(stranger.status, 404, "{:?}", stranger.body);
    let unchanged = put_tier(&api, &ws, "alice", "free").await;
    assert_eq!(unchanged.status, 409);
    assert_eq!(unchanged.body["code"], "tier_unchanged");
    let cancel_by_bob = api
        .call(
            "DELETE",
            format!("/workspaces/{ws}/tier/scheduled"),
            Some("bob"),
            None,
        )
        .await;
    assert_eq!(cancel_by_bob.status, 403, "{:?}", cancel_by_bob.body);

    let put = |body: Option<&'static str>, user: Option<&'static str>| {
        let api = &api;
        let ws = ws.clone();
        async move {
            api.call("PUT", format!("/workspaces/{ws}/tier"), user, body)
                .await
        }
    };
    for (body, user, status) in [
        (Some(r#"{"tier":"gold"}"#), Some("alice"), 400),
        (Some(r#"{"tier":"pro","extra":1}"#), Some("alice"), 400),
        (Some(r#"{}"#), Some("alice"), 400),
        (Some("not json"), Some("alice"), 400),
        (None, Some("alice"), 400),
        (Some(r#"{"tier":"pro"}"#), None, 401),
    ] {
        let answer = put(body, user).await;
        assert_eq!(answer.status, status, "{body:?}: {:?}", answer.body);
        assert_eq!(answer.content_type, "application/problem+json", "{body:?}");
    }
    let missing = api
        .call(
            "PUT",
            "/workspaces/not-a-uuid/tier",
            Some("alice"),
            Some(r#"{"tier":"pro"}"#),
        )
        .await;
    assert_eq!(missing.status, 404, "{:?}", missing.body);

    // Subscribing: the owner only, a paid tier only, a payment method id only.
    let pm = common::card("4242424242424242").await;
    for (user, body, status, code) in [
        ("bob", json!({ "payment_method": pm }), 403, "owner_only"),
        (
            "mallory",
            json!({ "payment_method": pm }),
            404,
            "workspace_not_found",
        ),
        ("alice", json!({ "payment_method": pm }), 422, "free_tier"),
        (
            "alice",
            json!({ "payment_method": pm, "tier": "free" }),
            422,
            "free_tier",
        ),
        (
            "alice",
            json!({ "payment_method": "4242424242424242", "tier": "pro" }),
            422,
            "invalid_payment_method",
        ),
        (
            "alice",
            json!({ "payment_method": "pm_nope", "tier": "pro" }),
            402,
            "payment_method_refused",
        ),
        ("alice", json!({ "tier": "pro" }), 400, "invalid_body"),
        (
            "alice",
            json!({ "payment_method": pm, "tier": "gold" }),
            400,
            "invalid_body",
        ),
    ] {
        let answer = subscribe(&api, &ws, user, body.clone()).await;
        assert_eq!(answer.status, status, "{user} {body}: {:?}", answer.body);
        assert_eq!(answer.content_type, "application/problem+json");
        if status != 400 {
            assert_eq!(
                answer.body["code"], code,
                "{user} {body}: {:?}",
                answer.body
            );
        }
    }

    let after = workspace(&api, &ws).await;
    assert_eq!(after["version"], version, "nothing was written");
    assert_eq!(after["subscription_id"], Value::Null);
    assert_eq!(after["tier"], "free");
    assert_eq!(balance(&api, &ws).await["tier"], "free");
    eventually("nothing but the signup on the wallet", || async {
        let t = api
            .get(format!("/workspaces/{ws}/credits/transactions"), "alice")
            .await;
        (t.body["items"].as_array()?.len() == 1).then_some(())
    })
    .await;
    // The card collected the Stripe way: a SetupIntent for the owner, confirmed in the
    // browser (here at localstripe, as Stripe.js's confirmCardSetup would), then saved by
    // subscribing.
    let setup = |user: &'static str| {
        let api = &api;
        let ws = ws.clone();
        async move {
            api.call(
                "POST",
                format!("/workspaces/{ws}/setup-intent"),
                Some(user),
                None,
            )
            .await
        }
    };
    assert_eq!(setup("bob").await.status, 403);
    assert_eq!(setup("mallory").await.status, 404);
    let intent = setup("alice").await;
    assert_eq!(intent.status, 201, "{:?}", intent.body);
    let seti = intent.body["setup_intent"].as_str().unwrap().to_owned();
    let secret = intent.body["client_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with(&seti), "{secret}");
    let card = common::card("4242424242424242").await;
    let confirmed = common::stripe_post(
        &format!("/v1/setup_intents/{seti}/confirm"),
        &[
            ("payment_method", card.as_str()),
            ("client_secret", secret.as_str()),
        ],
    )
    .await;
    assert_eq!(confirmed["status"], "succeeded", "{confirmed}");
    let subscribed = subscribe(
        &api,
        &ws,
        "alice",
        json!({ "payment_method": confirmed["payment_method"], "tier": "pro" }),
    )
    .await;
    assert_eq!(subscribed.status, 201, "{:?}", subscribed.body);
}

fn events_store(api: &Api, client: aws_sdk_dynamodb::Client) -> kassa_store::EventStore {
    kassa_store::EventStore::new(client, api.stack.table("EventsTable"))
}

/// The refunds of the PaymentIntent `intent` at localstripe.
async fn refunds_at_stripe(intent: &str) -> Vec<Value> {
    common::stripe_get(&format!("/v1/refunds?payment_intent={intent}")).await["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The refunds of `intent`, once there is one.
async fn paid_back(intent: &str) -> Vec<Value> {
    eventually("a refund", || async {
        let refunds = refunds_at_stripe(intent).await;
        (!refunds.is_empty()).then_some(refunds)
    })
    .await
}

/// The workspace's billing as recorded now.
async fn billing_of(api: &Api, ws: &str) -> Billing {
    events_store(api, common::dynamodb().await)
        .load_aggregate::<Workspace>(&ws.parse().unwrap())
        .await
        .unwrap()
        .state
        .and_then(|w| w.billing)
        .expect("a subscribed workspace")
}

/// Charges `amount` USD to `billing`'s card at localstripe as collect-charges charges the
/// subscription's event `source_event`; the charge's intent.
async fn charge_at_stripe(
    ws: &str,
    billing: &Billing,
    amount: Money,
    source_event: uuid::Uuid,
) -> String {
    let gateway = StripeGateway::new(
        std::env::var("KASSA_STRIPE_API_BASE").unwrap(),
        std::env::var("KASSA_STRIPE_SECRET_KEY").unwrap(),
    );
    let charge = SavedCardCharge {
        customer: billing.customer.clone(),
        payment_method: billing.payment_method.clone(),
        amount,
        description: "kassa workspace: Subscription".into(),
        metadata: BTreeMap::from([
            (dues::WORKSPACE_KEY.to_owned(), ws.to_owned()),
            (dues::EVENT_KEY.to_owned(), source_event.to_string()),
        ]),
    };
    gateway
        .charge_saved_card(&charge, &format!("charge-{source_event}"))
        .await
        .unwrap()
        .id
}

/// A subscription charge of `amount` that collect-charges made with `billing` just before
/// the subscription ended, and records only now: charged at localstripe under its key,
/// then recorded as collect-charges records it. The charge's intent.
async fn charge_in_flight(api: &Api, ws: &str, billing: &Billing, amount: &str) -> String {
    let source_event = uuid::Uuid::now_v7();
    let amount = Money::new(amount.parse().unwrap(), Currency::Usd);
    let intent = charge_at_stripe(ws, billing, amount, source_event).await;
    let client = common::dynamodb().await;
    let kernel = Kernel::new(
        events_store(api, client.clone()),
        Arc::new(api.stack.clock.clone()),
    );
    let agenda = Agenda::new(client, api.stack.table("StateTable"), DUNNING_AGENDA);
    let attempt = Attempt {
        workspace: ws.parse().unwrap(),
        source_event,
        reason: ChargeFor::Subscription,
        amount,
        outcome: Ok(intent.clone()),
        marker: format!("charge:{source_event}"),
        due: None,
        invoice: None,
    };
    let now = api.stack.clock.now();
    dunning::record(
        &kernel,
        &agenda,
        &attempt,
        Metadata::origin(uuid::Uuid::now_v7(), "system:collect-charges"),
        now,
    )
    .await
    .unwrap();
    intent
}

#[tokio::test]
async fn cancelling_at_once_refunds_the_rest_of_the_period_at_stripe_once() {
    let api = stack().await;
    let year = api.stack.clock.now().year() + 1;
    // A 31-day period: 1 August to 1 September.
    common::advance_to(
        &api,
        day(year, Month::August, 1),
        time::Time::from_hms(6, 0, 0).unwrap(),
    );
    let (ws, signup) = api.workspace("alice", "pro").await;
    let added = api
        .post(
            format!("/workspaces/{ws}/collaborators"),
            "alice",
            json!({ "user_id": "carol" }),
        )
        .await;
    assert_eq!(added.status, 201, "{:?}", added.body);
    let subscription_id = subscribed(&api, &ws).await;
    // The rest of August on pro, paid at once: 49.00 × (31 days − 6 h) / 31 days.
    let [sub_event] = recorded_events(&api, &ws, "Workspace", "workspace.subscribed")
        .await
        .try_into()
        .unwrap();
    let paid = charge_for(&api, &ws, &sub_event.event_id.to_string()).await;
    assert_eq!(paid["amount"]["amount"], "48.60");
    let cancel = |user: &'static str, when: &'static str| {
        let api = &api;
        let ws = ws.clone();
        async move {
            api.call(
                "DELETE",
                format!("/workspaces/{ws}/subscription?when={when}"),
                Some(user),
                None,
            )
            .await
        }
    };
    let bad = cancel("alice", "tomorrow").await;
    assert_eq!(
        (bad.status, bad.body["code"].as_str()),
        (422, Some("invalid_when"))
    );
    let collaborator = cancel("carol", "now").await;
    assert_eq!(collaborator.status, 403, "{:?}", collaborator.body);

    // Half way through, 16 of the 31 days are left: 49.00 × 16/31 = 25.2903… → 25.29,
    // and 9,000 × 16/31 = 4,645.16… → 4,645 of the credits pro granted over free's.
    common::advance_to(
        &api,
        day(year, Month::August, 16),
        time::Time::from_hms(0, 0, 0).unwrap(),
    );
    let billing = billing_of(&api, &ws).await;
    let cancelled = cancel("alice", "now").await;
    assert_eq!(cancelled.status, 200, "{:?}", cancelled.body);
    assert_eq!(cancelled.body["tier"], "free");
    assert_eq!(cancelled.body["subscription_id"], Value::Null);
    assert_eq!(
        cancelled.body["refund"],
        json!({ "amount": "25.29", "currency": "USD" })
    );
    assert_eq!(cancelled.body["tier_change"]["credits_taken_back"], 4_645);
    assert_eq!(
        balance(&api, &ws).await["balance"],
        signup - 4_645,
        "the credits go in the same commit"
    );
    let again = cancel("alice", "now").await;
    assert_eq!(
        (again.status, again.body["code"].as_str()),
        (409, Some("no_subscription"))
    );

    // At Stripe: the subscription ends now, and the refund comes from its payment.
    let intent = paid["payment_intent"].as_str().unwrap().to_owned();
    let refunded = paid_back(&intent).await;
    assert_eq!(refunded.len(), 1);
    assert_eq!(refunded[0]["amount"], 2_529);
    let at_stripe = common::stripe_get(&format!("/v1/subscriptions/{subscription_id}")).await;
    assert_eq!(at_stripe["status"], "canceled", "{at_stripe}");
    // Delivered again after its commit, the cancellation refunds nothing more.
    let [event] = recorded_events(&api, &ws, "Workspace", "workspace.subscription_cancelled")
        .await
        .try_into()
        .unwrap();
    let failed = common::redeliver(&api, "CollectChargesFunction", "collect-charges", &event).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(refunds_at_stripe(&intent).await.len(), 1);
    // A subscription's charge that reaches collect-charges only after the subscription
    // was ended at once (as another event id, so nothing marks it done) charges nothing
    // and starts no dunning: the ended subscription owes nothing more.
    let late = kassa_store::RecordedEvent {
        event_id: uuid::Uuid::now_v7(),
        ..sub_event.clone()
    };
    let failed = common::redeliver(&api, "CollectChargesFunction", "collect-charges", &late).await;
    assert!(failed.is_empty(), "{failed:?}");
    let charged = recorded(&api, &ws, "Workspace", "workspace.charged").await;
    assert_eq!(charged.len(), 1, "{charged:?}");
    let w = api.get(format!("/workspaces/{ws}"), "alice").await.body;
    assert_eq!(w["owed"], json!([]), "{w}");

    // A charge that was at Stripe while the cancellation was decided (collect-charges
    // read the subscription before it ended) is recorded after it, outside the refund:
    // the workspace returns it, and it is paid back whole, once.
    let late_intent = charge_in_flight(&api, &ws, &billing, "48.60").await;
    let returned = paid_back(&late_intent).await;
    assert_eq!(
        returned
            .iter()
            .map(|r| r["amount"].clone())
            .collect::<Vec<_>>(),
        [json!(4_860)]
    );
    let [event] = recorded_events(&api, &ws, "Workspace", "workspace.charge_returned")
        .await
        .try_into()
        .unwrap();
    let failed = common::redeliver(&api, "CollectChargesFunction", "collect-charges", &event).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(refunds_at_stripe(&late_intent).await.len(), 1);
    let charged = recorded(&api, &ws, "Workspace", "workspace.charged").await;
    assert_eq!(
        charged.len(),
        1,
        "a returned charge is no payment: {charged:?}"
    );

    // A delivery of a subscription's charge died between its charge and its record, and
    // the subscription ended before the event came again: the redelivery finds the charge
    // at Stripe (by the event on it) and it is returned whole.
    let crashed = kassa_store::RecordedEvent {
        event_id: uuid::Uuid::now_v7(),
        ..sub_event.clone()
    };
    let usd = |a: &str| Money::new(a.parse().unwrap(), Currency::Usd);
    let crashed_intent = charge_at_stripe(&ws, &billing, usd("48.60"), crashed.event_id).await;
    let failed =
        common::redeliver(&api, "CollectChargesFunction", "collect-charges", &crashed).await;
    assert!(failed.is_empty(), "{failed:?}");
    let returned = paid_back(&crashed_intent).await;
    assert_eq!(returned.len(), 1);
    assert_eq!(returned[0]["amount"], 4_860);
    // Operators see it in the revenue, once.
    let refunded = eventually("the refund in the revenue", || async {
        let revenue = api
            .call_as("GET", "/analytics/revenue", Some(("ops", "admin")), None)
            .await
            .body;
        (revenue["refunded"]["amount"] == "25.29").then_some(revenue)
    })
    .await;
    assert_eq!(refunded["refunded"]["currency"], "USD");
    // The first day there is has no 30 days before it: a bad range, not a crash.
    let earliest = api
        .call_as(
            "GET",
            "/analytics/revenue?to=-9999-01-01",
            Some(("ops", "admin")),
            None,
        )
        .await;
    assert_eq!(
        (earliest.status, earliest.body["code"].as_str()),
        (400, Some("invalid_range")),
        "{:?}",
        earliest.body
    );
    // Nothing is paid for any more: the workspace can be deleted.
    let deleted = api
        .call("DELETE", format!("/workspaces/{ws}"), Some("alice"), None)
        .await;
    assert_eq!(deleted.status, 200, "{:?}", deleted.body);
}

#[tokio::test]
async fn a_paid_tier_created_unpaid_moves_to_free_with_its_first_period() {
    let api = stack().await;
    let year = api.stack.clock.now().year() + 1;
    common::advance_to(
        &api,
        day(year, Month::May, 10),
        time::Time::from_hms(9, 0, 0).unwrap(),
    );
    let (ws, signup) = api.workspace("alice", "pro").await;
    assert_eq!(signup, 11_000);
    let w = workspace(&api, &ws).await;
    assert_eq!(
        w["scheduled_tier"],
        json!({ "tier": "free", "effective_on": format!("{year}-06-10") })
    );
    // Only a subscription keeps pro: the move cannot be called off unpaid.
    let kept = put_tier(&api, &ws, "alice", "pro").await;
    assert_eq!(
        (kept.status, kept.body["code"].as_str()),
        (409, Some("subscription_required"))
    );
    common::advance_to(
        &api,
        day(year, Month::June, 10),
        time::Time::from_hms(6, 0, 0).unwrap(),
    );
    let run = api.stack.fire("RenewCreditsFunction").await.unwrap();
    assert_eq!(run["failed"], 0, "{run}");
    let w = workspace(&api, &ws).await;
    assert_eq!(
        (w["tier"].as_str(), &w["scheduled_tier"]),
        (Some("free"), &Value::Null)
    );
    // The period closed on pro keeps pro's rollover cap (5,000 of the 11,000), and the new
    // one is free's: 1,000 more.
    let b = balance(&api, &ws).await;
    assert_eq!(
        (b["tier"].as_str(), b["balance"].as_i64()),
        (Some("free"), Some(6_000))
    );
}
