//! Invoice numbering under a burst: 100 invoices issued at once in ONE workspace's series
//! (gapless numbers, so they queue for the series' lease) against the same 100 issued in
//! 100 different series (the identical code path with nothing to wait for). The ratio is
//! what the gapless guarantee costs when everyone buys at once.

use anyhow::{ensure, Result};
use kassa_commerce::invoicing::{self, Invoicing};
use kassa_domain::identity::UserId;
use kassa_domain::invoice::Draft;
use kassa_domain::money::{Currency, Money};
use kassa_domain::order::OrderLine;
use kassa_runtime::SdkConfig;
use kassa_store::{EventStore, Metadata};
use rust_decimal::Decimal;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Lambda sandboxes issuing at once, each with its own client and in-process queue.
pub const SANDBOXES: usize = 10;

pub struct Burst {
    pub invoices: usize,
    pub elapsed: Duration,
}

impl Burst {
    pub fn per_second(&self) -> f64 {
        self.invoices as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

fn draft(workspace: Uuid) -> Draft {
    let price = Money::new(Decimal::new(1_000, 2), Currency::Usd);
    let today = time::OffsetDateTime::now_utc().date();
    let order = Uuid::now_v7();
    Draft {
        invoice_id: invoicing::invoice_id(&format!("order:{order}")),
        series: invoicing::series(Some(workspace), &UserId::new("bench")),
        user_id: UserId::new("bench"),
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

/// Issues `count` invoices at once from [`SANDBOXES`] sandboxes: all in one workspace's
/// series when `one_series`, else each in a workspace of its own. Checks the numbers.
pub async fn issue(
    aws: &SdkConfig,
    events_table: &str,
    state_table: &str,
    count: usize,
    one_series: bool,
) -> Result<Burst> {
    let sandboxes: Vec<_> = (0..SANDBOXES)
        .map(|_| {
            let store = EventStore::new(aws_sdk_dynamodb::Client::new(aws), events_table);
            Arc::new(Invoicing::new(store, state_table))
        })
        .collect();
    let shared = Uuid::now_v7();
    let started = Instant::now();
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let invoicing = sandboxes[i % SANDBOXES].clone();
            let workspace = if one_series { shared } else { Uuid::now_v7() };
            tokio::spawn(async move {
                invoicing
                    .issue(
                        draft(workspace),
                        Some(("ch_bench".into(), time::OffsetDateTime::now_utc().date())),
                        None,
                        Metadata::origin(Uuid::now_v7(), "bench"),
                        time::OffsetDateTime::now_utc(),
                    )
                    .await
                    .map(|issued| issued.invoice.number)
            })
        })
        .collect();
    let mut numbers = BTreeSet::new();
    for task in tasks {
        numbers.insert(task.await??);
    }
    let elapsed = started.elapsed();
    if one_series {
        let year = time::OffsetDateTime::now_utc().year();
        let expected: BTreeSet<String> = (1..=count).map(|n| format!("{year}-{n:06}")).collect();
        ensure!(
            numbers == expected,
            "the burst's numbers are not 1..={count} without gaps"
        );
    }
    Ok(Burst {
        invoices: count,
        elapsed,
    })
}
