//! `cargo xtask redrive`: publishes again what the relay parked on its failure queue, and
//! the stream ranges Lambda gave up on. Against the stack `cargo xtask dev` runs, by
//! default; against a deployed stack when given its queue URL (and bus), with the AWS
//! credentials of the environment.

use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

use crate::cli::Flags;
use crate::dev::{cargo, DEV_PREFIX};
use crate::repo::Repo;
use crate::supervisor::{self, Supervised};

pub fn run(repo: &Repo, args: &[String]) -> Result<ExitCode> {
    let flags = Flags::parse("redrive", args, &["queue", "bus"])?;
    let queue = flags
        .value("queue")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{DEV_PREFIX}-RelayFailureQueue"));
    let bus = flags
        .value("bus")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{DEV_PREFIX}-EventBus"));
    supervisor::stop_everything_on_interrupt()?;

    let mut command = Command::new(cargo());
    command
        .args(["run", "--quiet", "--package", "kassa-event-relay", "--bin"])
        .args(["kassa-redrive", "--", "--queue", &queue, "--bus", &bus])
        .current_dir(&repo.root);
    // A queue URL names a deployed stack, reached with the environment's AWS settings.
    let deployed = queue.starts_with("https://");
    if deployed {
        if flags.value("bus").is_none() {
            bail!("redrive: --bus is required with a queue URL (the stack's EventBusName output)");
        }
        println!("redrive: {queue} → bus {bus} (AWS, as the environment's credentials allow)");
    } else {
        let endpoints = std::fs::read_to_string(repo.dev_endpoints()).with_context(|| {
            format!(
                "reading {}: is `cargo xtask dev` running?",
                repo.dev_endpoints().display()
            )
        })?;
        let endpoints: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&endpoints).context("the dev stack's endpoints")?;
        // The file outlives a dev stack stopped with Ctrl-C; say so rather than time out.
        let sqs = endpoints
            .get("AWS_ENDPOINT_URL_SQS")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if !answers(sqs) {
            bail!(
                "redrive: the local stack ({sqs}) does not answer: is `cargo xtask dev` running?"
            );
        }
        for (name, value) in endpoints {
            command.env(name, value.as_str().unwrap_or_default());
        }
        println!("redrive: {queue} → bus {bus} (the local stack)");
    }
    let status = Supervised::spawn("kassa-redrive", command)?.wait()?;
    Ok(ExitCode::from(supervisor::exit_code(status)))
}

/// Whether something listens at `url` (`http://host:port`).
fn answers(url: &str) -> bool {
    use std::net::{TcpStream, ToSocketAddrs};
    let address = url.trim_start_matches("http://").trim_end_matches('/');
    address
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, std::time::Duration::from_secs(1)).is_ok())
}
