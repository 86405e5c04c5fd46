//! Retried commands answered once: the `Idempotency-Key` request header, with the semantics
//! of draft-ietf-httpapi-idempotency-key-header. A client that sends a key gets, for every
//! repeat of the same request with it, the first answer (status, headers and body) and no
//! second effect; the same key with another request is a 422, and a repeat that arrives
//! while the first is still running is a 409. Keys belong to their caller: one user's key
//! never reaches another's stored answer. Answers are kept 24 hours.
//!
//! A command route wraps itself in [`IdempotentRequests::serve`]; without the header the
//! route runs as it always did. The records are the Powertools-style idempotency records of
//! the store, fingerprinted with a SHA-256 of the method, path and body.

use crate::{caller, Problem};
use kassa_domain::identity::Actor;
use kassa_store::{Idempotency, IdempotencyConfig, IdempotencyError, Outcome};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use time::OffsetDateTime;

pub const HEADER: &str = "idempotency-key";

/// Set to `true` on an answer that is a stored one.
pub const REPLAYED: &str = "idempotent-replayed";

/// Longest key accepted, in characters.
pub const MAX_LEN: usize = 255;

/// How long answers are kept for repeats.
pub const KEPT: Duration = Duration::from_secs(24 * 3600);

/// After this a request that never finished (its sandbox died) no longer holds its key:
/// past the functions' 10 s timeout, with a margin.
pub const IN_PROGRESS_TIMEOUT: Duration = Duration::from_secs(15);

/// A client's key for one request: 1 to 255 printable ASCII characters, sent bare or as the
/// draft's structured-field string (`"..."`, where `\"` and `\\` are escapes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

fn malformed(detail: &str) -> Problem {
    Problem::bad_request("invalid_idempotency_key", detail)
}

impl IdempotencyKey {
    /// The request's key, if it has one; a malformed one is a 400 `invalid_idempotency_key`.
    pub fn from_request(request: &Request) -> Result<Option<Self>, Problem> {
        let mut values = request.headers().get_all(HEADER).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(malformed("send one Idempotency-Key header, not several"));
        }
        Self::parse(value.as_bytes()).map(Some)
    }

    pub fn parse(raw: &[u8]) -> Result<Self, Problem> {
        let text = std::str::from_utf8(raw)
            .map_err(|_| malformed("the Idempotency-Key must be printable ASCII"))?
            .trim_matches([' ', '\t']);
        let key = match text.strip_prefix('"') {
            Some(quoted) => unquote(quoted)?,
            None => text.to_owned(),
        };
        if key.is_empty() || key.trim().is_empty() {
            return Err(malformed("the Idempotency-Key is empty"));
        }
        if key.chars().count() > MAX_LEN {
            return Err(malformed(&format!(
                "the Idempotency-Key may be at most {MAX_LEN} characters"
            )));
        }
        if !key.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(malformed("the Idempotency-Key must be printable ASCII"));
        }
        Ok(Self(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as the caller's own: the record's key, so that users never share one.
    pub fn scoped(&self, user: &str) -> String {
        // Length-prefixed: no user id and key can spell another pair's record.
        format!("{}:{user}:{}", user.len(), self.0)
    }

    /// A digest of the caller's key, to derive keys for calls this request makes elsewhere
    /// (a payment provider's idempotency key): stable across the client's retries, distinct
    /// between callers, and free of whatever characters the client chose.
    pub fn digest(&self, actor: &Actor) -> String {
        hex::encode(Sha256::digest(self.scoped(actor.user.as_str())))
    }
}

/// The body of an sf-string after its opening quote.
fn unquote(quoted: &str) -> Result<String, Problem> {
    let mut key = String::new();
    let mut chars = quoted.chars();
    loop {
        match chars.next() {
            None => return Err(malformed("the Idempotency-Key's string is not closed")),
            Some('\\') => match chars.next() {
                Some(c @ ('"' | '\\')) => key.push(c),
                _ => return Err(malformed("only \\\" and \\\\ may be escaped")),
            },
            Some('"') if chars.as_str().is_empty() => return Ok(key),
            Some('"') => return Err(malformed("nothing may follow the closing quote")),
            Some(c) => key.push(c),
        }
    }
}

fn body_bytes(request: &Request) -> &[u8] {
    match request.body() {
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => b"",
    }
}

/// What a repeat must match: method, path and body, byte for byte.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(method.as_bytes());
    hash.update(b" ");
    hash.update(path.as_bytes());
    hash.update(b"\n");
    hash.update(body);
    hex::encode(hash.finalize())
}

/// An answer as it is stored for repeats.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Stored {
    fn of(response: Response<Body>) -> Self {
        let (parts, body) = response.into_parts();
        Self {
            status: parts.status.as_u16(),
            headers: parts
                .headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect(),
            body: match body {
                Body::Text(t) => t,
                Body::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                _ => String::new(),
            },
        }
    }

    /// An answer a retry could change (a failure, or one that names a time to retry after)
    /// is not kept: the retry runs again.
    fn is_final(&self) -> bool {
        self.status < 500 && !self.headers.contains_key("retry-after")
    }

    fn into_response(self, replayed: bool) -> Response<Body> {
        let mut response = Response::builder().status(self.status);
        for (name, value) in &self.headers {
            response = response.header(name, value);
        }
        if replayed {
            response = response.header(REPLAYED, "true");
        }
        response
            .body(Body::Text(self.body))
            .unwrap_or_else(|e| Problem::internal(&e).into_response())
    }
}

/// The records a function keeps of its requests that carried a key.
#[derive(Clone)]
pub struct IdempotentRequests {
    records: Idempotency,
}

impl IdempotentRequests {
    /// `scope` names the function, so that its keys are its own.
    pub fn new(client: aws_sdk_dynamodb::Client, table: &str, scope: &str) -> Self {
        Self {
            records: Idempotency::new(client, table, format!("http#{scope}")).with_config(
                IdempotencyConfig {
                    expires_after: KEPT,
                    in_progress_timeout: IN_PROGRESS_TIMEOUT,
                },
            ),
        }
    }

    /// Answers `request` with `handler`, at most once per caller and key: a repeat gets
    /// the stored answer with `Idempotent-Replayed: true`. `handler` is given the key, to
    /// derive the keys of what it calls.
    pub async fn serve<F, Fut>(
        &self,
        request: &Request,
        now: OffsetDateTime,
        handler: F,
    ) -> Response<Body>
    where
        F: FnOnce(Option<IdempotencyKey>) -> Fut,
        Fut: Future<Output = Response<Body>>,
    {
        let key = match IdempotencyKey::from_request(request) {
            Ok(Some(key)) => key,
            Ok(None) => return handler(None).await,
            Err(problem) => return problem.into_response(),
        };
        let actor = match caller(request) {
            Ok(actor) => actor,
            Err(problem) => return problem.into_response(),
        };
        let fingerprint = fingerprint(
            request.method().as_str(),
            request.uri().path(),
            body_bytes(request),
        );
        // What the handler answered, should recording it fail afterwards: the effect has
        // happened, so the caller gets its answer rather than an error inviting a retry.
        let answered: Mutex<Option<Stored>> = Mutex::new(None);
        let answered_ref = &answered;
        let run_key = key.clone();
        let outcome = self
            .records
            .run_fingerprinted(
                &key.scoped(actor.user.as_str()),
                &fingerprint,
                now,
                move || async move {
                    let stored = Stored::of(handler(Some(run_key)).await);
                    if let Ok(mut slot) = answered_ref.lock() {
                        *slot = Some(stored.clone());
                    }
                    if !stored.is_final() {
                        return Err(stored);
                    }
                    serde_json::to_value(&stored).map_err(|_| stored)
                },
            )
            .await;
        match outcome {
            Ok(done) => {
                let (value, replayed) = match done {
                    Outcome::Ran(value) => (value, false),
                    Outcome::Repeated(value) => (value, true),
                };
                match serde_json::from_value::<Stored>(value) {
                    Ok(stored) => stored.into_response(replayed),
                    Err(e) => Problem::internal(&e).into_response(),
                }
            }
            Err(IdempotencyError::Handler(stored)) => stored.into_response(false),
            Err(IdempotencyError::InProgress(_)) => Problem::conflict(
                "idempotency_key_in_use",
                "a request with this Idempotency-Key is still being handled; retry shortly",
            )
            .retry_after(1)
            .into_response(),
            Err(IdempotencyError::Mismatch(_)) => Problem::new(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used for another request; send a new key",
            )
            .into_response(),
            Err(IdempotencyError::Store(e)) => {
                match answered.lock().ok().and_then(|mut a| a.take()) {
                    Some(stored) => {
                        tracing::error!(error = %e, "the answer could not be recorded for repeats");
                        stored.into_response(false)
                    }
                    None => crate::problem::store_problem(&e).into_response(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(raw: &str) -> Result<String, String> {
        IdempotencyKey::parse(raw.as_bytes())
            .map(|k| k.as_str().to_owned())
            .map_err(|p| p.code)
    }

    #[test]
    fn keys_are_bare_or_quoted_strings_of_at_most_255_characters() {
        assert_eq!(key("abc-123"), Ok("abc-123".into()));
        assert_eq!(key(r#""8e03978e-40d5""#), Ok("8e03978e-40d5".into()));
        assert_eq!(key(r#""a \"b\" \\ c""#), Ok(r#"a "b" \ c"#.into()));
        assert_eq!(key(" padded\t"), Ok("padded".into()));
        assert_eq!(key(&"k".repeat(255)), Ok("k".repeat(255)));
        for bad in [
            "",
            "   ",
            r#""""#,
            r#""open"#,
            r#""a"b"#,
            r#""\n""#,
            "tab\tinside",
        ] {
            assert_eq!(key(bad), Err("invalid_idempotency_key".into()), "{bad:?}");
        }
        assert_eq!(key(&"k".repeat(256)), Err("invalid_idempotency_key".into()));
        assert!(IdempotencyKey::parse("clé".as_bytes()).is_err());
        assert!(IdempotencyKey::parse(&[0xff, 0x41]).is_err());
    }

    #[test]
    fn callers_never_share_a_record() {
        let k = IdempotencyKey::parse(b"b:c").unwrap();
        let j = IdempotencyKey::parse(b"c").unwrap();
        assert_ne!(k.scoped("a"), j.scoped("a:b"));
        assert_ne!(
            k.digest(&Actor::user("alice")),
            k.digest(&Actor::user("bob"))
        );
    }

    #[test]
    fn the_fingerprint_covers_method_path_and_body() {
        let base = fingerprint("POST", "/a", b"{}");
        assert_eq!(base, fingerprint("POST", "/a", b"{}"));
        assert_ne!(base, fingerprint("PUT", "/a", b"{}"));
        assert_ne!(base, fingerprint("POST", "/b", b"{}"));
        assert_ne!(base, fingerprint("POST", "/a", b"{ }"));
    }

    #[test]
    fn failures_and_answers_that_say_retry_are_not_kept() {
        let stored = |response: Response<Body>| Stored::of(response).is_final();
        assert!(stored(crate::http::json(200, &serde_json::json!({}))));
        assert!(stored(
            Problem::new(402, "insufficient_credits", "x").into_response()
        ));
        assert!(!stored(Problem::internal(&"x").into_response()));
        assert!(!stored(
            Problem::conflict("concurrent_update", "x")
                .retry_after(1)
                .into_response()
        ));
    }

    #[test]
    fn a_stored_answer_is_the_answer_again() {
        let mut original = crate::http::json(201, &serde_json::json!({ "id": 1 }));
        original
            .headers_mut()
            .insert("location", "/x/1".parse().unwrap());
        let stored: Stored =
            serde_json::from_value(serde_json::to_value(Stored::of(original)).unwrap()).unwrap();
        let again = stored.into_response(true);
        assert_eq!(again.status(), 201);
        assert_eq!(again.headers()["location"], "/x/1");
        assert_eq!(again.headers()["content-type"], "application/json");
        assert_eq!(again.headers()[REPLAYED], "true");
        assert_eq!(again.body(), &Body::Text(r#"{"id":1}"#.into()));
    }

    proptest! {
        /// Whatever bytes a client sends as the header: a key or a 400, never a panic.
        #[test]
        fn any_header_value_is_a_key_or_a_400(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
            match IdempotencyKey::parse(&raw) {
                Ok(key) => {
                    prop_assert!(!key.as_str().is_empty());
                    prop_assert!(key.as_str().len() <= MAX_LEN);
                }
                Err(problem) => {
                    prop_assert_eq!(problem.status, 400);
                    prop_assert_eq!(problem.code, "invalid_idempotency_key");
                }
            }
        }

        #[test]
        fn any_printable_text_is_a_key_or_a_400(raw in "\"?[ -~]{0,300}\"?") {
            match IdempotencyKey::parse(raw.as_bytes()) {
                Ok(key) => prop_assert!((1..=MAX_LEN).contains(&key.as_str().len())),
                Err(problem) => prop_assert_eq!(problem.status, 400),
            }
        }
    }
}
