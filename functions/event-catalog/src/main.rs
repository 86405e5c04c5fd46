use kassa_event_catalog::EventCatalog;
use kassa_runtime::{config, telemetry, Config, SystemClock};
use lambda_http::{run, service_fn, Error, Request};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let aws = config::aws().await;
    let handler = EventCatalog::from_config(&config, &aws, Arc::new(SystemClock))?;
    let handler = &handler;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(handler.handle(request).await)
    }))
    .await
}
