//! The credits history lists every movement of credits: allocations, consumptions,
//! purchases and clawbacks.

mod common;

use common::Api;
use kassa_domain::credits::CreditCommand;
use kassa_store::{EventStore, Metadata};
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn purchases_and_clawbacks_appear_in_the_transactions_history() {
    let api = Api::start().await;
    let (ws, signup) = api.workspace("alice", "free").await;
    assert_eq!(signup, 1_100);
    let workspace = Uuid::parse_str(&ws).unwrap();
    let order = Uuid::now_v7();

    // What credit-purchases commits for a paid order and then for its partial refund.
    let store = EventStore::new(common::dynamodb().await, api.stack.table("EventsTable"));
    for command in [
        CreditCommand::Purchase {
            order_id: order,
            pack: "starter".into(),
            credits: 1_000,
        },
        CreditCommand::ClawBack {
            order_id: order,
            refund_id: "re_half".into(),
            credits: 500,
        },
    ] {
        kassa_commerce::wallet::allocate(
            &store,
            std::sync::Arc::new(api.stack.clock.clone()),
            workspace,
            command,
            Metadata::origin(Uuid::now_v7(), "system:credit-purchases"),
            |_| Ok(()),
        )
        .await
        .unwrap();
    }
    let consumed = api
        .post(
            format!("/workspaces/{ws}/credits/consume"),
            "alice",
            json!({ "feature": "api.call", "quantity": 1 }),
        )
        .await;
    assert_eq!(consumed.status, 200, "{:?}", consumed.body);

    // Debits reach the history through the relay, a moment after the answer.
    let history = common::eventually("the consumption in the history", || async {
        let history = api
            .get(format!("/workspaces/{ws}/credits/transactions"), "alice")
            .await;
        assert_eq!(history.status, 200, "{:?}", history.body);
        (history.body["items"].as_array().map_or(0, Vec::len) == 4).then_some(history)
    })
    .await;
    let items = history.body["items"].as_array().unwrap();
    let movements: Vec<_> = items
        .iter()
        .map(|i| {
            (
                i["kind"].clone(),
                i["credits"].clone(),
                i["balance_after"].clone(),
            )
        })
        .collect();
    assert_eq!(
        movements,
        vec![
            (json!("allocation"), json!(1_100), json!(1_100)),
            (json!("purchase"), json!(1_000), json!(2_100)),
            (json!("clawback"), json!(-500), json!(1_600)),
            (json!("consumption"), json!(-1), json!(1_599)),
        ],
        "{items:#?}"
    );
    assert_eq!(items[1]["order_id"], json!(order), "{:#?}", items[1]);
    assert_eq!(items[1]["pack"], "starter");
    assert_eq!(items[2]["order_id"], json!(order), "{:#?}", items[2]);
    assert_eq!(items[2]["refund_id"], "re_half");
    assert_eq!(items[2]["shortfall"], 0);
}
