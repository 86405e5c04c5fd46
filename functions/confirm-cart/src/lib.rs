//! The confirm-cart Lambda: `POST /cart/confirm` (seed 003's `ConfirmShoppingCart`). The
//! caller's cart becomes a ticket order in one commit: `cart.confirmed` on the cart, with
//! its items and prices as they stood, and `order.created` for an order of those seats,
//! with the order's place on the expiry agenda and in the buyer's list, as every order
//! gets. The cart is empty again after. The seats are reserved by whatever reacts to
//! `order.created` with purpose `tickets`, for the order's payment window
//! (`KASSA_RESERVATION_MINUTES`); this function only creates the order.
//!
//! A function of its own, apart from `carts`: it writes orders and their agenda, which a
//! cart's everyday changes need no right to.
//!
//! - `confirming`: the command;
//! - `tickets`: the cart's items as order lines and seats, or the items no longer sold;
//! - `view`: the order as answered.

mod confirming;
pub mod tickets;
mod view;

pub use confirming::order_id;
pub use view::OrderView;

use kassa_commerce::order_book::OrderBook;
use kassa_commerce::{Clock, Kernel};
use kassa_runtime::function::StartError;
use kassa_runtime::http::{json, respond, route_key};
use kassa_runtime::idempotency_key::IdempotentRequests;
use kassa_runtime::{Config, Function, HttpFunction, Problem, SdkConfig};
use kassa_store::EventStore;
use lambda_http::{Body, Request, Response};
use rust_decimal::Decimal;
use std::sync::Arc;

/// The function's name: the scope of its requests' idempotency records.
pub const NAME: &str = "confirm-cart";

pub struct ConfirmCart {
    kernel: Kernel,
    book: OrderBook,
    tax_rate: Decimal,
    /// What a courier delivery adds to the order, in its currency; zero adds nothing.
    courier_fee: Decimal,
    /// How long a ticket order waits for its payment, its seats held meanwhile.
    window: time::Duration,
    /// Answers to confirmations that carried an `Idempotency-Key`.
    requests: IdempotentRequests,
}

impl Function for ConfirmCart {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {
            kernel: Kernel::new(EventStore::new(client.clone(), &config.events_table), clock),
            book: OrderBook::new(client.clone(), &config.state_table),
            tax_rate: config.tax_rate,
            courier_fee: config.courier_fee,
            window: config.reservation_window,
            requests: IdempotentRequests::new(client, &config.state_table, NAME),
        })
    }
}

impl HttpFunction for ConfirmCart {
    async fn handle(&self, request: Request) -> Response<Body> {
        match route_key(&request).as_str() {
            // A double click, or a retry after a lost answer: one order per Idempotency-Key.
            "POST /cart/confirm" => {
                let now = self.kernel.clock().now();
                let confirm =
                    |_| async { respond(self.confirm(&request).await.map(|v| json(201, &v))) };
                self.requests.serve(&request, now, confirm).await
            }
            other => Problem::not_found("no_route", format!("route `{other}` is not served here"))
                .into_response(),
        }
    }
}
