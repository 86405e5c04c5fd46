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
    /// The caller's `sub` and `role` claims; none for a public route called without a
    /// token (the gateway then hands the function no authorizer context).
    caller: Option<(String, &'static str)>,
}

impl Call {
    fn consume(workspace: Uuid, user: &str) -> Self {
        Self {
            route_key: CONSUME_ROUTE,
            path: format!("/workspaces/{workspace}/credits/consume"),
            params: HashMap::from([("workspaceId".to_owned(), workspace.to_string())]),
            body: CONSUME_BODY.to_owned(),
            caller: Some((user.to_owned(), "user")),
        }
    }

    /// The method, URI, headers and claims the gateway would have after matching the
    /// route and verifying the caller's token.
    fn parts(&self) -> Result<(Method, Uri, HeaderMap, HashMap<String, String>)> {
        let uri: Uri = self.path.parse().context("bench call path")?;
        let method: Method = self
            .route_key
            .split_once(' ')
            .map_or("POST", |(method, _)| method)
            .parse()
            .context("bench call method")?;
        let mut headers = HeaderMap::new();
        if !self.body.is_empty() {
            headers.insert("content-type", HeaderValue::from_static("application/json"));
        }
        // The authorizer passes every claim as a string; `role` is what kassa reads.
        let claims = match &self.caller {
            Some((user, role)) => HashMap::from([
                ("sub".to_owned(), user.clone()),
                ("role".to_owned(), (*role).to_owned()),
            ]),
            None => HashMap::new(),
        };
        Ok((method, uri, headers, claims))
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
        caller: Some((owner.to_owned(), "user")),
    }
    .request()
}

/// `POST /concerts` by the organizer `organizer`, with `body` as the concert.
pub fn create_concert(organizer: &str, body: &serde_json::Value) -> Result<lambda_http::Request> {
    Call {
        route_key: "POST /concerts",
        path: "/concerts".to_owned(),
        params: HashMap::new(),
        body: body.to_string(),
        caller: Some((organizer.to_owned(), "organizer")),
    }
    .request()
}

/// `POST /coupons` by the admin `admin`, with `body` as the coupon.
pub fn create_coupon(admin: &str, body: &serde_json::Value) -> Result<lambda_http::Request> {
    Call {
        route_key: "POST /coupons",
        path: "/coupons".to_owned(),
        params: HashMap::new(),
        body: body.to_string(),
        caller: Some((admin.to_owned(), "admin")),
    }
    .request()
}

/// `POST /orders/{order}/coupons` of `code` by the order's buyer `buyer`.
pub fn apply_coupon(order: Uuid, buyer: &str, code: &str) -> Result<lambda_http::Request> {
    Call {
        route_key: "POST /orders/{orderId}/coupons",
        path: format!("/orders/{order}/coupons"),
        params: HashMap::from([("orderId".to_owned(), order.to_string())]),
        body: serde_json::json!({ "code": code }).to_string(),
        caller: Some((buyer.to_owned(), "user")),
    }
    .request()
}

/// `GET /concerts/{concert}` without a token, as the public concert page calls it.
pub fn concert_page(concert: Uuid) -> Result<lambda_http::Request> {
    Call {
        route_key: "GET /concerts/{concertId}",
        path: format!("/concerts/{concert}"),
        params: HashMap::from([("concertId".to_owned(), concert.to_string())]),
        body: String::new(),
        caller: None,
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
