use aws_lambda_events::event::dynamodb::Event;
use kassa_event_relay::EventRelay;
use kassa_runtime::{config, telemetry, Config};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let aws = config::aws().await;
    let relay = EventRelay::from_config(&config, &aws)?;
    let relay = &relay;
    run(service_fn(move |event: LambdaEvent<Event>| async move {
        Ok::<_, Error>(relay.handle(event.payload).await)
    }))
    .await
}
