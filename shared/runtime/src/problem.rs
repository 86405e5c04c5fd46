//! RFC 9457 problem details: every refusal names a stable `code` a client can branch on.

use kassa_commerce::Fail;
use kassa_store::StoreError;
use lambda_http::{Body, Response};
use serde::Serialize;
use std::convert::Infallible;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
    /// Seconds after which a retry may succeed (sent as `Retry-After`).
    #[serde(skip)]
    pub retry_after: Option<u32>,
    /// RFC 9457 extension members: facts a client acts on (the time of a first scan).
    /// Boxed, so the many `Result<_, Problem>` stay small.
    #[serde(flatten)]
    pub extensions: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

impl Problem {
    pub fn new(status: u16, code: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("https://kassa.dev/problems/{}", code.replace('_', "-")),
            title: title_of(status).to_owned(),
            status,
            detail: detail.into(),
            code: code.to_owned(),
            retry_after: None,
            extensions: None,
        }
    }

    /// Adds an extension member beside the standard ones.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extensions
            .get_or_insert_with(Default::default)
            .insert(key.to_owned(), value.into());
        self
    }

    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn bad_request(code: &str, detail: impl Into<String>) -> Self {
        Self::new(400, code, detail)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "unauthorized", "a valid bearer token is required")
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(403, "forbidden", detail)
    }

    pub fn not_found(code: &str, detail: impl Into<String>) -> Self {
        Self::new(404, code, detail)
    }

    pub fn conflict(code: &str, detail: impl Into<String>) -> Self {
        Self::new(409, code, detail)
    }

    /// An unexpected failure: logged in full, answered without internals.
    pub fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(%error, "request failed");
        Self::new(
            500,
            "internal",
            "the request failed; it is logged and can be retried",
        )
    }

    pub fn into_response(self) -> Response<Body> {
        let body = serde_json::to_string(&self).unwrap_or_default();
        let mut response = Response::builder()
            .status(self.status)
            .header("content-type", "application/problem+json");
        if let Some(seconds) = self.retry_after {
            response = response.header("retry-after", seconds);
        }
        response.body(Body::Text(body)).unwrap_or_default()
    }
}

/// A store failure as an answer: a conflict that outlived its retries is a 409, throttling
/// that outlived its retries a 503; both say when to retry. Anything else is a bug or an
/// outage.
pub fn store_problem(e: &StoreError) -> Problem {
    match e {
        StoreError::Conflict { .. } => Problem::conflict(
            "concurrent_update",
            "the resource changed concurrently too often; retry the request",
        )
        .retry_after(1),
        StoreError::Throttled(_) => Problem::new(
            503,
            "throttled",
            "the service is briefly over capacity; retry the request",
        )
        .retry_after(2),
        other => Problem::internal(other),
    }
}

/// A command its decider cannot refuse fails only in the store, and is answered so.
impl From<Fail<Infallible>> for Problem {
    fn from(fail: Fail<Infallible>) -> Self {
        match fail {
            Fail::Store(e) => store_problem(&e),
            Fail::Refused(never) => match never {},
        }
    }
}

fn title_of(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_renders_as_problem_json_with_its_code() {
        let response = Problem::conflict("concurrent_update", "retry")
            .retry_after(1)
            .into_response();
        assert_eq!(response.status(), 409);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert_eq!(response.headers()["retry-after"], "1");
        let Body::Text(body) = response.body() else {
            panic!("a text body");
        };
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["code"], "concurrent_update");
        assert_eq!(json["title"], "Conflict");
        assert_eq!(json["type"], "https://kassa.dev/problems/concurrent-update");
        assert!(json.get("retry_after").is_none());
    }

    #[test]
    fn refusals_carry_no_retry_after() {
        let response = Problem::bad_request("malformed_json", "x").into_response();
        assert!(response.headers().get("retry-after").is_none());
    }

    #[test]
    fn throttling_is_a_503_to_retry_later() {
        let problem = store_problem(&StoreError::Throttled("ThrottlingError".into()));
        assert_eq!(problem.status, 503);
        assert_eq!(problem.code, "throttled");
        assert!(problem.retry_after.is_some());
        let response = problem.into_response();
        assert!(response.headers().contains_key("retry-after"));
    }

    #[test]
    fn an_unrefusable_command_that_lost_its_races_is_a_409_to_retry() {
        let stream = kassa_store::StreamId::new("User", "ada");
        let fail: Fail<Infallible> = Fail::Store(StoreError::Conflict {
            stream,
            current: None,
        });
        let problem = Problem::from(fail);
        assert_eq!(problem.status, 409);
        assert_eq!(problem.code, "concurrent_update");
        assert_eq!(problem.retry_after, Some(1));
    }
}
