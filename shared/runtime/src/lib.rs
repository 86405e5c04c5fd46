//! The Lambda glue every kassa function shares: configuration, the caller's identity,
//! problem+json answers, event batches from SQS, the mail port and tracing. The kernel
//! and the clock the functions decide by are `kassa_commerce`'s.

pub mod access;
pub mod caller;
pub mod config;
pub mod effect;
pub mod events;
pub mod function;
pub mod http;
pub mod idempotency_key;
pub mod inbox;
pub mod mail;
pub mod notice;
pub mod problem;
pub mod sweep;
pub mod telemetry;

pub use aws_config::SdkConfig;
pub use caller::caller;
pub use config::Config;
pub use function::{
    run_http, run_schedule, run_sqs, run_stream, Function, HttpFunction, ScheduledFunction,
    SqsFunction, StreamFunction,
};
pub use problem::Problem;
