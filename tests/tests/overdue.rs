//! Overdue invoices: the notice is part of the outcome. A run whose mail fails leaves the
//! invoice on the agenda, the next run mails it, and a notice sent is never sent again.

mod common;

use common::{eventually, Api};
use kassa_commerce::invoicing::{self, Invoicing, OVERDUE_AGENDA};
use kassa_commerce::Clock;
use kassa_domain::identity::UserId;
use kassa_domain::invoice::Draft;
use kassa_domain::money::{Currency, Money};
use kassa_domain::order::OrderLine;
use kassa_runtime::mail::MailSink;
use kassa_store::{Agenda, EventStore, Metadata};
use rust_decimal::Decimal;
use std::time::Duration;
use uuid::Uuid;

/// Issues an open invoice of the workspace, due in two days, on the overdue agenda.
async fn open_invoice(api: &Api, workspace: Uuid) -> Uuid {
    let client = common::dynamodb().await;
    let state = api.stack.table("StateTable").to_owned();
    let invoicing = Invoicing::new(
        EventStore::new(client.clone(), api.stack.table("EventsTable")),
        &state,
    );
    let agenda = Agenda::new(client, &state, OVERDUE_AGENDA);
    let now = api.stack.clock.now();
    let price = Money::new(Decimal::new(2_900, 2), Currency::Usd);
    let draft = Draft {
        invoice_id: invoicing::invoice_id(&format!("test:{}", Uuid::now_v7())),
        series: invoicing::series(Some(workspace), &UserId::new("ada")),
        user_id: UserId::new("ada"),
        workspace_id: Some(workspace),
        order_id: None,
        provider_invoice_id: None,
        lines: vec![OrderLine {
            description: "Pro plan".into(),
            quantity: 1,
            unit_price: price,
            amount: price,
        }],
        tax_rate: Some(Decimal::ZERO),
        tax: Money::zero(Currency::Usd),
        issued_on: now.date(),
        due_date: now.date() + time::Duration::days(2),
    };
    let issued = invoicing
        .issue(
            draft,
            None,
            Some(&agenda),
            Metadata::origin(Uuid::now_v7(), "test"),
            now,
        )
        .await
        .unwrap();
    issued.invoice.invoice_id
}

fn overdue_mails(api: &Api) -> Vec<kassa_runtime::mail::Mail> {
    MailSink::new(&api.mail_dir)
        .read_all()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.id.starts_with("invoice-overdue-"))
        .collect()
}

#[tokio::test]
async fn a_notice_whose_mail_failed_is_mailed_by_the_next_run_and_only_once() {
    let api = Api::start().await;
    let (ws, _) = api.workspace("ada", "pro").await;
    let invoice = open_invoice(&api, Uuid::parse_str(&ws).unwrap()).await;
    api.stack.clock.advance(Duration::from_secs(5 * 86_400));

    // The mail sink cannot write: a file stands where its directory should be (which
    // the workspace's welcome mail made first).
    eventually("the welcome mail", || async {
        MailSink::new(&api.mail_dir)
            .read_all()
            .unwrap_or_default()
            .into_iter()
            .find(|m| m.id == format!("welcome-{ws}"))
    })
    .await;
    std::fs::remove_dir_all(&api.mail_dir).unwrap();
    std::fs::write(&api.mail_dir, "not a directory").unwrap();
    let failed = api.stack.fire("OverdueInvoicesFunction").await;
    assert!(
        failed.is_err(),
        "a run whose notice failed fails: {failed:?}"
    );

    // The sink works again: the next run sends the notice it owes.
    std::fs::remove_file(&api.mail_dir).unwrap();
    let run = api.stack.fire("OverdueInvoicesFunction").await.unwrap();
    assert_eq!(run["failed"], 0, "{run}");
    let mails = overdue_mails(&api);
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].id, format!("invoice-overdue-{invoice}"));
    assert_eq!(mails[0].to, "ops@acme.test");
    let notes = api
        .get(format!("/workspaces/{ws}/notifications"), "ada")
        .await;
    let kinds: Vec<_> = notes.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].clone())
        .collect();
    assert_eq!(
        kinds,
        vec![
            serde_json::json!("invoice.overdue"),
            serde_json::json!("workspace.welcome")
        ],
        "one overdue notice, newest first"
    );

    // Sent is done: later runs have nothing to mail.
    std::fs::remove_file(api.mail_dir.join(format!("invoice-overdue-{invoice}.json"))).unwrap();
    for _ in 0..2 {
        let run = api.stack.fire("OverdueInvoicesFunction").await.unwrap();
        assert_eq!(run["due"], 0, "{run}");
    }
    assert!(overdue_mails(&api).is_empty(), "mailed twice");
}
