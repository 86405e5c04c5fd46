//! What the tests share: a stack per test, tokens, HTTP calls and patient polling.
#![allow(dead_code)]

use kassa_local::{Options, Stack};
use kassa_payments::gateway::PaymentGateway;
use serde_json::Value;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub fn token(user: &str, role: &str) -> String {
    let secret =
        std::env::var("KASSA_JWT_SECRET").expect("KASSA_JWT_SECRET: run through cargo xtask test");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = serde_json::json!({
        "sub": user, "role": role, "iat": now, "exp": now + 3600,
        "iss": kassa_local::gateway::ISSUER, "aud": kassa_local::gateway::AUDIENCE,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

pub struct Api {
    pub stack: Stack,
    pub http: reqwest::Client,
    pub mail_dir: PathBuf,
}

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
    /// The `Retry-After` header, when there is one.
    pub retry_after: Option<String>,
}

impl Answer {
    /// What an HTTP response said.
    pub async fn of(res: reqwest::Response) -> Answer {
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type").unwrap_or_default();
        let retry_after = header("retry-after");
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        Answer {
            status,
            content_type,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
            retry_after,
        }
    }
}

impl Api {
    pub async fn start() -> Api {
        Self::start_with(&[]).await
    }

    /// As [`Api::start`], with values of the test's own for template parameters (a tax
    /// rate, say).
    pub async fn start_with(parameters: &[(&str, &str)]) -> Api {
        kassa_runtime::telemetry::init();
        let mail_dir =
            std::env::temp_dir().join(format!("kassa-mail-{}", uuid::Uuid::now_v7().simple()));
        let mut options = Options::for_tests().unwrap();
        options.mail_sink_dir = Some(mail_dir.clone());
        for (name, value) in parameters {
            options
                .parameters
                .insert((*name).to_owned(), (*value).to_owned());
        }
        let stack = Stack::start(options).await.expect("stack starts");
        Api {
            stack,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            mail_dir,
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: impl Into<String>,
        user: Option<&str>,
        body: Option<&str>,
    ) -> Answer {
        self.call_as(method, path, user.map(|u| (u, "user")), body)
            .await
    }

    /// As [`Api::call`], with the caller's role.
    pub async fn call_as(
        &self,
        method: &str,
        path: impl Into<String>,
        caller: Option<(&str, &str)>,
        body: Option<&str>,
    ) -> Answer {
        let url = format!("{}{}", self.stack.url, path.into());
        let mut req = self.http.request(method.parse().unwrap(), url);
        if let Some((user, role)) = caller {
            req = req.bearer_auth(token(user, role));
        }
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        Answer::of(req.send().await.expect("request")).await
    }

    /// `user` registered with a mail address (`<user>@example.com`), which ticket
    /// delivery needs.
    pub async fn register(&self, user: &str) {
        let registered = self
            .post(
                "/users",
                user,
                serde_json::json!({ "email": format!("{user}@example.com"), "name": user }),
            )
            .await;
        assert_eq!(registered.status, 201, "{:?}", registered.body);
    }

    pub async fn post(&self, path: impl Into<String>, user: &str, body: Value) -> Answer {
        self.call("POST", path, Some(user), Some(&body.to_string()))
            .await
    }

    pub async fn get(&self, path: impl Into<String>, user: &str) -> Answer {
        self.call("GET", path, Some(user), None).await
    }

    /// Creates a workspace and waits for its signup allocation.
    pub async fn workspace(&self, owner: &str, tier: &str) -> (String, i64) {
        let created = self
            .post(
                "/workspaces",
                owner,
                serde_json::json!({ "name": "Acme", "tier": tier, "billing_email": "ops@acme.test" }),
            )
            .await;
        assert_eq!(created.status, 201, "{:?}", created.body);
        let id = created.body["id"].as_str().unwrap().to_owned();
        let balance = eventually("signup allocation", || async {
            let b = self
                .get(&format!("/workspaces/{id}/credits/balance"), owner)
                .await;
            b.body["balance"].as_i64().filter(|b| *b > 0)
        })
        .await;
        (id, balance)
    }
}

/// Polls `probe` until it answers, for up to 30 s (side effects travel stream → relay →
/// EventBridge → SQS → handler).
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn dynamodb() -> aws_sdk_dynamodb::Client {
    let config = kassa_runtime::config::aws().await;
    aws_sdk_dynamodb::Client::new(&config)
}

/// Fresh tables of the template's shape: (events table, state table).
pub async fn tables() -> (String, String) {
    let client = dynamodb().await;
    let template = kassa_local::template::Template::load(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../template.yaml"),
    )
    .unwrap();
    let prefix = format!(
        "tables-{}",
        &uuid::Uuid::now_v7().simple().to_string()[24..]
    );
    let names = kassa_local::resources::tables_only(&template, &client, &prefix)
        .await
        .unwrap();
    (
        names.physical["EventsTable"].clone(),
        names.physical["StateTable"].clone(),
    )
}

/// A fresh events table of the template's shape.
pub async fn event_store() -> kassa_store::EventStore {
    let client = dynamodb().await;
    let template = kassa_local::template::Template::load(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../template.yaml"),
    )
    .unwrap();
    let prefix = format!("store-{}", &uuid::Uuid::now_v7().simple().to_string()[24..]);
    let names = kassa_local::resources::tables_only(&template, &client, &prefix)
        .await
        .unwrap();
    kassa_store::EventStore::new(client, names.physical["EventsTable"].clone())
}

/// What the paying browser does with the client secret: attach a card and confirm.
pub async fn pay_at_localstripe(intent: &str) -> serde_json::Value {
    pay_at_localstripe_with(intent, "4242424242424242").await
}

/// As [`pay_at_localstripe`], with the card `number` (localstripe declines
/// 4000000000000341).
pub async fn pay_at_localstripe_with(intent: &str, number: &str) -> serde_json::Value {
    let base = std::env::var("KASSA_STRIPE_API_BASE").expect("run through cargo xtask test");
    let key = std::env::var("KASSA_STRIPE_SECRET_KEY").unwrap();
    let http = reqwest::Client::new();
    let pm: serde_json::Value = http
        .post(format!("{base}/v1/payment_methods"))
        .basic_auth(&key, Some(""))
        .form(&[
            ("type", "card"),
            ("card[number]", number),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2030"),
            ("card[cvc]", "123"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    http.post(format!("{base}/v1/payment_intents/{intent}"))
        .basic_auth(&key, Some(""))
        .form(&[("payment_method", pm["id"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    http.post(format!("{base}/v1/payment_intents/{intent}/confirm"))
        .basic_auth(&key, Some(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Set-up the gateway has no business offering (catalogue, cards), done as a dashboard or
/// the paying browser would.
pub async fn stripe_post(path: &str, form: &[(&str, &str)]) -> serde_json::Value {
    let base = std::env::var("KASSA_STRIPE_API_BASE").unwrap();
    let secret = std::env::var("KASSA_STRIPE_SECRET_KEY").unwrap();
    let response = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .basic_auth(&secret, Some(""))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(status.is_success(), "POST {path}: {status} {body}");
    body
}

/// A Stripe object as the dashboard shows it.
pub async fn stripe_get(path: &str) -> serde_json::Value {
    let base = std::env::var("KASSA_STRIPE_API_BASE").unwrap();
    let secret = std::env::var("KASSA_STRIPE_SECRET_KEY").unwrap();
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .basic_auth(&secret, Some(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub fn id(object: &serde_json::Value) -> String {
    object["id"].as_str().unwrap().to_owned()
}

/// A product with a monthly plan per amount: localstripe's stand-in for prices. Both plans
/// bill monthly so that moving between them does not start a new billing cycle.
pub async fn monthly_plans(amounts: [&str; 2]) -> [String; 2] {
    let product = id(&stripe_post("/v1/products", &[("name", "Kassa Pro")]).await);
    let mut plans = Vec::new();
    for amount in amounts {
        let plan = stripe_post(
            "/v1/plans",
            &[
                ("product", product.as_str()),
                ("amount", amount),
                ("currency", "usd"),
                ("interval", "month"),
            ],
        )
        .await;
        plans.push(id(&plan));
    }
    plans.try_into().unwrap()
}

/// The organizer who puts the tests' concerts on sale.
pub const ORGANIZER: (&str, &str) = ("olga", "organizer");

/// A concert in 30 days in EUR, with `levels` (id, capacity) at 80.00 each.
pub fn concert_body(artist: &str, levels: &[(&str, u32)]) -> Value {
    let starts = (time::OffsetDateTime::now_utc() + time::Duration::days(30))
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let levels: Vec<Value> = levels
        .iter()
        .map(|(level, capacity)| {
            serde_json::json!({ "level_id": level, "name": level.to_uppercase(),
                                "capacity": capacity,
                                "price": { "amount": "80.00", "currency": "EUR" } })
        })
        .collect();
    serde_json::json!({
        "artist": artist, "venue": "Stadion Narodowy", "starts_at": starts,
        "currency": "EUR", "levels": levels,
    })
}

/// Creates the concert `body` describes as [`ORGANIZER`]; its id.
pub async fn put_on_sale(api: &Api, body: &Value) -> uuid::Uuid {
    let created = api
        .call_as(
            "POST",
            "/concerts",
            Some(ORGANIZER),
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    created.body["concert_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// localstripe charges the first period on creation and refuses a subscription whose
/// customer has no default payment method.
pub async fn customer_with_card(stripe: &kassa_payments::stripe::StripeGateway) -> String {
    let customer = stripe
        .create_customer(
            Some("billing@acme.test"),
            "workspace-sub",
            &uuid::Uuid::now_v7().to_string(),
        )
        .await
        .unwrap()
        .id;
    let card = id(&stripe_post(
        "/v1/payment_methods",
        &[
            ("type", "card"),
            ("card[number]", "4242424242424242"),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2030"),
            ("card[cvc]", "123"),
        ],
    )
    .await);
    stripe_post(
        &format!("/v1/payment_methods/{card}/attach"),
        &[("customer", customer.as_str())],
    )
    .await;
    stripe_post(
        &format!("/v1/customers/{customer}"),
        &[("invoice_settings[default_payment_method]", card.as_str())],
    )
    .await;
    customer
}

/// Functions of the template built on fresh tables with no stack around them: no queue
/// pollers, and a relay whose bus has no rules (it only persists what counter heads carry).
/// The test hands each function the events it chooses, in the order it chooses, as SQS may
/// deliver them: an exact interleaving, where the stack's concurrent pollers give a random
/// one.
pub struct Isolated {
    pub store: kassa_store::EventStore,
    pub state_table: String,
    pub config: kassa_runtime::Config,
    pub mail_dir: PathBuf,
    relay: tokio::task::JoinHandle<()>,
}

impl Drop for Isolated {
    fn drop(&mut self) {
        // The relay polls its stream every 50 ms while it runs: left running, the relays
        // of a test that makes dozens of these (the hardening rounds) slow DynamoDB Local
        // for everything after them.
        self.relay.abort();
    }
}

impl Isolated {
    pub async fn new() -> Isolated {
        kassa_runtime::telemetry::init();
        let (events, state) = tables().await;
        let mail_dir =
            std::env::temp_dir().join(format!("kassa-mail-{}", uuid::Uuid::now_v7().simple()));
        let mut env = std::collections::HashMap::from([
            ("KASSA_EVENTS_TABLE".to_owned(), events.clone()),
            ("KASSA_STATE_TABLE".to_owned(), state.clone()),
            (
                "KASSA_MAIL_SINK_DIR".to_owned(),
                mail_dir.display().to_string(),
            ),
        ]);
        for var in ["KASSA_STRIPE_API_BASE", "KASSA_STRIPE_SECRET_KEY"] {
            if let Ok(value) = std::env::var(var) {
                env.insert(var.to_owned(), value);
            }
        }
        // The relay runs, on a bus of its own with no rules: debits and other writes of
        // counter heads carry their events, which reach their streams through it, as on
        // AWS. Nothing it publishes is delivered; the test delivers what it chooses.
        let aws = kassa_runtime::config::aws().await;
        let bus = format!(
            "isolated-{}",
            &uuid::Uuid::now_v7().simple().to_string()[20..]
        );
        aws_sdk_eventbridge::Client::new(&aws)
            .create_event_bus()
            .name(&bus)
            .send()
            .await
            .unwrap();
        env.insert("KASSA_EVENT_BUS".to_owned(), bus);
        let config = kassa_runtime::Config::from_map(&env).unwrap();
        let relay = kassa_local::functions::build(
            "EventRelayFunction",
            &config,
            &aws,
            std::sync::Arc::new(kassa_commerce::clock::SystemClock),
        )
        .unwrap();
        let stream_arn = dynamodb()
            .await
            .describe_table()
            .table_name(&events)
            .send()
            .await
            .unwrap()
            .table
            .and_then(|t| t.latest_stream_arn)
            .expect("the events table has a stream");
        let relay = tokio::spawn(
            kassa_local::stream::StreamSource {
                client: aws_sdk_dynamodbstreams::Client::new(&aws),
                stream_arn,
                batch_size: 100,
                max_retries: 10,
                on_failure: None,
                lambda: relay,
            }
            .run(),
        );
        Isolated {
            store: kassa_store::EventStore::new(dynamodb().await, events),
            state_table: state,
            config,
            mail_dir,
            relay,
        }
    }

    /// The template function `id`, built as its main.rs builds it.
    pub async fn function(&self, id: &str) -> kassa_local::functions::Lambda {
        let aws = kassa_runtime::config::aws().await;
        kassa_local::functions::build(
            id,
            &self.config,
            &aws,
            std::sync::Arc::new(kassa_commerce::clock::SystemClock),
        )
        .unwrap()
    }

    pub async fn deliver(
        &self,
        lambda: &kassa_local::functions::Lambda,
        events: &[&kassa_store::RecordedEvent],
    ) -> Vec<String> {
        deliver_batch(lambda, events).await
    }

    pub async fn forget(&self, scope: &str, event: &kassa_store::RecordedEvent) {
        forget_handled(&self.state_table, scope, event).await
    }

    /// The events of `stream`; for a counter head (a wallet), once the relay has persisted
    /// every event its head counts.
    pub async fn events(&self, stream: &kassa_store::StreamId) -> Vec<kassa_store::RecordedEvent> {
        let head = self.store.load(stream).await.unwrap();
        let Some(head) = head.filter(|h| h.counter.is_some()) else {
            return self.store.read_stream(stream, 100).await.unwrap();
        };
        eventually("the relay to persist what the head carried", || async {
            let events = self.store.read_stream(stream, 100).await.unwrap();
            (events.len() as u64 == head.version).then_some(events)
        })
        .await
    }

    pub fn mails(&self) -> Vec<kassa_runtime::mail::Mail> {
        kassa_runtime::mail::MailSink::new(&self.mail_dir)
            .read_all()
            .unwrap_or_default()
    }
}

/// Hands `lambda` one SQS batch of `events`, each wrapped as EventBridge delivers it;
/// answers the message ids the function reported as failed.
pub async fn deliver_batch(
    lambda: &kassa_local::functions::Lambda,
    events: &[&kassa_store::RecordedEvent],
) -> Vec<String> {
    let records: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let body = serde_json::json!({
                "version": "0", "id": uuid::Uuid::now_v7(), "detail-type": e.event_type,
                "source": format!("kassa.{}", e.context), "detail": e,
            });
            serde_json::json!({ "messageId": format!("m{i}"), "body": body.to_string() })
        })
        .collect();
    let batch = serde_json::from_value(serde_json::json!({ "Records": records })).unwrap();
    let kassa_local::functions::Lambda::Sqs(handle) = lambda else {
        panic!("not an SQS function");
    };
    handle(batch)
        .await
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect()
}

/// Delivers `event` to the stack's `function` once more as if the record of its first
/// handling were lost after the commit (the inbox forgets it, so the handler runs anew):
/// the redelivery every consumer must survive. Returns the failed message ids.
pub async fn redeliver(
    api: &Api,
    function: &str,
    scope: &str,
    event: &kassa_store::RecordedEvent,
) -> Vec<String> {
    let lambda = kassa_local::functions::build(
        function,
        &api.stack.configs[function],
        &kassa_runtime::config::aws().await,
        std::sync::Arc::new(api.stack.clock.clone()),
    )
    .unwrap();
    forget_handled(api.stack.table("StateTable"), scope, event).await;
    deliver_batch(&lambda, &[event]).await
}

/// Drops the idempotency record `scope` (a function's name) keeps for `event` in
/// `state_table`, as if the function had crashed after its commit and before completing
/// the record: the next delivery of the event runs the effect again.
pub async fn forget_handled(state_table: &str, scope: &str, event: &kassa_store::RecordedEvent) {
    use aws_sdk_dynamodb::types::AttributeValue;
    dynamodb()
        .await
        .delete_item()
        .table_name(state_table)
        .key(
            "pk",
            AttributeValue::S(format!("idempotency#{scope}#{}", event.event_id)),
        )
        .key("sk", AttributeValue::S("-".into()))
        .send()
        .await
        .unwrap();
}

/// Every PaymentIntent localstripe holds whose metadata names `order` (localstripe
/// cannot filter by metadata: this pages through all of them).
pub async fn intents_of_order(order: &str) -> Vec<Value> {
    let base = std::env::var("KASSA_STRIPE_API_BASE").unwrap();
    let secret = std::env::var("KASSA_STRIPE_SECRET_KEY").unwrap();
    let http = reqwest::Client::new();
    let mut found = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut query = vec![("limit", "100".to_owned())];
        if let Some(after) = &after {
            query.push(("starting_after", after.clone()));
        }
        let page: Value = http
            .get(format!("{base}/v1/payment_intents"))
            .basic_auth(&secret, Some(""))
            .query(&query)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let data = page["data"].as_array().cloned().unwrap_or_default();
        after = data.last().map(id);
        found.extend(
            data.into_iter()
                .filter(|i| i["metadata"][kassa_commerce::order_book::ORDER_KEY] == order),
        );
        if page["has_more"] != true || after.is_none() {
            return found;
        }
    }
}

/// Moves the stack's clock forward to `at` (UTC) on `day`.
pub fn advance_to(api: &Api, day: time::Date, at: time::Time) {
    use kassa_commerce::Clock;
    let target = time::OffsetDateTime::new_utc(day, at);
    let now = api.stack.clock.now();
    assert!(target > now, "{target} is not ahead of {now}");
    api.stack
        .clock
        .advance(Duration::from_secs((target - now).whole_seconds() as u64));
}

/// A card as Stripe.js would collect it: a payment method id at localstripe
/// (4242424242424242 pays; localstripe declines 4000000000000341).
pub async fn card(number: &str) -> String {
    id(&stripe_post(
        "/v1/payment_methods",
        &[
            ("type", "card"),
            ("card[number]", number),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2030"),
            ("card[cvc]", "123"),
        ],
    )
    .await)
}

pub async fn deliver_raw(api: &Api, body: &str, header: Option<&str>) -> Answer {
    let mut req = api
        .http
        .post(format!("{}/stripe/webhook", api.stack.url))
        .header("content-type", "application/json; charset=utf-8")
        .body(body.to_owned());
    if let Some(h) = header {
        req = req.header("stripe-signature", h);
    }
    Answer::of(req.send().await.unwrap()).await
}

/// Signs `event` exactly as Stripe does (at the stack's clock) and delivers it.
pub async fn deliver(api: &Api, event: &serde_json::Value) -> Answer {
    let body = serde_json::to_string_pretty(event).unwrap();
    let now = kassa_commerce::Clock::now(&api.stack.clock).unix_timestamp();
    let header = kassa_payments::webhook_signature::sign(
        body.as_bytes(),
        &api.stack.names.parameters["StripeWebhookSecret"],
        now,
    );
    deliver_raw(api, &body, Some(&header)).await
}

pub fn stripe_event(
    event_type: &str,
    created: i64,
    object: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "id": format!("evt_{}", uuid::Uuid::now_v7().simple()),
        "object": "event",
        "api_version": "2024-06-20",
        "type": event_type,
        "created": created,
        "livemode": false,
        "data": { "object": object },
    })
}

/// An invoice's lines as `description amount`, as shown.
pub fn invoice_lines(invoice: &Value) -> Vec<String> {
    invoice["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            format!(
                "{} {}",
                text(&l["description"]),
                text(&l["amount"]["amount"])
            )
        })
        .collect()
}
