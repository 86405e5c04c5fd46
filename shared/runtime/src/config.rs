//! Configuration, read once at start from the environment template.yaml sets (or, locally,
//! from the same variables as the runner resolves them).

use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Config {
    pub events_table: String,
    pub state_table: String,
    /// Only the relay publishes, so only it needs the bus.
    pub event_bus: Option<String>,
    pub mail_from: String,
    /// Where the local mail sink writes; unset on AWS.
    pub mail_sink_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0} is not set")]
pub struct MissingVariable(pub &'static str);

impl Config {
    pub fn from_env() -> Result<Self, MissingVariable> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, MissingVariable> {
        Self::from_lookup(|k| vars.get(k).cloned())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, MissingVariable> {
        let required = |k: &'static str| get(k).filter(|v| !v.is_empty()).ok_or(MissingVariable(k));
        Ok(Self {
            events_table: required("KASSA_EVENTS_TABLE")?,
            state_table: required("KASSA_STATE_TABLE")?,
            event_bus: get("KASSA_EVENT_BUS").filter(|v| !v.is_empty()),
            mail_from: get("KASSA_MAIL_FROM").unwrap_or_else(|| "billing@example.com".into()),
            mail_sink_dir: get("KASSA_MAIL_SINK_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        })
    }
}

/// The shared AWS configuration; endpoints for local emulators come from the SDK's own
/// `AWS_ENDPOINT_URL_<SERVICE>` variables.
pub async fn aws() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}
