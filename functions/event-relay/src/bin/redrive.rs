//! `kassa-redrive --queue <URL or name> --bus <name>`: publishes again what the relay's
//! failure queue holds. `cargo xtask redrive` runs it against the local stack or AWS.

use kassa_event_relay::redrive::Redrive;
use kassa_event_relay::EventRelay;
use kassa_runtime::{config, telemetry};
use std::process::ExitCode;

const USAGE: &str =
    "usage: kassa-redrive --queue <failure queue URL or name> --bus <event bus name>";

#[tokio::main]
async fn main() -> ExitCode {
    telemetry::init();
    let (mut queue, mut bus) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--queue" => queue = args.next(),
            "--bus" => bus = args.next(),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(queue), Some(bus)) = (queue, bus) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let aws = config::aws().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let relay = EventRelay::new(aws_sdk_eventbridge::Client::new(&aws), bus)
        .with_failure_queue(sqs.clone(), &queue);
    let redrive = Redrive::new(
        relay,
        sqs,
        aws_sdk_dynamodbstreams::Client::new(&aws),
        &queue,
    );
    match redrive.run().await {
        Ok(summary) => {
            println!(
                "redrive: {} message(s) read, {} event(s) published again, {} still failing",
                summary.messages, summary.republished, summary.left
            );
            if summary.left == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("redrive: {e}");
            ExitCode::FAILURE
        }
    }
}
