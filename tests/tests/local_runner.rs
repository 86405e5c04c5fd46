//! The local runner plays AWS's part faithfully where kassa's correctness depends on it:
//! the HTTP API's route throttling, SQS event sources that deliver concurrently, and
//! Stripe's webhooks (from localstripe) that reach every live endpoint and no dead one.

mod common;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_local::functions::Lambda;
use kassa_local::queues::QueueSource;
use kassa_local::{Options, Stack};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[tokio::test]
async fn a_caller_over_a_routes_rate_gets_429_until_its_bucket_refills() {
    kassa_runtime::telemetry::init();
    let mut options = Options::for_tests().unwrap();
    // One request per second in the long run, three at once.
    options
        .parameters
        .insert("ApiThrottlingRateLimit".into(), "1".into());
    options
        .parameters
        .insert("ApiThrottlingBurstLimit".into(), "3".into());
    let stack = Stack::start(options).await.expect("stack starts");
    let http = reqwest::Client::new();
    let token = common::token("alice", "user");
    let get = |path: &str| {
        http.get(format!("{}{path}", stack.url))
            .bearer_auth(&token)
            .send()
    };

    let started = Instant::now();
    let mut served = 0;
    let refused = loop {
        let answer = get("/events/catalog").await.unwrap();
        if answer.status() != 429 {
            assert_eq!(answer.status(), 200);
            served += 1;
            assert!(served <= 20, "20 calls in a row were never throttled");
            continue;
        }
        break answer;
    };
    // The burst, plus at most the tokens that came back while the calls went out.
    let refilled = started.elapsed().as_secs_f64().ceil() as u32;
    assert!(
        (3..=3 + refilled).contains(&served),
        "{served} calls served before the first 429"
    );

    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        retry_after, 1,
        "one request per second: the next token within 1 s"
    );
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "too_many_requests", "{problem}");
    assert_eq!(problem["status"], 429, "{problem}");

    // Each route has its own bucket, as on API Gateway.
    let other = get("/events/catalog/workspace.created").await.unwrap();
    assert_eq!(other.status(), 200);

    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let again = get("/events/catalog").await.unwrap();
    assert_eq!(again.status(), 200, "a token is back after Retry-After");
}

/// What the stub function saw of one message.
#[derive(Debug, Clone, PartialEq)]
struct Handled {
    body: String,
    /// Whether the other message's handler ran at the same time.
    overlapped: bool,
}

#[tokio::test]
async fn a_queue_runs_batches_at_once_and_they_finish_out_of_order() {
    let aws = kassa_runtime::config::aws().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let name = format!("kassa-concurrency-{}", uuid::Uuid::now_v7().simple());
    let url = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    for body in ["first", "second"] {
        sqs.send_message()
            .queue_url(&url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    // Each handler waits (bounded) until both have started, and "first" also until
    // "second" has finished: a poller that runs one batch at a time lets neither happen.
    let (started, _) = watch::channel(0_usize);
    let (second_done, _) = watch::channel(false);
    let handled = Arc::new(Mutex::new(Vec::<Handled>::new()));
    let (started, second_done) = (Arc::new(started), Arc::new(second_done));
    let log = handled.clone();
    let lambda = Lambda::Sqs(Arc::new(move |event: SqsEvent| {
        let (started, second_done, log) = (started.clone(), second_done.clone(), log.clone());
        Box::pin(async move {
            for record in event.records {
                let body = record.body.unwrap_or_default();
                started.send_modify(|n| *n += 1);
                let overlapped = tokio::time::timeout(
                    Duration::from_secs(5),
                    started.subscribe().wait_for(|n| *n >= 2),
                )
                .await
                .is_ok();
                if body == "first" {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(5),
                        second_done.subscribe().wait_for(|done| *done),
                    )
                    .await;
                }
                log.lock().unwrap().push(Handled {
                    body: body.clone(),
                    overlapped,
                });
                if body == "second" {
                    second_done.send_replace(true);
                }
            }
            SqsBatchResponse::default()
        })
    }));

    let source = QueueSource {
        client: sqs.clone(),
        url: url.clone(),
        arn: format!("arn:aws:sqs:us-east-1:123456789012:{name}"),
        batch_size: 1,
        batching_window: Duration::ZERO,
        concurrency: 2,
        retry_after: Duration::from_secs(1),
        lambda,
    };
    let poller = tokio::spawn(source.run());
    let seen = common::eventually("both messages handled", || {
        let handled = handled.clone();
        async move {
            let seen = handled.lock().unwrap().clone();
            (seen.len() == 2).then_some(seen)
        }
    })
    .await;
    poller.abort();

    assert_eq!(
        seen,
        vec![
            Handled {
                body: "second".into(),
                overlapped: true
            },
            Handled {
                body: "first".into(),
                overlapped: true
            },
        ]
    );
}

/// The PaymentIntent id of each webhook delivery a [`webhook_receiver`] got, by path.
#[derive(Clone, Default)]
struct Deliveries(Arc<Mutex<Vec<(String, String)>>>);

impl Deliveries {
    fn got(&self, path: &str, intent: &str) -> bool {
        self.0
            .lock()
            .unwrap()
            .iter()
            .any(|(p, i)| p == path && i == intent)
    }
}

/// Answers every POST on `listener` with 200, a delivery to /slow only after two seconds.
fn webhook_receiver(listener: tokio::net::TcpListener) -> Deliveries {
    let deliveries = Deliveries::default();
    let log = deliveries.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: String| {
        let log = log.clone();
        async move {
            let event: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let intent = event["data"]["object"]["id"].as_str().unwrap_or_default();
            log.0
                .lock()
                .unwrap()
                .push((uri.path().to_owned(), intent.to_owned()));
            if uri.path() == "/slow" {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    deliveries
}

fn stripe_config(id: &str) -> String {
    let base = std::env::var("KASSA_STRIPE_API_BASE").expect("run through cargo xtask test");
    format!("{base}/_config/webhooks/{id}")
}

async fn register_endpoint(id: &str, url: &str) {
    let answer = reqwest::Client::new()
        .post(stripe_config(id))
        .form(&[("url", url), ("secret", "whsec_test_receiver")])
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());
}

async fn unregister_endpoint(id: &str) {
    let answer = reqwest::Client::new()
        .delete(stripe_config(id))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());
}

/// A PaymentIntent paid at localstripe, which then sends payment_intent.succeeded.
async fn paid_intent() -> String {
    let intent = common::id(
        &common::stripe_post(
            "/v1/payment_intents",
            &[("amount", "1000"), ("currency", "usd")],
        )
        .await,
    );
    let paid = common::pay_at_localstripe(&intent).await;
    assert_eq!(paid["status"], "succeeded", "{paid}");
    intent
}

#[tokio::test]
async fn a_webhook_reaches_every_endpoint_though_another_registers_during_its_delivery() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let deliveries = webhook_receiver(listener);
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let (slow, witness, late) = (
        format!("slow-{tag}"),
        format!("witness-{tag}"),
        format!("late-{tag}"),
    );
    register_endpoint(&slow, &format!("{base}/slow")).await;
    register_endpoint(&witness, &format!("{base}/witness")).await;

    let intent = paid_intent().await;
    common::eventually("the delivery to the slow endpoint", || async {
        deliveries.got("/slow", &intent).then_some(())
    })
    .await;
    // While localstripe waits on the slow endpoint, another stack registers its own.
    register_endpoint(&late, &format!("{base}/late")).await;
    common::eventually(
        "the delivery to the endpoint after the slow one",
        || async { deliveries.got("/witness", &intent).then_some(()) },
    )
    .await;

    for id in [&slow, &witness, &late] {
        unregister_endpoint(id).await;
    }
}

#[tokio::test]
async fn a_dropped_stacks_stripe_endpoint_gets_no_more_deliveries() {
    kassa_runtime::telemetry::init();
    let stack = Stack::start(Options::for_tests().unwrap())
        .await
        .expect("stack starts");
    stack.register_stripe_webhook().await.unwrap();
    let address = stack.url.trim_start_matches("http://").to_owned();
    drop(stack);

    // Whatever listens on the dropped stack's port now hears what localstripe still sends
    // there. The port frees once the aborted gateway task has been dropped.
    let listener = common::eventually("the dropped stack's port to free", || async {
        tokio::net::TcpListener::bind(&address).await.ok()
    })
    .await;
    let deliveries = webhook_receiver(listener);
    let witness = format!("witness-{}", uuid::Uuid::now_v7().simple());
    register_endpoint(&witness, &format!("http://{address}/witness")).await;

    let intent = paid_intent().await;
    // Endpoints are sent to in the order they registered: the dropped stack's first.
    common::eventually(
        "the delivery to the endpoint registered after the drop",
        || async { deliveries.got("/witness", &intent).then_some(()) },
    )
    .await;
    assert!(
        !deliveries.got("/stripe/webhook", &intent),
        "the dropped stack's endpoint is still registered"
    );
    unregister_endpoint(&witness).await;
}
