//! The Stripe adapter against localstripe, a stateful fake of Stripe's API.

mod common;

use kassa_domain::money::{Currency, Money};
use kassa_payments::gateway::{
    GatewayError, IntentRequest, PaymentGateway, PaymentIntent, SubscriptionRequest,
};
use kassa_payments::stripe::StripeGateway;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::str::FromStr;

fn gateway() -> StripeGateway {
    StripeGateway::from_env()
        .expect("KASSA_STRIPE_* (run through cargo xtask test)")
        // localstripe has plans but no prices.
        .with_legacy_plan_items()
}

fn usd(amount: &str) -> Money {
    Money::new(Decimal::from_str(amount).unwrap(), Currency::Usd)
}

/// An intent of `amount` USD, not paid yet.
async fn unpaid_intent(stripe: &StripeGateway, amount: &str) -> PaymentIntent {
    let request = IntentRequest {
        amount: usd(amount),
        customer: None,
        metadata: BTreeMap::new(),
    };
    stripe
        .create_payment_intent(&request, &key())
        .await
        .unwrap()
}

/// An intent of `amount` USD, paid at localstripe; localstripe's answer to the payment.
async fn paid_intent(stripe: &StripeGateway, amount: &str) -> (PaymentIntent, Value) {
    let intent = unpaid_intent(stripe, amount).await;
    let paid = common::pay_at_localstripe(&intent.id).await;
    assert_eq!(paid["status"], "succeeded", "{paid}");
    (intent, paid)
}

fn key() -> String {
    uuid::Uuid::now_v7().to_string()
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

    assert_eq!(
        common::pay_at_localstripe(&intent.id).await["status"],
        "succeeded"
    );
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
    let intent = unpaid_intent(&stripe, "0.99").await;
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

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// Nothing here checks that a create retried under the same idempotency key answers the
// same subscription: localstripe ignores `Idempotency-Key` and creates anew on every POST.
#[tokio::test]
async fn a_subscription_is_created_moved_to_another_plan_and_cancelled() {
    let stripe = gateway();
    let [basic, pro] = common::monthly_plans(["1900", "4900"]).await;
    let customer = common::customer_with_card(&stripe).await;

    let request = SubscriptionRequest {
        customer: customer.clone(),
        price: basic.clone(),
        metadata: BTreeMap::from([("workspace_id".to_owned(), "ws-1".to_owned())]),
        billing_cycle_anchor: None,
    };
    let created = stripe.create_subscription(&request, &key()).await.unwrap();
    assert!(created.id.starts_with("sub_"), "{created:?}");
    assert_eq!(created.customer, customer);
    assert_eq!(created.status, "active");
    assert_eq!(created.price.as_deref(), Some(basic.as_str()));
    assert!(
        created.current_period_end.is_some_and(|end| end > now()),
        "{created:?}"
    );
    assert!(!created.cancel_at_period_end);

    let moved = stripe
        .update_subscription(&created.id, &pro, &key())
        .await
        .unwrap();
    assert_eq!(moved.id, created.id);
    assert_eq!(moved.customer, customer);
    assert_eq!(moved.status, "active");
    assert_eq!(moved.price.as_deref(), Some(pro.as_str()));
    assert_eq!(moved.current_period_end, created.current_period_end);

    let cancelled = stripe
        .cancel_subscription(&created.id, &key())
        .await
        .unwrap();
    assert_eq!(cancelled.id, created.id);
    assert_eq!(cancelled.status, "canceled");
    assert_eq!(cancelled.price.as_deref(), Some(pro.as_str()));

    // A retried cancellation (its answer lost) still sees the subscription cancelled.
    let again = stripe
        .cancel_subscription(&created.id, &key())
        .await
        .unwrap();
    assert_eq!(again.status, "canceled");
}

#[tokio::test]
async fn a_subscription_to_an_unknown_price_is_refused() {
    let stripe = gateway();
    let customer = common::customer_with_card(&stripe).await;
    let request = SubscriptionRequest {
        customer,
        price: "plan_does_not_exist".to_owned(),
        metadata: BTreeMap::new(),
        billing_cycle_anchor: None,
    };
    let result = stripe.create_subscription(&request, &key()).await;
    assert!(
        matches!(result, Err(GatewayError::Refused { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_unknown_subscription_can_be_neither_moved_nor_cancelled() {
    let stripe = gateway();
    let [plan, _] = common::monthly_plans(["500", "600"]).await;
    let moved = stripe
        .update_subscription("sub_does_not_exist", &plan, &key())
        .await;
    assert!(
        matches!(moved, Err(GatewayError::Refused { .. })),
        "{moved:?}"
    );
    let cancelled = stripe
        .cancel_subscription("sub_does_not_exist", &key())
        .await;
    assert!(
        matches!(cancelled, Err(GatewayError::Refused { .. })),
        "{cancelled:?}"
    );
}

#[tokio::test]
async fn a_stripe_that_never_answers_is_given_up_on_well_inside_the_function_timeout() {
    // Takes connections and never answers, as a hung Stripe or a black-holed network would.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let stripe = StripeGateway::new(format!("http://{address}"), "sk_test_hung");
    let request = IntentRequest {
        amount: usd("10.00"),
        customer: None,
        metadata: BTreeMap::new(),
    };
    let started = std::time::Instant::now();
    // The functions' timeout is 10 s (template.yaml Globals): the call must end well before.
    let result = tokio::time::timeout(
        std::time::Duration::from_secs(9),
        stripe.create_payment_intent(&request, &key()),
    )
    .await
    .expect("the call gives up by itself before the function's 10 s");
    assert!(
        matches!(result, Err(GatewayError::Unavailable(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    holder.abort();
}

#[tokio::test]
async fn the_refunds_of_a_charge_are_listed_under_their_own_ids() {
    let stripe = gateway();
    let (intent, paid) = paid_intent(&stripe, "20.00").await;
    let charge = paid["latest_charge"]["id"]
        .as_str()
        .or_else(|| paid["latest_charge"].as_str())
        .unwrap()
        .to_owned();
    assert!(stripe.list_refunds(&charge).await.unwrap().is_empty());

    let first = stripe
        .refund(&intent.id, Some(usd("5.00")), &key())
        .await
        .unwrap();
    let second = stripe
        .refund(&intent.id, Some(usd("2.50")), &key())
        .await
        .unwrap();
    let mut listed = stripe.list_refunds(&charge).await.unwrap();
    listed.sort_by_key(|r| r.amount_minor);
    let seen: Vec<_> = listed
        .iter()
        .map(|r| (r.id.as_str(), r.amount_minor, r.currency.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (second.id.as_str(), 250, "usd"),
            (first.id.as_str(), 500, "usd")
        ]
    );

    let unknown = stripe.list_refunds("ch_does_not_exist").await;
    assert!(
        matches!(unknown, Err(GatewayError::Refused { .. })),
        "{unknown:?}"
    );
}

/// Stripe forgets an idempotency key after a day, and localstripe keeps none at all: it
/// stands for Stripe a day later. A refund asked again under its key (a late redrive) is
/// the refund made, found by the key it carries, not a second one.
#[tokio::test]
async fn a_refund_asked_again_under_its_key_is_the_one_made_after_stripe_forgot_the_key() {
    let stripe = gateway();
    let (intent, _) = paid_intent(&stripe, "10.00").await;
    let late = key();
    let first = stripe
        .refund(&intent.id, Some(usd("3.00")), &late)
        .await
        .unwrap();
    let again = stripe
        .refund(&intent.id, Some(usd("3.00")), &late)
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    let other = stripe
        .refund(&intent.id, Some(usd("3.00")), &key())
        .await
        .unwrap();
    assert_ne!(other.id, first.id);
    let listed = common::stripe_get(&format!("/v1/refunds?payment_intent={}", intent.id)).await;
    let amounts: Vec<&Value> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["amount"])
        .collect();
    assert_eq!(amounts, [&json!(300), &json!(300)], "{listed}");
}
