//! `cargo xtask rebuild (<read model>... | --all)`: rebuilds read models from the event
//! log, against the stack `cargo xtask dev` runs; with `--events-table` and
//! `--state-table` (a deployed stack's EventsTableName and StateTableName outputs),
//! against AWS with the environment's credentials.

use std::process::{Command, ExitCode};

use anyhow::{bail, Result};

use crate::dev::{self, cargo, DEV_PREFIX};
use crate::repo::Repo;
use crate::supervisor::{self, Supervised};

pub fn run(repo: &Repo, args: &[String]) -> Result<ExitCode> {
    let (mut events, mut state, mut models) = (None, None, Vec::new());
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--events-table" => events = args.next().cloned(),
            "--state-table" => state = args.next().cloned(),
            "--all" => models.push(arg.clone()),
            flag if flag.starts_with("--") => {
                bail!("rebuild: unknown flag {flag} (see `cargo xtask help`)")
            }
            name => models.push(name.to_owned()),
        }
    }
    if models.is_empty() {
        bail!("rebuild: name the read models to rebuild, or --all (see `cargo xtask help`)");
    }
    supervisor::stop_everything_on_interrupt()?;

    let deployed = events.is_some() || state.is_some();
    let (Some(events), Some(state)) = (
        events.or_else(|| (!deployed).then(|| format!("{DEV_PREFIX}-EventsTable"))),
        state.or_else(|| (!deployed).then(|| format!("{DEV_PREFIX}-StateTable"))),
    ) else {
        bail!("rebuild: a deployed stack needs both --events-table and --state-table");
    };
    let mut command = Command::new(cargo());
    command
        .args(["run", "--quiet", "--package", "kassa-coupon-views", "--bin"])
        .args(["kassa-rebuild", "--", "--events-table", &events])
        .args(["--state-table", &state])
        .args(&models)
        .current_dir(&repo.root);
    if deployed {
        println!("rebuild: {events} → {state} (AWS, as the environment's credentials allow)");
    } else {
        dev::attach(repo, &mut command, "AWS_ENDPOINT_URL_DYNAMODB")?;
        println!("rebuild: {events} → {state} (the local stack)");
    }
    let status = Supervised::spawn("kassa-rebuild", command)?.wait()?;
    Ok(ExitCode::from(supervisor::exit_code(status)))
}
