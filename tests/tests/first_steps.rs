//! What a new user meets first, tried as they would: the README's walkthrough answers as
//! shown, a workspace without invoices lists none, amounts read with the currency's minor
//! digits everywhere, and a stranger cannot tell someone else's workspace from none.

mod common;

use common::{eventually, Api};
use serde_json::{json, Value};

const README: &str = include_str!("../../README.md");

/// The answer the README shows under the first line containing `command`: the comment
/// lines that follow it, `#` and any `← note` removed, continuation lines joined.
fn shown_after(command: &str) -> String {
    let mut lines = README.lines().skip_while(|l| !l.contains(command));
    assert!(lines.next().is_some(), "the README shows `{command}`");
    let mut shown = String::new();
    for line in lines
        .skip_while(|l| !l.trim_start().starts_with("# {"))
        .take_while(|l| l.trim_start().starts_with('#'))
    {
        let text = line.trim_start().trim_start_matches('#').trim();
        let text = text.split('←').next().unwrap_or_default().trim();
        // A line starting a new object is the next answer's.
        if !shown.is_empty() && text.starts_with('{') {
            break;
        }
        shown.push_str(text);
    }
    shown
}

/// Every field the README shows equals the answer's; `"…"` stands for any value, and a
/// leading `{…,` for fields not shown.
fn assert_shown(command: &str, answer: &Value) {
    let shown = shown_after(command).replacen("{…,", "{", 1);
    let shown: Value =
        serde_json::from_str(&shown).unwrap_or_else(|e| panic!("`{shown}` is JSON: {e}"));
    for (field, value) in shown.as_object().expect("an object") {
        if value != "…" {
            assert_eq!(
                &answer[field], value,
                "README after `{command}`: field `{field}` of {answer}"
            );
        }
    }
}

#[tokio::test]
async fn the_walkthrough_answers_what_the_readme_shows() {
    let api = Api::start().await;
    let (ws, _) = api.workspace("alice", "free").await;
    let balance = api
        .get(format!("/workspaces/{ws}/credits/balance"), "alice")
        .await;
    assert_shown("credits/balance -H", &balance.body);

    let consume = |feature: &'static str, quantity: u64| {
        api.post(
            format!("/workspaces/{ws}/credits/consume"),
            "alice",
            json!({ "feature": feature, "quantity": quantity }),
        )
    };
    let first = consume("ai.generate", 100).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_shown(r#"{"feature":"ai.generate","quantity":100}"#, &first.body);
    let second = consume("api.call", 1).await;
    assert_shown(r#"{"feature":"api.call","quantity":1}"#, &second.body);
    let refused = consume("ai.generate", 1000).await;
    assert_eq!(refused.status, 402, "{:?}", refused.body);
    assert_shown(
        r#"{"feature":"ai.generate","quantity":1000}"#,
        &refused.body,
    );
}

#[tokio::test]
async fn a_workspace_without_invoices_lists_none() {
    let api = Api::start().await;
    let (ws, _) = api.workspace("alice", "pro").await;
    let listed = api.get(format!("/workspaces/{ws}/invoices"), "alice").await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    assert_eq!(listed.body, json!({ "invoices": [] }));
}

#[tokio::test]
async fn loading_no_heads_reads_nothing() {
    let store = common::event_store().await;
    let heads = store.load_many(&[]).await.unwrap();
    assert!(heads.is_empty());
    assert_eq!(store.items_read(), 0);
}

#[tokio::test]
async fn amounts_read_with_the_currencys_minor_digits_in_orders_invoices_and_receipts() {
    let api = Api::start().await;
    api.stack.register_stripe_webhook().await.unwrap();
    let (ws, _) = api.workspace("alice", "pro").await;
    let created = api
        .post(
            format!("/workspaces/{ws}/credits/purchases"),
            "alice",
            json!({ "pack": "starter" }),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let amounts = |o: &Value| {
        ["subtotal", "tax", "total", "refunded"]
            .map(|field| o[field]["amount"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(amounts(&created.body), ["10.00", "0.00", "10.00", "0.00"]);
    // The README's walkthrough shows these amounts as the route answers them.
    let fragment = format!(
        r#""subtotal":{},"tax":{},"total":{}"#,
        created.body["subtotal"], created.body["tax"], created.body["total"]
    );
    assert!(README.contains(&fragment), "the README shows {fragment}");

    let order = created.body["order_id"].as_str().unwrap().to_owned();
    let pending = eventually("the payment intent", || async {
        let o = api.get(format!("/orders/{order}"), "alice").await.body;
        o["payment_intent_id"].as_str().map(str::to_owned)
    })
    .await;
    common::pay_at_localstripe(&pending).await;
    let invoice = eventually("the invoice", || async {
        let list = api.get(format!("/workspaces/{ws}/invoices"), "alice").await;
        list.body["invoices"].get(0).cloned()
    })
    .await;
    for field in ["subtotal", "tax", "total"] {
        let amount = &invoice[field]["amount"];
        assert!(
            amount == "10.00" || amount == "0.00",
            "invoice {field}: {invoice}"
        );
    }
    assert_eq!(invoice["tax"]["amount"], "0.00", "{invoice}");
    let receipt = eventually("the receipt", || async {
        kassa_runtime::mail::MailSink::new(&api.mail_dir)
            .read_all()
            .unwrap()
            .into_iter()
            .find(|m| m.subject.contains("receipt"))
    })
    .await;
    assert!(receipt.body.contains("Tax 0.00 USD"), "{}", receipt.body);
    assert!(receipt.body.contains("Total 10.00 USD"), "{}", receipt.body);
}

#[tokio::test]
async fn a_stranger_cannot_tell_someone_elses_workspace_from_none() {
    let api = Api::start().await;
    let (ws, _) = api.workspace("alice", "pro").await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let routes = |id: &str| -> Vec<(&'static str, String, Option<String>)> {
        vec![
            ("GET", format!("/workspaces/{id}"), None),
            (
                "POST",
                format!("/workspaces/{id}/collaborators"),
                Some(r#"{"user_id":"mallory"}"#.into()),
            ),
            (
                "DELETE",
                format!("/workspaces/{id}/collaborators/alice"),
                None,
            ),
            (
                "POST",
                format!("/workspaces/{id}/credits/consume"),
                Some(r#"{"feature":"api.call","quantity":1}"#.into()),
            ),
            ("GET", format!("/workspaces/{id}/credits/balance"), None),
            (
                "GET",
                format!("/workspaces/{id}/credits/transactions"),
                None,
            ),
            ("GET", format!("/workspaces/{id}/usage"), None),
            ("GET", format!("/workspaces/{id}/notifications"), None),
            (
                "POST",
                format!("/workspaces/{id}/credits/purchases"),
                Some(r#"{"pack":"starter"}"#.into()),
            ),
            ("GET", format!("/workspaces/{id}/invoices"), None),
        ]
    };
    for ((method, path, body), (_, none, _)) in routes(&ws).into_iter().zip(routes(&unknown)) {
        let theirs = api
            .call(method, &path, Some("mallory"), body.as_deref())
            .await;
        let missing = api
            .call(method, &none, Some("mallory"), body.as_deref())
            .await;
        assert_eq!(theirs.status, 404, "{method} {path}: {:?}", theirs.body);
        assert_eq!(
            theirs.body["code"], "workspace_not_found",
            "{method} {path}"
        );
        assert_eq!(
            theirs.content_type, "application/problem+json",
            "{method} {path}"
        );
        assert_eq!(
            (theirs.status, &theirs.body["code"]),
            (missing.status, &missing.body["code"]),
            "{method} {path}: a stranger's answer is that of a workspace that does not exist"
        );
    }
    // Nothing the stranger tried was written.
    let balance = api
        .get(format!("/workspaces/{ws}/credits/balance"), "alice")
        .await;
    assert_eq!(balance.body["version"], 2, "{:?}", balance.body);
    let workspace = api.get(format!("/workspaces/{ws}"), "alice").await;
    assert_eq!(workspace.body["collaborators"], json!([]));
}

#[tokio::test]
async fn crafted_query_and_header_values_are_answered_with_a_4xx() {
    let api = Api::start().await;
    let (ws, _) = api.workspace("alice", "pro").await;
    for (path, code) in [
        (
            format!("/workspaces/{ws}/usage?to=-9999-01-01"),
            "invalid_range",
        ),
        (
            format!("/workspaces/{ws}/usage?from=+10000-01-01"),
            "invalid_date",
        ),
        (
            format!("/workspaces/{ws}/credits/transactions?after=-1"),
            "invalid_cursor",
        ),
        (
            format!("/workspaces/{ws}/credits/transactions?limit=99999999999"),
            "invalid_limit",
        ),
        (
            format!("/workspaces/{ws}/notifications?limit=%00"),
            "invalid_limit",
        ),
    ] {
        let answer = api.get(&path, "alice").await;
        assert_eq!(answer.status, 400, "{path}: {:?}", answer.body);
        assert_eq!(answer.content_type, "application/problem+json", "{path}");
        assert_eq!(answer.body["code"], code, "{path}");
    }
    for t in [i64::MIN, i64::MAX] {
        let answer = api
            .http
            .post(format!("{}/stripe/webhook", api.stack.url))
            .header("content-type", "application/json")
            .header("stripe-signature", format!("t={t},v1={}", "00".repeat(32)))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400, "t={t}");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["code"], "invalid_signature", "t={t}");
    }
}

/// The walkthrough says how many event types the catalog route lists.
#[test]
fn the_readme_counts_the_catalogs_event_types() {
    let count = kassa_domain::catalog::declared_types().len();
    let shown = format!("# {count} event types with their schemas");
    assert!(README.contains(&shown), "the README shows `{shown}`");
}
