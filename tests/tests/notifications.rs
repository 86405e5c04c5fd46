//! Notifications are listed with what became of their mail: a mail that fails is recorded
//! as failed and retried with the event's redelivery until it goes out, once.

mod common;

use common::{eventually, Api};
use kassa_runtime::mail::MailSink;
use serde_json::Value;

async fn welcome(api: &Api, ws: &str) -> Option<Value> {
    let listed = api
        .get(format!("/workspaces/{ws}/notifications"), "alice")
        .await
        .body;
    listed["items"]
        .as_array()?
        .iter()
        .find(|n| n["kind"] == "workspace.welcome")
        .cloned()
}

#[tokio::test]
async fn a_notice_whose_mail_fails_is_listed_failed_and_goes_out_once_on_redelivery() {
    let api = Api::start().await;
    // The mail sink cannot write: a file stands where its directory should be.
    std::fs::write(&api.mail_dir, b"not a directory").unwrap();
    let (ws, _) = api.workspace("alice", "free").await;

    let failed = eventually("the welcome's mail failed", || async {
        welcome(&api, &ws)
            .await
            .filter(|n| n["delivery"] == "failed")
    })
    .await;
    assert!(failed["attempts"].as_u64().unwrap() >= 1, "{failed}");
    assert!(failed["last_error"].is_string(), "{failed}");
    assert_eq!(failed["mailed_to"], "ops@acme.test");

    // The sink is back: the next redelivery sends it.
    std::fs::remove_file(&api.mail_dir).unwrap();
    let sent = eventually("the welcome's mail sent", || async {
        welcome(&api, &ws).await.filter(|n| n["delivery"] == "sent")
    })
    .await;
    assert!(sent["attempts"].as_u64().unwrap() >= 2, "{sent}");
    assert!(sent["last_error"].is_null(), "{sent}");
    let mails: Vec<_> = MailSink::new(&api.mail_dir)
        .read_all()
        .unwrap()
        .into_iter()
        .filter(|m| m.id == format!("welcome-{ws}"))
        .collect();
    assert_eq!(mails.len(), 1);

    // A notice without an address is listed as unmailed.
    let created = api
        .post(
            "/workspaces",
            "carol",
            serde_json::json!({ "name": "No mail", "tier": "free" }),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let other = created.body["id"].as_str().unwrap().to_owned();
    let unmailed = eventually("the unmailed welcome", || async {
        let listed = api
            .get(format!("/workspaces/{other}/notifications"), "carol")
            .await
            .body;
        listed["items"].as_array()?.first().cloned()
    })
    .await;
    assert_eq!(unmailed["delivery"], "unmailed", "{unmailed}");
    assert_eq!(unmailed["attempts"], 0);
}
