//! The mail port. On AWS the SES adapter sends each mail through SES v2. Locally a sink
//! writes each mail as a JSON file a person (or a test) can read; the log adapter records
//! what would be sent where mail is switched off.

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

/// How mail leaves kassa (`KASSA_MAIL_TRANSPORT`): through SES, or only into the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Ses,
    Log,
}

/// The adapter configuration asks for: the sink when a directory is set (locally), else
/// SES or the log as the transport says.
#[derive(Debug, Clone)]
pub enum ConfiguredMailer {
    Sink(MailSink),
    Ses(SesMailer),
    Log(LogMailer),
}

impl ConfiguredMailer {
    pub fn from_config(config: &crate::Config, aws: &crate::SdkConfig) -> Self {
        match (&config.mail_sink_dir, config.mail_transport) {
            (Some(dir), _) => Self::Sink(MailSink::new(dir)),
            (None, Transport::Ses) => Self::Ses(SesMailer::new(aws_sdk_sesv2::Client::new(aws))),
            (None, Transport::Log) => Self::Log(LogMailer),
        }
    }
}

impl Mailer for ConfiguredMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        match self {
            Self::Sink(s) => s.send(mail).await,
            Self::Ses(s) => s.send(mail).await,
            Self::Log(l) => l.send(mail).await,
        }
    }
}
