//! An operator's refund of a paid order: asked of Stripe under a key the caller's
//! Idempotency-Key makes stable, then recorded on the payment at once.

use crate::refusals::{gateway_problem, refusal};
use crate::Orders;
use kassa_domain::identity::Role;
use kassa_domain::money::Money;
use kassa_domain::order::OrderError;
use kassa_domain::payment::{self, IntentOrigin, PaymentCommand};
use kassa_payments::gateway::PaymentGateway;
use kassa_runtime::http::{json_body, request_id};
use kassa_runtime::idempotency_key::IdempotencyKey;
use kassa_runtime::Problem;
use kassa_store::Metadata;
use lambda_http::Request;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::str::FromStr;
use uuid::Uuid;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundBody {
    /// A decimal string in the order's currency; the whole remaining amount when absent.
    amount: Option<String>,
    reason: Option<String>,
}

impl Orders {
    pub(crate) async fn refund(
        &self,
        request: &Request,
        key: Option<IdempotencyKey>,
    ) -> Result<serde_json::Value, Problem> {
        let body: RefundBody = json_body(request)?;
        let (actor, order, _) = self.load_own(request).await?;
        if actor.role != Role::Admin {
            return Err(Problem::forbidden("refunds are issued by an operator"));
        }
        let (Some(intent), Some(payment_id)) = (&order.payment_intent_id, &order.payment_id) else {
            return Err(refusal(OrderError::NotPaid(order.status.as_str())));
        };
        if !order.status.is_paid() {
            return Err(refusal(OrderError::NotPaid(order.status.as_str())));
        }
        let remaining = order.total.amount - order.refunded().amount;
        let amount = match &body.amount {
            None => remaining,
            Some(raw) => Decimal::from_str(raw).map_err(|_| {
                Problem::new(
                    422,
                    "invalid_amount",
                    format!("`{raw}` is not a decimal amount"),
                )
            })?,
        };
        if amount <= Decimal::ZERO || amount > remaining || amount.scale() > 2 {
            return Err(Problem::new(
                422,
                "invalid_amount",
                format!(
                    "the amount must be more than 0 and at most the {remaining} {} not yet refunded, in cents",
                    order.total.currency.code()
                ),
            ));
        }
        let amount = Money::new(amount, order.total.currency);
        // Stripe's key comes from what the caller sent, so a retry of the same request
        // (same Idempotency-Key) is the same refund, and two requests are two refunds.
        // Without a key each request is a refund of its own. Never from the order's refunds:
        // they lag behind the refunds already made.
        let key = match &key {
            Some(key) => format!("refund-{}-{}", order.order_id, key.digest(&actor)),
            None => format!("refund-{}-{}", order.order_id, Uuid::now_v7()),
        };
        let refund = self
            .gateway
            .refund(intent, Some(amount), &key)
            .await
            .map_err(|e| gateway_problem(&e))?;
        // Recorded now rather than when Stripe's `charge.refunded` arrives; that delivery
        // then finds the refund id already applied.
        let origin = IntentOrigin {
            payment_intent_id: intent.clone(),
            order_id: order.order_id,
            user_id: order.user_id.clone(),
            amount: order.total,
        };
        let refund_command = PaymentCommand::Refund {
            origin,
            payment_id: payment_id.clone(),
            refund_id: refund.id.clone(),
            amount,
            reason: body.reason.clone(),
        };
        let refund_command = &refund_command;
        self.kernel
            .run(
                Metadata::origin(request_id(request), actor.user.as_str()),
                |tx| {
                    Box::pin(async move {
                        let mut payment = tx.load::<payment::Payment>(intent.as_str()).await?;
                        tx.decide(&mut payment, refund_command.clone())?;
                        Ok(())
                    })
                },
            )
            .await?;
        Ok(serde_json::json!({
            "order_id": order.order_id,
            "refund_id": refund.id,
            "amount": amount,
            "status": refund.status,
        }))
    }
}
