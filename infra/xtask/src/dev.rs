//! `cargo xtask dev`: the whole stack on this machine, for trying the API by
//! hand. Runs until the local runner exits or Ctrl-C.

use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cli::Flags;
use crate::emulators::Emulators;
use crate::repo::Repo;
use crate::supervisor::{self, Supervised};
use crate::{dev_secret, setup, token};

const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
/// The prefix kassa-local gives the dev stack's resources (`kassa-dev-EventBus`, ...).
pub const DEV_PREFIX: &str = "kassa-dev";
const DEMO_USER: &str = "demo";
const DEMO_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

pub fn run(repo: &Repo, args: &[String]) -> Result<ExitCode> {
    let flags = Flags::parse("dev", args, &["listen"])?;
    let listen = flags.value("listen").unwrap_or(DEFAULT_LISTEN);
    supervisor::stop_everything_on_interrupt()?;

    setup::ensure(repo)?;
    let emulators = Emulators::start(repo)?;
    let demo_token = token::mint(
        &dev_secret::load_or_create(repo)?,
        DEMO_USER,
        token::DEFAULT_ROLE,
        DEMO_TOKEN_TTL,
    )?;

    println!();
    println!("dev: API        http://{listen}");
    println!("dev: mail sink  {}", repo.mail_sink().display());
    println!(
        "dev: Stripe     {} (localstripe; its webhooks go to http://{listen}/stripe/webhook)",
        emulators.stripe_url
    );
    println!(
        "dev: demo token (user {DEMO_USER}, role {})",
        token::DEFAULT_ROLE
    );
    println!("{demo_token}");
    println!("dev: starting kassa-local (Ctrl-C stops everything)");
    println!();

    // Through cargo so an edit is rebuilt on the next `cargo xtask dev`.
    let mut command = Command::new(cargo());
    command
        .args(["run", "--package", "kassa-local", "--", "--template"])
        .arg(repo.template())
        .args(["--listen", listen])
        .current_dir(&repo.root)
        .envs(emulators.environment());
    let endpoints = repo.dev_endpoints();
    write_endpoints(&endpoints, &emulators)?;
    let mut local = Supervised::spawn("kassa-local", command)?;
    let status = local.wait();
    let _ = std::fs::remove_file(&endpoints);
    let status = status?;
    println!("dev: kassa-local exited ({status}), stopping the emulators");
    drop(emulators);
    Ok(ExitCode::from(supervisor::exit_code(status)))
}

/// Keeps the emulators' AWS endpoints where `cargo xtask redrive` finds them.
fn write_endpoints(path: &std::path::Path, emulators: &Emulators) -> Result<()> {
    let endpoints: serde_json::Map<String, serde_json::Value> = emulators
        .environment()
        .into_iter()
        .filter(|(name, _)| name.starts_with("AWS_"))
        .map(|(name, value)| (name.to_owned(), value.into()))
        .collect();
    std::fs::write(path, serde_json::Value::Object(endpoints).to_string())
        .with_context(|| format!("writing {}", path.display()))
}

/// The cargo that is running us (cargo sets $CARGO for what it runs), so the
/// same toolchain builds the stack.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Points `command` at the emulators of the running `cargo xtask dev`, after checking
/// that the one `probe` names (`AWS_ENDPOINT_URL_SQS`) answers: the endpoints file
/// outlives a dev stack stopped with Ctrl-C, so say so rather than time out.
pub fn attach(repo: &Repo, command: &mut Command, probe: &str) -> Result<()> {
    let endpoints = std::fs::read_to_string(repo.dev_endpoints()).with_context(|| {
        format!(
            "reading {}: is `cargo xtask dev` running?",
            repo.dev_endpoints().display()
        )
    })?;
    let endpoints: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&endpoints).context("the dev stack's endpoints")?;
    let url = endpoints
        .get(probe)
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    if !answers(url) {
        anyhow::bail!("the local stack ({url}) does not answer: is `cargo xtask dev` running?");
    }
    for (name, value) in endpoints {
        command.env(name, value.as_str().unwrap_or_default());
    }
    Ok(())
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
