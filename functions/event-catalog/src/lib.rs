//! The event catalog over HTTP: every event type kassa publishes, with the JSON Schema of
//! its payload, generated from the same Rust types as docs/event-catalog.json.

use kassa_commerce::Clock;
use kassa_runtime::function::StartError;
use kassa_runtime::http::{json, respond, route_key, string_param};
use kassa_runtime::{caller, Config, Function, HttpFunction, Problem, SdkConfig};
use lambda_http::{Body, Request, Response};
use std::sync::Arc;

pub struct EventCatalog {
    catalog: serde_json::Value,
}

impl EventCatalog {
    pub fn new() -> Self {
        Self {
            catalog: kassa_domain::catalog::catalog(),
        }
    }

    fn serve(&self, request: &Request) -> Result<Response<Body>, Problem> {
        caller(request)?;
        match route_key(request).as_str() {
            "GET /events/catalog" => Ok(json(200, &self.catalog)),
            "GET /events/catalog/{eventType}" => {
                let event_type = string_param(request, "eventType")?;
                self.catalog["events"]
                    .get(&event_type)
                    .map(|entry| json(200, entry))
                    .ok_or_else(|| {
                        Problem::not_found(
                            "unknown_event_type",
                            format!("kassa publishes no `{event_type}` events"),
                        )
                    })
            }
            other => Err(Problem::not_found(
                "no_route",
                format!("route `{other}` is not served here"),
            )),
        }
    }
}

impl Function for EventCatalog {
    fn from_config(
        _config: &Config,
        _aws: &SdkConfig,
        _clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        Ok(Self::new())
    }
}

impl HttpFunction for EventCatalog {
    async fn handle(&self, request: Request) -> Response<Body> {
        respond(self.serve(&request))
    }
}

impl Default for EventCatalog {
    fn default() -> Self {
        Self::new()
    }
}
