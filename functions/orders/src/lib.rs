//! The orders Lambda: buy credit packs, read an order (with the client secret that pays
//! it), change its reference, cancel it, refund it, and read invoices.
//!
//! Creating an order writes `order.created`, the order's place on the expiry agenda and
//! its entry in the buyer's order list in one commit. The PaymentIntent is created by the
//! side effect that follows (seed 001's payment flow), never in the request.
//!
//! - `buying`: a purchase of credit packs;
//! - `reading`: an order as its buyer or an operator sees it;
//! - `changing`: its reference, or cancelling it while it is open;
//! - `refunding`: an operator's refund of a paid order;
//! - `invoices`: a workspace's invoices, and one invoice;
//! - `refusals`: how the routes' refusals are answered.

mod buying;
mod changing;
mod invoices;
mod reading;
mod refunding;
mod refusals;

pub use reading::OrderView;

use kassa_commerce::invoicing::Invoicing;
use kassa_commerce::order_book::{self, OrderBook};
use kassa_commerce::{Clock, Kernel};
use kassa_payments::stripe::StripeGateway;
use kassa_runtime::function::StartError;
use kassa_runtime::http::{json, respond, route_key};
use kassa_runtime::idempotency_key::IdempotentRequests;
use kassa_runtime::{Config, Function, HttpFunction, Problem, SdkConfig};
use kassa_store::EventStore;
use lambda_http::{Body, Request, Response};
use rust_decimal::Decimal;
use std::sync::Arc;

pub struct Orders {
    store: EventStore,
    kernel: Kernel,
    book: OrderBook,
    invoicing: Invoicing,
    gateway: StripeGateway,
    tax_rate: Decimal,
    clock: Arc<dyn Clock>,
    /// Answers to purchases and refunds that carried an `Idempotency-Key`.
    requests: IdempotentRequests,
}

/// The function's name: the scope of its requests' idempotency records.
pub const NAME: &str = "orders";

impl Orders {
    pub fn new(
        store: EventStore,
        book: OrderBook,
        invoicing: Invoicing,
        gateway: StripeGateway,
        tax_rate: Decimal,
        clock: Arc<dyn Clock>,
        requests: IdempotentRequests,
    ) -> Self {
        Self {
            kernel: Kernel::new(store.clone(), clock.clone()),
            store,
            book,
            invoicing,
            gateway,
            tax_rate,
            clock,
            requests,
        }
    }
}

impl Function for Orders {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        let store = EventStore::new(client.clone(), &config.events_table);
        Ok(Self::new(
            store.clone(),
            OrderBook::new(client.clone(), &config.state_table),
            Invoicing::new(store, &config.state_table),
            StripeGateway::new(&config.stripe.api_base, config.stripe.secret_key()?),
            config.tax_rate,
            clock,
            IdempotentRequests::new(client, &config.state_table, NAME),
        ))
    }
}

impl HttpFunction for Orders {
    async fn handle(&self, request: Request) -> Response<Body> {
        let now = self.clock.now();
        let result = match route_key(&request).as_str() {
            // The commands a client may retry: each answered once per Idempotency-Key.
            "POST /workspaces/{workspaceId}/credits/purchases" => {
                let purchase =
                    |_| async { respond(self.purchase(&request).await.map(|v| json(201, &v))) };
                return self.requests.serve(&request, now, purchase).await;
            }
            "POST /orders/{orderId}/refund" => {
                let refund = |key| async {
                    respond(self.refund(&request, key).await.map(|v| json(202, &v)))
                };
                return self.requests.serve(&request, now, refund).await;
            }
            "GET /orders/{orderId}" => self.get(&request).await.map(|v| json(200, &v)),
            "PATCH /orders/{orderId}" => self.update(&request).await.map(|v| json(200, &v)),
            "POST /orders/{orderId}/cancel" => self.cancel(&request).await.map(|v| json(200, &v)),
            "GET /workspaces/{workspaceId}/invoices" => {
                self.invoices(&request).await.map(|v| json(200, &v))
            }
            "GET /invoices/{invoiceId}" => self.invoice(&request).await.map(|v| json(200, &v)),
            other => Err(Problem::not_found(
                "no_route",
                format!("route `{other}` is not served here"),
            )),
        };
        respond(result)
    }
}

/// Re-exported so the runner and tests name the agenda the same way.
pub use order_book::EXPIRY_AGENDA;
