//! The Stripe adapter: Stripe's REST API, form-encoded, with an `Idempotency-Key` on every
//! POST. Base URL and secret key come from configuration (locally, localstripe).

use crate::gateway::{
    Customer, GatewayError, IntentRequest, PaymentGateway, PaymentIntent, Refund, SavedCardCharge,
    SetupIntent, Subscription, SubscriptionRequest,
};
use crate::stripe_event::subscription_from_value;
use kassa_domain::money::Money;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone)]
pub struct StripeGateway {
    http: reqwest::Client,
    base: String,
    secret_key: String,
    item_price_param: &'static str,
}

#[derive(Deserialize)]
struct StripeErrorBody {
    error: StripeError,
}

#[derive(Deserialize)]
struct StripeError {
    #[serde(rename = "type")]
    kind: String,
    message: Option<String>,
}

#[derive(Deserialize)]
struct IntentBody {
    id: String,
    client_secret: Option<String>,
    status: String,
    #[serde(deserialize_with = "minor_units")]
    amount: i64,
    currency: String,
    #[serde(default)]
    metadata: std::collections::HashMap<String, String>,
}

#[derive(Deserialize)]
struct IntentList {
    data: Vec<IntentBody>,
}

/// Intents of a customer looked through for a charge an attempt made and did not record:
/// one page, newest first, far more than a debt's attempts.
const INTENT_PAGE: usize = 100;

#[derive(Deserialize)]
struct IdBody {
    id: String,
}

#[derive(Deserialize)]
struct RefundBody {
    id: String,
    status: String,
    amount: i64,
    currency: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    metadata: std::collections::HashMap<String, String>,
}

/// The metadata key a refund carries its idempotency key under.
const REFUND_KEY: &str = "kassa_refund_key";

/// A payment method as far as its fingerprint goes: under its type's own key.
#[derive(Deserialize)]
struct PaymentMethodBody {
    card: Option<Fingerprinted>,
    sepa_debit: Option<Fingerprinted>,
    us_bank_account: Option<Fingerprinted>,
}

#[derive(Deserialize)]
struct Fingerprinted {
    fingerprint: Option<String>,
}

#[derive(Deserialize)]
struct RefundList {
    data: Vec<RefundBody>,
    #[serde(default)]
    has_more: bool,
}

fn refund(body: RefundBody) -> Refund {
    Refund {
        id: body.id,
        status: body.status,
        amount_minor: body.amount,
        currency: body.currency,
        reason: body.reason,
    }
}

/// Refunds asked for per page; Stripe's maximum.
const REFUND_PAGE: usize = 100;

/// Longest one call to Stripe may take, connecting included. The functions time out after
/// 10 s (template.yaml Globals) and some make two calls in a row before they commit, so
/// each gets well under half of it; a call that gives up is `Unavailable` and is retried
/// with the same idempotency key.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);

/// Longest the connection alone may take: an unreachable Stripe fails fast.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

impl StripeGateway {
    pub fn new(base: impl Into<String>, secret_key: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            // Only a TLS backend that cannot start fails here, as `Client::new` would.
            .expect("the HTTP client for Stripe builds");
        Self {
            http,
            base: base.into().trim_end_matches('/').to_owned(),
            secret_key: secret_key.into(),
            item_price_param: "price",
        }
    }

    /// Names a subscription item's price with the legacy `plan` parameter instead of
    /// `price`. localstripe (1.15) has no Prices API: it wants `items[0][plan]` holding a
    /// plan id (`POST /v1/plans`) and answers 400 without it. Against Stripe keep the
    /// default; its prices are backwards compatible with plans, so a plan id works there too.
    pub fn with_legacy_plan_items(mut self) -> Self {
        self.item_price_param = "plan";
        self
    }

    /// From `KASSA_STRIPE_API_BASE` (default Stripe's own) and `KASSA_STRIPE_SECRET_KEY`.
    pub fn from_env() -> Option<Self> {
        let key = std::env::var("KASSA_STRIPE_SECRET_KEY")
            .ok()
            .filter(|k| !k.is_empty())?;
        let base = std::env::var("KASSA_STRIPE_API_BASE")
            .unwrap_or_else(|_| "https://api.stripe.com".to_owned());
        Some(Self::new(base, key))
    }

    async fn post<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        form: &[(String, String)],
        idempotency_key: &str,
    ) -> Result<T, GatewayError> {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .header("Idempotency-Key", idempotency_key)
                .form(form),
        )
        .await
    }

    async fn get<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<T, GatewayError> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    /// Every refund of a charge or an intent (`by` is `charge` or `payment_intent`), page
    /// by page.
    async fn refunds_of(&self, by: &str, id: &str) -> Result<Vec<RefundBody>, GatewayError> {
        let mut refunds: Vec<RefundBody> = Vec::new();
        loop {
            let mut query = vec![(by, id.to_owned()), ("limit", REFUND_PAGE.to_string())];
            if let Some(last) = refunds.last() {
                query.push(("starting_after", last.id.clone()));
            }
            let page: RefundList = self
                .send(
                    self.http
                        .get(format!("{}/v1/refunds", self.base))
                        .query(&query),
                )
                .await?;
            let more = page.has_more && !page.data.is_empty();
            refunds.extend(page.data);
            if !more {
                return Ok(refunds);
            }
        }
    }

    /// The refund of `payment_intent` made under `key`, if there is one.
    async fn refund_keyed(
        &self,
        payment_intent: &str,
        key: &str,
    ) -> Result<Option<Refund>, GatewayError> {
        let refunds = self.refunds_of("payment_intent", payment_intent).await?;
        Ok(refunds
            .into_iter()
            .find(|r| r.metadata.get(REFUND_KEY).is_some_and(|k| k == key))
            .map(refund))
    }

    /// Without an `Idempotency-Key`: Stripe documents it as having no effect on DELETE, so
    /// the caller makes a repeated DELETE safe itself (see `cancel_subscription`).
    async fn delete<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<T, GatewayError> {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    async fn send<T: for<'de> Deserialize<'de>>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, GatewayError> {
        let response = request
            .basic_auth(&self.secret_key, Some(""))
            .send()
            .await
            .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(GatewayError::Unavailable(format!("{status}: {text}")));
        }
        if !status.is_success() {
            let error = serde_json::from_str::<StripeErrorBody>(&text)
                .map(|b| b.error)
                .unwrap_or(StripeError {
                    kind: status.to_string(),
                    message: Some(text),
                });
            return Err(GatewayError::Refused {
                kind: error.kind,
                message: error.message.unwrap_or_default(),
            });
        }
        serde_json::from_str(&text).map_err(|e| unexpected(e.to_string()))
    }
}

fn unexpected(what: impl std::fmt::Display) -> GatewayError {
    GatewayError::Unavailable(format!("unexpected answer from Stripe: {what}"))
}

fn subscription(body: &Value) -> Result<Subscription, GatewayError> {
    let facts = subscription_from_value(body).map_err(unexpected)?;
    let customer = facts
        .customer
        .ok_or_else(|| unexpected(format!("subscription {} has no customer", facts.id)))?;
    Ok(Subscription {
        id: facts.id,
        customer,
        status: facts.status,
        price: facts.price,
        current_period_end: facts.current_period_end,
        cancel_at_period_end: facts.cancel_at_period_end,
    })
}

/// An amount in minor units: an integer from Stripe, or the digits of one from localstripe,
/// which echoes an amount set by an update as the form sent it.
fn minor_units<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Units {
        Number(i64),
        Digits(String),
    }
    match Units::deserialize(d)? {
        Units::Number(n) => Ok(n),
        Units::Digits(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

fn minor(amount: Money) -> Result<i64, GatewayError> {
    amount
        .minor_units()
        .filter(|m| *m > 0)
        .ok_or_else(|| GatewayError::InvalidAmount(amount.to_string()))
}

fn intent(body: IntentBody) -> PaymentIntent {
    PaymentIntent {
        id: body.id,
        client_secret: body.client_secret,
        status: body.status,
        amount_minor: body.amount,
        currency: body.currency,
    }
}

impl PaymentGateway for StripeGateway {
    async fn create_customer(
        &self,
        email: Option<&str>,
        reference: &str,
        idempotency_key: &str,
    ) -> Result<Customer, GatewayError> {
        let mut form = vec![("metadata[kassa_reference]".to_owned(), reference.to_owned())];
        if let Some(email) = email {
            form.push(("email".to_owned(), email.to_owned()));
        }
        let body: IdBody = self.post("/v1/customers", &form, idempotency_key).await?;
        Ok(Customer { id: body.id })
    }

    async fn create_payment_intent(
        &self,
        request: &IntentRequest,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, GatewayError> {
        let mut form = vec![
            ("amount".to_owned(), minor(request.amount)?.to_string()),
            (
                "currency".to_owned(),
                request.amount.currency.code().to_ascii_lowercase(),
            ),
            ("payment_method_types[]".to_owned(), "card".to_owned()),
        ];
        if let Some(customer) = &request.customer {
            form.push(("customer".to_owned(), customer.clone()));
        }
        for (k, v) in &request.metadata {
            form.push((format!("metadata[{k}]"), v.clone()));
        }
        self.post("/v1/payment_intents", &form, idempotency_key)
            .await
            .map(intent)
    }

    async fn cancel_payment_intent(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, GatewayError> {
        self.post(
            &format!("/v1/payment_intents/{id}/cancel"),
            &[],
            idempotency_key,
        )
        .await
        .map(intent)
    }

    async fn update_payment_intent_amount(
        &self,
        id: &str,
        amount: Money,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, GatewayError> {
        let form = vec![("amount".to_owned(), minor(amount)?.to_string())];
        self.post(&format!("/v1/payment_intents/{id}"), &form, idempotency_key)
            .await
            .map(intent)
    }

    /// Stripe forgets an idempotency key after 24 hours, and a redelivery or redrive later
    /// than that would refund again. So the key also travels on the refund, and a refund of
    /// the intent that carries it already is the answer: the key holds as long as the
    /// refund exists. The `Idempotency-Key` still covers two requests at once.
    async fn refund(
        &self,
        payment_intent: &str,
        amount: Option<Money>,
        idempotency_key: &str,
    ) -> Result<Refund, GatewayError> {
        if let Some(made) = self.refund_keyed(payment_intent, idempotency_key).await? {
            return Ok(made);
        }
        let mut form = vec![
            ("payment_intent".to_owned(), payment_intent.to_owned()),
            (
                format!("metadata[{REFUND_KEY}]"),
                idempotency_key.to_owned(),
            ),
        ];
        if let Some(amount) = amount {
            form.push(("amount".to_owned(), minor(amount)?.to_string()));
        }
        let body: RefundBody = self.post("/v1/refunds", &form, idempotency_key).await?;
        Ok(refund(body))
    }

    async fn payment_method_fingerprint(
        &self,
        payment_method: &str,
    ) -> Result<Option<String>, GatewayError> {
        let body: PaymentMethodBody = self
            .get(&format!("/v1/payment_methods/{payment_method}"))
            .await?;
        Ok([body.card, body.sepa_debit, body.us_bank_account]
            .into_iter()
            .flatten()
            .find_map(|m| m.fingerprint))
    }

    async fn list_refunds(&self, charge: &str) -> Result<Vec<Refund>, GatewayError> {
        let refunds = self.refunds_of("charge", charge).await?;
        Ok(refunds.into_iter().map(refund).collect())
    }

    async fn save_payment_method(
        &self,
        customer: &str,
        payment_method: &str,
        idempotency_key: &str,
    ) -> Result<(), GatewayError> {
        let attach = [("customer".to_owned(), customer.to_owned())];
        let attached: Value = match self
            .post(
                &format!("/v1/payment_methods/{payment_method}/attach"),
                &attach,
                &format!("{idempotency_key}-attach"),
            )
            .await
        {
            Ok(attached) => attached,
            // Attached to this customer by an earlier try whose answer was lost.
            Err(refused @ GatewayError::Refused { .. }) => {
                let current: Value = self
                    .get(&format!("/v1/payment_methods/{payment_method}"))
                    .await
                    .map_err(|_| refused.clone())?;
                if current["customer"].as_str() != Some(customer) {
                    return Err(refused);
                }
                current
            }
            Err(other) => return Err(other),
        };
        if attached["customer"].as_str() != Some(customer) {
            return Err(unexpected(format!(
                "{payment_method} is not attached to {customer}"
            )));
        }
        let default = [(
            "invoice_settings[default_payment_method]".to_owned(),
            payment_method.to_owned(),
        )];
        let _: IdBody = self
            .post(
                &format!("/v1/customers/{customer}"),
                &default,
                &format!("{idempotency_key}-default"),
            )
            .await?;
        Ok(())
    }

    async fn succeeded_charge(
        &self,
        customer: &str,
        key: &str,
        value: &str,
    ) -> Result<Option<PaymentIntent>, GatewayError> {
        let query = [
            ("customer", customer.to_owned()),
            ("limit", INTENT_PAGE.to_string()),
        ];
        let page: IntentList = self
            .send(
                self.http
                    .get(format!("{}/v1/payment_intents", self.base))
                    .query(&query),
            )
            .await?;
        Ok(page
            .data
            .into_iter()
            .find(|i| i.status == "succeeded" && i.metadata.get(key).is_some_and(|v| v == value))
            .map(intent))
    }

    async fn charge_saved_card(
        &self,
        charge: &SavedCardCharge,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, GatewayError> {
        let mut form = vec![
            ("amount".to_owned(), minor(charge.amount)?.to_string()),
            (
                "currency".to_owned(),
                charge.amount.currency.code().to_ascii_lowercase(),
            ),
            ("customer".to_owned(), charge.customer.clone()),
            ("payment_method".to_owned(), charge.payment_method.clone()),
            ("confirm".to_owned(), "true".to_owned()),
            ("off_session".to_owned(), "true".to_owned()),
        ];
        for (k, v) in &charge.metadata {
            form.push((format!("metadata[{k}]"), v.clone()));
        }
        let intent = self
            .post("/v1/payment_intents", &form, idempotency_key)
            .await
            .map(intent)?;
        if intent.status != "succeeded" {
            return Err(GatewayError::Refused {
                kind: "card_error".into(),
                message: format!("the payment {} is {}", intent.id, intent.status),
            });
        }
        Ok(intent)
    }

    async fn create_subscription(
        &self,
        request: &SubscriptionRequest,
        idempotency_key: &str,
    ) -> Result<Subscription, GatewayError> {
        let mut form = vec![
            ("customer".to_owned(), request.customer.clone()),
            (
                format!("items[0][{}]", self.item_price_param),
                request.price.clone(),
            ),
        ];
        if let Some(anchor) = request.billing_cycle_anchor {
            // kassa charges the days up to the anchor itself: Stripe must not prorate them
            // too.
            form.push(("billing_cycle_anchor".to_owned(), anchor.to_string()));
            form.push(("proration_behavior".to_owned(), "none".to_owned()));
        }
        for (k, v) in &request.metadata {
            form.push((format!("metadata[{k}]"), v.clone()));
        }
        let body: Value = self
            .post("/v1/subscriptions", &form, idempotency_key)
            .await?;
        subscription(&body)
    }

    async fn update_subscription(
        &self,
        id: &str,
        price: &str,
        idempotency_key: &str,
    ) -> Result<Subscription, GatewayError> {
        // Without the existing item's id Stripe would add the new price as a second item
        // instead of replacing the first. A retry reads the same item id, so it sends the
        // same parameters under the same key, as Stripe's idempotency check requires.
        // localstripe accepts `items[0][id]` but otherwise ignores it: it swaps its single
        // item for a new one whenever the plan changes.
        let current: Value = self.get(&format!("/v1/subscriptions/{id}")).await?;
        let item = current["items"]["data"][0]["id"]
            .as_str()
            .ok_or_else(|| unexpected(format!("subscription {id} has no item")))?;
        // kassa bills the rest of the period itself. localstripe knows only the legacy
        // `prorate`, which Stripe's current API versions refuse.
        let no_proration = if self.item_price_param == "plan" {
            ("prorate".to_owned(), "false".to_owned())
        } else {
            ("proration_behavior".to_owned(), "none".to_owned())
        };
        let form = [
            ("items[0][id]".to_owned(), item.to_owned()),
            (
                format!("items[0][{}]", self.item_price_param),
                price.to_owned(),
            ),
            no_proration,
            // A move off the free tier's end takes back a pending cancellation.
            ("cancel_at_period_end".to_owned(), "false".to_owned()),
        ];
        let body: Value = self
            .post(&format!("/v1/subscriptions/{id}"), &form, idempotency_key)
            .await?;
        subscription(&body)
    }

    async fn end_subscription_at_period_end(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> Result<Subscription, GatewayError> {
        let form = [("cancel_at_period_end".to_owned(), "true".to_owned())];
        let body: Value = self
            .post(&format!("/v1/subscriptions/{id}"), &form, idempotency_key)
            .await?;
        subscription(&body)
    }

    async fn cancel_subscription(
        &self,
        id: &str,
        _idempotency_key: &str,
    ) -> Result<Subscription, GatewayError> {
        let path = format!("/v1/subscriptions/{id}");
        match self.delete::<Value>(&path).await {
            Ok(body) => subscription(&body),
            // Stripe answers "No such subscription" (resource_missing) when cancelling one
            // already cancelled, though it still reads it; a retry after a lost answer must
            // see the cancellation, not an error.
            Err(refused @ GatewayError::Refused { .. }) => {
                let current: Value = self.get(&path).await.map_err(|_| refused.clone())?;
                let current = subscription(&current)?;
                if current.status == "canceled" {
                    Ok(current)
                } else {
                    Err(refused)
                }
            }
            Err(other) => Err(other),
        }
    }

    async fn create_setup_intent(
        &self,
        metadata: &BTreeMap<String, String>,
        idempotency_key: &str,
    ) -> Result<SetupIntent, GatewayError> {
        let mut form = vec![("usage".to_owned(), "off_session".to_owned())];
        for (k, v) in metadata {
            form.push((format!("metadata[{k}]"), v.clone()));
        }
        let body: Value = self
            .post("/v1/setup_intents", &form, idempotency_key)
            .await?;
        match (body["id"].as_str(), body["client_secret"].as_str()) {
            (Some(id), Some(secret)) => Ok(SetupIntent {
                id: id.to_owned(),
                client_secret: secret.to_owned(),
            }),
            _ => Err(unexpected(format!(
                "a setup intent without id or secret: {body}"
            ))),
        }
    }

    async fn pay_invoice(&self, id: &str, idempotency_key: &str) -> Result<String, GatewayError> {
        let path = format!("/v1/invoices/{id}");
        let paid = |body: &Value| -> Option<String> {
            (body["status"].as_str() == Some("paid")).then(|| {
                body["payment_intent"]
                    .as_str()
                    .or_else(|| body["payment_intent"]["id"].as_str())
                    .unwrap_or(id)
                    .to_owned()
            })
        };
        match self
            .post::<Value>(&format!("{path}/pay"), &[], idempotency_key)
            .await
        {
            Ok(body) => paid(&body).ok_or_else(|| GatewayError::Refused {
                kind: "card_error".into(),
                message: format!("the invoice {id} is {}", body["status"]),
            }),
            // "Invoice is already paid": paid by an earlier try, or by Stripe's own retry.
            Err(refused @ GatewayError::Refused { .. }) => {
                let current: Value = self.get(&path).await.map_err(|_| refused.clone())?;
                paid(&current).ok_or(refused)
            }
            Err(other) => Err(other),
        }
    }
}
