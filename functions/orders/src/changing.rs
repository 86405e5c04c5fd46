//! Changing an order its buyer holds: its reference, or cancelling it while it is open
//! (the payment intent first, so that a payment that went through meanwhile stands).

use crate::reading::{view, OrderView};
use crate::refusals::{gateway_problem, order_not_found, refusal};
use crate::Orders;
use kassa_commerce::Fail;
use kassa_domain::identity::{Actor, Role};
use kassa_domain::order::{self, Order, OrderCommand, OrderError};
use kassa_payments::gateway::{GatewayError, PaymentGateway};
use kassa_runtime::http::{json_body, request_id};
use kassa_runtime::{problem, Problem};
use kassa_store::Metadata;
use lambda_http::Request;
use serde::Deserialize;
use uuid::Uuid;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    reference: Option<String>,
}

impl Orders {
    async fn change(
        &self,
        request: &Request,
        actor: &Actor,
        order_id: Uuid,
        command: OrderCommand,
    ) -> Result<OrderView, Problem> {
        let command = &command;
        let outcome = self
            .kernel
            .run(
                Metadata::origin(request_id(request), actor.user.as_str()),
                |tx| {
                    Box::pin(async move {
                        let mut order = tx.load::<Order>(&order_id).await?;
                        tx.decide(&mut order, command.clone())?;
                        Ok((order.state, order.version))
                    })
                },
            )
            .await;
        match outcome {
            Ok(done) => {
                let (order, version) = done.value;
                let order = order.ok_or_else(|| order_not_found(order_id))?;
                Ok(view(&order, version, None))
            }
            Err(Fail::Refused(e)) => Err(refusal(e)),
            Err(Fail::Store(e)) => Err(problem::store_problem(&e)),
        }
    }

    pub(crate) async fn update(&self, request: &Request) -> Result<OrderView, Problem> {
        let body: UpdateBody = json_body(request)?;
        let (actor, order, _) = self.load_own(request).await?;
        order::validate_reference(&body.reference).map_err(refusal)?;
        self.change(
            request,
            &actor,
            order.order_id,
            OrderCommand::Update {
                reference: body.reference,
            },
        )
        .await
    }

    pub(crate) async fn cancel(&self, request: &Request) -> Result<OrderView, Problem> {
        let (actor, order, _) = self.load_own(request).await?;
        if !order.status.is_open() {
            return Err(refusal(OrderError::NotOpen(order.status.as_str())));
        }
        // The intent is canceled first: if the customer paid meanwhile, Stripe refuses and
        // the order stays as the payment leaves it.
        if let Some(intent) = &order.payment_intent_id {
            self.gateway
                .cancel_payment_intent(intent, &format!("cancel-{}", order.order_id))
                .await
                .map_err(|e| match e {
                    GatewayError::Refused { .. } => Problem::conflict(
                        "order_paid",
                        "the payment went through before the cancellation; refund it instead",
                    ),
                    other => gateway_problem(&other),
                })?;
        }
        let reason = if actor.role == Role::Admin && actor.user != order.user_id {
            "canceled_by_operator"
        } else {
            "canceled_by_customer"
        };
        self.change(
            request,
            &actor,
            order.order_id,
            OrderCommand::Cancel {
                reason: reason.into(),
            },
        )
        .await
    }
}
