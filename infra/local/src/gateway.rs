//! The local API Gateway: matches the template's HttpApi routes, throttles each route as
//! its stage's settings say, verifies the bearer token as the JWT authorizer would (HS256
//! with the dev secret locally), and hands the function the same API Gateway v2 payload
//! Lambda would.

use crate::functions::Lambda;
use crate::throttle::{Throttle, TokenBucket};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use lambda_http::request::LambdaRequest;
use lambda_http::Body;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub const ISSUER: &str = "kassa-local";
pub const AUDIENCE: &str = "kassa";

pub struct Gateway {
    routes: HashMap<String, matchit::Router<Target>>,
    key: DecodingKey,
}

/// What a matched route leads to.
#[derive(Clone)]
struct Target {
    route_key: String,
    public: bool,
    /// The route's own bucket; `None` when its API sets no throttling.
    bucket: Option<Arc<Mutex<TokenBucket>>>,
    lambda: Lambda,
}

impl Gateway {
    pub fn new(jwt_secret: &str) -> Self {
        Self {
            routes: HashMap::new(),
            key: DecodingKey::from_secret(jwt_secret.as_bytes()),
        }
    }

    /// Serves `method path` with `lambda`; a `public` route takes calls without a token, a
    /// `throttle`d one takes no more than its limits allow.
    pub fn add(
        &mut self,
        method: &str,
        path: &str,
        public: bool,
        throttle: Option<Throttle>,
        lambda: Lambda,
    ) -> anyhow::Result<()> {
        let route_key = format!("{method} {path}");
        let target = Target {
            route_key: route_key.clone(),
            public,
            bucket: throttle
                .map(|throttle| Arc::new(Mutex::new(TokenBucket::full(throttle, Instant::now())))),
            lambda,
        };
        self.routes
            .entry(method.to_owned())
            .or_default()
            .insert(path, target)
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

/// 429 for a route over its limits, with the whole seconds until its next token.
fn too_many_requests(
    route_key: &str,
    wait: Option<std::time::Duration>,
) -> axum::response::Response {
    let mut response = problem(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        &format!("{route_key} is over its rate limit"),
    );
    if let Some(wait) = wait {
        // Rounded up, so a caller that waits as told finds a token.
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert("retry-after", seconds.max(1).into());
    }
    response
}

async fn serve(
    State(gw): State<Arc<Gateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let path = uri.path().to_owned();
    let Some((target, params)) = gw.routes.get(method.as_str()).and_then(|r| {
        r.at(&path).ok().map(|m| {
            (
                m.value.clone(),
                m.params
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect::<HashMap<_, _>>(),
            )
        })
    }) else {
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
    let Target {
        route_key,
        public,
        bucket,
        lambda,
    } = target;
    if let Some(bucket) = bucket {
        let taken = bucket
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take(Instant::now());
        if let Err(wait) = taken {
            return too_many_requests(&route_key, wait);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "test-secret";

    fn token(issuer: &str) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = serde_json::json!({
            "sub": "alice", "role": "admin", "iat": now, "exp": now + 600,
            "iss": issuer, "aud": AUDIENCE,
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn claims_of(authorization: &[u8]) -> Option<HashMap<String, String>> {
        let mut headers = HeaderMap::new();
        if let Ok(value) = axum::http::HeaderValue::from_bytes(authorization) {
            headers.insert("authorization", value);
        }
        Gateway::new(SECRET).claims(&headers)
    }

    #[test]
    fn only_a_bearer_token_signed_for_kassa_passes() {
        let claims = claims_of(format!("Bearer {}", token(ISSUER)).as_bytes()).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["role"], "admin");
        assert_eq!(claims_of(token(ISSUER).as_bytes()), None, "no scheme");
        assert_eq!(
            claims_of(format!("Bearer {}", token("elsewhere")).as_bytes()),
            None
        );
        assert_eq!(claims_of(b""), None);
    }

    proptest! {
        /// Whatever the Authorization header holds, the gateway answers (a 401 when it is
        /// not a valid token) and never panics.
        #[test]
        fn any_authorization_is_claims_or_nothing(
            raw in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..200),
                "Bearer [A-Za-z0-9_.=-]{0,200}".prop_map(String::into_bytes),
                "(Bearer |bearer |Basic )?[a-zA-Z0-9+/=]{0,40}\\.[a-zA-Z0-9_-]{0,40}\\.[a-zA-Z0-9_-]{0,40}"
                    .prop_map(String::into_bytes),
            ],
        ) {
            prop_assert_eq!(claims_of(&raw), None);
        }

        /// A valid token with its signature or payload changed is refused.
        #[test]
        fn a_tampered_token_is_refused(at in 0usize..400, with in any::<u8>()) {
            let mut raw = format!("Bearer {}", token(ISSUER)).into_bytes();
            let at = 7 + at % (raw.len() - 7);
            prop_assume!(raw[at] != with && raw[at] != b'.');
            raw[at] = with;
            prop_assert_eq!(claims_of(&raw), None);
        }
    }
}
