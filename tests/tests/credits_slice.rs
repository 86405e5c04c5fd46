//! The credits slice end to end through the local stack: HTTP → command Lambda → DynamoDB →
//! stream → relay → EventBridge (moto) → SQS (moto) → side-effect Lambda → HTTP queries.

mod common;

use common::{eventually, Api};
use kassa_runtime::mail::MailSink;
use kassa_store::{EventStore, RecordedEvent, StreamId};
use serde_json::json;

use uuid::Uuid;

fn store(api: &Api) -> EventStore {
    EventStore::new(
        aws_sdk_dynamodb::Client::new(&futures_config()),
        api.stack.table("EventsTable"),
    )
}

fn futures_config() -> aws_config::SdkConfig {
    // Built synchronously from the same environment the runner read.
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(kassa_runtime::config::aws())
    })
}

/// The wallet's history once every event its head counts is persisted (debits' events
/// reach their stream through the relay, a moment after the debit).
async fn wallet_events(api: &Api, ws: &str) -> Vec<RecordedEvent> {
    let version = wallet_version(api, ws).await;
    eventually("the wallet's history", || async {
        let events = store(api)
            .read_stream(&StreamId::new("Wallet", ws), 500)
            .await
            .unwrap();
        (events.len() as u64 == version).then_some(events)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn low_balance_travels_from_consume_to_notification_mail_and_usage() {
    let api = Api::start().await;
    let (ws, balance) = api.workspace("alice", "free").await;
    assert_eq!(
        balance, 1_100,
        "free tier: 1,000 monthly + 100 signup bonus"
    );

    let consume = |feature: &str, quantity: u64| {
        api.post(
            format!("/workspaces/{ws}/credits/consume"),
            "alice",
            json!({ "feature": feature, "quantity": quantity }),
        )
    };
    let first = consume("ai.generate", 100).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.body["credits"], 1_000);
    assert_eq!(first.body["balance"], 100);
    assert_eq!(
        first.body["balance_low"], false,
        "100 is not below the threshold of 100"
    );

    let crossing = consume("api.call", 1).await;
    assert_eq!(crossing.body["balance"], 99);
    assert_eq!(crossing.body["balance_low"], true);
    let below = consume("api.call", 1).await;
    assert_eq!(below.body["balance_low"], false, "one alert per crossing");

    let notifications = eventually("the welcome and the low-balance notification", || async {
        let n = api
            .get(&format!("/workspaces/{ws}/notifications"), "alice")
            .await;
        n.body["items"].as_array().filter(|i| i.len() == 2).cloned()
    })
    .await;
    let kinds: Vec<&str> = notifications
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["credits.balance_low", "workspace.welcome"],
        "newest first"
    );
    for n in &notifications {
        assert_eq!(n["mailed_to"], "ops@acme.test", "{n}");
    }

    let mails = eventually("both mails", || async {
        let mails = MailSink::new(&api.mail_dir).read_all().unwrap();
        (mails.len() == 2).then_some(mails)
    })
    .await;
    let low = mails
        .iter()
        .find(|m| m.id.starts_with("balance-low-"))
        .unwrap();
    assert_eq!(low.to, "ops@acme.test");
    assert!(low.body.contains("99 left"), "{}", low.body);
    let welcome = mails
        .iter()
        .find(|m| m.id == format!("welcome-{ws}"))
        .unwrap();
    assert_eq!(welcome.to, "ops@acme.test");
    assert!(
        welcome
            .body
            .contains("1000 credits a month, 100 to start with"),
        "{}",
        welcome.body
    );

    let usage = eventually("usage for both features", || async {
        let u = api.get(&format!("/workspaces/{ws}/usage"), "alice").await;
        (u.body["by_feature"]["api.call"]["uses"] == 2).then_some(u.body)
    })
    .await;
    assert_eq!(usage["by_feature"]["ai.generate"]["quantity"], 100);
    assert_eq!(usage["by_feature"]["ai.generate"]["credits"], 1_000);
    assert_eq!(usage["total_credits"], 1_002);

    let history = api
        .get(
            &format!("/workspaces/{ws}/credits/transactions?limit=2"),
            "alice",
        )
        .await;
    let items = history.body["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        1,
        "the opening is not a transaction: {:?}",
        history.body
    );
    assert_eq!(items[0]["kind"], "allocation");
    let next = history.body["next"].as_str().unwrap();
    let rest = api
        .get(
            &format!("/workspaces/{ws}/credits/transactions?after={next}&limit=50"),
            "alice",
        )
        .await;
    let kinds: Vec<_> = rest.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["credits"].clone())
        .collect();
    assert_eq!(kinds, vec![json!(-1_000), json!(-1), json!(-1)]);

    // The same event delivered twice more has no second effect.
    let alert = wallet_events(&api, &ws)
        .await
        .into_iter()
        .find(|e| e.event_type == "credits.balance_low")
        .unwrap();
    let sqs = aws_sdk_sqs::Client::new(&futures_config());
    let queue = &api.stack.names.queue_urls["LowBalanceQueue"];
    let envelope = json!({
        "version": "0", "id": Uuid::now_v7().to_string(), "detail-type": alert.event_type,
        "source": "kassa.credits", "account": "123456789012", "time": "2026-11-21T00:00:00Z",
        "region": "us-east-1", "resources": [], "detail": alert,
    });
    for _ in 0..2 {
        sqs.send_message()
            .queue_url(queue)
            .message_body(envelope.to_string())
            .send()
            .await
            .unwrap();
    }
    eventually("the redeliveries to be consumed", || async {
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(queue)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap_or_default();
        let count = |k: aws_sdk_sqs::types::QueueAttributeName| {
            attrs.get(&k).map(|v| v != "0").unwrap_or(false)
        };
        (!count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            && !count(
                aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            ))
        .then_some(())
    })
    .await;
    let again = api
        .get(&format!("/workspaces/{ws}/notifications"), "alice")
        .await;
    assert_eq!(again.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(MailSink::new(&api.mail_dir).read_all().unwrap().len(), 2);
}

/// Seed 000's welcome on workspace creation: mailed to the billing address, or without
/// one to the owner's registered address; an owner kassa has no address for still gets
/// the notification, unmailed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_workspace_is_welcomed_at_its_billing_address_or_its_owners() {
    let api = Api::start().await;
    let registered = api
        .post(
            "/users",
            "bea",
            json!({ "email": "bea@acme.test", "name": "Bea" }),
        )
        .await;
    assert_eq!(registered.status, 201, "{:?}", registered.body);
    let create = |owner: &'static str| {
        api.post(
            "/workspaces",
            owner,
            json!({ "name": format!("{owner}'s"), "tier": "pro" }),
        )
    };
    let beas = create("bea").await;
    let cyds = create("cyd").await;
    assert_eq!(beas.status, 201, "{:?}", beas.body);
    assert_eq!(cyds.status, 201, "{:?}", cyds.body);
    // Billing setup: pro holds unpaid until the period's end, then moves to free unless
    // the owner subscribes; the welcome says so.
    assert_eq!(
        beas.body["scheduled_tier"]["tier"], "free",
        "{:?}",
        beas.body
    );
    let setup_ends = beas.body["scheduled_tier"]["effective_on"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = |answer: &common::Answer| answer.body["id"].as_str().unwrap().to_owned();
    let (beas, cyds) = (id(&beas), id(&cyds));

    for (ws, owner, mailed_to) in [
        (&beas, "bea", json!("bea@acme.test")),
        (&cyds, "cyd", serde_json::Value::Null),
    ] {
        let items = eventually("the welcome notification", || async {
            let n = api
                .get(&format!("/workspaces/{ws}/notifications"), owner)
                .await;
            n.body["items"]
                .as_array()
                .filter(|i| !i.is_empty())
                .cloned()
        })
        .await;
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items[0]["kind"], "workspace.welcome");
        assert_eq!(items[0]["mailed_to"], mailed_to, "{owner}");
        assert!(
            items[0]["message"]
                .as_str()
                .unwrap()
                .contains("on the pro tier"),
            "{items:?}"
        );
        assert!(
            items[0]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("before {setup_ends} to stay on pro")),
            "{items:?}"
        );
    }
    let mails = MailSink::new(&api.mail_dir).read_all().unwrap();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].id, format!("welcome-{beas}"));
    assert_eq!(mails[0].to, "bea@acme.test");
}

async fn wallet_balance(api: &Api, ws: &str) -> i64 {
    let b = api
        .get(format!("/workspaces/{ws}/credits/balance"), "alice")
        .await;
    b.body["balance"].as_i64().unwrap()
}

/// What is sent, by whom and where; the status and problem code expected back.
type Case<'a> = (
    &'a str,
    Option<&'a str>,
    String,
    Option<&'a str>,
    u16,
    &'a str,
);

async fn wallet_version(api: &Api, ws: &str) -> u64 {
    let b = api
        .get(format!("/workspaces/{ws}/credits/balance"), "alice")
        .await;
    b.body["version"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_problem_and_writes_nothing() {
    let api = Api::start().await;
    let (ws, _) = api.workspace("alice", "free").await;
    let (other, _) = api.workspace("bob", "free").await;
    let path = format!("/workspaces/{ws}/credits/consume");
    let before = wallet_version(&api, &ws).await;

    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            Some("alice"),
            path.clone(),
            Some("{\"feature\":"),
            400,
            "malformed_json",
        ),
        (
            "not an object",
            Some("alice"),
            path.clone(),
            Some("[]"),
            400,
            "invalid_body",
        ),
        (
            "empty body",
            Some("alice"),
            path.clone(),
            Some(""),
            400,
            "missing_body",
        ),
        (
            "missing quantity",
            Some("alice"),
            path.clone(),
            Some(r#"{"feature":"api.call"}"#),
            400,
            "invalid_body",
        ),
        (
            "unknown field",
            Some("alice"),
            path.clone(),
            Some(r#"{"feature":"api.call","quantity":1,"x":1}"#),
            400,
            "invalid_body",
        ),
        (
            "zero quantity",
            Some("alice"),
            path.clone(),
            Some(r#"{"feature":"api.call","quantity":0}"#),
            422,
            "invalid_quantity",
        ),
        (
            "negative quantity",
            Some("alice"),
            path.clone(),
            Some(r#"{"feature":"api.call","quantity":-5}"#),
            400,
            "invalid_body",
        ),
        (
            "fractional quantity",
            Some("alice"),
            path.clone(),
            Some(r#"{"feature":"api.call","quantity":1.5}"#),
            400,
            "invalid_body",
        ),
        (
            "unknown feature",
            Some("alice"),
            path.clone(),
            Some(r#"{"feature":"teleport","quantity":1}"#),
            422,
            "unknown_feature",
        ),
        (
            "too much",
            Some("alice"),
            path.clone(),
            Some(r#"{"feature":"ai.generate","quantity":1000}"#),
            402,
            "insufficient_credits",
        ),
        (
            "unknown workspace",
            Some("alice"),
            format!("/workspaces/{}/credits/consume", Uuid::now_v7()),
            Some(r#"{"feature":"api.call","quantity":1}"#),
            404,
            "workspace_not_found",
        ),
        (
            "not a workspace id",
            Some("alice"),
            "/workspaces/nope/credits/consume".into(),
            Some(r#"{"feature":"api.call","quantity":1}"#),
            404,
            "workspace_not_found",
        ),
        (
            "another user's workspace",
            Some("bob"),
            path.clone(),
            Some(r#"{"feature":"api.call","quantity":1}"#),
            404,
            "workspace_not_found",
        ),
        (
            "no token",
            None,
            path.clone(),
            Some(r#"{"feature":"api.call","quantity":1}"#),
            401,
            "unauthorized",
        ),
        (
            "another user's balance",
            Some("alice"),
            format!("/workspaces/{other}/credits/balance"),
            None,
            404,
            "workspace_not_found",
        ),
        (
            "bad limit",
            Some("alice"),
            format!("/workspaces/{ws}/credits/transactions?limit=0"),
            None,
            400,
            "invalid_limit",
        ),
        (
            "bad date",
            Some("alice"),
            format!("/workspaces/{ws}/usage?from=yesterday"),
            None,
            400,
            "invalid_date",
        ),
        (
            "unknown tier",
            Some("alice"),
            "/workspaces".into(),
            Some(r#"{"name":"X","tier":"gold"}"#),
            400,
            "invalid_body",
        ),
        (
            "blank name",
            Some("alice"),
            "/workspaces".into(),
            Some(r#"{"name":"  ","tier":"free"}"#),
            422,
            "invalid_name",
        ),
        (
            "bad email",
            Some("alice"),
            "/workspaces".into(),
            Some(r#"{"name":"X","tier":"free","billing_email":"nope"}"#),
            422,
            "invalid_email",
        ),
    ];
    for (what, user, path, body, status, code) in cases {
        let method = if body.is_some() { "POST" } else { "GET" };
        let a = api.call(method, &path, user, body).await;
        assert_eq!(a.status, status, "{what}: {:?}", a.body);
        assert_eq!(a.content_type, "application/problem+json", "{what}");
        assert_eq!(a.body["code"], code, "{what}: {:?}", a.body);
        assert!(
            a.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{what}"
        );
    }

    // A forged token and a wrong content type.
    let forged = api
        .http
        .post(format!("{}{path}", api.stack.url))
        .bearer_auth(common::token("alice", "user") + "x")
        .header("content-type", "application/json")
        .body(r#"{"feature":"api.call","quantity":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let text = api
        .http
        .post(format!("{}{path}", api.stack.url))
        .bearer_auth(common::token("alice", "user"))
        .header("content-type", "text/plain")
        .body(r#"{"feature":"api.call","quantity":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 415);

    assert_eq!(
        wallet_version(&api, &ws).await,
        before,
        "nothing was written"
    );
    wallet_events(&api, &ws).await;
    let history = api
        .get(&format!("/workspaces/{ws}/credits/transactions"), "alice")
        .await;
    assert_eq!(
        history.body["items"].as_array().unwrap().len(),
        1,
        "only the signup allocation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collaborators_may_consume_until_removed() {
    let api = Api::start().await;
    let (ws, _) = api.workspace("alice", "pro").await;
    let consume = |user: &'static str| {
        api.post(
            format!("/workspaces/{ws}/credits/consume"),
            user,
            json!({ "feature": "api.call", "quantity": 1 }),
        )
    };
    assert_eq!(consume("bob").await.status, 404);
    let added = api
        .post(
            &format!("/workspaces/{ws}/collaborators"),
            "alice",
            json!({ "user_id": "bob" }),
        )
        .await;
    assert_eq!(added.status, 201, "{:?}", added.body);
    assert_eq!(
        api.post(
            &format!("/workspaces/{ws}/collaborators"),
            "bob",
            json!({ "user_id": "carol" })
        )
        .await
        .status,
        403
    );
    assert_eq!(consume("bob").await.status, 200);
    let removed = api
        .call(
            "DELETE",
            &format!("/workspaces/{ws}/collaborators/bob"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    // The membership check is inside the debit's transaction: no stale grant survives.
    assert_eq!(consume("bob").await.status, 404);
    assert_eq!(consume("alice").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_schedule_renews_monthly_credits_once_per_month() {
    let api = Api::start().await;
    let (ws, signup) = api.workspace("alice", "free").await;
    assert_eq!(signup, 1_100);
    // Nothing is due on the day of signup.
    let run = api.stack.fire("RenewCreditsFunction").await.unwrap();
    assert_eq!(run["done"], 0, "{run}");

    api.stack
        .clock
        .advance(std::time::Duration::from_secs(32 * 86_400));
    let run = api.stack.fire("RenewCreditsFunction").await.unwrap();
    assert_eq!(run["done"], 1, "{run}");
    assert_eq!(
        wallet_balance(&api, &ws).await,
        1_000,
        "the free tier rolls no granted credits over: 1,100 expire, 1,000 are granted"
    );

    // A second run the same day (a retry, an overlap) renews nothing again.
    let run = api.stack.fire("RenewCreditsFunction").await.unwrap();
    assert_eq!(run["due"], 0, "{run}");
    assert_eq!(wallet_balance(&api, &ws).await, 1_000);

    api.stack
        .clock
        .advance(std::time::Duration::from_secs(31 * 86_400));
    let run = api.stack.fire("RenewCreditsFunction").await.unwrap();
    assert_eq!(run["done"], 1, "{run}");
    assert_eq!(wallet_balance(&api, &ws).await, 1_000);

    wallet_events(&api, &ws).await;
    let history = api
        .get(format!("/workspaces/{ws}/credits/transactions"), "alice")
        .await;
    let moves: Vec<_> = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["kind"].clone(), i["credits"].clone()))
        .collect();
    assert_eq!(
        moves,
        vec![
            (json!("allocation"), json!(1_100)),
            (json!("expiry"), json!(-1_100)),
            (json!("allocation"), json!(1_000)),
            (json!("expiry"), json!(-1_000)),
            (json!("allocation"), json!(1_000)),
        ]
    );
}
