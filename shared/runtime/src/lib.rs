//! The Lambda glue every kassa function shares: configuration, the caller's identity,
//! problem+json answers, event batches from SQS, the mail port, tracing and the clock.

pub mod access;
pub mod caller;
pub mod clock;
pub mod command;
pub mod config;
pub mod events;
pub mod http;
pub mod idempotency_key;
pub mod invoicing;
pub mod mail;
pub mod orders;
pub mod problem;
pub mod telemetry;
pub mod wallet;

pub use aws_config::SdkConfig;
pub use caller::caller;
pub use clock::{Clock, SystemClock};
pub use config::Config;
pub use problem::Problem;
