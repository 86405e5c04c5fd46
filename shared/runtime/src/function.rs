//! What a kassa Lambda is: built once from its configuration at cold start (SDK clients
//! included), then handed every invocation. `main.rs` is one line naming the type; the
//! local runner builds the same types the same way.

use crate::effect::EffectError;
use crate::{config, telemetry, Config, SdkConfig};
use aws_lambda_events::event::dynamodb::Event as StreamBatch;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use kassa_commerce::{Clock, SystemClock};
use lambda_http::{Body, Request, Response};
use lambda_runtime::{service_fn, LambdaEvent};
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;

pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// A function built from configuration.
pub trait Function: Sized + Send + Sync + 'static {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError>;
}

/// Serves API Gateway routes.
pub trait HttpFunction: Function {
    fn handle(&self, request: Request) -> impl Future<Output = Response<Body>> + Send;
}

/// Reacts to the events an SQS queue delivers.
pub trait SqsFunction: Function {
    fn handle(&self, batch: SqsEvent) -> impl Future<Output = SqsBatchResponse> + Send;
}

/// Runs on a schedule; an error makes EventBridge retry the invocation.
pub trait ScheduledFunction: Function {
    /// What one run did, logged and answered.
    type Run: Serialize + Send;
    fn handle(
        &self,
        event: EventBridgeEvent,
    ) -> impl Future<Output = Result<Self::Run, EffectError>> + Send;
}

/// Reads a DynamoDB stream.
pub trait StreamFunction: Function {
    fn handle(&self, batch: StreamBatch) -> impl Future<Output = DynamoDbEventResponse> + Send;
}

async fn start<F: Function>() -> Result<F, lambda_runtime::Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let aws = config::aws().await;
    F::from_config(&config, &aws, Arc::new(SystemClock))
}

pub async fn run_http<F: HttpFunction>() -> Result<(), lambda_runtime::Error> {
    let function = start::<F>().await?;
    let function = &function;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, lambda_runtime::Error>(function.handle(request).await)
    }))
    .await
}

pub async fn run_sqs<F: SqsFunction>() -> Result<(), lambda_runtime::Error> {
    let function = start::<F>().await?;
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, lambda_runtime::Error>(function.handle(event.payload).await)
    }))
    .await
}

pub async fn run_schedule<F: ScheduledFunction>() -> Result<(), lambda_runtime::Error> {
    let function = start::<F>().await?;
    let function = &function;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent>| async move {
            function
                .handle(event.payload)
                .await
                .map_err(lambda_runtime::Error::from)
        },
    ))
    .await
}

pub async fn run_stream<F: StreamFunction>() -> Result<(), lambda_runtime::Error> {
    let function = start::<F>().await?;
    let function = &function;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<StreamBatch>| async move {
            Ok::<_, lambda_runtime::Error>(function.handle(event.payload).await)
        },
    ))
    .await
}
