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

/// The longest page cursor kassa hands out is a sort key of a few dozen characters; the
/// store refuses an empty key or one over 1,024 bytes, so a cursor is bounded well inside.
const MAX_CURSOR_LEN: usize = 256;

/// The `after` cursor of a page: a key a previous page returned. Anything that cannot be
/// one (empty, too long, not printable ASCII) is a 400 `invalid_cursor`, before the store
/// sees it; a well-formed cursor that names no key simply starts the page there.
pub fn cursor_param(request: &Request) -> Result<Option<String>, Problem> {
    match query_param(request, "after") {
        None => Ok(None),
        Some(raw)
            if !raw.is_empty()
                && raw.len() <= MAX_CURSOR_LEN
                && raw.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(raw))
        }
        Some(_) => Err(Problem::bad_request(
            "invalid_cursor",
            "`after` must be a cursor this API returned",
        )),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn with_query(name: &str, value: &str) -> Request {
        let query = HashMap::from([(name.to_owned(), value.to_owned())]);
        Request::default().with_query_string_parameters(query)
    }

    fn with_path(name: &str, value: &str) -> Request {
        let path = HashMap::from([(name.to_owned(), value.to_owned())]);
        Request::default().with_path_parameters(path)
    }

    fn is_problem(p: &Problem, status: u16, code: &str) -> bool {
        p.status == status && p.code == code && !p.detail.is_empty()
    }

    #[test]
    fn limits_outside_the_range_are_refused() {
        assert_eq!(limit_param(&Request::default(), 50, 100), Ok(50));
        assert_eq!(limit_param(&with_query("limit", "100"), 50, 100), Ok(100));
        for bad in ["0", "101", "-1", "1.5", "", "2147483648", " 7"] {
            let refused = limit_param(&with_query("limit", bad), 50, 100).unwrap_err();
            assert!(is_problem(&refused, 400, "invalid_limit"), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn any_limit_is_in_range_or_a_400(raw in prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            "\\PC{0,24}",
        ]) {
            match limit_param(&with_query("limit", &raw), 20, 200) {
                Ok(n) => prop_assert!((1..=200).contains(&n)),
                Err(p) => prop_assert!(is_problem(&p, 400, "invalid_limit")),
            }
        }

        #[test]
        fn any_path_id_is_a_uuid_or_a_404(raw in prop_oneof![
            any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string()),
            "[0-9a-fA-F-]{0,40}",
            "\\PC{0,48}",
        ]) {
            match uuid_param(&with_path("orderId", &raw), "orderId", "order_not_found") {
                Ok(id) => prop_assert_eq!(Uuid::parse_str(&raw).ok(), Some(id)),
                Err(p) => prop_assert!(is_problem(&p, 404, "order_not_found")),
            }
        }

        #[test]
        fn any_path_name_is_itself_or_a_400(raw in "\\PC{0,48}") {
            match string_param(&with_path("userId", &raw), "userId") {
                Ok(name) => prop_assert_eq!(name, raw),
                Err(p) => {
                    prop_assert!(raw.is_empty());
                    prop_assert!(is_problem(&p, 400, "missing_parameter"));
                }
            }
        }

        /// Whatever the content type and body, a JSON body is read or refused with a 4xx.
        #[test]
        fn any_body_and_content_type_is_read_or_a_4xx(
            content_type in proptest::option::of(prop_oneof![
                Just("application/json".to_owned()),
                Just("application/json; charset=utf-8".to_owned()),
                "[ -~]{0,40}",
            ]),
            body in prop_oneof![
                Just(r#"{"n":1}"#.to_owned()),
                "\\PC{0,64}",
                "[ {}\\[\\]\":,0-9a-z]{0,64}",
            ],
        ) {
            let mut request = Request::new(Body::Text(body));
            if let Some(ct) = &content_type {
                if let Ok(value) = ct.parse() {
                    request.headers_mut().insert("content-type", value);
                }
            }
            if let Err(p) = json_body::<HashMap<String, i64>>(&request) {
                prop_assert!((400..500).contains(&p.status), "{:?}", p);
                prop_assert!(!p.code.is_empty());
            }
        }
    }
}
