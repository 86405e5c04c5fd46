//! `kassa-rebuild --events-table <name> --state-table <name> <read model>... | --all`:
//! rebuilds read models from the event log. `cargo xtask rebuild` runs it against the
//! local stack; with the AWS credentials of the environment and the stack's table names
//! it rebuilds a deployed stack's.

use kassa_commerce::coupon_views::View;
use kassa_runtime::{config, telemetry};
use std::process::ExitCode;
use time::OffsetDateTime;

fn usage() -> String {
    let names: Vec<&str> = View::ALL.iter().map(|v| v.name()).collect();
    format!(
        "usage: kassa-rebuild --events-table <name> --state-table <name> (<read model>... | --all)\n\
         read models: {}",
        names.join(", ")
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    telemetry::init();
    let (mut events, mut state, mut views) = (None, None, Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--events-table" => events = args.next(),
            "--state-table" => state = args.next(),
            "--all" => views.extend(View::ALL),
            name => match View::named(name) {
                Some(view) => views.push(view),
                None => {
                    eprintln!("kassa-rebuild: no read model `{name}`\n{}", usage());
                    return ExitCode::from(2);
                }
            },
        }
    }
    let (Some(events), Some(state)) = (events, state) else {
        eprintln!("{}", usage());
        return ExitCode::from(2);
    };
    if views.is_empty() {
        eprintln!("{}", usage());
        return ExitCode::from(2);
    }
    let aws = config::aws().await;
    let client = aws_sdk_dynamodb::Client::new(&aws);
    let read_models = kassa_commerce::coupon_views::CouponViews::new(
        kassa_store::EventStore::new(client.clone(), events),
        kassa_store::Views::new(client, state),
    );
    for view in views {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        match read_models.rebuild(view, now).await {
            Ok(done) => println!(
                "rebuild: {}: {} stream(s) folded, {} row(s) written, {} removed",
                view.name(),
                done.streams,
                done.written,
                done.removed
            ),
            Err(e) => {
                eprintln!("rebuild: {}: {e}", view.name());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
