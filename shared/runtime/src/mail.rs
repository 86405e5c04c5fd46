//! The mail port. On AWS the SES adapter sends each mail through SES v2. Locally a sink
//! writes each mail as a JSON file a person (or a test) can read; the log adapter records
//! what would be sent where mail is switched off.
//!
//! Whatever the adapter, a mail goes out once per id ([`Once`]): SES does not de-duplicate,
//! and a handler is run again after its mail went out whenever a later step of it fails or
//! its event is redelivered.

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mail {
    /// Names the mail for de-duplication: a redelivered event rewrites the same file.
    pub id: String,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
#[error("mail could not be delivered: {0}")]
pub struct MailError(pub String);

pub trait Mailer: Send + Sync {
    fn send(&self, mail: &Mail) -> impl Future<Output = Result<(), MailError>> + Send;
}

/// Writes `<dir>/<id>.json`.
#[derive(Debug, Clone)]
pub struct MailSink {
    dir: PathBuf,
}

impl MailSink {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Every mail in the sink, oldest file first.
    pub fn read_all(&self) -> std::io::Result<Vec<Mail>> {
        let mut entries: Vec<_> = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd.filter_map(Result::ok).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(e),
        };
        entries.sort_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
        let mut mails = Vec::new();
        for entry in entries {
            let text = std::fs::read_to_string(entry.path())?;
            if let Ok(mail) = serde_json::from_str(&text) {
                mails.push(mail);
            }
        }
        Ok(mails)
    }
}

impl Mailer for MailSink {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let err = |e: std::io::Error| MailError(e.to_string());
        tokio::fs::create_dir_all(&self.dir).await.map_err(err)?;
        let json = serde_json::to_vec_pretty(mail).map_err(|e| MailError(e.to_string()))?;
        // Write then rename, so a reader never sees half a mail.
        let tmp = self.dir.join(format!(".{}.tmp", mail.id));
        tokio::fs::write(&tmp, json).await.map_err(err)?;
        tokio::fs::rename(&tmp, self.dir.join(format!("{}.json", mail.id)))
            .await
            .map_err(err)
    }
}

/// Logs the mail instead of sending it.
#[derive(Debug, Clone, Default)]
pub struct LogMailer;

impl Mailer for LogMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        tracing::info!(to = %mail.to, subject = %mail.subject, id = %mail.id, "mail (log adapter)");
        Ok(())
    }
}

/// Sends through Amazon SES (v2 API). The sender must be a verified identity; a refusal
/// is an error, so the side effect fails and its event is redelivered.
#[derive(Debug, Clone)]
pub struct SesMailer {
    client: aws_sdk_sesv2::Client,
}

impl SesMailer {
    pub fn new(client: aws_sdk_sesv2::Client) -> Self {
        Self { client }
    }
}

impl Mailer for SesMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
        let text = |data: &str| {
            Content::builder()
                .data(data)
                .charset("UTF-8")
                .build()
                .map_err(|e| MailError(e.to_string()))
        };
        let message = Message::builder()
            .subject(text(&mail.subject)?)
            .body(Body::builder().text(text(&mail.body)?).build())
            .build();
        self.client
            .send_email()
            .from_email_address(&mail.from)
            .destination(Destination::builder().to_addresses(&mail.to).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(|e| MailError(aws_sdk_sesv2::error::DisplayErrorContext(e).to_string()))?;
        tracing::info!(to = %mail.to, subject = %mail.subject, id = %mail.id, "mail sent");
        Ok(())
    }
}

/// The mails already sent, by id: an item `mail-sent#<id>` in the state table, kept a
/// month (past any redelivery or redrive of the event that sent it).
#[derive(Debug, Clone)]
pub struct SentMails {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// How long a sent mail's record is kept.
const SENT_KEPT_SECS: i64 = 30 * 86_400;

impl SentMails {
    pub fn new(client: aws_sdk_dynamodb::Client, state_table: impl Into<String>) -> Self {
        Self {
            client,
            table: state_table.into(),
        }
    }

    fn key(id: &str) -> aws_sdk_dynamodb::types::AttributeValue {
        aws_sdk_dynamodb::types::AttributeValue::S(format!("mail-sent#{id}"))
    }

    /// Whether the mail `id` was sent already.
    pub async fn sent(&self, id: &str) -> Result<bool, MailError> {
        let found = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", Self::key(id))
            .key("sk", Self::key(id))
            .consistent_read(true)
            .projection_expression("pk")
            .send()
            .await
            .map_err(|e| MailError(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()))?;
        Ok(found.item.is_some())
    }

    /// Records that the mail `id` went out.
    pub async fn record(&self, id: &str) -> Result<(), MailError> {
        let expires = time::OffsetDateTime::now_utc().unix_timestamp() + SENT_KEPT_SECS;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", Self::key(id))
            .item("sk", Self::key(id))
            .item(
                "expires_at",
                aws_sdk_dynamodb::types::AttributeValue::N(expires.to_string()),
            )
            .send()
            .await
            .map_err(|e| MailError(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()))?;
        Ok(())
    }
}

/// Sends each mail through `M` once per id: the record of a sent mail is read first, and
/// written once the adapter accepted it. A failed send writes nothing, so the retry sends
/// it; only a handler that dies between the send and the record mails twice.
#[derive(Debug, Clone)]
pub struct Once<M> {
    mailer: M,
    sent: SentMails,
}

impl<M: Mailer> Once<M> {
    pub fn new(mailer: M, sent: SentMails) -> Self {
        Self { mailer, sent }
    }
}

impl<M: Mailer> Mailer for Once<M> {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        if self.sent.sent(&mail.id).await? {
            tracing::info!(id = %mail.id, "mail sent before; not again");
            return Ok(());
        }
        self.mailer.send(mail).await?;
        // The mail is out: a record that cannot be written only risks a second mail on a
        // later retry, which is no reason to fail (and so retry) this one now.
        if let Err(e) = self.sent.record(&mail.id).await {
            tracing::warn!(id = %mail.id, error = %e, "a sent mail is not recorded");
        }
        Ok(())
    }
}

/// How mail leaves kassa (`KASSA_MAIL_TRANSPORT`): through SES, or only into the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Ses,
    Log,
}

/// The adapter configuration asks for: the sink when a directory is set (locally), else
/// SES or the log as the transport says; each mail once per id ([`Once`]).
#[derive(Debug, Clone)]
pub struct ConfiguredMailer(Once<Adapter>);

/// One of the adapters.
#[derive(Debug, Clone)]
pub enum Adapter {
    Sink(MailSink),
    Ses(SesMailer),
    Log(LogMailer),
}

impl ConfiguredMailer {
    pub fn from_config(config: &crate::Config, aws: &crate::SdkConfig) -> Self {
        let adapter = match (&config.mail_sink_dir, config.mail_transport) {
            (Some(dir), _) => Adapter::Sink(MailSink::new(dir)),
            (None, Transport::Ses) => Adapter::Ses(SesMailer::new(aws_sdk_sesv2::Client::new(aws))),
            (None, Transport::Log) => Adapter::Log(LogMailer),
        };
        let sent = SentMails::new(aws_sdk_dynamodb::Client::new(aws), &config.state_table);
        Self(Once::new(adapter, sent))
    }
}

impl Mailer for Adapter {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        match self {
            Self::Sink(s) => s.send(mail).await,
            Self::Ses(s) => s.send(mail).await,
            Self::Log(l) => l.send(mail).await,
        }
    }
}

impl Mailer for ConfiguredMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        self.0.send(mail).await
    }
}
