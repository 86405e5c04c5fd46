//! The orders Lambda: buy credit packs, read an order (with the client secret that pays
//! it), change its reference, cancel it, refund it, and read invoices.
//!
//! Creating an order writes `order.created`, the order's place on the expiry agenda and
//! its entry in the buyer's order list in one commit. The PaymentIntent is created by the
//! side effect that follows (seed 001's payment flow), never in the request.

use kassa_commerce::invoicing::{self, Invoicing};
use kassa_commerce::order_book::{self, OrderBook};
use kassa_commerce::{Clock, Fail, Kernel};
use kassa_domain::identity::{Actor, Role};
use kassa_domain::invoice::Invoice;
use kassa_domain::money::Money;
use kassa_domain::order::{self, NewOrder, Order, OrderCommand, OrderError, OrderLine, Purpose};
use kassa_domain::pack::{self, MAX_PACKS_PER_ORDER};
use kassa_domain::payment::{self, IntentOrigin, PaymentCommand};
use kassa_payments::gateway::{GatewayError, PaymentGateway};
use kassa_payments::stripe::StripeGateway;
use kassa_runtime::access::{self, invoice_stream, order_stream, workspace_stream, MEMBERSHIP};
use kassa_runtime::function::StartError;
use kassa_runtime::http::{
    json, json_body, limit_param, request_id, respond, route_key, uuid_param,
};
use kassa_runtime::idempotency_key::{IdempotencyKey, IdempotentRequests};
use kassa_runtime::{caller, problem, Config, Function, HttpFunction, Problem, SdkConfig};
use kassa_store::{EventStore, Metadata, StoreError};
use lambda_http::{Body, Request, Response};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use std::sync::Arc;
use uuid::Uuid;

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurchaseBody {
    pack: String,
    #[serde(default = "one")]
    quantity: u64,
    reference: Option<String>,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    reference: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundBody {
    /// A decimal string in the order's currency; the whole remaining amount when absent.
    amount: Option<String>,
    reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct OrderView {
    pub order_id: Uuid,
    pub status: &'static str,
    pub user_id: String,
    pub purpose: Purpose,
    pub lines: Vec<OrderLine>,
    pub subtotal: Money,
    pub tax_rate: Decimal,
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
    pub cancel_reason: Option<String>,
    pub version: u64,
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn view(order: &Order, version: u64, client_secret: Option<String>) -> OrderView {
    OrderView {
        order_id: order.order_id,
        status: order.status.as_str(),
        user_id: order.user_id.to_string(),
        purpose: order.purpose.clone(),
        lines: order.lines.clone(),
        subtotal: order.subtotal,
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
        cancel_reason: order.cancel_reason.clone(),
        version,
    }
}

fn refusal(e: OrderError) -> Problem {
    let status = match e {
        OrderError::NotFound => 404,
        OrderError::AlreadyExists
        | OrderError::NotOpen(_)
        | OrderError::NotPaid(_)
        | OrderError::NotDue
        | OrderError::RefundExceedsPayment { .. } => 409,
        OrderError::Empty
        | OrderError::InvalidReference
        | OrderError::InvalidTaxRate
        | OrderError::Currency(_) => 422,
    };
    Problem::new(status, e.code(), e.to_string())
}

fn order_not_found(id: Uuid) -> Problem {
    Problem::not_found("order_not_found", format!("no order {id}"))
}

fn gateway_problem(e: &GatewayError) -> Problem {
    match e {
        GatewayError::Refused { .. } | GatewayError::InvalidAmount(_) => {
            Problem::new(409, "payment_provider_refused", e.to_string())
        }
        GatewayError::Unavailable(_) => {
            Problem::new(503, "payment_provider_unavailable", e.to_string()).retry_after(5)
        }
    }
}

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

impl Orders {
    async fn purchase(&self, request: &Request) -> Result<OrderView, Problem> {
        let actor = caller(request)?;
        let workspace = uuid_param(request, "workspaceId", "workspace_not_found")?;
        let body: PurchaseBody = json_body(request)?;
        let Some(pack) = pack::find(&body.pack) else {
            return Err(Problem::new(
                422,
                "unknown_pack",
                format!("unknown pack `{}`; packs: {}", body.pack, pack::codes()),
            ));
        };
        if body.quantity == 0 || body.quantity > MAX_PACKS_PER_ORDER {
            return Err(Problem::new(
                422,
                "invalid_quantity",
                format!("quantity must be between 1 and {MAX_PACKS_PER_ORDER}"),
            ));
        }
        order::validate_reference(&body.reference).map_err(refusal)?;
        access::load_admitted(&self.store, workspace, &actor).await?;

        let now = self.clock.now();
        let new = NewOrder {
            order_id: Uuid::now_v7(),
            user_id: actor.user.clone(),
            purpose: Purpose::CreditPack {
                workspace_id: workspace,
                pack: pack.code.to_owned(),
                quantity: body.quantity,
                credits: pack.credits * body.quantity,
            },
            lines: vec![OrderLine {
                description: pack.describe(),
                quantity: body.quantity,
                unit_price: pack.price(),
                amount: pack.price().times(body.quantity),
            }],
            tax_rate: self.tax_rate,
            reference: body.reference,
            now,
        };
        let user = actor.user.as_str();
        let is_admin = actor.role == Role::Admin;
        let new = &new;
        let outcome = self
            .kernel
            .run(Metadata::origin(request_id(request), user), |tx| {
                Box::pin(async move {
                    let mut order = tx.load::<Order>(&new.order_id).await?;
                    let events = tx.decide(&mut order, OrderCommand::Create(new.clone()))?;
                    if let (Some(created), false) = (&order.state, events.is_empty()) {
                        // Membership is checked again inside the transaction: a
                        // collaborator removed between the read and the commit cannot buy.
                        if !is_admin {
                            tx.commit().require_member(
                                &workspace_stream(workspace),
                                user,
                                MEMBERSHIP,
                            )?;
                        }
                        self.book.on_create(tx.commit(), created)?;
                    }
                    Ok(order.state)
                })
            })
            .await;
        match outcome {
            Ok(done) => {
                let order = done.value.ok_or_else(|| Problem::internal(&"no order"))?;
                Ok(view(&order, 1, None))
            }
            Err(Fail::Refused(e)) => Err(refusal(e)),
            Err(Fail::Store(StoreError::Refused(MEMBERSHIP))) => Err(access::not_found(workspace)),
            Err(Fail::Store(e)) => Err(problem::store_problem(&e)),
        }
    }

    /// The order if `actor` may see it: its buyer or an operator.
    async fn load_own(&self, request: &Request) -> Result<(Actor, Order, u64), Problem> {
        let actor = caller(request)?;
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

    async fn get(&self, request: &Request) -> Result<OrderView, Problem> {
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

    async fn update(&self, request: &Request) -> Result<OrderView, Problem> {
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

    async fn cancel(&self, request: &Request) -> Result<OrderView, Problem> {
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

    async fn refund(
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

    async fn invoices(&self, request: &Request) -> Result<serde_json::Value, Problem> {
        let actor = caller(request)?;
        let workspace = uuid_param(request, "workspaceId", "workspace_not_found")?;
        let limit = limit_param(request, 50, 100)?;
        let (_, ws) = access::load_admitted(&self.store, workspace, &actor).await?;
        let series = invoicing::series(Some(workspace), &ws.owner);
        let ids = self
            .invoicing
            .list(&series, limit)
            .await
            .map_err(|e| problem::store_problem(&e))?;
        if ids.is_empty() {
            return Ok(serde_json::json!({ "invoices": [] }));
        }
        let streams: Vec<_> = ids.iter().map(|id| invoice_stream(*id)).collect();
        let refs: Vec<_> = streams.iter().collect();
        let heads = self
            .store
            .load_many(&refs)
            .await
            .map_err(|e| problem::store_problem(&e))?;
        let mut invoices = Vec::new();
        for stream in &streams {
            if let Some(head) = heads.get(stream) {
                invoices.push(head.state::<Invoice>().map_err(|e| Problem::internal(&e))?);
            }
        }
        Ok(serde_json::json!({ "invoices": invoices }))
    }

    async fn invoice(&self, request: &Request) -> Result<Invoice, Problem> {
        let actor = caller(request)?;
        let id = uuid_param(request, "invoiceId", "invoice_not_found")?;
        let not_found = || Problem::not_found("invoice_not_found", format!("no invoice {id}"));
        let head = self
            .store
            .load(&invoice_stream(id))
            .await
            .map_err(|e| problem::store_problem(&e))?
            .ok_or_else(not_found)?;
        let invoice: Invoice = head.state().map_err(|e| Problem::internal(&e))?;
        let admitted = actor.role == Role::Admin
            || invoice.user_id == actor.user
            || match invoice.workspace_id {
                Some(ws) => access::load_admitted(&self.store, ws, &actor).await.is_ok(),
                None => false,
            };
        if !admitted {
            return Err(not_found());
        }
        Ok(invoice)
    }
}

/// Re-exported so the runner and tests name the agenda the same way.
pub use order_book::EXPIRY_AGENDA;
