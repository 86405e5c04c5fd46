use aws_lambda_events::event::sqs::SqsEvent;
use kassa_low_balance_notifier::LowBalanceNotifier;
use kassa_runtime::mail::ConfiguredMailer;
use kassa_runtime::{config, telemetry, Config, SystemClock};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let aws = config::aws().await;
    let mailer = ConfiguredMailer::from_config(&config, &aws);
    let handler = LowBalanceNotifier::from_config(&config, &aws, mailer, Arc::new(SystemClock));
    let handler = &handler;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(handler.handle(event.payload).await)
    }))
    .await
}
