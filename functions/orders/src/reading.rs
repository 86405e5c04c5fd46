//! Reading an order: its buyer or an operator sees it, and only its buyer the client
//! secret that pays it, while it is open.

use crate::refusals::order_not_found;
use crate::Orders;
use kassa_commerce::invoicing;
use kassa_domain::identity::{Actor, Role};
use kassa_domain::money::Money;
use kassa_domain::order::{Order, OrderCoupon, OrderLine, Purpose};
use kassa_runtime::access::{self, order_stream};
use kassa_runtime::http::uuid_param;
use kassa_runtime::{caller, problem, Problem};
use lambda_http::Request;
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Serialize)]
pub struct OrderView {
    pub order_id: Uuid,
    pub status: &'static str,
    pub user_id: String,
    pub purpose: Purpose,
    pub lines: Vec<OrderLine>,
    pub subtotal: Money,
    /// What courier delivery costs, taxed with the lines; absent when delivery is free.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_fee: Option<Money>,
    /// What its coupons take off the subtotal and delivery fee
    /// (`POST /orders/{id}/coupons`).
    pub discount: Money,
    /// The coupons on it, each with what it took off.
    pub coupons: Vec<OrderCoupon>,
    pub tax_rate: Decimal,
    /// On the subtotal and delivery fee less the discount.
    pub tax: Money,
    pub total: Money,
    pub refunded: Money,
    pub reference: Option<String>,
    pub created_at: String,
    pub expires_at: String,
    pub payment_intent_id: Option<String>,
    /// For the buyer's browser to confirm the payment; only the buyer sees it.
    pub client_secret: Option<String>,
    pub payment_id: Option<String>,
    /// The id the order's invoice has once it is paid (`GET /invoices/{id}`). Derived,
    /// not looked up: the invoice is issued by a side effect of `order.completed` and
    /// answers 404 until then, and always for a ticket order refunded because its seats
    /// were gone before the payment arrived, which is never invoiced.
    pub invoice_id: Option<Uuid>,
    pub cancel_reason: Option<String>,
    pub version: u64,
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub(crate) fn view(order: &Order, version: u64, client_secret: Option<String>) -> OrderView {
    OrderView {
        order_id: order.order_id,
        status: order.status.as_str(),
        user_id: order.user_id.to_string(),
        purpose: order.purpose.clone(),
        lines: order.lines.clone(),
        subtotal: order.subtotal,
        delivery_fee: order.delivery_fee,
        discount: order.discount(),
        coupons: order.coupons.clone(),
        tax_rate: order.tax_rate,
        tax: order.tax,
        total: order.total,
        refunded: order.refunded(),
        reference: order.reference.clone(),
        created_at: rfc3339(order.created_at),
        expires_at: rfc3339(order.expires_at),
        payment_intent_id: order.payment_intent_id.clone(),
        client_secret,
        payment_id: order.payment_id.clone(),
        invoice_id: order
            .payment_id
            .as_ref()
            .map(|_| invoicing::invoice_id(&format!("order:{}", order.order_id))),
        cancel_reason: order.cancel_reason.clone(),
        version,
    }
}

impl Orders {
    /// The caller with the role kassa recorded for them (`access::recorded`): an order,
    /// an invoice or a refund is an operator's to touch only while kassa says so.
    pub(crate) async fn caller(&self, request: &Request) -> Result<Actor, Problem> {
        access::recorded(&self.store, caller(request)?).await
    }

    /// The order if `actor` may see it: its buyer or an operator.
    pub(crate) async fn load_own(&self, request: &Request) -> Result<(Actor, Order, u64), Problem> {
        let actor = self.caller(request).await?;
        let id = uuid_param(request, "orderId", "order_not_found")?;
        let head = self
            .store
            .load(&order_stream(id))
            .await
            .map_err(|e| problem::store_problem(&e))?
            .ok_or_else(|| order_not_found(id))?;
        let order: Order = head.state().map_err(|e| Problem::internal(&e))?;
        if order.user_id != actor.user && actor.role != Role::Admin {
            // Someone else's order is not found rather than forbidden: ids are not secrets
            // to hide, but there is nothing to gain by confirming one exists.
            return Err(order_not_found(id));
        }
        Ok((actor, order, head.version))
    }

    pub(crate) async fn get(&self, request: &Request) -> Result<OrderView, Problem> {
        let (actor, order, version) = self.load_own(request).await?;
        let secret = if order.user_id == actor.user && order.status.is_open() {
            self.book
                .client_secret(order.order_id)
                .await
                .map_err(|e| problem::store_problem(&e))?
        } else {
            None
        };
        Ok(view(&order, version, secret))
    }
}
