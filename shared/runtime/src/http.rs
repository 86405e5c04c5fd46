//! Reading requests and writing answers the same way in every HTTP function.

use crate::Problem;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

/// Largest body any kassa route accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The route as API Gateway matched it, e.g. `GET /workspaces/{workspaceId}`. Functions
/// that serve several routes dispatch on it: the template is the only routing table.
pub fn route_key(request: &Request) -> String {
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.route_key.clone().unwrap_or_default(),
        _ => String::new(),
    }
}

/// API Gateway's request id; it becomes the correlation id of what the request sets off.
pub fn request_id(request: &Request) -> Uuid {
    let id = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        _ => None,
    };
    id.and_then(|s| Uuid::parse_str(&s).ok())
        .unwrap_or_else(Uuid::now_v7)
}

/// A path parameter that must be a UUID; anything else names no resource.
pub fn uuid_param(request: &Request, name: &str, code: &str) -> Result<Uuid, Problem> {
    let raw = request
        .path_parameters_ref()
        .and_then(|p| p.first(name))
        .unwrap_or_default();
    Uuid::parse_str(raw)
        .map_err(|_| Problem::not_found(code, format!("`{raw}` is not a valid {name}")))
}

pub fn string_param(request: &Request, name: &str) -> Result<String, Problem> {
    request
        .path_parameters_ref()
        .and_then(|p| p.first(name))
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| Problem::bad_request("missing_parameter", format!("`{name}` is required")))
}

pub fn query_param(request: &Request, name: &str) -> Option<String> {
    request
        .query_string_parameters_ref()
        .and_then(|q| q.first(name))
        .map(str::to_owned)
}

/// A query parameter holding a positive count, with a default and a ceiling.
pub fn limit_param(request: &Request, default: i32, max: i32) -> Result<i32, Problem> {
    match query_param(request, "limit") {
        None => Ok(default),
        Some(raw) => match raw.parse::<i32>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(Problem::bad_request(
                "invalid_limit",
                format!("limit must be a whole number from 1 to {max}"),
            )),
        },
    }
}

/// The JSON body as `T`. Malformed JSON, a wrong type or a missing field is a 400 that
/// says where; an oversized body is a 413; a non-JSON content type a 415.
pub fn json_body<T: DeserializeOwned>(request: &Request) -> Result<T, Problem> {
    if let Some(ct) = request.headers().get("content-type") {
        let ct = ct.to_str().unwrap_or_default();
        if !ct.starts_with("application/json") {
            return Err(Problem::new(
                415,
                "unsupported_media_type",
                format!("send application/json, not `{ct}`"),
            ));
        }
    }
    let bytes: &[u8] = match request.body() {
        Body::Empty => b"",
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => b"",
    };
    if bytes.len() > MAX_BODY_BYTES {
        return Err(Problem::new(
            413,
            "body_too_large",
            format!("the body may be at most {MAX_BODY_BYTES} bytes"),
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::bad_request(
            "missing_body",
            "a JSON body is required",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let code = if e.is_syntax() || e.is_eof() {
            "malformed_json"
        } else {
            "invalid_body"
        };
        Problem::bad_request(code, e.to_string())
    })
}

pub fn json<T: Serialize>(status: u16, value: &T) -> Response<Body> {
    match serde_json::to_string(value) {
        Ok(body) => Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::Text(body))
            .unwrap_or_default(),
        Err(e) => Problem::internal(&e).into_response(),
    }
}

/// Turns a handler's result into the answer: a problem is rendered, never raised.
pub fn respond(result: Result<Response<Body>, Problem>) -> Response<Body> {
    result.unwrap_or_else(Problem::into_response)
}
