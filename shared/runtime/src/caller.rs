//! Who is calling: the claims API Gateway's JWT authorizer verified, read from the request
//! context. Handlers never see the token itself.

use crate::Problem;
use kassa_domain::identity::{Actor, Role, UserId};
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

/// The claim that carries the caller's role (`user`, `organizer`, `admin`); absent means
/// `user`. Once the caller has registered, the role kassa recorded counts instead
/// (`access::recorded`).
pub const ROLE_CLAIM: &str = "role";

pub fn caller(request: &Request) -> Result<Actor, Problem> {
    let claims = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx
            .authorizer
            .as_ref()
            .and_then(|a| a.jwt.as_ref())
            .map(|jwt| &jwt.claims),
        _ => None,
    };
    let claims = claims.ok_or_else(Problem::unauthorized)?;
    let sub = claims
        .get("sub")
        .filter(|s| !s.is_empty())
        .ok_or_else(Problem::unauthorized)?;
    let role = match claims.get(ROLE_CLAIM) {
        None => Role::User,
        // Events act as `system`; no token may claim it.
        Some(r) => match Role::parse(r) {
            Some(Role::System) | None => {
                return Err(Problem::forbidden(format!("role `{r}` is not accepted")))
            }
            Some(role) => role,
        },
    };
    Ok(Actor {
        user: UserId::new(sub.clone()),
        role,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// A request whose authorizer passed `claims`, as API Gateway's JWT authorizer does.
    fn with_claims(claims: &HashMap<String, String>) -> Request {
        let context: ApiGatewayV2httpRequestContext = serde_json::from_value(serde_json::json!({
            "authorizer": { "jwt": { "claims": claims, "scopes": null } },
            "http": { "method": "GET", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "" },
        }))
        .unwrap();
        Request::default().with_request_context(RequestContext::ApiGatewayV2(context))
    }

    #[test]
    fn no_claims_is_a_401() {
        assert_eq!(caller(&Request::default()).unwrap_err().status, 401);
        let no_sub = with_claims(&HashMap::from([("role".into(), "admin".into())]));
        assert_eq!(caller(&no_sub).unwrap_err().status, 401);
    }

    proptest! {
        /// Whatever claims a token carries: an actor, a 401 or a 403, never a panic, and
        /// never the `system` role.
        #[test]
        fn any_claims_are_an_actor_or_a_4xx(
            sub in proptest::option::of("\\PC{0,24}"),
            role in proptest::option::of(prop_oneof![
                Just("user".to_owned()),
                Just("admin".to_owned()),
                Just("organizer".to_owned()),
                Just("system".to_owned()),
                "\\PC{0,12}",
            ]),
        ) {
            let mut claims = HashMap::new();
            if let Some(sub) = &sub { claims.insert("sub".to_owned(), sub.clone()); }
            if let Some(role) = &role { claims.insert(ROLE_CLAIM.to_owned(), role.clone()); }
            match caller(&with_claims(&claims)) {
                Ok(actor) => {
                    prop_assert_eq!(Some(actor.user.as_str()), sub.as_deref());
                    prop_assert!(matches!(actor.role, Role::User | Role::Organizer | Role::Admin));
                }
                Err(p) => prop_assert!(p.status == 401 || p.status == 403, "{:?}", p),
            }
        }
    }
}
