//! The order a confirmation created, as answered: the same fields `GET /orders/{orderId}`
//! shows, but those a new order cannot have yet (its payment, refunds).

use kassa_domain::money::Money;
use kassa_domain::order::{Order, OrderLine, Purpose};
use rust_decimal::Decimal;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
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
    pub tax_rate: Decimal,
    pub tax: Money,
    pub total: Money,
    pub reference: Option<String>,
    pub created_at: String,
    /// When the order expires unpaid, and its seats go back.
    pub expires_at: String,
}

impl OrderView {
    pub fn of(order: &Order) -> Self {
        let rfc3339 = |t: time::OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        Self {
            order_id: order.order_id,
            status: order.status.as_str(),
            user_id: order.user_id.as_str().to_owned(),
            purpose: order.purpose.clone(),
            lines: order.lines.clone(),
            subtotal: order.subtotal,
            delivery_fee: order.delivery_fee,
            tax_rate: order.tax_rate,
            tax: order.tax,
            total: order.total,
            reference: order.reference.clone(),
            created_at: rfc3339(order.created_at),
            expires_at: rfc3339(order.expires_at),
        }
    }
}
