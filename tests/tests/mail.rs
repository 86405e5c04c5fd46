//! The SES mail adapter against moto's SES: a verified sender's mail is accepted and
//! counted; an unverified sender's is refused, so the side effect that sent it is retried.
//! And whatever the adapter, a mail goes out once per id.

mod common;

use kassa_runtime::mail::{Mail, MailError, Mailer, SesMailer};

/// Mails SES counts as sent in the last 24 hours, through the v1 query API (moto shares
/// the count between v1 and v2).
async fn sent_last_24_hours() -> f64 {
    let endpoint = std::env::var("AWS_ENDPOINT_URL_SESV2")
        .expect("AWS_ENDPOINT_URL_SESV2: run through cargo xtask test");
    // moto routes by the credential scope's service and does not check the signature.
    let scope = "AWS4-HMAC-SHA256 Credential=local/20261122/us-east-1/ses/aws4_request, \
                 SignedHeaders=host, Signature=0";
    let xml = reqwest::Client::new()
        .post(endpoint)
        .header("authorization", scope)
        .form(&[("Action", "GetSendQuota"), ("Version", "2010-12-01")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = xml
        .find("<SentLast24Hours>")
        .unwrap_or_else(|| panic!("no send quota in {xml}"))
        + "<SentLast24Hours>".len();
    let end = xml[start..].find('<').unwrap() + start;
    xml[start..end].parse().unwrap()
}

fn mail(from: &str) -> Mail {
    Mail {
        id: format!("receipt-{}", uuid::Uuid::now_v7()),
        from: from.to_owned(),
        to: "ops@acme.test".into(),
        subject: "kassa receipt 2026-000001 for Acme".into(),
        body: "Thank you for your purchase.".into(),
    }
}

#[tokio::test]
async fn ses_sends_from_a_verified_sender_and_refuses_an_unverified_one() {
    let aws = kassa_runtime::config::aws().await;
    let ses = aws_sdk_sesv2::Client::new(&aws);
    let mailer = SesMailer::new(ses.clone());
    let from = format!("billing-{}@kassa.test", uuid::Uuid::now_v7().simple());

    let refused: Result<(), MailError> = mailer.send(&mail(&from)).await;
    let error = refused.expect_err("an unverified sender is refused");
    assert!(error.to_string().contains("not verified"), "{error}");

    ses.create_email_identity()
        .email_identity(&from)
        .send()
        .await
        .unwrap();
    let before = sent_last_24_hours().await;
    mailer.send(&mail(&from)).await.unwrap();
    assert_eq!(sent_last_24_hours().await, before + 1.0);
}

/// SES does not de-duplicate: a handler run again after its mail went out (a later step
/// failed, its event came again) must not mail twice. Through `Once`, the same mail id
/// is sent once, while a send that failed records nothing and goes out on the retry.
#[tokio::test]
async fn a_mail_goes_out_once_per_id_and_a_failed_one_on_its_retry() {
    use kassa_runtime::mail::{Once, SentMails};
    let aws = kassa_runtime::config::aws().await;
    let ses = aws_sdk_sesv2::Client::new(&aws);
    let (_, state) = common::tables().await;
    let sent = SentMails::new(common::dynamodb().await, &state);
    let mailer = Once::new(SesMailer::new(ses.clone()), sent.clone());
    let from = format!("billing-{}@kassa.test", uuid::Uuid::now_v7().simple());
    let receipt = mail(&from);

    // Unverified: refused, and nothing recorded, so the retry is not skipped.
    assert!(mailer.send(&receipt).await.is_err());
    assert!(!sent.sent(&receipt.id).await.unwrap());
    ses.create_email_identity()
        .email_identity(&from)
        .send()
        .await
        .unwrap();
    let before = sent_last_24_hours().await;
    for _ in 0..3 {
        mailer.send(&receipt).await.unwrap();
    }
    assert_eq!(sent_last_24_hours().await, before + 1.0, "sent once");
    assert!(sent.sent(&receipt.id).await.unwrap());
    let other = mail(&from);
    mailer.send(&other).await.unwrap();
    assert_eq!(
        sent_last_24_hours().await,
        before + 2.0,
        "another id is another mail"
    );
}
