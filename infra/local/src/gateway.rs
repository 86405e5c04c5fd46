//! The local API Gateway: matches the template's HttpApi routes, verifies the bearer token
//! as the JWT authorizer would (HS256 with the dev secret locally), and hands the function
//! the same API Gateway v2 payload Lambda would.

use crate::functions::Lambda;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use lambda_http::request::LambdaRequest;
use lambda_http::Body;
use std::collections::HashMap;
use std::sync::Arc;

pub const ISSUER: &str = "kassa-local";
pub const AUDIENCE: &str = "kassa";

pub struct Gateway {
    routes: HashMap<String, matchit::Router<(String, bool, Lambda)>>,
    key: DecodingKey,
}

impl Gateway {
    pub fn new(jwt_secret: &str) -> Self {
        Self {
            routes: HashMap::new(),
            key: DecodingKey::from_secret(jwt_secret.as_bytes()),
        }
    }

    /// Serves `method path` with `lambda`; a `public` route takes calls without a token.
    pub fn add(
        &mut self,
        method: &str,
        path: &str,
        public: bool,
        lambda: Lambda,
    ) -> anyhow::Result<()> {
        let route_key = format!("{method} {path}");
        self.routes
            .entry(method.to_owned())
            .or_default()
            .insert(path, (route_key.clone(), public, lambda))
            .map_err(|e| anyhow::anyhow!("route {route_key}: {e}"))
    }

    fn claims(&self, headers: &HeaderMap) -> Option<HashMap<String, String>> {
        let token = headers
            .get("authorization")?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        // API Gateway's JWT authorizer refuses a token before its `nbf` as after its `exp`.
        validation.validate_nbf = true;
        let data = jsonwebtoken::decode::<HashMap<String, serde_json::Value>>(
            token,
            &self.key,
            &validation,
        )
        .ok()?;
        // API Gateway passes every claim as a string.
        Some(
            data.claims
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect(),
        )
    }

    pub fn router(self) -> axum::Router {
        axum::Router::new()
            .fallback(serve)
            .with_state(Arc::new(self))
    }
}

fn problem(status: StatusCode, code: &str, detail: &str) -> axum::response::Response {
    let body = serde_json::json!({
        "type": format!("https://kassa.dev/problems/{}", code.replace('_', "-")),
        "title": status.canonical_reason().unwrap_or_default(),
        "status": status.as_u16(),
        "detail": detail,
        "code": code,
    });
    (
        status,
        [("content-type", "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

async fn serve(
    State(gw): State<Arc<Gateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let path = uri.path().to_owned();
    let Some(((route_key, public, lambda), params)) =
        gw.routes.get(method.as_str()).and_then(|r| {
            r.at(&path).ok().map(|m| {
                (
                    m.value.clone(),
                    m.params
                        .iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect::<HashMap<_, _>>(),
                )
            })
        })
    else {
        let allowed = gw.routes.iter().any(|(_, r)| r.at(&path).is_ok());
        return if allowed {
            problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this path does not take that method",
            )
        } else {
            problem(StatusCode::NOT_FOUND, "no_route", "no such route")
        };
    };
    let claims = match gw.claims(&headers) {
        Some(claims) => claims,
        None if public => HashMap::new(),
        None => {
            return problem(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required",
            )
        }
    };
    let Lambda::Http(handler) = lambda else {
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "route bound to a non-HTTP function",
        );
    };
    let request = match lambda_request(&method, &uri, &headers, &body, &route_key, params, claims) {
        Ok(r) => r,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "bad_request", &e.to_string()),
    };
    let response = handler(request).await;
    let (parts, body) = response.into_parts();
    let bytes: Vec<u8> = match body {
        Body::Empty => Vec::new(),
        Body::Text(t) => t.into_bytes(),
        Body::Binary(b) => b,
        _ => Vec::new(),
    };
    axum::response::Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// The request a function's handler gets for a call that matched `route_key` with `params`
/// and whose token carried `claims`. Public so the bench calls handlers with exactly it.
pub fn lambda_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    route_key: &str,
    params: HashMap<String, String>,
    claims: HashMap<String, String>,
) -> anyhow::Result<lambda_http::Request> {
    let event = http_event(method, uri, headers, body, route_key, params, claims)?;
    let request: aws_lambda_events::event::apigw::ApiGatewayV2httpRequest =
        serde_json::from_value(event)?;
    Ok(LambdaRequest::ApiGatewayV2(request).into())
}

/// The API Gateway v2 HTTP event JSON behind [`lambda_request`]. Public so the bench can
/// hand a function binary, through the Runtime API, the same event the gateway builds.
pub fn http_event(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    route_key: &str,
    params: HashMap<String, String>,
    claims: HashMap<String, String>,
) -> anyhow::Result<serde_json::Value> {
    let mut header_map: HashMap<String, String> = HashMap::new();
    for (name, value) in headers {
        let value = value.to_str().unwrap_or_default();
        header_map
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push(',');
                v.push_str(value);
            })
            .or_insert_with(|| value.to_owned());
    }
    let query: HashMap<String, String> = uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let (text, base64) = match std::str::from_utf8(body) {
        Ok(t) => (t.to_owned(), false),
        Err(_) => anyhow::bail!("the body is not UTF-8 text"),
    };
    let now = time::OffsetDateTime::now_utc();
    let event = serde_json::json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": uri.path(),
        "rawQueryString": uri.query().unwrap_or_default(),
        "headers": header_map,
        "queryStringParameters": if query.is_empty() { serde_json::Value::Null } else { serde_json::json!(query) },
        "pathParameters": if params.is_empty() { serde_json::Value::Null } else { serde_json::json!(params) },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "127.0.0.1",
            "domainPrefix": "local",
            "http": {
                "method": method.as_str(),
                "path": uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or_default(),
            },
            "requestId": uuid::Uuid::now_v7().to_string(),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.to_string(),
            "timeEpoch": now.unix_timestamp() * 1000,
            "authorizer": if claims.is_empty() { serde_json::Value::Null } else { serde_json::json!({ "jwt": { "claims": claims, "scopes": null } }) },
        },
        "body": if text.is_empty() { serde_json::Value::Null } else { serde_json::Value::String(text) },
        "isBase64Encoded": base64,
    });
    Ok(event)
}
