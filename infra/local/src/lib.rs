//! The local runner: what AWS does around kassa's functions, done on this machine.
//!
//! From template.yaml it provisions tables, queues, the bus and rules on DynamoDB Local and
//! moto; it serves the HTTP API's routes; it polls the events table's stream into the relay
//! and every queue into its function. Tests start it in-process with their own prefix, so
//! stacks share the emulators without sharing resources.

pub mod functions;
pub mod gateway;
pub mod queues;
pub mod resources;
pub mod schedule;
pub mod stream;
pub mod template;
pub mod throttle;

use anyhow::{anyhow, Context, Result};
use kassa_commerce::clock::OffsetClock;
use kassa_commerce::Clock;
use kassa_runtime::Config;
use resources::{Clients, Names};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use template::{Template, Trigger};
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct Options {
    pub template: PathBuf,
    pub listen: SocketAddr,
    /// Prefix of every resource name; a fresh random one when `None`.
    pub prefix: Option<String>,
    /// The HS256 secret dev tokens are signed with.
    pub jwt_secret: String,
    pub mail_sink_dir: Option<PathBuf>,
    pub retry_after: Duration,
    /// Values for template parameters (the Stripe endpoint and secrets).
    pub parameters: std::collections::HashMap<String, String>,
}

impl Options {
    /// The repository's template, a random port and prefix, the secret and mail sink from
    /// the environment `cargo xtask` sets.
    pub fn for_tests() -> Result<Self> {
        Ok(Self {
            template: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml"),
            listen: "127.0.0.1:0".parse()?,
            prefix: None,
            jwt_secret: std::env::var("KASSA_JWT_SECRET")
                .context("KASSA_JWT_SECRET (run through cargo xtask test)")?,
            mail_sink_dir: None,
            retry_after: Duration::from_secs(1),
            parameters: stripe_parameters(&format!("whsec_test_{}", uuid::Uuid::now_v7().simple()))
                .into_iter()
                .chain(unthrottled())
                .collect(),
        })
    }
}

/// Route throttling far above anything a test sends, so only a test that sets its own
/// limits meets a 429.
fn unthrottled() -> [(String, String); 2] {
    [
        ("ApiThrottlingRateLimit".to_owned(), "1000000".to_owned()),
        ("ApiThrottlingBurstLimit".to_owned(), "1000000".to_owned()),
    ]
}

/// The template's Stripe parameters as `cargo xtask` provides them: localstripe's URL and
/// key from the environment, and the webhook signing secret given; with them the ticket
/// signing key `cargo xtask` keeps per checkout.
pub fn stripe_parameters(webhook_secret: &str) -> std::collections::HashMap<String, String> {
    let mut parameters = std::collections::HashMap::new();
    for (parameter, variable) in [
        ("StripeApiBase", "KASSA_STRIPE_API_BASE"),
        ("StripeSecretKey", "KASSA_STRIPE_SECRET_KEY"),
        ("TicketSigningKey", "KASSA_TICKET_SIGNING_KEY"),
    ] {
        if let Ok(value) = std::env::var(variable) {
            parameters.insert(parameter.to_owned(), value);
        }
    }
    parameters.insert("StripeWebhookSecret".to_owned(), webhook_secret.to_owned());
    // localstripe has plans, not prices.
    parameters.insert("StripeLegacyPlanItems".to_owned(), "true".to_owned());
    parameters
}

pub struct Stack {
    pub url: String,
    pub names: Names,
    pub clock: OffsetClock,
    /// The configuration each function was given, by logical id.
    pub configs: std::collections::HashMap<String, Config>,
    schedules: std::collections::HashMap<String, functions::Lambda>,
    tasks: Vec<JoinHandle<()>>,
    /// The localstripe endpoint registered for this stack, unregistered when it drops.
    stripe_webhook: std::sync::OnceLock<String>,
}

impl Stack {
    pub async fn start(options: Options) -> Result<Stack> {
        let template = Template::load(&options.template)?;
        let aws = kassa_runtime::config::aws().await;
        let clients = Clients {
            dynamodb: aws_sdk_dynamodb::Client::new(&aws),
            eventbridge: aws_sdk_eventbridge::Client::new(&aws),
            sqs: aws_sdk_sqs::Client::new(&aws),
        };
        let prefix = options.prefix.clone().unwrap_or_else(|| {
            format!("kassa-{}", &uuid::Uuid::now_v7().simple().to_string()[24..])
        });
        let mut names = resources::provision(&template, &clients, &prefix).await?;
        names.parameters = options.parameters.clone();
        let clock = OffsetClock::default();
        let shared_clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let streams = aws_sdk_dynamodbstreams::Client::new(&aws);

        let mut gateway = gateway::Gateway::new(&options.jwt_secret);
        let throttles = throttle::of_apis(&template, &names)?;
        let mut tasks = Vec::new();
        let mut configs = std::collections::HashMap::new();
        let mut schedules = std::collections::HashMap::new();
        for function in template.functions()? {
            let mut env = names.environment(&template, &function.environment)?;
            if let Some(dir) = &options.mail_sink_dir {
                env.insert("KASSA_MAIL_SINK_DIR".into(), dir.display().to_string());
            }
            let config = Config::from_map(&env).with_context(|| function.id.clone())?;
            let lambda = functions::build(&function.id, &config, &aws, shared_clock.clone())?;
            configs.insert(function.id.clone(), config);
            for trigger in &function.triggers {
                match trigger {
                    Trigger::Http(route) => gateway.add(
                        &route.method,
                        &route.path,
                        route.public,
                        route
                            .api
                            .as_ref()
                            .and_then(|api| throttles.get(api))
                            .copied(),
                        lambda.clone(),
                    )?,
                    Trigger::Sqs {
                        queue,
                        batch_size,
                        batching_window,
                        concurrency,
                    } => {
                        let source = queues::QueueSource {
                            client: clients.sqs.clone(),
                            url: names
                                .queue_urls
                                .get(queue)
                                .cloned()
                                .ok_or_else(|| anyhow!("no queue {queue}"))?,
                            arn: names.arns.get(queue).cloned().unwrap_or_default(),
                            batch_size: *batch_size,
                            batching_window: *batching_window,
                            concurrency: *concurrency,
                            retry_after: options.retry_after,
                            lambda: lambda.clone(),
                        };
                        tasks.push(tokio::spawn(source.run()));
                    }
                    Trigger::Stream {
                        table,
                        batch_size,
                        max_retries,
                        on_failure,
                    } => {
                        let source = stream::StreamSource {
                            client: streams.clone(),
                            stream_arn: names
                                .stream_arns
                                .get(table)
                                .cloned()
                                .ok_or_else(|| anyhow!("{table} has no stream"))?,
                            batch_size: *batch_size,
                            max_retries: *max_retries,
                            on_failure: on_failure
                                .as_ref()
                                .and_then(|q| names.queue_urls.get(q))
                                .map(|url| (clients.sqs.clone(), url.clone())),
                            lambda: lambda.clone(),
                        };
                        tasks.push(tokio::spawn(source.run()));
                    }
                    Trigger::Schedule { expression } => {
                        schedules.insert(function.id.clone(), lambda.clone());
                        if let Some(period) = schedule::period(expression)? {
                            let (id, lambda) = (function.id.clone(), lambda.clone());
                            tasks.push(tokio::spawn(async move {
                                let mut timer = tokio::time::interval(period);
                                timer.tick().await;
                                loop {
                                    timer.tick().await;
                                    if let Err(e) = schedule::fire(&id, &lambda).await {
                                        tracing::error!(error = %e, "scheduled run failed");
                                    }
                                }
                            }));
                        }
                    }
                }
            }
        }

        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .with_context(|| format!("binding {}", options.listen))?;
        let url = format!("http://{}", listener.local_addr()?);
        let router = local_routes(schedules.clone(), clock.clone()).merge(gateway.router());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "the gateway stopped");
            }
        }));
        Ok(Stack {
            url,
            names,
            clock,
            configs,
            schedules,
            tasks,
            stripe_webhook: std::sync::OnceLock::new(),
        })
    }

    /// Runs a scheduled function now, as its schedule would.
    pub async fn fire(&self, function: &str) -> Result<serde_json::Value> {
        let lambda = self
            .schedules
            .get(function)
            .ok_or_else(|| anyhow!("{function} has no schedule in the template"))?;
        schedule::fire(function, lambda).await
    }

    /// Points localstripe's webhooks at this stack's webhook route, signed with the
    /// stack's secret, as one would register an endpoint in Stripe's dashboard.
    pub async fn register_stripe_webhook(&self) -> Result<()> {
        let base = self
            .names
            .parameters
            .get("StripeApiBase")
            .context("StripeApiBase is not set (KASSA_STRIPE_API_BASE)")?;
        let secret = self
            .names
            .parameters
            .get("StripeWebhookSecret")
            .context("StripeWebhookSecret is not set")?;
        let endpoint = format!("{base}/_config/webhooks/{}", self.names.prefix);
        // Set before the request: should it register and still fail, the drop unregisters.
        let _ = self.stripe_webhook.set(endpoint.clone());
        let answer = reqwest::Client::new()
            .post(endpoint)
            .form(&[
                ("url", format!("{}/stripe/webhook", self.url)),
                ("secret", secret.clone()),
            ])
            .send()
            .await?;
        anyhow::ensure!(
            answer.status().is_success(),
            "localstripe refused the webhook: {}",
            answer.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// Creates the paid tiers' monthly plans at localstripe under the ids the template's
    /// `StripePrice*` parameters name, priced as the tier policies say, as one would
    /// create the prices in Stripe's dashboard. Plans already there are left as they are.
    pub async fn create_stripe_prices(&self) -> Result<()> {
        // As the functions that subscribe resolve them (parameter or template default).
        let stripe = &self
            .configs
            .get("WorkspacesFunction")
            .context("the template has no WorkspacesFunction")?
            .stripe;
        let base = stripe.api_base.clone();
        let key = stripe.secret_key()?.to_owned();
        let http = reqwest::Client::new();
        let product = "kassa-tiers";
        // localstripe answers 409 for an id it holds already.
        let exists = |status: reqwest::StatusCode| status == reqwest::StatusCode::CONFLICT;
        let made = http
            .post(format!("{base}/v1/products"))
            .basic_auth(&key, Some(""))
            .form(&[("id", product), ("name", "kassa tiers")])
            .send()
            .await?;
        let (status, text) = (made.status(), made.text().await.unwrap_or_default());
        anyhow::ensure!(
            status.is_success() || exists(status),
            "localstripe refused the product: {text}"
        );
        for tier in [
            kassa_domain::tier::TierId::Pro,
            kassa_domain::tier::TierId::Enterprise,
        ] {
            let id = stripe.price_of(tier)?.to_owned();
            let amount = tier
                .policy()
                .monthly_price
                .minor_units()
                .context("tier prices are whole cents")?
                .to_string();
            let made = http
                .post(format!("{base}/v1/plans"))
                .basic_auth(&key, Some(""))
                .form(&[
                    ("id", id.as_str()),
                    ("product", product),
                    ("amount", amount.as_str()),
                    ("currency", "usd"),
                    ("interval", "month"),
                ])
                .send()
                .await?;
            let (status, text) = (made.status(), made.text().await.unwrap_or_default());
            anyhow::ensure!(
                status.is_success() || exists(status),
                "localstripe refused the plan {id}: {text}"
            );
        }
        Ok(())
    }

    pub fn table(&self, logical_id: &str) -> &str {
        self.names
            .physical
            .get(logical_id)
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// Local-only controls, outside the template's API: move the clock, fire a schedule.
fn local_routes(
    schedules: std::collections::HashMap<String, functions::Lambda>,
    clock: OffsetClock,
) -> axum::Router {
    use axum::extract::{Path, Query};
    use axum::routing::post;
    let schedules = Arc::new(schedules);
    axum::Router::new()
        .route(
            "/_local/clock/advance",
            post(
                move |Query(q): Query<std::collections::HashMap<String, u64>>| {
                    let clock = clock.clone();
                    async move {
                        let secs = q.get("days").copied().unwrap_or(0) * 86_400
                            + q.get("seconds").copied().unwrap_or(0);
                        clock.advance(Duration::from_secs(secs));
                        axum::Json(serde_json::json!({ "now": clock.now().to_string() }))
                    }
                },
            ),
        )
        .route(
            "/_local/schedules/{function}",
            post(move |Path(function): Path<String>| {
                let schedules = schedules.clone();
                async move {
                    let answer = match schedules.get(&function) {
                        Some(lambda) => schedule::fire(&function, lambda)
                            .await
                            .map_err(|e| e.to_string()),
                        None => Err(format!("{function} has no schedule")),
                    };
                    match answer {
                        Ok(v) => (axum::http::StatusCode::OK, axum::Json(v)),
                        Err(e) => (
                            axum::http::StatusCode::BAD_REQUEST,
                            axum::Json(serde_json::json!({ "error": e })),
                        ),
                    }
                }
            }),
        )
}

impl Drop for Stack {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(endpoint) = self.stripe_webhook.take() {
            // localstripe sends every event to every endpoint, one after the other: one
            // left behind by each stopped stack would slow every later delivery.
            // Drop cannot await, and a test's runtime may be a current-thread one about to
            // stop, so the DELETE runs to its end on a thread and runtime of its own.
            let unregistered = std::thread::spawn(move || unregister_stripe_webhook(&endpoint))
                .join()
                .unwrap_or_else(|_| Err(anyhow!("the unregistering thread panicked")));
            if let Err(e) = unregistered {
                tracing::warn!(error = %e, "the Stripe webhook endpoint stays registered");
            }
        }
    }
}

fn unregister_stripe_webhook(endpoint: &str) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let answer = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?
            .delete(endpoint)
            .send()
            .await?;
        anyhow::ensure!(
            answer.status().is_success(),
            "localstripe answered {} to DELETE {endpoint}",
            answer.status()
        );
        Ok(())
    })
}
