//! Idempotency records with the semantics of AWS Lambda Powertools' idempotency utility:
//! a record is `INPROGRESS` while a handler works on a key and `COMPLETED` with the stored
//! response after; expiry is checked inside the write's condition (TTL deletion lags by
//! hours), and an `INPROGRESS` record whose handler died is taken over after a timeout.

use crate::attribute::{n, s, Item};
use crate::StoreError;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use std::future::Future;
use std::time::Duration;
use time::OffsetDateTime;

#[derive(Debug, Clone)]
pub struct IdempotencyConfig {
    /// How long a completed record answers repeats (Powertools' default is one hour; event
    /// redeliveries come well within a day, so kassa keeps them a day).
    pub expires_after: Duration,
    /// After this, an `INPROGRESS` record is assumed abandoned (the handler's timeout).
    pub in_progress_timeout: Duration,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            expires_after: Duration::from_secs(24 * 3600),
            in_progress_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Clone)]
pub struct Idempotency {
    client: Client,
    table: String,
    scope: String,
    config: IdempotencyConfig,
}

/// What running a handler under an idempotency key came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The handler ran now and returned this response.
    Ran(serde_json::Value),
    /// An earlier run completed; its stored response is returned and nothing ran.
    Repeated(serde_json::Value),
}

#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError<E> {
    /// Another invocation is working on the same key right now; try again later.
    #[error("another invocation is handling {0}")]
    InProgress(String),
    /// The key was first used with another request (see [`Idempotency::run_fingerprinted`]).
    #[error("{0} was first used with another request")]
    Mismatch(String),
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Handler(E),
}

const IN_PROGRESS: &str = "INPROGRESS";
const COMPLETED: &str = "COMPLETED";

impl Idempotency {
    /// `scope` names the handler, so two handlers reacting to one event both run.
    pub fn new(client: Client, table: impl Into<String>, scope: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            scope: scope.into(),
            config: IdempotencyConfig::default(),
        }
    }

    pub fn with_config(mut self, config: IdempotencyConfig) -> Self {
        self.config = config;
        self
    }

    fn pk(&self, key: &str) -> String {
        format!("idempotency#{}#{key}", self.scope)
    }

    /// Runs `handler` once for `key`; a repeat returns the first run's response.
    pub async fn run<F, Fut, E>(
        &self,
        key: &str,
        now: OffsetDateTime,
        handler: F,
    ) -> Result<Outcome, IdempotencyError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<serde_json::Value, E>>,
    {
        self.run_once(key, None, now, handler).await
    }

    /// As [`Idempotency::run`], for keys a client chooses: the record keeps `fingerprint`
    /// (a digest of the request), and a repeat whose fingerprint differs is refused with
    /// [`IdempotencyError::Mismatch`] rather than answered with another request's response.
    /// Powertools calls this the payload validation.
    pub async fn run_fingerprinted<F, Fut, E>(
        &self,
        key: &str,
        fingerprint: &str,
        now: OffsetDateTime,
        handler: F,
    ) -> Result<Outcome, IdempotencyError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<serde_json::Value, E>>,
    {
        self.run_once(key, Some(fingerprint), now, handler).await
    }

    async fn run_once<F, Fut, E>(
        &self,
        key: &str,
        fingerprint: Option<&str>,
        now: OffsetDateTime,
        handler: F,
    ) -> Result<Outcome, IdempotencyError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<serde_json::Value, E>>,
    {
        if let Some(response) = self.begin(key, fingerprint, now).await? {
            return Ok(Outcome::Repeated(response));
        }
        match handler().await {
            Ok(response) => {
                self.complete(key, now, &response)
                    .await
                    .map_err(IdempotencyError::Store)?;
                Ok(Outcome::Ran(response))
            }
            Err(e) => {
                // Powertools deletes the record on failure so the redelivery can run.
                self.forget(key).await.map_err(IdempotencyError::Store)?;
                Err(IdempotencyError::Handler(e))
            }
        }
    }

    /// Claims `key`; `Some(response)` when it has already completed.
    async fn begin<E>(
        &self,
        key: &str,
        fingerprint: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Option<serde_json::Value>, IdempotencyError<E>> {
        let now_s = now.unix_timestamp();
        let now_ms = now_s * 1000 + i64::from(now.millisecond());
        let expires_at = now_s + self.config.expires_after.as_secs() as i64;
        let in_progress_expiry = now_ms + self.config.in_progress_timeout.as_millis() as i64;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(self.pk(key)))
            .item("sk", s("-"))
            .item("status", s(IN_PROGRESS))
            .item("expires_at", n(expires_at))
            .item("in_progress_expires_at", n(in_progress_expiry));
        if let Some(fingerprint) = fingerprint {
            put = put.item("fingerprint", s(fingerprint));
        }
        let result = put
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at < :now \
                 OR (#status = :in_progress AND in_progress_expires_at < :now_ms)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":now", n(now_s))
            .expression_attribute_values(":now_ms", n(now_ms))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(SdkError::ServiceError(e)) => match e.into_err() {
                PutItemError::ConditionalCheckFailedException(failed) => {
                    let existing: Item = failed.item.unwrap_or_default();
                    if let Some(fingerprint) = fingerprint {
                        if existing.get("fingerprint") != Some(&s(fingerprint)) {
                            return Err(IdempotencyError::Mismatch(key.to_owned()));
                        }
                    }
                    match existing.get("status") {
                        Some(AttributeValue::S(st)) if st == COMPLETED => {
                            let response = match existing.get("response") {
                                Some(AttributeValue::S(r)) => {
                                    serde_json::from_str(r).map_err(|e| {
                                        IdempotencyError::Store(StoreError::Corrupt(e.to_string()))
                                    })?
                                }
                                _ => serde_json::Value::Null,
                            };
                            Ok(Some(response))
                        }
                        _ => Err(IdempotencyError::InProgress(key.to_owned())),
                    }
                }
                other => Err(IdempotencyError::Store(StoreError::dynamo(other))),
            },
            Err(other) => Err(IdempotencyError::Store(StoreError::dynamo(other))),
        }
    }

    async fn complete(
        &self,
        key: &str,
        now: OffsetDateTime,
        response: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let expires_at = now.unix_timestamp() + self.config.expires_after.as_secs() as i64;
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(self.pk(key)))
            .key("sk", s("-"))
            .update_expression("SET #status = :completed, #response = :response, expires_at = :exp REMOVE in_progress_expires_at")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#response", "response")
            .expression_attribute_values(":completed", s(COMPLETED))
            .expression_attribute_values(":response", s(response.to_string()))
            .expression_attribute_values(":exp", n(expires_at))
            .send()
            .await
            .map_err(StoreError::dynamo)?;
        Ok(())
    }

    async fn forget(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(self.pk(key)))
            .key("sk", s("-"))
            .send()
            .await
            .map_err(StoreError::dynamo)?;
        Ok(())
    }
}
