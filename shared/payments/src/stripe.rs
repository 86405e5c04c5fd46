//! The Stripe adapter: Stripe's REST API, form-encoded, with an `Idempotency-Key` on every
//! POST. Base URL and secret key come from configuration (locally, localstripe).

use crate::gateway::{
    Customer, GatewayError, IntentRequest, PaymentGateway, PaymentIntent, Refund,
};
use kassa_domain::money::Money;
use serde::Deserialize;

#[derive(Clone)]
pub struct StripeGateway {
    http: reqwest::Client,
    base: String,
    secret_key: String,
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
    amount: i64,
    currency: String,
}

#[derive(Deserialize)]
struct IdBody {
    id: String,
}

#[derive(Deserialize)]
struct RefundBody {
    id: String,
    status: String,
    amount: i64,
}

impl StripeGateway {
    pub fn new(base: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.into().trim_end_matches('/').to_owned(),
            secret_key: secret_key.into(),
        }
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
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .basic_auth(&self.secret_key, Some(""))
            .header("Idempotency-Key", idempotency_key)
            .form(form)
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
        serde_json::from_str(&text)
            .map_err(|e| GatewayError::Unavailable(format!("unexpected answer from Stripe: {e}")))
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

    async fn refund(
        &self,
        payment_intent: &str,
        amount: Option<Money>,
        idempotency_key: &str,
    ) -> Result<Refund, GatewayError> {
        let mut form = vec![("payment_intent".to_owned(), payment_intent.to_owned())];
        if let Some(amount) = amount {
            form.push(("amount".to_owned(), minor(amount)?.to_string()));
        }
        let body: RefundBody = self.post("/v1/refunds", &form, idempotency_key).await?;
        Ok(Refund {
            id: body.id,
            status: body.status,
            amount_minor: body.amount,
        })
    }
}
