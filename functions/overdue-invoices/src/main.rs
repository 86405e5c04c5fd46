use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use kassa_overdue_invoices::OverdueInvoices;
use kassa_runtime::{config, telemetry, Config, SystemClock};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let aws = config::aws().await;
    let handler = OverdueInvoices::from_config(&config, &aws, Arc::new(SystemClock))?;
    let handler = &handler;
    run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent>| async move {
            handler.handle(event.payload).await
        },
    ))
    .await
}
