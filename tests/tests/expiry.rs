//! Order expiry runs: a run that finds the order's agenda entry already taken by another
//! run has nothing left to do, and says so without failing.

mod common;

use common::{eventually, Api};
use kassa_commerce::order_book::{agenda_time, OrderBook};
use kassa_expire_orders::ExpireOrders;
use kassa_runtime::Function;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const BUYER: &str = "ada";

#[tokio::test]
async fn a_run_that_loses_the_entry_to_another_run_counts_it_settled_not_failed() {
    let api = Api::start().await;
    let (ws, _) = api.workspace(BUYER, "pro").await;
    let created = api
        .post(
            format!("/workspaces/{ws}/credits/purchases"),
            BUYER,
            json!({ "pack": "starter" }),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let order = created.body["order_id"].as_str().unwrap().to_owned();
    let intent = eventually("the payment intent", || async {
        let o = api.get(format!("/orders/{order}"), BUYER).await;
        o.body["payment_intent_id"].as_str().map(str::to_owned)
    })
    .await;
    // Paid at Stripe just before the window closed; the webhook has not arrived yet, so
    // Stripe refuses to cancel the intent and expiry leaves the order to the payment.
    let paid = common::pay_at_localstripe(&intent).await;
    assert_eq!(paid["status"], "succeeded", "{paid}");
    api.stack.clock.advance(Duration::from_secs(31 * 60));

    let config = &api.stack.configs["ExpireOrdersFunction"];
    let aws = kassa_runtime::config::aws().await;
    let book = OrderBook::new(aws_sdk_dynamodb::Client::new(&aws), &config.state_table);
    let due = book
        .expiry()
        .due_by(&agenda_time(kassa_commerce::Clock::now(&api.stack.clock)))
        .await
        .unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    let expiry =
        ExpireOrders::from_config(config, &aws, Arc::new(api.stack.clock.clone())).unwrap();

    // Two runs read the same due entry; the first takes it.
    let first = expiry.run(due.clone()).await.unwrap();
    assert_eq!(
        (first.done, first.settled, first.failed),
        (0, 1, 0),
        "{first:?}"
    );
    let second = expiry
        .run(due)
        .await
        .expect("losing the entry to another run is not a failure");
    assert_eq!(second.failed, 0, "{second:?}");
    assert_eq!(second.settled, 1, "{second:?}");
}
