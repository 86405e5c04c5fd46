//! A waiter for a lease reads the clock on every try, so the lease of a holder that died
//! is taken over as soon as it expires.

mod common;

use kassa_commerce::invoicing::{self, Invoicing};
use kassa_domain::identity::UserId;
use kassa_domain::invoice::Draft;
use kassa_domain::money::{Currency, Money};
use kassa_domain::order::OrderLine;
use kassa_store::{EventStore, Metadata, Sequences};
use rust_decimal::Decimal;
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

fn draft(workspace: Uuid, today: time::Date) -> Draft {
    let price = Money::new(Decimal::new(1_000, 2), Currency::Usd);
    let order = Uuid::now_v7();
    Draft {
        invoice_id: invoicing::invoice_id(&format!("order:{order}")),
        series: invoicing::series(Some(workspace), &UserId::new("ada")),
        user_id: UserId::new("ada"),
        workspace_id: Some(workspace),
        order_id: Some(order),
        provider_invoice_id: None,
        lines: vec![OrderLine {
            description: "1000 credits (starter pack)".into(),
            quantity: 1,
            unit_price: price,
            amount: price,
        }],
        tax_rate: Some(Decimal::ZERO),
        tax: Money::zero(Currency::Usd),
        issued_on: today,
        due_date: today,
    }
}

#[tokio::test]
async fn an_invoice_waits_out_a_dead_holders_lease_and_is_issued() {
    let (events, state) = common::tables().await;
    let client = common::dynamodb().await;
    let now = OffsetDateTime::now_utc();
    let workspace = Uuid::now_v7();
    let draft = draft(workspace, now.date());

    // A holder took the series' lease and died; the lease runs out two seconds from now.
    let series = format!("{}#{}", draft.series, draft.issued_on.year());
    let sequences = Sequences::new(client.clone(), events.clone());
    assert!(sequences
        .lease(
            &series,
            "dead-holder",
            now - time::Duration::seconds(8),
            Duration::from_secs(10)
        )
        .await
        .unwrap());

    let invoicing = Invoicing::new(EventStore::new(client, events), state);
    let issued = tokio::time::timeout(
        Duration::from_secs(20),
        invoicing.issue(
            draft,
            Some(("ch_1".into(), now.date())),
            None,
            Metadata::origin(Uuid::now_v7(), "test"),
            now,
        ),
    )
    .await
    .expect("issued soon after the dead holder's lease ran out, not after the whole patience")
    .unwrap();
    assert!(
        issued.invoice.number.ends_with("000001"),
        "{}",
        issued.invoice.number
    );
}
