//! Calls to the HTTP API as API Gateway hands them to a function, built by the local
//! gateway's own code so the handlers get exactly what `kassa-local` gives them.

use anyhow::{Context, Result};
use axum::body::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri};
use kassa_local::gateway;
use std::collections::HashMap;
use uuid::Uuid;

/// Priced at one credit on every tier, so the balance moves by exactly the call count.
pub const CONSUME_BODY: &str = r#"{"feature":"api.call","quantity":1}"#;
const CONSUME_ROUTE: &str = "POST /workspaces/{workspaceId}/credits/consume";

/// One call: the route it matched, its path and parameters, its body and its caller.
struct Call {
    route_key: &'static str,
    path: String,
    params: HashMap<String, String>,
    body: String,
    user: String,
}

impl Call {
    fn consume(workspace: Uuid, user: &str) -> Self {
        Self {
            route_key: CONSUME_ROUTE,
            path: format!("/workspaces/{workspace}/credits/consume"),
            params: HashMap::from([("workspaceId".to_owned(), workspace.to_string())]),
            body: CONSUME_BODY.to_owned(),
            user: user.to_owned(),
        }
    }

    /// The method, URI, headers and claims the gateway would have after matching the
    /// route and verifying the caller's token.
    fn parts(&self) -> Result<(Method, Uri, HeaderMap, HashMap<String, String>)> {
        let uri: Uri = self.path.parse().context("bench call path")?;
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        // The authorizer passes every claim as a string; `role` is what kassa reads.
        let claims = HashMap::from([
            ("sub".to_owned(), self.user.clone()),
            ("role".to_owned(), "user".to_owned()),
        ]);
        Ok((Method::POST, uri, headers, claims))
    }

    fn request(self) -> Result<lambda_http::Request> {
        let (method, uri, headers, claims) = self.parts()?;
        gateway::lambda_request(
            &method,
            &uri,
            &headers,
            &Bytes::from(self.body),
            self.route_key,
            self.params,
            claims,
        )
    }

    fn event(self) -> Result<serde_json::Value> {
        let (method, uri, headers, claims) = self.parts()?;
        gateway::http_event(
            &method,
            &uri,
            &headers,
            &Bytes::from(self.body),
            self.route_key,
            self.params,
            claims,
        )
    }
}

/// `POST /workspaces` by `owner`, on the enterprise tier.
pub fn create_workspace(owner: &str) -> Result<lambda_http::Request> {
    Call {
        route_key: "POST /workspaces",
        path: "/workspaces".to_owned(),
        params: HashMap::new(),
        body: serde_json::json!({
            "name": "Bench",
            "tier": "enterprise",
            "billing_email": "ops@bench.test",
        })
        .to_string(),
        user: owner.to_owned(),
    }
    .request()
}

/// `POST /workspaces/{workspace}/credits/consume` of one `api.call` by `user`.
pub fn consume(workspace: Uuid, user: &str) -> Result<lambda_http::Request> {
    Call::consume(workspace, user).request()
}

/// The same call as the API Gateway v2 event JSON a Lambda runtime receives.
pub fn consume_event(workspace: Uuid, user: &str) -> Result<serde_json::Value> {
    Call::consume(workspace, user).event()
}

/// A handler's answer body as text.
pub fn body(response: &lambda_http::Response<lambda_http::Body>) -> String {
    match response.body() {
        lambda_http::Body::Text(text) => text.clone(),
        lambda_http::Body::Binary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        _ => String::new(),
    }
}

/// A handler's answer as `status body`, to show when it is not the one expected.
pub fn describe(response: &lambda_http::Response<lambda_http::Body>) -> String {
    format!("{} {}", response.status().as_u16(), body(response))
}
