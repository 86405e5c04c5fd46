//! `kassa-local --template template.yaml --listen 127.0.0.1:3000`; `cargo xtask dev` starts
//! it with the emulators' endpoints in the environment.

use anyhow::{bail, Context, Result};
use kassa_local::{Options, Stack};
use std::path::PathBuf;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<()> {
    kassa_runtime::telemetry::init();
    let mut template = PathBuf::from("template.yaml");
    let mut listen = "127.0.0.1:3000".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--template" => template = args.next().context("--template needs a path")?.into(),
            "--listen" => listen = args.next().context("--listen needs host:port")?,
            other => bail!("unknown argument {other}; usage: kassa-local [--template PATH] [--listen HOST:PORT]"),
        }
    }
    let options = Options {
        template,
        listen: listen
            .parse()
            .with_context(|| format!("--listen {listen}"))?,
        prefix: Some("kassa-dev".into()),
        jwt_secret: std::env::var("KASSA_JWT_SECRET")
            .context("KASSA_JWT_SECRET is not set; start through `cargo xtask dev`")?,
        mail_sink_dir: std::env::var_os("KASSA_MAIL_SINK_DIR").map(PathBuf::from),
        retry_after: Duration::from_secs(2),
        parameters: kassa_local::stripe_parameters(
            &std::env::var("KASSA_STRIPE_WEBHOOK_SECRET")
                .unwrap_or_else(|_| "whsec_local_dev".to_owned()),
        ),
    };
    let stack = Stack::start(options).await?;
    if let Err(e) = stack.register_stripe_webhook().await {
        eprintln!("kassa-local: Stripe webhooks stay off: {e:#}");
    }
    if let Err(e) = stack.create_stripe_prices().await {
        eprintln!("kassa-local: the tiers' plans are not at localstripe: {e:#}");
    }
    println!("kassa-local: serving the template's API on {}", stack.url);
    tokio::signal::ctrl_c().await?;
    println!("kassa-local: stopping");
    Ok(())
}
