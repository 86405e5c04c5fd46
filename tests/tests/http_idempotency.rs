//! Retried commands through the local stack: the `Idempotency-Key` header on consume,
//! purchase and refund (draft-ietf-httpapi-idempotency-key-header semantics), and refunds
//! keyed on what the caller sends rather than on a lagging projection.
//!
//! localstripe ignores `Idempotency-Key`, so the refund tests put a small proxy in front of
//! it that keeps Stripe's documented promise: a key seen before gets the first answer again.

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use common::{eventually, Answer, Api};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const OWNER: &str = "alice";

/// An answer with the headers this file looks at.
struct Reply {
    answer: Answer,
    replayed: bool,
}

async fn send(
    api: &Api,
    path: &str,
    caller: (&str, &str),
    key: Option<&[u8]>,
    body: &str,
) -> Reply {
    let mut req = api
        .http
        .post(format!("{}{path}", api.stack.url))
        .bearer_auth(common::token(caller.0, caller.1))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(key) = key {
        req = req.header(
            "idempotency-key",
            reqwest::header::HeaderValue::from_bytes(key).unwrap(),
        );
    }
    let res = req.send().await.unwrap();
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let replayed = header("idempotent-replayed").as_deref() == Some("true");
    Reply {
        answer: Answer::of(res).await,
        replayed,
    }
}

async fn consume(api: &Api, ws: &str, user: &str, key: Option<&str>, body: &str) -> Reply {
    send(
        api,
        &format!("/workspaces/{ws}/credits/consume"),
        (user, "user"),
        key.map(str::as_bytes),
        body,
    )
    .await
}

async fn balance(api: &Api, ws: &str) -> Value {
    let b = api
        .get(format!("/workspaces/{ws}/credits/balance"), OWNER)
        .await;
    assert_eq!(b.status, 200, "{:?}", b.body);
    b.body
}

const ONE_CALL: &str = r#"{"feature":"api.call","quantity":1}"#;

#[tokio::test]
async fn a_retried_consume_is_answered_from_the_first_and_debits_once() {
    let api = Api::start().await;
    let (ws, start) = api.workspace(OWNER, "pro").await;
    let first = consume(&api, &ws, OWNER, Some("consume-1"), ONE_CALL).await;
    assert_eq!(first.answer.status, 200, "{:?}", first.answer.body);
    assert!(!first.replayed);
    let again = consume(&api, &ws, OWNER, Some("consume-1"), ONE_CALL).await;
    assert_eq!(again.answer.status, 200, "{:?}", again.answer.body);
    assert_eq!(again.answer.body, first.answer.body, "the stored answer");
    assert_eq!(again.answer.content_type, "application/json");
    assert!(again.replayed, "a replay says so");
    assert_eq!(balance(&api, &ws).await["balance"], start - 1);

    // A refusal is an answer too: the same key gets it again, even after a top-up would
    // change the decision (the client sends a new key for a new attempt).
    let too_much = r#"{"feature":"ai.generate","quantity":100000}"#;
    let refused = consume(&api, &ws, OWNER, Some("consume-2"), too_much).await;
    assert_eq!(refused.answer.status, 402, "{:?}", refused.answer.body);
    let again = consume(&api, &ws, OWNER, Some("consume-2"), too_much).await;
    assert_eq!(again.answer.status, 402);
    assert_eq!(again.answer.content_type, "application/problem+json");
    assert_eq!(again.answer.body, refused.answer.body);
    assert!(again.replayed);

    // Without the header a consume is a new consume, as it always was.
    consume(&api, &ws, OWNER, None, ONE_CALL).await;
    consume(&api, &ws, OWNER, None, ONE_CALL).await;
    assert_eq!(balance(&api, &ws).await["balance"], start - 3);
}

#[tokio::test]
async fn a_key_reused_with_another_body_is_a_422_and_writes_nothing() {
    let api = Api::start().await;
    let (ws, start) = api.workspace(OWNER, "pro").await;
    let first = consume(&api, &ws, OWNER, Some("k"), ONE_CALL).await;
    assert_eq!(first.answer.status, 200);
    let other = r#"{"feature":"api.call","quantity":2}"#;
    let reused = consume(&api, &ws, OWNER, Some("k"), other).await;
    assert_eq!(reused.answer.status, 422, "{:?}", reused.answer.body);
    assert_eq!(reused.answer.content_type, "application/problem+json");
    assert_eq!(reused.answer.body["code"], "idempotency_key_reused");
    // The same key on another workspace's route is another request too.
    let (other_ws, _) = api.workspace(OWNER, "pro").await;
    let elsewhere = consume(&api, &other_ws, OWNER, Some("k"), ONE_CALL).await;
    assert_eq!(elsewhere.answer.status, 422, "{:?}", elsewhere.answer.body);
    assert_eq!(balance(&api, &ws).await["balance"], start - 1);
    let version = balance(&api, &ws).await["version"].clone();
    assert_eq!(version, 3, "opened, allocated, one consumption");
}

#[tokio::test]
async fn keys_belong_to_their_caller() {
    let api = Api::start().await;
    let (ws, start) = api.workspace(OWNER, "pro").await;
    let added = api
        .post(
            format!("/workspaces/{ws}/collaborators"),
            OWNER,
            json!({ "user_id": "bob" }),
        )
        .await;
    assert_eq!(added.status, 201, "{:?}", added.body);
    let alices = consume(&api, &ws, OWNER, Some("shared-key"), ONE_CALL).await;
    let bobs = consume(&api, &ws, "bob", Some("shared-key"), ONE_CALL).await;
    assert_eq!(bobs.answer.status, 200, "{:?}", bobs.answer.body);
    assert!(!bobs.replayed, "bob never gets alice's stored answer");
    assert_ne!(
        bobs.answer.body["consumption_id"],
        alices.answer.body["consumption_id"]
    );
    assert_eq!(balance(&api, &ws).await["balance"], start - 2);
}

#[tokio::test]
async fn a_malformed_key_is_a_400_and_writes_nothing() {
    let api = Api::start().await;
    let (ws, start) = api.workspace(OWNER, "pro").await;
    let long = "k".repeat(256);
    let bad: [(&str, &[u8]); 5] = [
        ("empty", b""),
        ("blank", b"   "),
        ("256 characters", long.as_bytes()),
        ("an unterminated string", br#""abc"#),
        ("not ASCII", "clé".as_bytes()),
    ];
    for (why, key) in bad {
        let refused = send(
            &api,
            &format!("/workspaces/{ws}/credits/consume"),
            (OWNER, "user"),
            Some(key),
            ONE_CALL,
        )
        .await;
        assert_eq!(
            refused.answer.status, 400,
            "{why}: {:?}",
            refused.answer.body
        );
        assert_eq!(refused.answer.content_type, "application/problem+json");
        assert_eq!(
            refused.answer.body["code"], "invalid_idempotency_key",
            "{why}"
        );
    }
    // 255 characters, and the draft's quoted form, are keys.
    let longest = "k".repeat(255);
    let ok = consume(&api, &ws, OWNER, Some(&longest), ONE_CALL).await;
    assert_eq!(ok.answer.status, 200, "{:?}", ok.answer.body);
    let quoted = consume(&api, &ws, OWNER, Some(r#""8e03978e-40d5""#), ONE_CALL).await;
    assert_eq!(quoted.answer.status, 200, "{:?}", quoted.answer.body);
    let bare = consume(&api, &ws, OWNER, Some("8e03978e-40d5"), ONE_CALL).await;
    assert!(bare.replayed, "the quoted and the bare form are one key");
    assert_eq!(balance(&api, &ws).await["balance"], start - 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_of_one_request_debit_once() {
    let api = Arc::new(Api::start().await);
    let (ws, start) = api.workspace(OWNER, "pro").await;
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (api, ws) = (api.clone(), ws.clone());
        tasks.push(tokio::spawn(async move {
            consume(&api, &ws, OWNER, Some("burst"), ONE_CALL).await
        }));
    }
    let mut consumptions = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.answer.status {
            200 => consumptions.push(reply.answer.body["consumption_id"].clone()),
            409 => {
                assert_eq!(reply.answer.body["code"], "idempotency_key_in_use");
                assert!(
                    reply.answer.retry_after.is_some(),
                    "a 409 says when to retry"
                );
            }
            other => panic!("{other}: {:?}", reply.answer.body),
        }
    }
    assert!(!consumptions.is_empty());
    assert!(
        consumptions.iter().all(|c| c == &consumptions[0]),
        "one consumption, answered to every copy that got an answer: {consumptions:?}"
    );
    assert_eq!(balance(&api, &ws).await["balance"], start - 1);
}

#[tokio::test]
async fn a_retried_purchase_creates_one_order() {
    let api = Api::start().await;
    let (ws, _) = api.workspace(OWNER, "pro").await;
    let path = format!("/workspaces/{ws}/credits/purchases");
    let body = r#"{"pack":"starter","reference":"PO-17"}"#;
    let key = Some(&b"purchase-1"[..]);
    let first = send(&api, &path, (OWNER, "user"), key, body).await;
    assert_eq!(first.answer.status, 201, "{:?}", first.answer.body);
    let again = send(&api, &path, (OWNER, "user"), key, body).await;
    assert_eq!(again.answer.status, 201, "{:?}", again.answer.body);
    assert!(again.replayed);
    assert_eq!(again.answer.body["order_id"], first.answer.body["order_id"]);
    let mine = api.stack.configs["OrdersFunction"].clone();
    let book =
        kassa_commerce::order_book::OrderBook::new(common::dynamodb().await, &mine.state_table);
    assert_eq!(book.orders_of(OWNER).await.unwrap().len(), 1);
}

/// Stripe's idempotency in front of localstripe: the first answer to a key is the answer to
/// every later request with it.
struct StripeKeys {
    base: String,
    http: reqwest::Client,
    answers: Mutex<HashMap<String, (u16, String)>>,
    turn: tokio::sync::Mutex<()>,
}

async fn through_stripe_keys(
    State(proxy): State<Arc<StripeKeys>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Requests with a key take turns, so a concurrent copy waits for the first answer.
    let _turn = match &key {
        Some(_) => Some(proxy.turn.lock().await),
        None => None,
    };
    let stored = key
        .as_ref()
        .and_then(|k| proxy.answers.lock().unwrap().get(k).cloned());
    let (status, text) = match stored {
        Some(answer) => answer,
        None => {
            let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let mut req = proxy
                .http
                .request(method, format!("{}{target}", proxy.base));
            for (name, value) in &headers {
                if name != "host" && name != "content-length" {
                    req = req.header(name, value);
                }
            }
            let res = req.body(body).send().await.unwrap();
            let answer = (res.status().as_u16(), res.text().await.unwrap());
            if let Some(k) = key {
                proxy.answers.lock().unwrap().insert(k, answer.clone());
            }
            answer
        }
    };
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        text,
    )
        .into_response()
}

/// A stack whose Stripe calls go through [`StripeKeys`].
async fn api_with_stripe_keys() -> Api {
    let proxy = Arc::new(StripeKeys {
        base: std::env::var("KASSA_STRIPE_API_BASE").expect("run through cargo xtask test"),
        http: reqwest::Client::new(),
        answers: Mutex::default(),
        turn: tokio::sync::Mutex::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = axum::Router::new()
        .fallback(through_stripe_keys)
        .with_state(proxy);
    tokio::spawn(async move { axum::serve(listener, router).await });

    kassa_runtime::telemetry::init();
    let mail_dir =
        std::env::temp_dir().join(format!("kassa-mail-{}", uuid::Uuid::now_v7().simple()));
    let mut options = kassa_local::Options::for_tests().unwrap();
    options.mail_sink_dir = Some(mail_dir.clone());
    options.parameters.insert("StripeApiBase".into(), url);
    let stack = kassa_local::Stack::start(options).await.unwrap();
    stack.register_stripe_webhook().await.unwrap();
    Api {
        stack,
        http: reqwest::Client::new(),
        mail_dir,
    }
}

/// A starter pack bought and paid: (order id, payment intent id).
async fn paid_order(api: &Api, ws: &str) -> (String, String) {
    let created = api
        .post(
            format!("/workspaces/{ws}/credits/purchases"),
            OWNER,
            json!({ "pack": "starter" }),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let order = created.body["order_id"].as_str().unwrap().to_owned();
    let intent = eventually("the payment intent", || async {
        let o = api.get(format!("/orders/{order}"), OWNER).await.body;
        o["payment_intent_id"].as_str().map(str::to_owned)
    })
    .await;
    common::pay_at_localstripe(&intent).await;
    eventually("the order fulfilled", || async {
        let o = api.get(format!("/orders/{order}"), OWNER).await.body;
        (o["status"] == "fulfilled").then_some(())
    })
    .await;
    (order, intent)
}

async fn refunds_at_stripe(intent: &str) -> Vec<Value> {
    let base = std::env::var("KASSA_STRIPE_API_BASE").unwrap();
    let list: Value = reqwest::Client::new()
        .get(format!("{base}/v1/refunds"))
        .query(&[("payment_intent", intent)])
        .basic_auth(std::env::var("KASSA_STRIPE_SECRET_KEY").unwrap(), Some(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["data"].as_array().cloned().unwrap_or_default()
}

async fn refund(api: &Api, order: &str, key: Option<&str>, amount: &str) -> Reply {
    send(
        api,
        &format!("/orders/{order}/refund"),
        ("support", "admin"),
        key.map(str::as_bytes),
        &json!({ "amount": amount }).to_string(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_partial_refunds_at_once_are_two_refunds_and_a_retry_is_neither() {
    let api = api_with_stripe_keys().await;
    let (ws, _) = api.workspace(OWNER, "pro").await;
    let (order, intent) = paid_order(&api, &ws).await;

    // Both read the order before either refund reaches it.
    let (first, second) = tokio::join!(
        refund(&api, &order, Some("refund-a"), "1.00"),
        refund(&api, &order, Some("refund-b"), "1.00"),
    );
    for r in [&first, &second] {
        assert_eq!(r.answer.status, 202, "{:?}", r.answer.body);
    }
    assert_ne!(
        first.answer.body["refund_id"], second.answer.body["refund_id"],
        "two refunds, not one answered twice"
    );
    assert_eq!(refunds_at_stripe(&intent).await.len(), 2);

    // Without a key, each request is its own refund too.
    let (third, fourth) = tokio::join!(
        refund(&api, &order, None, "1.00"),
        refund(&api, &order, None, "1.00"),
    );
    assert_ne!(
        third.answer.body["refund_id"],
        fourth.answer.body["refund_id"]
    );
    assert_eq!(refunds_at_stripe(&intent).await.len(), 4);

    // The client retries the first: the same refund, and Stripe is not asked again.
    let retried = refund(&api, &order, Some("refund-a"), "1.00").await;
    assert_eq!(retried.answer.status, 202, "{:?}", retried.answer.body);
    assert!(retried.replayed);
    assert_eq!(retried.answer.body, first.answer.body);
    assert_eq!(refunds_at_stripe(&intent).await.len(), 4);
    let refunded = eventually("the refunds on the order", || async {
        let o = api.get(format!("/orders/{order}"), OWNER).await.body;
        (o["refunded"]["amount"] == "4.00").then_some(o)
    })
    .await;
    assert_eq!(refunded["total"]["amount"], "10.00");
}

#[tokio::test]
async fn a_repeat_while_the_first_is_still_running_is_a_409() {
    let api = Api::start().await;
    let (ws, start) = api.workspace(OWNER, "pro").await;
    let path = format!("/workspaces/{ws}/credits/consume");
    // The first request, as the consume function would receive it, held in progress by
    // the same records the function keeps while the copy arrives through the gateway.
    let first = kassa_local::gateway::lambda_request(
        &Method::POST,
        &path.parse().unwrap(),
        &HeaderMap::from_iter([
            ("idempotency-key".parse().unwrap(), "slow".parse().unwrap()),
            (
                "content-type".parse().unwrap(),
                "application/json".parse().unwrap(),
            ),
        ]),
        &Bytes::from_static(ONE_CALL.as_bytes()),
        "POST /workspaces/{workspaceId}/credits/consume",
        HashMap::from([("workspaceId".to_owned(), ws.clone())]),
        HashMap::from([("sub".to_owned(), OWNER.to_owned())]),
    )
    .unwrap();
    let state_table = &api.stack.configs["ConsumeCreditsFunction"].state_table;
    let records = kassa_runtime::idempotency_key::IdempotentRequests::new(
        common::dynamodb().await,
        state_table,
        kassa_consume_credits::NAME,
    );
    let mut copy = None;
    let held = records
        .serve(
            &first,
            kassa_commerce::Clock::now(&api.stack.clock),
            |_| async {
                copy = Some(consume(&api, &ws, OWNER, Some("slow"), ONE_CALL).await);
                kassa_runtime::http::json(200, &json!({ "held": true }))
            },
        )
        .await;
    assert_eq!(held.status(), 200);
    let copy = copy.expect("the copy was sent while the first ran");
    assert_eq!(copy.answer.status, 409, "{:?}", copy.answer.body);
    assert_eq!(copy.answer.body["code"], "idempotency_key_in_use");
    assert_eq!(copy.answer.retry_after.as_deref(), Some("1"));
    // Once the first has answered, a retry gets its answer, and nothing else ran.
    let retry = consume(&api, &ws, OWNER, Some("slow"), ONE_CALL).await;
    assert!(retry.replayed);
    assert_eq!(retry.answer.body, json!({ "held": true }));
    assert_eq!(balance(&api, &ws).await["balance"], start);
}
