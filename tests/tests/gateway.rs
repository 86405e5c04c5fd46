//! The local gateway checks bearer tokens as API Gateway's JWT authorizer does.

mod common;

use common::Api;
use serde_json::json;

fn signed(claims: serde_json::Value) -> String {
    let secret = std::env::var("KASSA_JWT_SECRET").expect("run through cargo xtask test");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn status_with(api: &Api, token: &str) -> (u16, serde_json::Value) {
    let res = api
        .http
        .get(format!("{}/events/catalog", api.stack.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or_default())
}

#[tokio::test]
async fn a_token_not_yet_valid_is_refused() {
    let api = Api::start().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = |nbf: i64| {
        json!({
            "sub": "alice", "role": "user", "iat": now, "nbf": nbf, "exp": now + 3600,
            "iss": kassa_local::gateway::ISSUER, "aud": kassa_local::gateway::AUDIENCE,
        })
    };

    let (status, body) = status_with(&api, &signed(claims(now + 600))).await;
    assert_eq!(status, 401, "valid only in ten minutes");
    assert_eq!(body["code"], "unauthorized");

    let (status, body) = status_with(&api, &signed(claims(now - 5))).await;
    assert_eq!(status, 200, "valid since a moment ago: {}", body["code"]);
}
