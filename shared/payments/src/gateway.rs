//! The payment gateway port: what kassa asks of a payment provider. Amounts cross it as
//! `Money`; the adapter converts to the provider's minor units at its edge.

use kassa_domain::money::Money;
use std::collections::BTreeMap;
use std::future::Future;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentIntent {
    pub id: String,
    /// Handed to the paying client only (it completes the payment in the browser).
    pub client_secret: Option<String>,
    pub status: String,
    pub amount_minor: i64,
    pub currency: String,
}

/// A SetupIntent: what the payer's browser confirms (Stripe.js `confirmCardSetup`) to
/// collect a card for later charges off session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupIntent {
    pub id: String,
    pub client_secret: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    /// The provider's refund id (`re_...`): the one name kassa books a refund under.
    pub id: String,
    pub status: String,
    pub amount_minor: i64,
    /// Lowercase, as Stripe sends it.
    pub currency: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct IntentRequest {
    pub amount: Money,
    pub customer: Option<String>,
    /// Shown in the provider's dashboard and echoed in webhooks: kassa puts its order id here.
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: String,
    pub customer: String,
    /// Stripe's word: `active`, `incomplete`, `past_due`, `canceled`, ...
    pub status: String,
    pub price: Option<String>,
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: bool,
}

#[derive(Debug, Clone)]
pub struct SubscriptionRequest {
    pub customer: String,
    /// The provider's price id; the customer must already hold a default payment method,
    /// since the first period is charged on creation.
    pub price: String,
    pub metadata: BTreeMap<String, String>,
    /// Unix seconds: the first full period starts here, and the time until then is billed
    /// prorated on creation (so a workspace's subscription renews with its credits).
    pub billing_cycle_anchor: Option<i64>,
}

/// A charge of a customer's saved payment method, without the customer present.
#[derive(Debug, Clone)]
pub struct SavedCardCharge {
    pub customer: String,
    pub payment_method: String,
    pub amount: Money,
    pub description: String,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The provider refused the request as given (bad amount, card declined, wrong state).
    #[error("the payment provider refused the request: {message} ({kind})")]
    Refused { kind: String, message: String },
    /// The amount has no representation in minor units.
    #[error("the amount {0} cannot be charged")]
    InvalidAmount(String),
    /// Transport failure or a 5xx: safe to retry with the same idempotency key.
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
}

/// Every call takes an idempotency key: a retried call with the same key has one effect.
pub trait PaymentGateway: Send + Sync {
    fn create_customer(
        &self,
        email: Option<&str>,
        reference: &str,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<Customer, GatewayError>> + Send;

    fn create_payment_intent(
        &self,
        request: &IntentRequest,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<PaymentIntent, GatewayError>> + Send;

    fn cancel_payment_intent(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<PaymentIntent, GatewayError>> + Send;

    /// Sets the amount an intent not yet paid will charge (its currency stays).
    fn update_payment_intent_amount(
        &self,
        id: &str,
        amount: Money,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<PaymentIntent, GatewayError>> + Send;

    /// Refunds `amount` of a succeeded payment, or all of it when `None`.
    fn refund(
        &self,
        payment_intent: &str,
        amount: Option<Money>,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<Refund, GatewayError>> + Send;

    /// The fingerprint of the card (or bank account) behind a payment method: the same
    /// for every payment method of one card, whoever's account holds it. `None` for a
    /// method without one.
    fn payment_method_fingerprint(
        &self,
        payment_method: &str,
    ) -> impl Future<Output = Result<Option<String>, GatewayError>> + Send;

    /// Every refund of a charge, newest first, whatever its status.
    fn list_refunds(
        &self,
        charge: &str,
    ) -> impl Future<Output = Result<Vec<Refund>, GatewayError>> + Send;

    /// Attaches `payment_method` to `customer` and makes it the one its invoices charge.
    fn save_payment_method(
        &self,
        customer: &str,
        payment_method: &str,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<(), GatewayError>> + Send;

    /// The succeeded charge of `customer`'s saved card whose metadata has `key` = `value`,
    /// among its newest hundred intents: a charge made by an attempt that died before
    /// recording it.
    fn succeeded_charge(
        &self,
        customer: &str,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<Option<PaymentIntent>, GatewayError>> + Send;

    /// Charges a saved payment method now (confirmed off session): the intent comes back
    /// `succeeded`, or the refusal says why.
    fn charge_saved_card(
        &self,
        charge: &SavedCardCharge,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<PaymentIntent, GatewayError>> + Send;

    fn create_subscription(
        &self,
        request: &SubscriptionRequest,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<Subscription, GatewayError>> + Send;

    /// Moves the subscription to `price`, replacing its single item's price, from its next
    /// invoice on, and keeps it renewing. Nothing is prorated there: kassa charges the rest
    /// of a period itself, as it computed it.
    fn update_subscription(
        &self,
        id: &str,
        price: &str,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<Subscription, GatewayError>> + Send;

    /// Lets the subscription run to the end of its period and end there.
    fn end_subscription_at_period_end(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<Subscription, GatewayError>> + Send;

    /// Ends the subscription now; cancelling an already cancelled one answers it unchanged.
    fn cancel_subscription(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<Subscription, GatewayError>> + Send;

    /// A SetupIntent for a card to be charged off session later.
    fn create_setup_intent(
        &self,
        metadata: &BTreeMap<String, String>,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<SetupIntent, GatewayError>> + Send;

    /// Pays an open invoice now with the customer's default payment method: the payment
    /// intent that paid it (an invoice paid already answers the one that did), or the
    /// refusal.
    fn pay_invoice(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<String, GatewayError>> + Send;
}
