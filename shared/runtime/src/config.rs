//! Configuration, read once at start from the environment template.yaml sets (or, locally,
//! from the same variables as the runner resolves them).

use rust_decimal::Decimal;
use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;

#[derive(Debug, Clone)]
pub struct Config {
    pub events_table: String,
    pub state_table: String,
    /// Only the relay publishes, so only it needs the bus.
    pub event_bus: Option<String>,
    /// Where the relay parks events it cannot publish (a queue URL, or locally its name).
    pub relay_failure_queue: Option<String>,
    pub mail_from: String,
    /// Where the local mail sink writes; unset on AWS.
    pub mail_sink_dir: Option<PathBuf>,
    pub mail_transport: crate::mail::Transport,
    pub stripe: StripeConfig,
    /// Tax added to orders, as a fraction of the net amount (0.2 for 20 %).
    pub tax_rate: Decimal,
    /// What a ticket order delivered by courier pays for it, once per order, in the
    /// order's currency (`KASSA_COURIER_FEE`, `4.90`); zero charges nothing.
    pub courier_fee: Decimal,
    /// How long a ticket order's seats are held for its buyer to pay (its payment window).
    pub reservation_window: time::Duration,
    /// The dead-letter queue of a side-effect function's queue: poison messages are
    /// parked there at once, with their reason.
    pub dead_letter_queue: Option<String>,
    /// The Ed25519 seed ticket codes are signed with (`KASSA_TICKET_SIGNING_KEY`, base64 of
    /// 32 bytes); only the ticket functions get it.
    pub ticket_signing_key: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StripeConfig {
    pub api_base: String,
    /// Only the functions that call Stripe get it.
    pub secret_key: Option<String>,
    /// The webhook endpoint's signing secret (`whsec_...`); only the webhook gets it.
    pub webhook_secret: Option<String>,
    /// Oldest signature timestamp the webhook accepts, in seconds.
    pub webhook_tolerance_secs: i64,
    /// The provider's monthly price of each paid tier (`KASSA_STRIPE_PRICE_PRO`,
    /// `KASSA_STRIPE_PRICE_ENTERPRISE`); only the functions that subscribe get them.
    pub pro_price: Option<String>,
    pub enterprise_price: Option<String>,
    /// Name subscription items' prices as legacy plans (an emulator without prices).
    pub legacy_plan_items: bool,
}

impl StripeConfig {
    /// The API key, for functions that cannot work without it.
    pub fn secret_key(&self) -> Result<&str, ConfigError> {
        self.secret_key
            .as_deref()
            .ok_or(ConfigError::Missing("KASSA_STRIPE_SECRET_KEY"))
    }

    /// The Stripe client of a function that calls Stripe.
    pub fn gateway(&self) -> Result<kassa_payments::stripe::StripeGateway, ConfigError> {
        let gateway =
            kassa_payments::stripe::StripeGateway::new(&self.api_base, self.secret_key()?);
        Ok(if self.legacy_plan_items {
            gateway.with_legacy_plan_items()
        } else {
            gateway
        })
    }

    /// The provider's price of a paid tier's month.
    pub fn price_of(&self, tier: kassa_domain::tier::TierId) -> Result<&str, ConfigError> {
        use kassa_domain::tier::TierId;
        let (price, variable) = match tier {
            TierId::Pro => (&self.pro_price, "KASSA_STRIPE_PRICE_PRO"),
            TierId::Enterprise => (&self.enterprise_price, "KASSA_STRIPE_PRICE_ENTERPRISE"),
            TierId::Free => return Err(ConfigError::Invalid("tier", "free has no price".into())),
        };
        price.as_deref().ok_or(ConfigError::Missing(variable))
    }

    /// The webhook signing secret; without it every delivery would be refused.
    pub fn webhook_secret(&self) -> Result<&str, ConfigError> {
        self.webhook_secret
            .as_deref()
            .ok_or(ConfigError::Missing("KASSA_STRIPE_WEBHOOK_SECRET"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0} is not set")]
    Missing(&'static str),
    #[error("configuration: {0} is not valid: {1}")]
    Invalid(&'static str, String),
}

impl Config {
    /// The signer of ticket codes: a function that issues or publishes codes does not
    /// start without its key.
    pub fn ticket_signer(&self) -> Result<kassa_domain::ticket_code::CodeSigner, ConfigError> {
        let key = self
            .ticket_signing_key
            .as_deref()
            .ok_or(ConfigError::Missing("KASSA_TICKET_SIGNING_KEY"))?;
        kassa_domain::ticket_code::CodeSigner::from_base64(key)
            .map_err(|e| ConfigError::Invalid("KASSA_TICKET_SIGNING_KEY", e.to_string()))
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::from_lookup(|k| vars.get(k).cloned())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let optional = |k: &str| get(k).filter(|v| !v.is_empty());
        let required = |k: &'static str| optional(k).ok_or(ConfigError::Missing(k));
        let tax_rate = match optional("KASSA_TAX_RATE") {
            None => Decimal::ZERO,
            Some(raw) => Decimal::from_str(&raw)
                .ok()
                .filter(|r| (Decimal::ZERO..=Decimal::ONE).contains(r))
                .ok_or_else(|| {
                    ConfigError::Invalid("KASSA_TAX_RATE", format!("{raw} is not in 0..=1"))
                })?,
        };
        let courier_fee = match optional("KASSA_COURIER_FEE") {
            None => Decimal::ZERO,
            Some(raw) => Decimal::from_str(&raw)
                .ok()
                .filter(|fee| {
                    !fee.is_sign_negative()
                        && fee.normalize().scale() <= 2
                        && *fee <= Decimal::new(kassa_domain::money::MAX_PRICE_MINOR, 2)
                })
                .ok_or_else(|| {
                    ConfigError::Invalid(
                        "KASSA_COURIER_FEE",
                        format!("{raw} is not an amount from 0 to 999999.99"),
                    )
                })?,
        };
        let tolerance = match optional("KASSA_STRIPE_WEBHOOK_TOLERANCE_SECONDS") {
            None => 300,
            Some(raw) => raw.parse::<i64>().ok().filter(|t| *t > 0).ok_or_else(|| {
                ConfigError::Invalid(
                    "KASSA_STRIPE_WEBHOOK_TOLERANCE_SECONDS",
                    format!("{raw} is not a positive number of seconds"),
                )
            })?,
        };
        let reservation_window = match optional("KASSA_RESERVATION_MINUTES") {
            None => time::Duration::minutes(15),
            Some(raw) => raw
                .parse::<i64>()
                .ok()
                .filter(|m| (1..=1440).contains(m))
                .map(time::Duration::minutes)
                .ok_or_else(|| {
                    ConfigError::Invalid(
                        "KASSA_RESERVATION_MINUTES",
                        format!("{raw} is not 1 to 1440 minutes"),
                    )
                })?,
        };
        let mail_transport = match optional("KASSA_MAIL_TRANSPORT").as_deref() {
            None | Some("log") => crate::mail::Transport::Log,
            Some("ses") => crate::mail::Transport::Ses,
            Some(other) => {
                return Err(ConfigError::Invalid(
                    "KASSA_MAIL_TRANSPORT",
                    format!("`{other}` is neither `ses` nor `log`"),
                ))
            }
        };
        Ok(Self {
            events_table: required("KASSA_EVENTS_TABLE")?,
            state_table: required("KASSA_STATE_TABLE")?,
            event_bus: optional("KASSA_EVENT_BUS"),
            relay_failure_queue: optional("KASSA_RELAY_FAILURE_QUEUE"),
            mail_from: optional("KASSA_MAIL_FROM").unwrap_or_else(|| "billing@example.com".into()),
            mail_sink_dir: optional("KASSA_MAIL_SINK_DIR").map(PathBuf::from),
            mail_transport,
            stripe: StripeConfig {
                api_base: optional("KASSA_STRIPE_API_BASE")
                    .unwrap_or_else(|| "https://api.stripe.com".into()),
                secret_key: optional("KASSA_STRIPE_SECRET_KEY"),
                webhook_secret: optional("KASSA_STRIPE_WEBHOOK_SECRET"),
                webhook_tolerance_secs: tolerance,
                pro_price: optional("KASSA_STRIPE_PRICE_PRO"),
                enterprise_price: optional("KASSA_STRIPE_PRICE_ENTERPRISE"),
                legacy_plan_items: optional("KASSA_STRIPE_LEGACY_PLAN_ITEMS").as_deref()
                    == Some("true"),
            },
            tax_rate,
            courier_fee,
            reservation_window,
            dead_letter_queue: optional("KASSA_DEAD_LETTER_QUEUE_URL"),
            ticket_signing_key: optional("KASSA_TICKET_SIGNING_KEY"),
        })
    }
}

/// How long one AWS call may take, its retries included: half the functions' shortest
/// timeout (10 s), so a stalled call fails as an error the function still answers or hands
/// back, instead of the whole invocation being killed mid-batch. Only the whole call is
/// bounded, not each attempt: an attempt cut short after it was applied would be sent
/// again, and a counter's step is not safe to repeat.
pub const AWS_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The shared AWS configuration; endpoints for local emulators come from the SDK's own
/// `AWS_ENDPOINT_URL_<SERVICE>` variables.
pub async fn aws() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(AWS_CALL_TIMEOUT)
                .build(),
        )
        .load()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut vars: HashMap<String, String> = [
            ("KASSA_EVENTS_TABLE", "events"),
            ("KASSA_STATE_TABLE", "state"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        vars.retain(|_, v| !v.is_empty());
        Config::from_map(&vars)
    }

    #[test]
    fn a_courier_fee_is_an_amount_in_minor_units_and_nothing_when_unset() {
        assert_eq!(with(&[]).unwrap().courier_fee, Decimal::ZERO);
        let fee = with(&[("KASSA_COURIER_FEE", "4.90")]).unwrap().courier_fee;
        assert_eq!(fee, Decimal::new(490, 2));
        for bad in ["-1", "4.901", "1000000", "free"] {
            assert!(
                matches!(
                    with(&[("KASSA_COURIER_FEE", bad)]),
                    Err(ConfigError::Invalid("KASSA_COURIER_FEE", _))
                ),
                "{bad}"
            );
        }
    }
}
