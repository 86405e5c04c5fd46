//! EventBridge schedules: `rate(...)` expressions fire on a timer; any schedule can also be
//! fired at once (tests, or `POST /_local/schedules/{function}` in `cargo xtask dev`), after
//! moving the runner's clock forward if the test is about time passing.

use crate::functions::Lambda;
use anyhow::{bail, Result};
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use std::time::Duration;

/// The period of a `rate(N unit)` expression; `None` for `cron(...)`, which only fires
/// when asked to locally.
pub fn period(expression: &str) -> Result<Option<Duration>> {
    let Some(inner) = expression
        .strip_prefix("rate(")
        .and_then(|s| s.strip_suffix(')'))
    else {
        if expression.starts_with("cron(") {
            return Ok(None);
        }
        bail!("unsupported schedule expression `{expression}`");
    };
    let (n, unit) = inner.trim().split_once(' ').unwrap_or((inner, ""));
    let n: u64 = n.parse()?;
    let secs = match unit.trim_end_matches('s') {
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        other => bail!("unsupported rate unit `{other}`"),
    };
    Ok(Some(Duration::from_secs(n * secs)))
}

/// Invokes a scheduled function with the event EventBridge Scheduler sends.
pub async fn fire(function: &str, lambda: &Lambda) -> Result<serde_json::Value> {
    let Lambda::Schedule(handler) = lambda else {
        bail!("{function} is not a scheduled function");
    };
    let event: EventBridgeEvent = serde_json::from_value(serde_json::json!({
        "version": "0",
        "id": uuid::Uuid::now_v7().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?,
        "region": "us-east-1",
        "resources": [format!("arn:aws:events:us-east-1:123456789012:rule/{function}")],
        "detail": {},
    }))?;
    handler(event)
        .await
        .map_err(|e| anyhow::anyhow!("{function}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_to_periods() {
        assert_eq!(
            period("rate(1 day)").unwrap(),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(
            period("rate(5 minutes)").unwrap(),
            Some(Duration::from_secs(300))
        );
        assert_eq!(period("cron(0 2 * * ? *)").unwrap(), None);
        assert!(period("every day").is_err());
    }
}
