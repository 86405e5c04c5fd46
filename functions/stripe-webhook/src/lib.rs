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
//!
//! - `delivery`: the signature, the event, the concern it goes to, the answer;
//! - `receipt`: every effect commits with the delivery's receipt;
//! - `payment_intents`, `refunds`, `subscriptions`, `invoices`: the concerns;
//! - `mismatches`: reports that contradict the order, recorded and alerted.

mod delivery;
mod invoices;
mod mismatches;
mod payment_intents;
mod receipt;
mod refunds;
mod renewals;
mod subscriptions;

pub use mismatches::MISMATCH_ALERT;

use kassa_commerce::dunning::DUNNING_AGENDA;
use kassa_commerce::invoicing::{Invoicing, OVERDUE_AGENDA};
use kassa_commerce::order_book::OrderBook;
use kassa_commerce::{Clock, Kernel};
use kassa_payments::stripe::StripeGateway;
use kassa_runtime::function::StartError;
use kassa_runtime::http::respond;
use kassa_runtime::{Config, Function, HttpFunction, SdkConfig};
use kassa_store::{Agenda, EventStore};
use lambda_http::{Body, Request, Response};
use std::sync::Arc;

pub const NAME: &str = "stripe-webhook";

pub struct StripeWebhook {
    store: EventStore,
    kernel: Kernel,
    invoicing: Invoicing,
    overdue: Agenda,
    /// Workspaces' owed renewals, retried by retry-payments.
    dunning: Agenda,
    book: OrderBook,
    /// Reads what a delivery leaves out (the refunds of a charge on newer API versions).
    gateway: StripeGateway,
    secret: String,
    tolerance_secs: i64,
    clock: Arc<dyn Clock>,
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
            dunning: Agenda::new(store.client().clone(), state_table, DUNNING_AGENDA),
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
