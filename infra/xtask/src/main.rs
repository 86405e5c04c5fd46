//! `cargo xtask`: the one entry point a developer or CI needs. It installs the
//! emulators, starts them on free ports, and runs the local stack or the tests
//! against them, so nothing depends on Docker or on a hand-prepared machine.

mod bench;
mod catalog;
mod cli;
mod dev;
mod dev_secret;
mod emulators;
mod new_function;
mod rebuild;
mod redrive;
mod repo;
mod setup;
mod supervisor;
mod test;
mod token;

use std::process::ExitCode;

use repo::Repo;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  dev [--listen ADDR]       set up, start the emulators and run the local stack
                            (kassa-local) on ADDR, default 127.0.0.1:3000
  test [-- CARGO_TEST_ARGS] set up, lint template.yaml, start the emulators and
                            run `cargo test --workspace --all-targets` against them
                            (KASSA_TEST_THREADS=N passes --test-threads N)
  bench                     latency, hot-wallet throughput and cold start figures
  catalog                   regenerate docs/event-catalog.json (event JSON Schemas)
  new-function NAME --http [--route \"POST /path\"] | --sqs --event TYPE | --schedule [EXPR]
                            scaffold a function on the kernel: package, template
                            resources (route, or queue + DLQ + rule, or schedule),
                            workspace entry and the local runner's entry
  redrive [--queue Q --bus B]
                            publish again what the relay parked or Lambda gave up
                            on: the local stack's (a running `dev`) by default; on
                            AWS, Q and B are the stack's RelayFailureQueueUrl and
                            EventBusName outputs
  rebuild (MODEL... | --all) [--events-table E --state-table S]
                            rebuild read models from the event log (active-coupons,
                            seller-coupons, user-coupon-usages): the local stack's by
                            default; on AWS, E and S are the stack's EventsTableName
                            and StateTableName outputs
  token --user U [--role R] [--ttl-hours H]
                            print a dev JWT for U (role default `user`, 12 h)
  help                      this text
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    let rest: Vec<String> = args.collect();
    let repo = Repo::locate();

    let outcome = match command.as_deref() {
        None | Some("help" | "--help" | "-h") => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        Some("dev") => dev::run(&repo, &rest),
        Some("test") => test::run(&repo, &rest),
        Some("bench") => bench::run(&repo, &rest),
        Some("token") => token::run(&repo, &rest),
        Some("redrive") => redrive::run(&repo, &rest),
        Some("rebuild") => rebuild::run(&repo, &rest),
        Some("catalog") => catalog::run(&repo),
        Some("new-function") => new_function::run(&repo, &rest),
        Some(other) => {
            eprint!("xtask: unknown command `{other}`\n\n{USAGE}");
            Ok(ExitCode::from(2))
        }
    };
    // Everything a command started was dropped, so stopped, before we get here.
    outcome.unwrap_or_else(|error| {
        eprintln!("xtask: error: {error:#}");
        ExitCode::FAILURE
    })
}
