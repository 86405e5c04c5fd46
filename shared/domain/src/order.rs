//! Orders (seed 001's order service): something a user buys, the payment that settles it,
//! and what happens after (fulfilment, refund) or instead (cancellation, expiry).
//!
//! An order's purpose says what it buys; credit packs are the first. Transitions driven by
//! the payment provider are decided by state, never by arrival order: a payment that
//! completes after the order was canceled or expired still completes it (the money is
//! real), a failure after completion changes nothing, and a refund that arrives before
//! the completion it implies completes the order first.

use crate::coupon::Stacking;
use crate::delivery::Delivery;
use crate::discount::{self, Discount, DiscountError, Gross};
use crate::event::DomainEvent;
use crate::identity::UserId;
use crate::money::{CurrencyMismatch, Money};
use rust_decimal::{Decimal, RoundingStrategy};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::OffsetDateTime;
use uuid::Uuid;

/// How long an order waits for its payment before it expires.
pub const PAYMENT_WINDOW: time::Duration = time::Duration::minutes(30);

/// The payment id an order that owed nothing completes with: no payment was made.
pub fn free_payment_id(order_id: Uuid) -> String {
    format!("free:{order_id}")
}

/// How an invoice names a courier delivery fee.
pub const DELIVERY_LINE: &str = "Courier delivery";

/// Longest customer reference (a purchase-order number) an order carries.
pub const MAX_REFERENCE_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Purpose {
    CreditPack {
        workspace_id: Uuid,
        pack: String,
        quantity: u64,
        /// Credits the whole order adds to the wallet.
        credits: u64,
    },
    /// Seats from a confirmed cart, held by the reservation of the order's id.
    Tickets {
        /// The user's how-manieth confirmed cart it came from.
        confirmation: u32,
        seats: Vec<Seats>,
        /// How the tickets reach the buyer; email for orders stored before buyers chose.
        #[serde(default)]
        delivery: Delivery,
    },
}

/// Seats of one level of one concert in a ticket order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Seats {
    pub concert_id: Uuid,
    pub level_id: String,
    pub seats: u32,
}

impl Purpose {
    /// Seed 001's `order_type`.
    pub fn order_type(&self) -> &'static str {
        match self {
            Self::CreditPack { .. } => "credit_pack",
            Self::Tickets { .. } => "tickets",
        }
    }

    pub fn workspace_id(&self) -> Option<Uuid> {
        match self {
            Self::CreditPack { workspace_id, .. } => Some(*workspace_id),
            Self::Tickets { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderLine {
    pub description: String,
    pub quantity: u64,
    pub unit_price: Money,
    pub amount: Money,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Created,
    PaymentPending,
    Completed,
    Fulfilled,
    Canceled,
    Expired,
    Refunded,
}

impl OrderStatus {
    /// Still waiting for its payment: the customer may change or cancel it.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Created | Self::PaymentPending)
    }

    /// The money arrived (whatever happened after).
    pub fn is_paid(self) -> bool {
        matches!(self, Self::Completed | Self::Fulfilled | Self::Refunded)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::PaymentPending => "payment_pending",
            Self::Completed => "completed",
            Self::Fulfilled => "fulfilled",
            Self::Canceled => "canceled",
            Self::Expired => "expired",
            Self::Refunded => "refunded",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: Uuid,
    pub user_id: UserId,
    pub purpose: Purpose,
    pub lines: Vec<OrderLine>,
    pub subtotal: Money,
    /// What delivery costs before coupons (printed tickets by courier); none when it
    /// costs nothing.
    #[serde(default)]
    pub delivery_fee: Option<Money>,
    pub tax_rate: Decimal,
    pub tax: Money,
    pub total: Money,
    pub reference: Option<String>,
    pub status: OrderStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub payment_intent_id: Option<String>,
    pub payment_id: Option<String>,
    pub refunds: BTreeMap<String, Money>,
    pub cancel_reason: Option<String>,
    /// What it bought was delivered (`order.fulfilled`), whether or not it was refunded
    /// before or after: the status alone cannot say so once refunded.
    #[serde(default)]
    pub fulfilled: bool,
    /// The coupons on it, in the order they were applied (each discounts what the ones
    /// before it left).
    #[serde(default)]
    pub coupons: Vec<OrderCoupon>,
    /// What the coupons took off the lines, per line; empty without coupons.
    #[serde(default)]
    pub line_discounts: Vec<Money>,
}

/// A coupon on an order: the rule it applies and what it took off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderCoupon {
    pub coupon_id: Uuid,
    pub code: String,
    pub discount: Discount,
    pub stacking: Stacking,
    /// What it took off, computed when it was applied or the coupons changed.
    pub taken: Money,
}

/// An order's figures after its coupons changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Repriced {
    /// What all its coupons take off.
    pub discount: Money,
    /// Per line, summing exactly to `discount`.
    pub line_discounts: Vec<Money>,
    /// Per coupon, in the order applied.
    pub coupons: Vec<OrderCoupon>,
    /// On the discounted lines.
    pub tax: Money,
    pub total_amount: Money,
}

impl Order {
    /// What its coupons take off.
    pub fn discount(&self) -> Money {
        Money::new(
            self.coupons.iter().map(|c| c.taken.amount).sum(),
            self.total.currency,
        )
    }

    /// Whether it owes nothing (a free ticket, or coupons that took the whole total).
    pub fn owes_nothing(&self) -> bool {
        self.total.amount.is_zero()
    }

    /// Its whole payment given back.
    pub fn refunded_whole(&self) -> bool {
        self.status == OrderStatus::Refunded && self.refunded().amount >= self.total.amount
    }

    /// Completed without a payment, because it owed nothing.
    pub fn paid_nothing(&self) -> bool {
        self.payment_id.as_deref() == Some(free_payment_id(self.order_id).as_str())
    }

    /// The command that completes it without a payment, while it is open and owes
    /// nothing. Stripe charges no zero amount, so such an order never waits for one.
    pub fn complete_free(&self) -> Option<OrderCommand> {
        (self.status.is_open() && self.owes_nothing()).then(|| OrderCommand::Complete {
            payment_intent_id: self.payment_intent_id.clone().unwrap_or_default(),
            payment_id: free_payment_id(self.order_id),
        })
    }

    /// Its delivery fee, zero when delivery costs nothing.
    pub fn delivery(&self) -> Money {
        self.delivery_fee
            .unwrap_or_else(|| Money::zero(self.total.currency))
    }

    /// What is left of its delivery fee after its shipping coupons.
    pub fn delivery_left(&self) -> Money {
        let waived: Decimal = self
            .coupons
            .iter()
            .filter(|c| c.discount == Discount::Shipping)
            .map(|c| c.taken.amount)
            .sum();
        let fee = self.delivery();
        Money::new(fee.amount - waived, fee.currency)
    }

    /// The lines its invoice shows: what was bought, its delivery fee, then one line per
    /// coupon taking its discount off (a negative amount), so the lines sum to what the
    /// tax was computed on and the invoice's total is what was paid.
    pub fn invoice_lines(&self) -> Vec<OrderLine> {
        let mut lines = self.lines.clone();
        lines.extend(self.delivery_fee.map(|fee| OrderLine {
            description: DELIVERY_LINE.to_owned(),
            quantity: 1,
            unit_price: fee,
            amount: fee,
        }));
        lines.extend(self.coupons.iter().map(|c| {
            let off = Money::new(-c.taken.amount, c.taken.currency);
            OrderLine {
                description: format!("Coupon {}", c.code),
                quantity: 1,
                unit_price: off,
                amount: off,
            }
        }));
        lines
    }

    /// Its figures with `coupons` on it, from the lines as created.
    fn reprice(&self, coupons: Vec<OrderCoupon>) -> Result<Repriced, OrderError> {
        let gross = Gross {
            lines: self.lines.iter().map(|l| l.amount).collect(),
            delivery: self.delivery(),
            tax_rate: self.tax_rate,
        };
        let rules: Vec<Discount> = coupons.iter().map(|c| c.discount).collect();
        let priced = discount::apply(&gross, &rules)?;
        let coupons: Vec<OrderCoupon> = coupons
            .into_iter()
            .zip(priced.discounts)
            .map(|(c, taken)| OrderCoupon { taken, ..c })
            .collect();
        Ok(Repriced {
            discount: Money::new(
                coupons.iter().map(|c| c.taken.amount).sum(),
                self.total.currency,
            ),
            line_discounts: if coupons.is_empty() {
                Vec::new()
            } else {
                priced.line_discounts
            },
            coupons,
            tax: priced.tax,
            total_amount: priced.total,
        })
    }

    pub fn refunded(&self) -> Money {
        self.refunds
            .values()
            .fold(Money::zero(self.total.currency), |sum, m| {
                Money::new(sum.amount + m.amount, sum.currency)
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub order_id: Uuid,
    pub user_id: UserId,
    pub purpose: Purpose,
    pub lines: Vec<OrderLine>,
    /// What delivering it costs, in the lines' currency; none when nothing.
    pub delivery_fee: Option<Money>,
    /// Tax as a fraction of the subtotal and delivery fee (0.20 for 20 %).
    pub tax_rate: Decimal,
    pub reference: Option<String>,
    pub now: OffsetDateTime,
    /// How long it waits for its payment ([`PAYMENT_WINDOW`] for credit packs; a ticket
    /// order's is its reservation's).
    pub window: time::Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderCommand {
    Create(NewOrder),
    /// The provider's payment intent exists; the order waits for the customer to pay it.
    AwaitPayment {
        payment_intent_id: String,
    },
    Update {
        reference: Option<String>,
    },
    Complete {
        payment_intent_id: String,
        payment_id: String,
    },
    Cancel {
        reason: String,
    },
    Expire {
        now: OffsetDateTime,
    },
    Refund {
        payment_intent_id: String,
        payment_id: String,
        refund_id: String,
        amount: Money,
    },
    Fulfill {
        details: serde_json::Value,
    },
    /// A coupon's discount, applied after those already on the order.
    ApplyCoupon {
        coupon_id: Uuid,
        code: String,
        discount: Discount,
        stacking: Stacking,
    },
    RemoveCoupon {
        coupon_id: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Change {
    pub from: serde_json::Value,
    pub to: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "payload")]
pub enum OrderEvent {
    #[serde(rename = "order.created")]
    Created {
        order_id: Uuid,
        user_id: UserId,
        order_type: String,
        purpose: Purpose,
        lines: Vec<OrderLine>,
        subtotal: Money,
        /// What delivery costs (printed tickets by courier), taxed with the lines;
        /// absent when it costs nothing.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delivery_fee: Option<Money>,
        #[schemars(with = "String")]
        tax_rate: Decimal,
        tax: Money,
        total_amount: Money,
        reference: Option<String>,
        /// Absent from orders created before payment windows varied, which began
        /// [`PAYMENT_WINDOW`] before they expired.
        #[serde(default, with = "time::serde::rfc3339::option")]
        #[schemars(with = "Option<String>")]
        created_at: Option<OffsetDateTime>,
        #[serde(with = "time::serde::rfc3339")]
        #[schemars(with = "String")]
        expires_at: OffsetDateTime,
    },
    #[serde(rename = "order.payment_pending")]
    PaymentPending {
        order_id: Uuid,
        user_id: UserId,
        payment_intent_id: String,
        amount: Money,
    },
    #[serde(rename = "order.updated")]
    Updated {
        order_id: Uuid,
        user_id: UserId,
        changes: BTreeMap<String, Change>,
        updated_fields: Vec<String>,
    },
    #[serde(rename = "order.completed")]
    Completed {
        order_id: Uuid,
        user_id: UserId,
        purpose: Purpose,
        total_amount: Money,
        payment_intent_id: String,
        payment_id: String,
    },
    #[serde(rename = "order.canceled")]
    Canceled {
        order_id: Uuid,
        user_id: UserId,
        reason: String,
        /// Nothing was charged for an open order, so nothing is refunded.
        refund_amount: Money,
        payment_intent_id: Option<String>,
    },
    #[serde(rename = "order.expired")]
    Expired {
        order_id: Uuid,
        user_id: UserId,
        #[serde(with = "time::serde::rfc3339")]
        #[schemars(with = "String")]
        expired_at: OffsetDateTime,
        payment_intent_id: Option<String>,
    },
    #[serde(rename = "order.refunded")]
    Refunded {
        order_id: Uuid,
        user_id: UserId,
        purpose: Purpose,
        refund_id: String,
        amount: Money,
        total_amount: Money,
        payment_id: String,
    },
    #[serde(rename = "order.fulfilled")]
    Fulfilled {
        order_id: Uuid,
        user_id: UserId,
        fulfillment_details: serde_json::Value,
    },
    /// A coupon changed the order's total (seed 002: coupons never change money, the
    /// order does).
    #[serde(rename = "order.coupon_applied")]
    CouponApplied {
        order_id: Uuid,
        user_id: UserId,
        coupon_id: Uuid,
        code: String,
        #[serde(flatten)]
        repriced: Repriced,
    },
    #[serde(rename = "order.coupon_removed")]
    CouponRemoved {
        order_id: Uuid,
        user_id: UserId,
        coupon_id: Uuid,
        code: String,
        #[serde(flatten)]
        repriced: Repriced,
    },
}

impl DomainEvent for OrderEvent {
    const CONTEXT: &'static str = "orders";
    const TYPES: &'static [&'static str] = &[
        "order.created",
        "order.payment_pending",
        "order.updated",
        "order.completed",
        "order.canceled",
        "order.expired",
        "order.refunded",
        "order.fulfilled",
        "order.coupon_applied",
        "order.coupon_removed",
    ];

    fn event_type(&self) -> &'static str {
        match self {
            Self::Created { .. } => "order.created",
            Self::PaymentPending { .. } => "order.payment_pending",
            Self::Updated { .. } => "order.updated",
            Self::Completed { .. } => "order.completed",
            Self::Canceled { .. } => "order.canceled",
            Self::Expired { .. } => "order.expired",
            Self::Refunded { .. } => "order.refunded",
            Self::Fulfilled { .. } => "order.fulfilled",
            Self::CouponApplied { .. } => "order.coupon_applied",
            Self::CouponRemoved { .. } => "order.coupon_removed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("the order already exists")]
    AlreadyExists,
    #[error("no such order")]
    NotFound,
    #[error("an order needs at least one line")]
    Empty,
    #[error("the order is {0}; only open orders (created, payment_pending) can change")]
    NotOpen(&'static str),
    #[error("the order is {0}; it has not been paid")]
    NotPaid(&'static str),
    #[error("the order has not expired yet")]
    NotDue,
    #[error("reference must be 1 to {MAX_REFERENCE_LEN} printable characters")]
    InvalidReference,
    #[error("the tax rate must be between 0 and 1")]
    InvalidTaxRate,
    #[error("a delivery fee must be above zero and at most 999999.99, in whole minor units")]
    InvalidDeliveryFee,
    #[error("refunding {refund} would pass the {left} left of what was paid")]
    RefundExceedsPayment { refund: Money, left: Money },
    #[error(transparent)]
    Currency(#[from] CurrencyMismatch),
    /// The coupon cannot join those on the order (an exclusive one, or one too many).
    #[error("the coupon cannot be combined with the coupons on the order")]
    NotStackable,
    #[error(transparent)]
    Discount(#[from] DiscountError),
}

impl OrderError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::AlreadyExists => "order_exists",
            Self::NotFound => "order_not_found",
            Self::Empty => "empty_order",
            Self::NotOpen(_) => "order_not_open",
            Self::NotPaid(_) => "order_not_paid",
            Self::NotDue => "order_not_due",
            Self::InvalidReference => "invalid_reference",
            Self::InvalidTaxRate => "invalid_tax_rate",
            Self::InvalidDeliveryFee => "invalid_delivery_fee",
            Self::RefundExceedsPayment { .. } => "refund_exceeds_payment",
            Self::Currency(_) => "currency_mismatch",
            Self::NotStackable => "coupon_not_stackable",
            Self::Discount(_) => "invalid_discount",
        }
    }
}

pub fn validate_reference(reference: &Option<String>) -> Result<(), OrderError> {
    match reference {
        None => Ok(()),
        Some(r)
            if !r.trim().is_empty()
                && r.chars().count() <= MAX_REFERENCE_LEN
                && !r.chars().any(char::is_control) =>
        {
            Ok(())
        }
        Some(_) => Err(OrderError::InvalidReference),
    }
}

/// Tax on `subtotal`, rounded to the currency's minor unit.
pub fn tax_on(subtotal: Money, rate: Decimal) -> Money {
    let amount = (subtotal.amount * rate).round_dp_with_strategy(
        subtotal.currency.minor_digits(),
        RoundingStrategy::MidpointAwayFromZero,
    );
    Money::new(amount, subtotal.currency)
}

pub fn decide(state: Option<&Order>, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
    match (state, command) {
        (None, OrderCommand::Create(new)) => create(new),
        (None, _) => Err(OrderError::NotFound),
        (Some(order), command) => transition(order, command),
    }
}

fn transition(order: &Order, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
    let (order_id, user_id) = (order.order_id, order.user_id.clone());
    let status = order.status;
    Ok(match command {
        OrderCommand::Create(_) => return Err(OrderError::AlreadyExists),
        OrderCommand::AwaitPayment { payment_intent_id } => {
            if status != OrderStatus::Created {
                // Canceled before its intent existed, or already further along.
                return Ok(vec![]);
            }
            vec![OrderEvent::PaymentPending {
                order_id,
                user_id,
                payment_intent_id,
                amount: order.total,
            }]
        }
        OrderCommand::Update { reference } => {
            if !status.is_open() {
                return Err(OrderError::NotOpen(status.as_str()));
            }
            validate_reference(&reference)?;
            if reference == order.reference {
                return Ok(vec![]);
            }
            let changes = BTreeMap::from([(
                "reference".to_owned(),
                Change {
                    from: serde_json::json!(order.reference),
                    to: serde_json::json!(reference),
                },
            )]);
            vec![OrderEvent::Updated {
                order_id,
                user_id,
                updated_fields: changes.keys().cloned().collect(),
                changes,
            }]
        }
        OrderCommand::Complete {
            payment_intent_id,
            payment_id,
        } => {
            if status.is_paid() {
                return Ok(vec![]);
            }
            vec![completed(order, payment_intent_id, payment_id)]
        }
        OrderCommand::Cancel { reason } => {
            if !status.is_open() {
                return Err(OrderError::NotOpen(status.as_str()));
            }
            vec![OrderEvent::Canceled {
                order_id,
                user_id,
                reason,
                refund_amount: Money::zero(order.total.currency),
                payment_intent_id: order.payment_intent_id.clone(),
            }]
        }
        OrderCommand::Expire { now } => {
            if !status.is_open() {
                return Err(OrderError::NotOpen(status.as_str()));
            }
            if now < order.expires_at {
                return Err(OrderError::NotDue);
            }
            vec![OrderEvent::Expired {
                order_id,
                user_id,
                expired_at: now,
                payment_intent_id: order.payment_intent_id.clone(),
            }]
        }
        OrderCommand::Refund {
            payment_intent_id,
            payment_id,
            refund_id,
            amount,
        } => {
            if order.refunds.contains_key(&refund_id) {
                return Ok(vec![]);
            }
            if amount.currency != order.total.currency {
                return Err(
                    CurrencyMismatch(amount.currency.code(), order.total.currency.code()).into(),
                );
            }
            let left = Money::new(
                order.total.amount - order.refunded().amount,
                amount.currency,
            );
            if amount.amount > left.amount {
                return Err(OrderError::RefundExceedsPayment {
                    refund: amount,
                    left,
                });
            }
            let mut events = Vec::new();
            if !status.is_paid() {
                // A refund proves the payment: record the completion it implies first.
                events.push(completed(order, payment_intent_id, payment_id.clone()));
            }
            events.push(OrderEvent::Refunded {
                order_id,
                user_id,
                purpose: order.purpose.clone(),
                refund_id,
                amount,
                total_amount: order.total,
                payment_id,
            });
            events
        }
        OrderCommand::Fulfill { details } => match status {
            // A refund may be recorded before the delivery it follows is reported (the
            // two travel separately): the delivery is still recorded, once.
            OrderStatus::Completed | OrderStatus::Refunded if !order.fulfilled => {
                vec![OrderEvent::Fulfilled {
                    order_id,
                    user_id,
                    fulfillment_details: details,
                }]
            }
            OrderStatus::Completed | OrderStatus::Fulfilled | OrderStatus::Refunded => vec![],
            other => return Err(OrderError::NotPaid(other.as_str())),
        },
        OrderCommand::ApplyCoupon {
            coupon_id,
            code,
            discount,
            stacking,
        } => {
            if !status.is_open() {
                return Err(OrderError::NotOpen(status.as_str()));
            }
            if order.coupons.iter().any(|c| c.coupon_id == coupon_id) {
                return Ok(vec![]);
            }
            let mut coupons = order.coupons.clone();
            coupons.push(OrderCoupon {
                coupon_id,
                code: code.clone(),
                discount,
                stacking,
                taken: Money::zero(order.total.currency),
            });
            if !stacks(&coupons) {
                return Err(OrderError::NotStackable);
            }
            vec![OrderEvent::CouponApplied {
                order_id,
                user_id,
                coupon_id,
                code,
                repriced: order.reprice(coupons)?,
            }]
        }
        OrderCommand::RemoveCoupon { coupon_id } => {
            if !status.is_open() {
                return Err(OrderError::NotOpen(status.as_str()));
            }
            let Some(removed) = order.coupons.iter().find(|c| c.coupon_id == coupon_id) else {
                return Ok(vec![]);
            };
            let code = removed.code.clone();
            let left = order
                .coupons
                .iter()
                .filter(|c| c.coupon_id != coupon_id)
                .cloned()
                .collect();
            vec![OrderEvent::CouponRemoved {
                order_id,
                user_id,
                coupon_id,
                code,
                repriced: order.reprice(left)?,
            }]
        }
    })
}

/// Whether `coupons` may share one order: an exclusive coupon only alone, stackable ones
/// up to the smallest `max_per_order` among them.
fn stacks(coupons: &[OrderCoupon]) -> bool {
    let mut most = u32::MAX;
    for coupon in coupons {
        match coupon.stacking {
            Stacking::Exclusive if coupons.len() > 1 => return false,
            Stacking::Exclusive => {}
            Stacking::Stackable { max_per_order } => most = most.min(max_per_order),
        }
    }
    coupons.len() as u32 <= most
}

fn completed(order: &Order, payment_intent_id: String, payment_id: String) -> OrderEvent {
    OrderEvent::Completed {
        order_id: order.order_id,
        user_id: order.user_id.clone(),
        purpose: order.purpose.clone(),
        total_amount: order.total,
        payment_intent_id,
        payment_id,
    }
}

fn create(new: NewOrder) -> Result<Vec<OrderEvent>, OrderError> {
    let Some(first) = new.lines.first() else {
        return Err(OrderError::Empty);
    };
    validate_reference(&new.reference)?;
    if new.tax_rate < Decimal::ZERO || new.tax_rate > Decimal::ONE {
        return Err(OrderError::InvalidTaxRate);
    }
    let mut subtotal = Money::zero(first.amount.currency);
    for line in &new.lines {
        subtotal = subtotal.checked_add(line.amount)?;
    }
    let mut taxed = subtotal;
    if let Some(fee) = new.delivery_fee {
        if fee.amount.is_zero() || !fee.is_price() {
            return Err(OrderError::InvalidDeliveryFee);
        }
        taxed = taxed.checked_add(fee)?;
    }
    let tax = tax_on(taxed, new.tax_rate);
    let total = taxed.checked_add(tax)?;
    Ok(vec![OrderEvent::Created {
        order_id: new.order_id,
        user_id: new.user_id,
        order_type: new.purpose.order_type().to_owned(),
        purpose: new.purpose,
        lines: new.lines,
        subtotal,
        delivery_fee: new.delivery_fee.map(Money::in_minor_digits),
        tax_rate: new.tax_rate,
        tax,
        total_amount: total,
        reference: new.reference,
        created_at: Some(new.now),
        expires_at: new.now + new.window,
    }])
}

pub fn evolve(state: Option<Order>, event: &OrderEvent) -> Option<Order> {
    match (state, event) {
        (
            None,
            OrderEvent::Created {
                order_id,
                user_id,
                purpose,
                lines,
                subtotal,
                delivery_fee,
                tax_rate,
                tax,
                total_amount,
                reference,
                created_at,
                expires_at,
                ..
            },
        ) => Some(Order {
            order_id: *order_id,
            user_id: user_id.clone(),
            purpose: purpose.clone(),
            lines: lines.clone(),
            subtotal: *subtotal,
            delivery_fee: *delivery_fee,
            tax_rate: *tax_rate,
            tax: *tax,
            total: *total_amount,
            reference: reference.clone(),
            status: OrderStatus::Created,
            created_at: created_at.unwrap_or(*expires_at - PAYMENT_WINDOW),
            expires_at: *expires_at,
            payment_intent_id: None,
            payment_id: None,
            refunds: BTreeMap::new(),
            cancel_reason: None,
            fulfilled: false,
            coupons: Vec::new(),
            line_discounts: Vec::new(),
        }),
        (Some(mut o), event) => {
            match event {
                OrderEvent::Created { .. } => {}
                OrderEvent::PaymentPending {
                    payment_intent_id, ..
                } => {
                    o.status = OrderStatus::PaymentPending;
                    o.payment_intent_id = Some(payment_intent_id.clone());
                }
                OrderEvent::Updated { changes, .. } => {
                    if let Some(change) = changes.get("reference") {
                        o.reference = change.to.as_str().map(str::to_owned);
                    }
                }
                OrderEvent::Completed {
                    payment_intent_id,
                    payment_id,
                    ..
                } => {
                    o.status = OrderStatus::Completed;
                    o.payment_intent_id = Some(payment_intent_id.clone());
                    o.payment_id = Some(payment_id.clone());
                }
                OrderEvent::Canceled { reason, .. } => {
                    o.status = OrderStatus::Canceled;
                    o.cancel_reason = Some(reason.clone());
                }
                OrderEvent::Expired { .. } => o.status = OrderStatus::Expired,
                OrderEvent::Refunded {
                    refund_id, amount, ..
                } => {
                    // Heads written before `fulfilled` existed know it from the status.
                    o.fulfilled |= o.status == OrderStatus::Fulfilled;
                    o.status = OrderStatus::Refunded;
                    o.refunds.insert(refund_id.clone(), *amount);
                }
                OrderEvent::Fulfilled { .. } => {
                    o.fulfilled = true;
                    if o.status == OrderStatus::Completed {
                        o.status = OrderStatus::Fulfilled;
                    }
                }
                OrderEvent::CouponApplied { repriced, .. }
                | OrderEvent::CouponRemoved { repriced, .. } => {
                    o.coupons = repriced.coupons.clone();
                    o.line_discounts = repriced.line_discounts.clone();
                    o.tax = repriced.tax;
                    o.total = repriced.total_amount;
                }
            }
            Some(o)
        }
        (None, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use time::macros::datetime;

    const ID: Uuid = Uuid::from_u128(7);
    const WS: Uuid = Uuid::from_u128(42);
    const NOW: OffsetDateTime = datetime!(2026-11-22 10:00 UTC);

    fn usd(minor: i64) -> Money {
        Money::new(Decimal::new(minor, 2), Currency::Usd)
    }

    fn new_order(tax_rate: Decimal) -> NewOrder {
        NewOrder {
            order_id: ID,
            user_id: UserId::new("ada"),
            purpose: Purpose::CreditPack {
                workspace_id: WS,
                pack: "starter".into(),
                quantity: 2,
                credits: 2_000,
            },
            lines: vec![OrderLine {
                description: "1000 credits".into(),
                quantity: 2,
                unit_price: usd(1000),
                amount: usd(2000),
            }],
            delivery_fee: None,
            tax_rate,
            reference: None,
            now: NOW,
            window: PAYMENT_WINDOW,
        }
    }

    fn given(events: &[OrderEvent]) -> Option<Order> {
        events.iter().fold(None, evolve)
    }

    fn created() -> Vec<OrderEvent> {
        decide(None, OrderCommand::Create(new_order(Decimal::new(20, 2)))).unwrap()
    }

    fn complete(events: &mut Vec<OrderEvent>) {
        let state = given(events);
        events.extend(
            decide(
                state.as_ref(),
                OrderCommand::Complete {
                    payment_intent_id: "pi_1".into(),
                    payment_id: "ch_1".into(),
                },
            )
            .unwrap(),
        );
    }

    #[test]
    fn creating_totals_the_lines_and_adds_rounded_tax() {
        let order = given(&created()).unwrap();
        assert_eq!(order.subtotal, usd(2000));
        assert_eq!(order.tax, usd(400));
        assert_eq!(order.total, usd(2400));
        assert_eq!(order.expires_at, NOW + PAYMENT_WINDOW);
        assert_eq!(order.created_at, NOW);
        let odd = tax_on(usd(999), Decimal::new(75, 3));
        assert_eq!(odd, usd(75), "7.5 % of 9.99 is 0.749 → 0.75");
    }

    #[test]
    fn an_empty_order_or_a_bad_reference_is_refused() {
        let mut empty = new_order(Decimal::ZERO);
        empty.lines.clear();
        assert_eq!(
            decide(None, OrderCommand::Create(empty)),
            Err(OrderError::Empty)
        );
        let mut bad = new_order(Decimal::ZERO);
        bad.reference = Some("x".repeat(65));
        assert_eq!(
            decide(None, OrderCommand::Create(bad)),
            Err(OrderError::InvalidReference)
        );
    }

    #[test]
    fn a_failure_after_completion_does_not_unpay() {
        let mut events = created();
        complete(&mut events);
        let state = given(&events).unwrap();
        assert_eq!(
            decide(
                Some(&state),
                OrderCommand::Cancel {
                    reason: "card_declined".into()
                }
            ),
            Err(OrderError::NotOpen("completed"))
        );
        assert_eq!(given(&events).unwrap().status, OrderStatus::Completed);
    }

    #[test]
    fn a_payment_after_expiry_still_completes_the_order() {
        let mut events = created();
        let state = given(&events).unwrap();
        events.extend(
            decide(
                Some(&state),
                OrderCommand::Expire {
                    now: NOW + PAYMENT_WINDOW,
                },
            )
            .unwrap(),
        );
        complete(&mut events);
        assert_eq!(given(&events).unwrap().status, OrderStatus::Completed);
    }

    #[test]
    fn expiry_waits_for_the_window() {
        let state = given(&created()).unwrap();
        assert_eq!(
            decide(Some(&state), OrderCommand::Expire { now: NOW }),
            Err(OrderError::NotDue)
        );
    }

    #[test]
    fn a_refund_before_its_completion_completes_first_and_repeats_are_ignored() {
        let events = created();
        let state = given(&events).unwrap();
        let refund = OrderCommand::Refund {
            payment_intent_id: "pi_1".into(),
            payment_id: "ch_1".into(),
            refund_id: "re_1".into(),
            amount: usd(2400),
        };
        let out = decide(Some(&state), refund.clone()).unwrap();
        let types: Vec<_> = out.iter().map(|e| e.event_type()).collect();
        assert_eq!(types, ["order.completed", "order.refunded"]);
        let mut all = events;
        all.extend(out);
        let state = given(&all).unwrap();
        assert_eq!(state.status, OrderStatus::Refunded);
        assert_eq!(state.refunded(), usd(2400));
        assert_eq!(decide(Some(&state), refund), Ok(vec![]));
        // A late completion changes nothing once refunded.
        let late = OrderCommand::Complete {
            payment_intent_id: "pi_1".into(),
            payment_id: "ch_1".into(),
        };
        assert_eq!(decide(Some(&state), late), Ok(vec![]));
    }

    #[test]
    fn refunds_never_pass_the_total_paid() {
        let mut events = created();
        complete(&mut events);
        let refund = |id: &str, minor| OrderCommand::Refund {
            payment_intent_id: "pi_1".into(),
            payment_id: "ch_1".into(),
            refund_id: id.into(),
            amount: usd(minor),
        };
        let state = given(&events).unwrap();
        events.extend(decide(Some(&state), refund("re_1", 2000)).unwrap());
        let state = given(&events).unwrap();
        assert_eq!(
            decide(Some(&state), refund("re_2", 401)),
            Err(OrderError::RefundExceedsPayment {
                refund: usd(401),
                left: usd(400)
            })
        );
        events.extend(decide(Some(&state), refund("re_2", 400)).unwrap());
        assert_eq!(given(&events).unwrap().refunded(), usd(2400));
    }

    #[test]
    fn fulfilment_needs_the_payment_and_happens_once() {
        let mut events = created();
        let state = given(&events).unwrap();
        let fulfil = OrderCommand::Fulfill {
            details: serde_json::json!({"credits": 2000}),
        };
        assert_eq!(
            decide(Some(&state), fulfil.clone()),
            Err(OrderError::NotPaid("created"))
        );
        complete(&mut events);
        let state = given(&events).unwrap();
        let out = decide(Some(&state), fulfil.clone()).unwrap();
        assert_eq!(out.len(), 1);
        events.extend(out);
        assert_eq!(decide(given(&events).as_ref(), fulfil), Ok(vec![]));
    }

    #[test]
    fn a_delivery_reported_after_the_refund_is_recorded_once_and_the_order_stays_refunded() {
        let events = created();
        let state = given(&events).unwrap();
        let refund = OrderCommand::Refund {
            payment_intent_id: "pi_1".into(),
            payment_id: "ch_1".into(),
            refund_id: "re_1".into(),
            amount: usd(2400),
        };
        let mut all = events;
        all.extend(decide(Some(&state), refund).unwrap());
        let fulfil = OrderCommand::Fulfill {
            details: serde_json::json!({"credits": 2000}),
        };
        let out = decide(given(&all).as_ref(), fulfil.clone()).unwrap();
        assert_eq!(out.len(), 1, "{out:?}");
        all.extend(out);
        let state = given(&all).unwrap();
        assert_eq!(state.status, OrderStatus::Refunded);
        assert!(state.fulfilled);
        assert_eq!(decide(Some(&state), fulfil), Ok(vec![]));
    }

    #[test]
    fn updating_the_reference_records_what_changed() {
        let events = created();
        let state = given(&events).unwrap();
        let out = decide(
            Some(&state),
            OrderCommand::Update {
                reference: Some("PO-17".into()),
            },
        )
        .unwrap();
        let OrderEvent::Updated { updated_fields, .. } = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(updated_fields, &["reference"]);
        let mut all = events;
        all.extend(out);
        assert_eq!(given(&all).unwrap().reference.as_deref(), Some("PO-17"));
    }

    fn coupon(id: u128, discount: Discount, stacking: Stacking) -> OrderCommand {
        OrderCommand::ApplyCoupon {
            coupon_id: Uuid::from_u128(id),
            code: format!("C{id}"),
            discount,
            stacking,
        }
    }

    fn percent(p: i64) -> Discount {
        Discount::Percent {
            percent: Decimal::from(p),
        }
    }

    fn apply_all(mut events: Vec<OrderEvent>, commands: Vec<OrderCommand>) -> Vec<OrderEvent> {
        for command in commands {
            let state = given(&events);
            events.extend(decide(state.as_ref(), command).unwrap());
        }
        events
    }

    #[test]
    fn a_coupon_reprices_the_order_with_tax_on_the_discounted_lines_and_removing_restores_it() {
        let two = Stacking::Stackable { max_per_order: 2 };
        let events = apply_all(created(), vec![coupon(1, percent(10), two)]);
        let order = given(&events).unwrap();
        // 20.00 less 10 % = 18.00, tax 20 % of 18.00 = 3.60.
        assert_eq!(
            (order.discount(), order.tax, order.total),
            (usd(200), usd(360), usd(2160))
        );
        assert_eq!(order.line_discounts, vec![usd(200)]);
        assert!(
            decide(Some(&order), coupon(1, percent(10), two))
                .unwrap()
                .is_empty(),
            "the same coupon twice is one"
        );
        let events = apply_all(
            events,
            vec![OrderCommand::RemoveCoupon {
                coupon_id: Uuid::from_u128(1),
            }],
        );
        let order = given(&events).unwrap();
        assert_eq!(
            (order.discount(), order.tax, order.total),
            (usd(0), usd(400), usd(2400))
        );
        assert!(order.coupons.is_empty() && order.line_discounts.is_empty());
    }

    #[test]
    fn exclusive_coupons_stand_alone_and_stackable_ones_up_to_their_limit() {
        let two = Stacking::Stackable { max_per_order: 2 };
        let exclusive = apply_all(created(), vec![coupon(1, percent(10), Stacking::Exclusive)]);
        let order = given(&exclusive).unwrap();
        assert_eq!(
            decide(Some(&order), coupon(2, percent(5), two)),
            Err(OrderError::NotStackable)
        );
        let stacked = apply_all(
            created(),
            vec![coupon(1, percent(10), two), coupon(2, percent(10), two)],
        );
        let order = given(&stacked).unwrap();
        assert_eq!(
            decide(Some(&order), coupon(3, percent(5), two)),
            Err(OrderError::NotStackable)
        );
        assert_eq!(
            decide(Some(&order), coupon(3, percent(5), Stacking::Exclusive)),
            Err(OrderError::NotStackable)
        );
    }

    fn couriered(fee: Money) -> NewOrder {
        NewOrder {
            delivery_fee: Some(fee),
            ..new_order(Decimal::new(20, 2))
        }
    }

    #[test]
    fn a_courier_fee_is_taxed_with_the_lines_invoiced_apart_and_only_shipping_waives_it() {
        let events = decide(None, OrderCommand::Create(couriered(usd(490)))).unwrap();
        let order = given(&events).unwrap();
        // 20.00 + 4.90 = 24.90, tax 20 % of that = 4.98.
        assert_eq!(
            (order.subtotal, order.delivery(), order.tax, order.total),
            (usd(2000), usd(490), usd(498), usd(2988))
        );
        let lines = order.invoice_lines();
        assert_eq!(
            (lines[1].description.as_str(), lines[1].amount),
            (DELIVERY_LINE, usd(490))
        );

        let two = Stacking::Stackable { max_per_order: 2 };
        let events = apply_all(
            events,
            vec![
                coupon(1, percent(10), two),
                coupon(2, Discount::Shipping, two),
            ],
        );
        let order = given(&events).unwrap();
        // The percent takes 2.00 off the lines, never the fee; shipping takes the fee.
        let taken: Vec<Money> = order.coupons.iter().map(|c| c.taken).collect();
        assert_eq!(taken, vec![usd(200), usd(490)]);
        assert_eq!(order.line_discounts, vec![usd(200)]);
        assert_eq!(order.delivery_left(), usd(0));
        assert_eq!((order.tax, order.total), (usd(360), usd(2160)));
        let invoiced: Decimal = order.invoice_lines().iter().map(|l| l.amount.amount).sum();
        assert_eq!(invoiced + order.tax.amount, order.total.amount);
    }

    #[test]
    fn a_delivery_fee_is_a_price_in_the_lines_currency() {
        for fee in [
            usd(0),
            usd(-100),
            Money::new(Decimal::new(4_901, 3), Currency::Usd),
            usd(100_000_000),
        ] {
            assert_eq!(
                decide(None, OrderCommand::Create(couriered(fee))),
                Err(OrderError::InvalidDeliveryFee),
                "{fee:?}"
            );
        }
        let euros = Money::new(Decimal::new(490, 2), Currency::Eur);
        assert_eq!(
            decide(None, OrderCommand::Create(couriered(euros))),
            Err(OrderError::Currency(CurrencyMismatch("USD", "EUR")))
        );
    }

    #[test]
    fn a_fixed_coupon_above_the_total_makes_it_zero_and_a_paid_order_takes_none() {
        let fixed = Discount::Fixed {
            amount: usd(10_000),
        };
        let events = apply_all(created(), vec![coupon(1, fixed, Stacking::Exclusive)]);
        let order = given(&events).unwrap();
        assert_eq!((order.discount(), order.total), (usd(2000), usd(0)));
        let invoiced: Decimal = order.invoice_lines().iter().map(|l| l.amount.amount).sum();
        assert_eq!(
            invoiced,
            Decimal::ZERO,
            "the coupon's invoice line takes the discount off"
        );
        let mut paid = created();
        complete(&mut paid);
        assert_eq!(
            decide(given(&paid).as_ref(), coupon(1, fixed, Stacking::Exclusive)),
            Err(OrderError::NotOpen("completed"))
        );
    }
}
