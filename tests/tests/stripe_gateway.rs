//! The Stripe adapter against localstripe, a stateful fake of Stripe's API.

use kassa_domain::money::{Currency, Money};
use kassa_payments::gateway::{GatewayError, IntentRequest, PaymentGateway};
use kassa_payments::stripe::StripeGateway;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::str::FromStr;

fn gateway() -> StripeGateway {
    StripeGateway::from_env().expect("KASSA_STRIPE_* (run through cargo xtask test)")
}

fn usd(amount: &str) -> Money {
    Money::new(Decimal::from_str(amount).unwrap(), Currency::Usd)
}

fn key() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// What the paying browser does with the client secret: attach a card and confirm.
async fn pay_with_test_card(intent: &str) -> String {
    let base = std::env::var("KASSA_STRIPE_API_BASE").unwrap();
    let secret = std::env::var("KASSA_STRIPE_SECRET_KEY").unwrap();
    let http = reqwest::Client::new();
    let pm: serde_json::Value = http
        .post(format!("{base}/v1/payment_methods"))
        .basic_auth(&secret, Some(""))
        .form(&[
            ("type", "card"),
            ("card[number]", "4242424242424242"),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2030"),
            ("card[cvc]", "123"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // localstripe confirms an intent that already holds its payment method.
    http.post(format!("{base}/v1/payment_intents/{intent}"))
        .basic_auth(&secret, Some(""))
        .form(&[("payment_method", pm["id"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    let confirmed: serde_json::Value = http
        .post(format!("{base}/v1/payment_intents/{intent}/confirm"))
        .basic_auth(&secret, Some(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    confirmed["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_payment_is_created_in_minor_units_paid_and_partly_refunded() {
    let stripe = gateway();
    let customer = stripe
        .create_customer(Some("ops@acme.test"), "workspace-1", &key())
        .await
        .unwrap();
    assert!(customer.id.starts_with("cus_"), "{customer:?}");

    let request = IntentRequest {
        amount: usd("12.34"),
        customer: Some(customer.id),
        metadata: BTreeMap::from([("order_id".to_owned(), "order-1".to_owned())]),
    };
    let intent = stripe
        .create_payment_intent(&request, &key())
        .await
        .unwrap();
    assert_eq!(intent.amount_minor, 1234);
    assert_eq!(intent.currency, "usd");
    assert!(intent
        .client_secret
        .as_deref()
        .is_some_and(|s| s.starts_with(&intent.id)));

    // Not paid yet: nothing to refund.
    let early = stripe.refund(&intent.id, None, &key()).await;
    assert!(
        matches!(early, Err(GatewayError::Refused { .. })),
        "{early:?}"
    );

    assert_eq!(pay_with_test_card(&intent.id).await, "succeeded");
    let refund = stripe
        .refund(&intent.id, Some(usd("5.00")), &key())
        .await
        .unwrap();
    assert_eq!(refund.amount_minor, 500);
    assert_eq!(refund.status, "succeeded");
}

#[tokio::test]
async fn an_unpaid_intent_can_be_cancelled() {
    let stripe = gateway();
    let request = IntentRequest {
        amount: usd("0.99"),
        customer: None,
        metadata: BTreeMap::new(),
    };
    let intent = stripe
        .create_payment_intent(&request, &key())
        .await
        .unwrap();
    let cancelled = stripe
        .cancel_payment_intent(&intent.id, &key())
        .await
        .unwrap();
    assert_eq!(cancelled.status, "canceled");
}

#[tokio::test]
async fn amounts_without_a_chargeable_minor_unit_never_reach_stripe() {
    let stripe = gateway();
    for amount in ["0", "-1.00", "0.004"] {
        let request = IntentRequest {
            amount: usd(amount),
            customer: None,
            metadata: BTreeMap::new(),
        };
        let result = stripe.create_payment_intent(&request, &key()).await;
        assert!(
            matches!(result, Err(GatewayError::InvalidAmount(_))),
            "{amount}: {result:?}"
        );
    }
}
