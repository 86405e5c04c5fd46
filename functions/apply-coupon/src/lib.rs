//! The apply-coupon Lambda (seed 002's apply flow): `POST /orders/{orderId}/coupons`
//! `{code}` validates a coupon against the order as kassa stored it, computes its
//! discount, and in ONE commit locks one use (`coupon.applied`: the coupon's count and
//! the buyer's count advanced under their limits) and reprices the order
//! (`order.coupon_applied`). `DELETE /orders/{orderId}/coupons/{code}` takes it off again
//! and gives the use back, in one commit too.
//!
//! Every refusal of a code is recorded (`coupon.rejected`, with the reason, on the
//! buyer's attempts and in the coupon's audit) and answered with the same 422
//! `coupon_not_applicable`, whether the code is unknown, expired, disabled, out of scope
//! or used up, so codes cannot be told apart by their answers. A buyer with
//! [`GUESS_LIMIT`] refusals in the last [`GUESS_WINDOW`] is answered 429 with
//! `Retry-After` before anything is looked up; the count lives in DynamoDB, so it holds
//! across instances.
//!
//! The order's PaymentIntent follows its total: after the commit, the intent's amount is
//! updated at Stripe (`pricing`).
//!
//! [`GUESS_LIMIT`]: kassa_domain::coupon_usage::GUESS_LIMIT
//! [`GUESS_WINDOW`]: kassa_domain::coupon_usage::GUESS_WINDOW

mod applying;
mod code_book;
mod pricing;
mod removing;

use kassa_commerce::coupon_ledger::CouponLedger;
use kassa_commerce::order_book::OrderBook;
use kassa_commerce::{Clock, Kernel};
use kassa_domain::money::Money;
use kassa_domain::order::{Order, OrderCoupon};
use kassa_payments::stripe::StripeGateway;
use kassa_runtime::function::StartError;
use kassa_runtime::http::{json, respond, route_key};
use kassa_runtime::{Config, Function, HttpFunction, Problem, SdkConfig};
use kassa_store::EventStore;
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use std::sync::Arc;
use uuid::Uuid;

pub const NAME: &str = "apply-coupon";

pub struct ApplyCoupon {
    kernel: Kernel,
    ledger: CouponLedger,
    book: OrderBook,
    gateway: StripeGateway,
    codes: code_book::CodeBook,
}

impl Function for ApplyCoupon {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {
            kernel: Kernel::new(EventStore::new(client.clone(), &config.events_table), clock),
            ledger: CouponLedger::new(client.clone(), &config.state_table),
            book: OrderBook::new(client, &config.state_table),
            gateway: StripeGateway::new(&config.stripe.api_base, config.stripe.secret_key()?),
            codes: code_book::CodeBook::default(),
        })
    }
}

impl HttpFunction for ApplyCoupon {
    async fn handle(&self, request: Request) -> Response<Body> {
        let answer = match route_key(&request).as_str() {
            "POST /orders/{orderId}/coupons" => self.apply(&request).await.map(|v| json(200, &v)),
            "DELETE /orders/{orderId}/coupons/{code}" => {
                self.remove(&request).await.map(|v| json(200, &v))
            }
            other => Err(Problem::not_found(
                "no_route",
                format!("route `{other}` is not served here"),
            )),
        };
        respond(answer)
    }
}

/// The order's figures after a coupon change, as the buyer sees them.
#[derive(Debug, Clone, Serialize)]
pub struct Pricing {
    pub order_id: Uuid,
    pub status: &'static str,
    pub subtotal: Money,
    /// What courier delivery costs, taxed with the lines; absent when delivery is free.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_fee: Option<Money>,
    pub discount: Money,
    pub line_discounts: Vec<Money>,
    pub coupons: Vec<OrderCoupon>,
    pub tax: Money,
    pub total: Money,
}

impl Pricing {
    pub fn of(order: &Order) -> Self {
        Self {
            order_id: order.order_id,
            status: order.status.as_str(),
            subtotal: order.subtotal,
            delivery_fee: order.delivery_fee,
            discount: order.discount(),
            line_discounts: order.line_discounts.clone(),
            coupons: order.coupons.clone(),
            tax: order.tax,
            total: order.total,
        }
    }
}

/// An order the caller cannot see is one that does not exist.
pub(crate) fn order_not_found(id: Uuid) -> Problem {
    Problem::not_found("order_not_found", format!("no order {id}"))
}

/// The one answer to every code that does not apply.
pub(crate) fn not_applicable() -> Problem {
    Problem::new(
        422,
        "coupon_not_applicable",
        "this coupon code cannot be applied to this order",
    )
}
