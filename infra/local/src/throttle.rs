//! API Gateway's route throttling: each route has a token bucket that holds up to `burst`
//! requests and refills at `rate` per second, shared by every caller of the route. A
//! request that finds the bucket empty is refused with 429 before it reaches the
//! authorizer or the function.
//!
//! Written out rather than taken from a rate-limiting crate: the model is API Gateway's
//! own (a fractional rate, a burst that may be 0 to close a route), and it is a few lines.

use crate::resources::Names;
use crate::template::Template;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A stage's `DefaultRouteSettings`: `ThrottlingRateLimit` and `ThrottlingBurstLimit`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttle {
    /// Requests per second in the long run.
    pub rate: f64,
    /// Requests taken at once above the rate: the bucket's size.
    pub burst: f64,
}

#[derive(Debug)]
pub struct TokenBucket {
    throttle: Throttle,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    /// A bucket that starts full, as a freshly deployed stage does.
    pub fn full(throttle: Throttle, now: Instant) -> Self {
        Self {
            throttle,
            tokens: throttle.burst,
            refilled: now,
        }
    }

    /// Takes a token for one request, or tells how long until the next token: `None` when
    /// none ever comes (a rate or a burst of 0 closes the route).
    pub fn take(&mut self, now: Instant) -> Result<(), Option<Duration>> {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.throttle.rate).min(self.throttle.burst);
        self.refilled = self.refilled.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        if self.throttle.rate > 0.0 && self.throttle.burst >= 1.0 {
            Err(Some(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.throttle.rate,
            )))
        } else {
            Err(None)
        }
    }
}

/// Each HTTP API's throttling, by logical id, with parameters resolved as the stack was
/// given them. An API without `DefaultRouteSettings` limits is not throttled locally (on
/// AWS only the account's limit would apply).
pub fn of_apis(template: &Template, names: &Names) -> Result<HashMap<String, Throttle>> {
    let mut throttles = HashMap::new();
    for api in template.http_apis() {
        let Some(settings) = api.throttling else {
            continue;
        };
        let number = |what: &str, value| -> Result<f64> {
            let text = names
                .resolve(template, value)
                .with_context(|| format!("{}.DefaultRouteSettings.{what}", api.id))?;
            text.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .with_context(|| format!("{}.{what} `{text}` is not a number of 0 or more", api.id))
        };
        throttles.insert(
            api.id.clone(),
            Throttle {
                rate: number("ThrottlingRateLimit", &settings.rate)?,
                burst: number("ThrottlingBurstLimit", &settings.burst)?,
            },
        );
    }
    Ok(throttles)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(rate: f64, burst: f64, start: Instant) -> TokenBucket {
        TokenBucket::full(Throttle { rate, burst }, start)
    }

    #[test]
    fn a_full_bucket_takes_its_burst_then_refuses_until_it_refills() {
        let start = Instant::now();
        let mut bucket = bucket(2.0, 3.0, start);
        for _ in 0..3 {
            assert_eq!(bucket.take(start), Ok(()));
        }
        assert_eq!(bucket.take(start), Err(Some(Duration::from_millis(500))));
        let later = start + Duration::from_millis(500);
        assert_eq!(bucket.take(later), Ok(()));
        assert!(bucket.take(later).is_err());
    }

    #[test]
    fn refills_at_the_rate_up_to_the_burst_only() {
        let start = Instant::now();
        let mut bucket = bucket(10.0, 2.0, start);
        assert_eq!(bucket.take(start), Ok(()));
        assert_eq!(bucket.take(start), Ok(()));
        // A minute idle refills two tokens, not six hundred.
        let idle = start + Duration::from_secs(60);
        assert_eq!(bucket.take(idle), Ok(()));
        assert_eq!(bucket.take(idle), Ok(()));
        assert!(bucket.take(idle).is_err());
    }

    #[test]
    fn a_zero_limit_closes_the_route_for_good() {
        let start = Instant::now();
        assert_eq!(bucket(0.0, 5.0, start).take(start), Ok(()));
        let mut closed = bucket(0.0, 1.0, start);
        assert_eq!(closed.take(start), Ok(()));
        assert_eq!(closed.take(start + Duration::from_secs(3600)), Err(None));
        assert_eq!(bucket(100.0, 0.0, start).take(start), Err(None));
    }

    #[test]
    fn the_template_throttles_its_http_api_with_the_parameters_given() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        let template = Template::load(&path).unwrap();
        let defaults = of_apis(&template, &Names::default()).unwrap();
        let default = defaults["HttpApi"];
        assert!(
            default.rate > 0.0 && default.burst >= default.rate,
            "{default:?}"
        );

        let mut names = Names::default();
        names
            .parameters
            .insert("ApiThrottlingRateLimit".into(), "2.5".into());
        names
            .parameters
            .insert("ApiThrottlingBurstLimit".into(), "7".into());
        assert_eq!(
            of_apis(&template, &names).unwrap()["HttpApi"],
            Throttle {
                rate: 2.5,
                burst: 7.0
            }
        );
    }
}
