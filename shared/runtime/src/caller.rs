//! Who is calling: the claims API Gateway's JWT authorizer verified, read from the request
//! context. Handlers never see the token itself.

use crate::Problem;
use kassa_domain::identity::{Actor, Role, UserId};
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

/// The claim that carries kassa's role (`user`, `admin`); absent means `user`.
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
