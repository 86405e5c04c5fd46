//! A minimal Lambda Runtime API: enough for a function binary to start, take one
//! invocation and answer it, with the moment of each call noted for the cold-start timing.

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What the runtime asked or told; the timed calls carry when they arrived.
pub enum Call {
    Next(Instant),
    Response(Instant, Bytes),
    InvocationError(Bytes),
    InitError(Bytes),
}

/// The one invocation's request id; Lambda's are UUIDs, any text will do here.
const REQUEST_ID: &str = "bench-invocation-1";
/// The invocation's time budget, as the deadline header tells the runtime.
const BUDGET: Duration = Duration::from_secs(30);

pub struct RuntimeApi {
    pub address: SocketAddr,
    calls: mpsc::UnboundedReceiver<Call>,
    server: JoinHandle<()>,
}

struct Shared {
    event: String,
    served: AtomicBool,
    calls: mpsc::UnboundedSender<Call>,
}

impl RuntimeApi {
    /// Serves on a free loopback port; the first `next` gets `event`, later ones wait, as
    /// they do on Lambda while no invocation is queued.
    pub async fn serve(event: &serde_json::Value) -> Result<Self> {
        let (sender, calls) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            event: event.to_string(),
            served: AtomicBool::new(false),
            calls: sender,
        });
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("binding the Runtime API")?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self {
            address,
            calls,
            server,
        })
    }

    /// The next call the runtime makes, or `None` if none comes within `wait`.
    pub async fn call(&mut self, wait: Duration) -> Option<Call> {
        tokio::time::timeout(wait, self.calls.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    let _ = shared.calls.send(Call::Next(Instant::now()));
    if shared.served.swap(true, Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    let deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        + BUDGET;
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("lambda-runtime-aws-request-id", REQUEST_ID.to_owned());
    set(
        "lambda-runtime-deadline-ms",
        deadline.as_millis().to_string(),
    );
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:kassa-consume-credits".to_owned(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0".to_owned(),
    );
    set("content-type", "application/json".to_owned());
    (StatusCode::OK, headers, shared.event.clone()).into_response()
}

async fn response(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let _ = shared.calls.send(Call::Response(Instant::now(), body));
    StatusCode::ACCEPTED
}

async fn error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let _ = shared.calls.send(Call::InvocationError(body));
    StatusCode::ACCEPTED
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let _ = shared.calls.send(Call::InitError(body));
    StatusCode::ACCEPTED
}
