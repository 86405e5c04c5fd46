//! The Stripe webhook Lambda. The signature is the authentication: it is verified on the
//! raw body before anything is parsed, and a bad or missing one is a 400 with nothing
//! written.
//!
//! Each delivery becomes kassa events on the stream it concerns (a payment intent, a
//! subscription, an invoice). Stripe delivers at least once and in any order, so:
//! - the event id is recorded by a conditional put in the same transaction as its events,
//!   and a repeat (even 50 at once) finds it there and has no second effect;
//! - every translation is decided against the stream's state, never by arrival: a failure
//!   after the success changes nothing, an older subscription update is ignored (one of
//!   the same second by the sequence its previous attributes give, else by event id);
//! - a payment report is checked against the order before it is applied: another intent
//!   than the order's, or another amount, is recorded as `payment.mismatched` and alerted.
//!
//! Deliveries about objects kassa did not create (no kassa metadata, or an order this
//! deployment does not know) are acknowledged and ignored, so an account shared with other
//! systems does not make Stripe retry forever.

use kassa_commerce::invoicing::{self, Invoicing, OVERDUE_AGENDA};
use kassa_commerce::order_book::{OrderBook, ORDER_KEY, USER_KEY, WORKSPACE_KEY};
use kassa_commerce::{Clock, Fail, Kernel};
use kassa_domain::identity::UserId;
use kassa_domain::invoice::{self, Draft, Invoice, InvoiceCommand, PAYMENT_TERMS_DAYS};
use kassa_domain::money::{Currency, Money};
use kassa_domain::order::{Order, OrderLine};
use kassa_domain::payment::{
    self, IntentOrigin, Mismatches, Payment, PaymentCommand, PaymentEvent,
};
use kassa_domain::subscription::{self, Snapshot, Subscription, SubscriptionCommand, Terms};
use kassa_payments::gateway::{GatewayError, PaymentGateway};
use kassa_payments::stripe::StripeGateway;
use kassa_payments::stripe_event::{
    self, IntentFacts, InvoiceFacts, Signal, StripeEvent, SubscriptionFacts,
};
use kassa_payments::webhook_signature;
use kassa_runtime::access::{order_stream, payment_stream, subscription_stream};
use kassa_runtime::function::StartError;
use kassa_runtime::http::{json, respond};
use kassa_runtime::{Config, Function, HttpFunction, Problem, SdkConfig};
use kassa_store::receipt::receipt;
use kassa_store::{
    Agenda, Commit, EventStore, Metadata, RecordedEvent, Refusal, StoreError, StreamId,
};
use lambda_http::{Body, Request, Response};
use std::sync::Arc;
use uuid::Uuid;

pub const NAME: &str = "stripe-webhook";

pub struct StripeWebhook {
    store: EventStore,
    kernel: Kernel,
    invoicing: Invoicing,
    overdue: Agenda,
    book: OrderBook,
    /// Reads what a delivery leaves out (the refunds of a charge on newer API versions).
    gateway: StripeGateway,
    secret: String,
    tolerance_secs: i64,
    clock: Arc<dyn Clock>,
}

/// What a delivery did, as answered to Stripe (and seen in its dashboard).
enum Outcome {
    Recorded(usize),
    Duplicate,
    Ignored(String),
    /// Contradicts kassa's record of the order: recorded as `payment.mismatched`, not applied.
    Mismatched(&'static str),
}

fn server_error(e: &StoreError) -> Problem {
    // Stripe retries any non-2xx: a store failure must not be acknowledged.
    tracing::error!(error = %e, "webhook not stored; Stripe will retry");
    Problem::new(503, "not_stored", "the event could not be stored; retry").retry_after(5)
}

/// The `alert` field of the error line logged for every `payment.mismatched` recorded: a
/// CloudWatch metric filter matches `{ $.level = "ERROR" && $.fields.alert = "payment_mismatched" }`.
pub const MISMATCH_ALERT: &str = "payment_mismatched";

/// Logs the alert line for each `payment.mismatched` among `recorded`.
fn alert(recorded: &[RecordedEvent]) {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let money = |m: &Option<Money>| m.map(|m| m.to_string()).unwrap_or_default();
    for event in recorded {
        let Ok(PaymentEvent::Mismatched {
            payment_intent_id,
            order_id,
            reason,
            expected_payment_intent_id,
            expected_amount,
            reported_amount,
            refund_id,
        }) = event.decode::<PaymentEvent>()
        else {
            continue;
        };
        tracing::error!(
            alert = MISMATCH_ALERT,
            event_id = %event.event_id,
            %payment_intent_id,
            %order_id,
            reason = reason.as_str(),
            expected_payment_intent_id = %text(&expected_payment_intent_id),
            expected_amount = %money(&expected_amount),
            reported_amount = %money(&reported_amount),
            refund_id = %text(&refund_id),
            "a Stripe report contradicts the order; recorded, not applied"
        );
    }
}

impl StripeWebhook {
    pub fn new(
        store: EventStore,
        state_table: &str,
        secret: impl Into<String>,
        tolerance_secs: i64,
        gateway: StripeGateway,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            kernel: Kernel::new(store.clone(), clock.clone()),
            invoicing: Invoicing::new(store.clone(), state_table),
            overdue: Agenda::new(store.client().clone(), state_table, OVERDUE_AGENDA),
            book: OrderBook::new(store.client().clone(), state_table),
            gateway,
            store,
            secret: secret.into(),
            tolerance_secs,
            clock,
        }
    }
}

impl Function for StripeWebhook {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self::new(
            EventStore::new(client, &config.events_table),
            &config.state_table,
            config.stripe.webhook_secret()?,
            config.stripe.webhook_tolerance_secs,
            StripeGateway::new(&config.stripe.api_base, config.stripe.secret_key()?),
            clock,
        ))
    }
}

impl HttpFunction for StripeWebhook {
    async fn handle(&self, request: Request) -> Response<Body> {
        respond(self.receive(&request).await)
    }
}

impl StripeWebhook {
    async fn receive(&self, request: &Request) -> Result<Response<Body>, Problem> {
        let body: &[u8] = match request.body() {
            Body::Text(t) => t.as_bytes(),
            Body::Binary(b) => b,
            _ => b"",
        };
        let header = request
            .headers()
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok());
        webhook_signature::verify(
            body,
            header,
            &self.secret,
            self.clock.now().unix_timestamp(),
            self.tolerance_secs,
        )
        .map_err(|e| Problem::bad_request("invalid_signature", e.to_string()))?;
        let event = stripe_event::parse(body)
            .map_err(|e| Problem::bad_request("invalid_event", e.to_string()))?;
        let outcome = self.dispatch(&event).await?;
        let answer = match outcome {
            Outcome::Recorded(n) => serde_json::json!({ "id": event.id, "recorded": n }),
            Outcome::Duplicate => serde_json::json!({ "id": event.id, "duplicate": true }),
            Outcome::Ignored(why) => {
                tracing::info!(id = %event.id, event_type = %event.event_type, %why, "ignored");
                serde_json::json!({ "id": event.id, "ignored": why })
            }
            Outcome::Mismatched(reason) => {
                serde_json::json!({ "id": event.id, "mismatched": reason })
            }
        };
        Ok(json(200, &answer))
    }

    fn metadata(&self, event: &StripeEvent) -> Metadata {
        // Stripe event ids are not UUIDs: the correlation id derives from it, so every
        // kassa event a delivery causes shares one, stable across redeliveries.
        let correlation = Uuid::new_v5(&Uuid::NAMESPACE_OID, event.id.as_bytes());
        Metadata::origin(correlation, format!("system:{NAME}"))
    }

    fn receipt(&self, commit: &mut Commit, event: &StripeEvent) -> Result<(), StoreError> {
        commit.put(
            receipt(
                self.store.table(),
                "stripe",
                &event.id,
                &event.event_type,
                self.clock.now(),
            )?,
            Refusal::AlreadyReceived,
        );
        Ok(())
    }

    async fn dispatch(&self, event: &StripeEvent) -> Result<Outcome, Problem> {
        match &event.signal {
            Signal::IntentSucceeded { intent, charge_id } => {
                let payment_id = charge_id.clone().unwrap_or_else(|| intent.id.clone());
                self.on_intent(event, intent, |origin| PaymentCommand::Succeed {
                    origin,
                    payment_id: payment_id.clone(),
                })
                .await
            }
            Signal::IntentFailed {
                intent,
                code,
                message,
            } => {
                self.on_intent(event, intent, |origin| PaymentCommand::Fail {
                    origin,
                    code: code.clone(),
                    message: message.clone(),
                })
                .await
            }
            Signal::IntentCanceled { intent, reason } => {
                self.on_intent(event, intent, |origin| PaymentCommand::Cancel {
                    origin,
                    reason: reason.clone(),
                })
                .await
            }
            Signal::ChargeRefunded {
                intent_id,
                charge_id,
                currency,
                amount_minor,
                refunds,
            } => {
                let Some(currency) = Currency::from_code(currency) else {
                    return Ok(Outcome::Ignored(format!("currency {currency}")));
                };
                let listed: Vec<_> = refunds
                    .iter()
                    .map(|r| Listed {
                        id: r.id.clone(),
                        amount_minor: r.amount_minor,
                        status: r.status.clone(),
                        reason: r.reason.clone(),
                    })
                    .collect();
                let refunds = match self.refunds(charge_id, listed, *amount_minor).await? {
                    Ok(refunds) => refunds,
                    Err(ignored) => return Ok(ignored),
                };
                let refunds = refunds
                    .into_iter()
                    .filter(|r| !matches!(r.status.as_deref(), Some("failed" | "canceled")))
                    .map(|r| (r.id, Money::from_minor(r.amount_minor, currency), r.reason))
                    .collect();
                self.on_refund(event, intent_id, charge_id, refunds).await
            }
            Signal::InvoicePaid { invoice } => self.on_invoice(event, invoice, true).await,
            Signal::InvoicePaymentFailed { invoice } => {
                self.on_invoice(event, invoice, false).await
            }
            Signal::SubscriptionCreated(s) | Signal::SubscriptionUpdated(s) => {
                self.on_subscription(event, s, false).await
            }
            Signal::SubscriptionDeleted(s) => self.on_subscription(event, s, true).await,
            Signal::Unhandled => Ok(Outcome::Ignored(format!(
                "{} is not handled",
                event.event_type
            ))),
        }
    }

    /// Runs a command on `stream` with the delivery's receipt in its commit.
    async fn record<S, E>(
        &self,
        event: &StripeEvent,
        stream: &StreamId,
        decide: &(dyn Fn(Option<&S>) -> Vec<E> + Send + Sync),
        evolve: fn(Option<S>, &E) -> Option<S>,
        extra: &Also<'_, S, E>,
    ) -> Result<Outcome, Problem>
    where
        S: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync,
        E: kassa_domain::event::DomainEvent + Send + Sync,
    {
        // Mismatches are tallied on a stream that is no aggregate's, so the stream is read
        // and appended to as it is rather than through `Tx::load`.
        let outcome = self
            .kernel
            .run(self.metadata(event), |tx| {
                Box::pin(async move {
                    let head = tx.store().load(stream).await?;
                    let (version, state) = match &head {
                        Some(h) => (h.version, Some(h.state::<S>()?)),
                        None => (0, None),
                    };
                    let events = decide(state.as_ref());
                    if events.is_empty() {
                        // Already applied or superseded: nothing is written, the
                        // receipt included.
                        return Ok::<_, Fail<std::convert::Infallible>>(());
                    }
                    let next = events.iter().fold(state, evolve);
                    let commit = tx.commit();
                    commit.append(stream, version, &events, &next)?;
                    self.receipt(commit, event)?;
                    extra(commit, next.as_ref(), &events)?;
                    Ok(())
                })
            })
            .await;
        match outcome {
            Ok(done) if done.recorded.is_empty() => Ok(Outcome::Ignored(
                "nothing changed: already applied or superseded".into(),
            )),
            Ok(done) => {
                alert(&done.recorded);
                Ok(Outcome::Recorded(done.recorded.len()))
            }
            Err(Fail::Refused(never)) => match never {},
            Err(Fail::Store(StoreError::Refused(Refusal::AlreadyReceived))) => {
                Ok(Outcome::Duplicate)
            }
            Err(Fail::Store(e)) => Err(server_error(&e)),
        }
    }

    /// Who the intent belongs to by the metadata kassa put on it, and that order, if it
    /// exists here. The metadata is only a claim: see [`payment::check`].
    async fn origin(&self, intent: &IntentFacts) -> Result<Option<(IntentOrigin, Order)>, Problem> {
        let (Some(order), Some(user), Some(currency)) = (
            intent
                .metadata
                .get(ORDER_KEY)
                .and_then(|o| Uuid::parse_str(o).ok()),
            intent.metadata.get(USER_KEY),
            Currency::from_code(&intent.currency),
        ) else {
            return Ok(None);
        };
        let Some(head) = self
            .store
            .load(&order_stream(order))
            .await
            .map_err(|e| server_error(&e))?
        else {
            return Ok(None);
        };
        let state: Order = head.state().map_err(|e| server_error(&e))?;
        let origin = IntentOrigin {
            payment_intent_id: intent.id.clone(),
            order_id: order,
            user_id: UserId::new(user.clone()),
            amount: Money::from_minor(intent.amount_minor, currency),
        };
        Ok(Some((origin, state)))
    }

    async fn on_intent(
        &self,
        event: &StripeEvent,
        intent: &IntentFacts,
        command: impl Fn(IntentOrigin) -> PaymentCommand + Send + Sync,
    ) -> Result<Outcome, Problem> {
        let Some((origin, order)) = self.origin(intent).await? else {
            return Ok(Outcome::Ignored("not a kassa payment".into()));
        };
        let held = order.payment_intent_id.as_deref();
        if let Some(mismatch) = payment::check(held, order.total, &origin) {
            return self.mismatched(event, &intent.id, mismatch).await;
        }
        let decide = |state: Option<&Payment>| payment::decide(state, command(origin.clone()));
        self.record(
            event,
            &payment_stream(&intent.id),
            &decide,
            payment::evolve,
            &nothing,
        )
        .await
    }

    async fn on_refund(
        &self,
        event: &StripeEvent,
        intent_id: &str,
        charge_id: &str,
        refunds: Vec<(String, Money, Option<String>)>,
    ) -> Result<Outcome, Problem> {
        let stream = payment_stream(intent_id);
        let known = self
            .store
            .load(&stream)
            .await
            .map_err(|e| server_error(&e))?;
        let Some(head) = known else {
            return Ok(Outcome::Ignored(
                "refund of a payment kassa does not know".into(),
            ));
        };
        let payment: Payment = head.state().map_err(|e| server_error(&e))?;
        let origin = IntentOrigin {
            payment_intent_id: intent_id.to_owned(),
            order_id: payment.order_id,
            user_id: payment.user_id.clone(),
            amount: payment.amount,
        };
        let decide = |state: Option<&Payment>| {
            let mut state = state.cloned();
            let mut events = Vec::new();
            let mut apply = |state: &mut Option<Payment>, command| {
                let out = payment::decide(state.as_ref(), command);
                *state = out.iter().fold(state.take(), payment::evolve);
                events.extend(out);
            };
            // Oldest first, so that if they ever exceed the payment it is the latest that
            // is refused.
            for (refund_id, amount, reason) in refunds.iter().rev() {
                apply(
                    &mut state,
                    PaymentCommand::Refund {
                        origin: origin.clone(),
                        payment_id: charge_id.to_owned(),
                        refund_id: refund_id.clone(),
                        amount: *amount,
                        reason: reason.clone(),
                    },
                );
            }
            events
        };
        self.record(event, &stream, &decide, payment::evolve, &nothing)
            .await
    }

    /// The charge's refunds, by Stripe's own ids. From API version 2022-11-15 a
    /// `charge.refunded` no longer lists them, and older ones list only the first page:
    /// whenever the listed refunds do not account for the charge's `amount_refunded`, they
    /// are read from Stripe. Newest first, as Stripe lists them.
    async fn refunds(
        &self,
        charge_id: &str,
        listed: Vec<Listed>,
        amount_refunded: i64,
    ) -> Result<Result<Vec<Listed>, Outcome>, Problem> {
        let accounted: i64 = listed
            .iter()
            .filter(|r| !matches!(r.status.as_deref(), Some("failed" | "canceled")))
            .map(|r| r.amount_minor)
            .sum();
        if accounted >= amount_refunded {
            return Ok(Ok(listed));
        }
        match self.gateway.list_refunds(charge_id).await {
            Ok(refunds) => Ok(Ok(refunds
                .into_iter()
                .map(|r| Listed {
                    id: r.id,
                    amount_minor: r.amount_minor,
                    status: Some(r.status),
                    reason: r.reason,
                })
                .collect())),
            Err(GatewayError::Refused { kind, message }) => {
                tracing::warn!(charge = %charge_id, %kind, %message, "Stripe does not list the refunds");
                Ok(Err(Outcome::Ignored(format!(
                    "Stripe does not list the refunds of {charge_id}: {message}"
                ))))
            }
            Err(e) => {
                // Stripe retries any non-2xx: the refunds are read again then.
                tracing::error!(charge = %charge_id, error = %e, "refunds not read; Stripe will retry");
                Err(Problem::new(503, "provider_unavailable", e.to_string()).retry_after(5))
            }
        }
    }

    /// Records `mismatch` (a `payment.mismatched`) on the intent's own mismatch stream with
    /// the delivery's receipt, and alerts. Nothing else is applied.
    async fn mismatched(
        &self,
        event: &StripeEvent,
        intent_id: &str,
        mismatch: PaymentEvent,
    ) -> Result<Outcome, Problem> {
        let reason = match &mismatch {
            PaymentEvent::Mismatched { reason, .. } => reason.as_str(),
            _ => "mismatch",
        };
        let decide = |_: Option<&Mismatches>| vec![mismatch.clone()];
        match self
            .record(
                event,
                &mismatch_stream(intent_id),
                &decide,
                payment::tally,
                &nothing,
            )
            .await?
        {
            Outcome::Recorded(_) => Ok(Outcome::Mismatched(reason)),
            other => Ok(other),
        }
    }

    async fn on_subscription(
        &self,
        event: &StripeEvent,
        facts: &SubscriptionFacts,
        deleted: bool,
    ) -> Result<Outcome, Problem> {
        let Some(user) = facts.metadata.get(USER_KEY).map(UserId::new) else {
            return Ok(Outcome::Ignored("not a kassa subscription".into()));
        };
        let snapshot = Snapshot {
            subscription_id: facts.id.clone(),
            customer: facts.customer.clone(),
            user_id: Some(user.clone()),
            plan: facts.price.clone(),
            status: facts.status.clone(),
            current_period_end: facts.current_period_end,
            cancel_at_period_end: facts.cancel_at_period_end,
            ended_at: facts.ended_at,
            // What the update says it replaced, over what it left: the terms before it.
            before: facts.previous.as_ref().map(|p| Terms {
                plan: p.price.clone().or_else(|| facts.price.clone()),
                status: p.status.clone().unwrap_or_else(|| facts.status.clone()),
                cancel_at_period_end: p.cancel_at_period_end.unwrap_or(facts.cancel_at_period_end),
            }),
        };
        let at = event.created;
        let decide = |state: Option<&Subscription>| {
            subscription::decide(
                state,
                SubscriptionCommand::Observe {
                    at,
                    event_id: event.id.clone(),
                    snapshot: snapshot.clone(),
                    deleted,
                },
            )
        };
        let index = |commit: &mut Commit, _: Option<&Subscription>, events: &[_]| {
            let announced = events
                .iter()
                .any(|e| matches!(e, subscription::SubscriptionEvent::Created { .. }));
            if announced {
                commit.index(self.book.subscriber(user.as_str(), &facts.id)?);
            }
            Ok(())
        };
        self.record(
            event,
            &subscription_stream(&facts.id),
            &decide,
            subscription::evolve,
            &index,
        )
        .await
    }

    async fn on_invoice(
        &self,
        event: &StripeEvent,
        facts: &InvoiceFacts,
        paid: bool,
    ) -> Result<Outcome, Problem> {
        let meta = |k: &str| {
            facts
                .subscription_metadata
                .get(k)
                .or_else(|| facts.metadata.get(k))
                .cloned()
        };
        let (Some(user), Some(currency)) = (
            meta(USER_KEY).map(UserId::new),
            Currency::from_code(&facts.currency),
        ) else {
            return Ok(Outcome::Ignored("not a kassa invoice".into()));
        };
        let workspace = meta(WORKSPACE_KEY).and_then(|w| Uuid::parse_str(&w).ok());
        let issued_on = time::OffsetDateTime::from_unix_timestamp(event.created)
            .map_err(|e| Problem::bad_request("invalid_event", e.to_string()))?
            .date();
        let due_date = facts
            .due_date
            .and_then(|d| time::OffsetDateTime::from_unix_timestamp(d).ok())
            .map(|d| d.date())
            .unwrap_or(issued_on + time::Duration::days(PAYMENT_TERMS_DAYS));
        let draft = Draft {
            invoice_id: invoicing::invoice_id(&format!("stripe:{}", facts.id)),
            series: invoicing::series(workspace, &user),
            user_id: user.clone(),
            workspace_id: workspace,
            order_id: None,
            provider_invoice_id: Some(facts.id.clone()),
            lines: lines(facts, currency),
            tax_rate: None,
            tax: Money::from_minor(facts.tax_minor.unwrap_or(0), currency),
            issued_on,
            due_date,
        };
        let metadata = self.metadata(event);
        let now = self.clock.now();
        let payment = paid.then(|| (facts.id.clone(), issued_on));
        let issued = self
            .invoicing
            .issue(
                draft,
                payment.clone(),
                Some(&self.overdue),
                metadata.clone(),
                now,
            )
            .await
            .map_err(|e| server_error(&e))?;
        let mut recorded = issued.recorded.len();
        if let (Some((payment_id, paid_on)), true) = (payment, issued.recorded.is_empty()) {
            // Issued earlier as open (its payment failed first): now it is paid.
            let stream = kassa_runtime::access::invoice_stream(issued.invoice.invoice_id);
            let decide = |state: Option<&Invoice>| {
                invoice::decide(
                    state,
                    InvoiceCommand::Pay {
                        payment_id: payment_id.clone(),
                        paid_on,
                    },
                )
                .unwrap_or_default()
            };
            match self
                .record(event, &stream, &decide, invoice::evolve, &nothing)
                .await?
            {
                Outcome::Recorded(n) => recorded += n,
                Outcome::Duplicate => return Ok(Outcome::Duplicate),
                Outcome::Ignored(_) | Outcome::Mismatched(_) => {}
            }
        }
        if let (false, Some(sub)) = (paid, &facts.subscription) {
            let decide = |state: Option<&Subscription>| {
                subscription::decide(
                    state,
                    SubscriptionCommand::PaymentFailed {
                        at: event.created,
                        subscription_id: sub.clone(),
                        user_id: Some(user.clone()),
                        attempt_count: facts.attempt_count,
                        invoice: facts.id.clone(),
                    },
                )
            };
            match self
                .record(
                    event,
                    &subscription_stream(sub),
                    &decide,
                    subscription::evolve,
                    &nothing,
                )
                .await?
            {
                Outcome::Recorded(n) => recorded += n,
                Outcome::Duplicate => return Ok(Outcome::Duplicate),
                Outcome::Ignored(_) | Outcome::Mismatched(_) => {}
            }
        }
        Ok(if recorded > 0 {
            Outcome::Recorded(recorded)
        } else {
            Outcome::Ignored("nothing changed: already applied".into())
        })
    }
}

/// Items a delivery's commit carries beside its events and receipt.
type Also<'a, S, E> =
    dyn Fn(&mut Commit, Option<&S>, &[E]) -> Result<(), StoreError> + Send + Sync + 'a;

/// Adds nothing to the commit.
fn nothing<S, E>(_: &mut Commit, _: Option<&S>, _: &[E]) -> Result<(), StoreError> {
    Ok(())
}

/// A refund as a delivery lists it or Stripe's API answers it.
struct Listed {
    id: String,
    amount_minor: i64,
    status: Option<String>,
    reason: Option<String>,
}

/// Where reports refused by [`payment::check`] are kept: an intent that is not an order's
/// gets no payment stream.
fn mismatch_stream(intent_id: &str) -> StreamId {
    StreamId::new("PaymentMismatch", intent_id)
}

/// The invoice's lines in kassa's terms; an invoice without lines gets one for its total.
fn lines(facts: &InvoiceFacts, currency: Currency) -> Vec<OrderLine> {
    let mut out: Vec<OrderLine> = facts
        .lines
        .iter()
        .map(|l| {
            let quantity = l.quantity.unwrap_or(1).max(1);
            let amount = Money::from_minor(l.amount_minor, currency);
            OrderLine {
                description: l
                    .description
                    .clone()
                    .or_else(|| l.price.clone())
                    .unwrap_or_else(|| "subscription".into()),
                quantity,
                unit_price: Money::new(
                    amount.amount / rust_decimal::Decimal::from(quantity),
                    currency,
                ),
                amount,
            }
        })
        .collect();
    if out.is_empty() {
        let amount = Money::from_minor(facts.subtotal_minor, currency);
        out.push(OrderLine {
            description: facts.number.clone().unwrap_or_else(|| facts.id.clone()),
            quantity: 1,
            unit_price: amount,
            amount,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kassa_domain::event::DomainEvent;
    use kassa_domain::payment::MismatchReason;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The line the README tells operators to match, in the JSON shape Lambda logs have
    /// (`kassa_runtime::telemetry`).
    #[test]
    fn a_recorded_mismatch_logs_the_error_line_the_metric_filter_matches() {
        let mismatch = PaymentEvent::Mismatched {
            payment_intent_id: "pi_foreign".into(),
            order_id: Uuid::from_u128(7),
            reason: MismatchReason::Intent,
            expected_payment_intent_id: Some("pi_order".into()),
            expected_amount: Some(Money::from_minor(1_000, Currency::Usd)),
            reported_amount: Some(Money::from_minor(1_000, Currency::Usd)),
            refund_id: None,
        };
        let recorded = RecordedEvent {
            event_id: Uuid::from_u128(1),
            stream: mismatch_stream("pi_foreign"),
            version: 1,
            event_type: mismatch.event_type().to_owned(),
            context: PaymentEvent::CONTEXT.to_owned(),
            time: time::OffsetDateTime::UNIX_EPOCH,
            payload: mismatch.payload(),
            metadata: Metadata::origin(Uuid::from_u128(2), "test"),
            schema: 1,
        };
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .without_time()
            .with_current_span(false)
            .with_target(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || alert(&[recorded]));
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["level"], "ERROR", "{line}");
        assert_eq!(line["fields"]["alert"], MISMATCH_ALERT, "{line}");
        assert_eq!(line["fields"]["payment_intent_id"], "pi_foreign");
        assert_eq!(line["fields"]["expected_payment_intent_id"], "pi_order");
        assert_eq!(line["fields"]["reason"], "intent");
        assert_eq!(line["fields"]["reported_amount"], "10.00 USD");
    }
}
