//! Invoice numbers against DynamoDB Local: a burst of invoices in one workspace gets
//! distinct numbers with no gaps, and issuing the same invoice twice issues it once.

mod common;

use kassa_commerce::invoicing::{self, Invoicing};
use kassa_domain::identity::UserId;
use kassa_domain::invoice::Draft;
use kassa_domain::money::{Currency, Money};
use kassa_domain::order::OrderLine;
use kassa_store::{EventStore, Metadata};
use rust_decimal::Decimal;
use std::collections::BTreeSet;
use std::sync::Arc;
use time::macros::date;
use uuid::Uuid;

fn draft(workspace: Uuid, order: Uuid) -> Draft {
    let price = Money::new(Decimal::new(1_000, 2), Currency::Usd);
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
        issued_on: date!(2026 - 11 - 22),
        due_date: date!(2026 - 11 - 22),
    }
}

/// Lambda sandboxes issuing at once, each with its own client and in-process state.
const SANDBOXES: usize = 10;

#[tokio::test]
async fn a_hundred_concurrent_purchases_get_a_hundred_gapless_numbers() {
    let (events, state) = common::tables().await;
    let mut sandboxes = Vec::new();
    for _ in 0..SANDBOXES {
        let store = EventStore::new(common::dynamodb().await, events.clone());
        sandboxes.push(Arc::new(Invoicing::new(store, state.clone())));
    }
    let invoicing = sandboxes[0].clone();
    let workspace = Uuid::now_v7();
    let orders: Vec<Uuid> = (0..100).map(|_| Uuid::now_v7()).collect();
    let tasks: Vec<_> = orders
        .iter()
        .enumerate()
        .map(|(i, order)| {
            let (invoicing, draft) = (sandboxes[i % SANDBOXES].clone(), draft(workspace, *order));
            tokio::spawn(async move {
                invoicing
                    .issue(
                        draft,
                        Some(("ch_1".into(), date!(2026 - 11 - 22))),
                        None,
                        Metadata::origin(Uuid::now_v7(), "test"),
                        time::OffsetDateTime::now_utc(),
                    )
                    .await
                    .map(|issued| issued.invoice.number)
            })
        })
        .collect();
    let started = std::time::Instant::now();
    let mut numbers = BTreeSet::new();
    for task in tasks {
        let number = task.await.unwrap().expect("every purchase is invoiced");
        assert!(numbers.insert(number.clone()), "{number} was issued twice");
    }
    println!("100 concurrent issues took {:?}", started.elapsed());
    let expected: BTreeSet<String> = (1..=100).map(|n| format!("2026-{n:06}")).collect();
    assert_eq!(numbers, expected, "no gaps, no duplicates");

    // Issuing an order's invoice again returns the same invoice and takes no number.
    let again = invoicing
        .issue(
            draft(workspace, orders[0]),
            None,
            None,
            Metadata::origin(Uuid::now_v7(), "test"),
            time::OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    assert!(again.recorded.is_empty());
    let series = invoicing::series(Some(workspace), &UserId::new("ada"));
    assert_eq!(invoicing.list(&series, 100).await.unwrap().len(), 100);
    let next = invoicing
        .issue(
            draft(workspace, Uuid::now_v7()),
            None,
            None,
            Metadata::origin(Uuid::now_v7(), "test"),
            time::OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    assert_eq!(next.invoice.number, "2026-000101");
}
