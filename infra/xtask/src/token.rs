//! `cargo xtask token`: a bearer token for calling the local API by hand,
//! signed like the ones the local stack accepts.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::cli::Flags;
use crate::dev_secret;
use crate::repo::Repo;

/// `iss` and `aud` of local tokens; the local stack checks both, so a token
/// minted for something else is refused rather than trusted.
pub const ISSUER: &str = "kassa-local";
pub const AUDIENCE: &str = "kassa";

pub const DEFAULT_ROLE: &str = "user";
const DEFAULT_TTL_HOURS: u64 = 12;

pub fn run(repo: &Repo, args: &[String]) -> Result<ExitCode> {
    let flags = Flags::parse("token", args, &["user", "role", "ttl-hours"])?;
    let Some(user) = flags.value("user") else {
        bail!("token: --user is required, e.g. `cargo xtask token --user alice`");
    };
    let role = flags.value("role").unwrap_or(DEFAULT_ROLE);
    let ttl_hours = match flags.value("ttl-hours") {
        Some(hours) => hours
            .parse::<u64>()
            .with_context(|| format!("token: --ttl-hours `{hours}` is not a whole number"))?,
        None => DEFAULT_TTL_HOURS,
    };
    let secret = dev_secret::load_or_create(repo)?;
    // Only the token on stdout, so `TOKEN=$(cargo xtask token --user alice)` works.
    println!(
        "{}",
        mint(&secret, user, role, Duration::from_secs(ttl_hours * 3600))?
    );
    Ok(ExitCode::SUCCESS)
}

/// An HS256 JWT for `user` acting as `role`, valid from now for `ttl`.
pub fn mint(secret: &str, user: &str, role: &str, ttl: Duration) -> Result<String> {
    if user.is_empty() || role.is_empty() {
        bail!("token: user and role must not be empty");
    }
    let issued_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let claims = json!({
        "sub": user,
        "role": role,
        "iat": issued_at,
        "exp": issued_at + ttl.as_secs(),
        "iss": ISSUER,
        "aud": AUDIENCE,
    });
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("signing the token")
}
