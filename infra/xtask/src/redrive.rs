//! `cargo xtask redrive`: publishes again what the relay parked on its failure queue, and
//! the stream ranges Lambda gave up on. Against the stack `cargo xtask dev` runs, by
//! default; against a deployed stack when given its queue URL (and bus), with the AWS
//! credentials of the environment.

use std::process::{Command, ExitCode};

use anyhow::{bail, Result};

use crate::cli::Flags;
use crate::dev::{self, cargo, DEV_PREFIX};
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
        dev::attach(repo, &mut command, "AWS_ENDPOINT_URL_SQS")?;
        println!("redrive: {queue} → bus {bus} (the local stack)");
    }
    let status = Supervised::spawn("kassa-redrive", command)?.wait()?;
    Ok(ExitCode::from(supervisor::exit_code(status)))
}
