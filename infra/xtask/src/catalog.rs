//! `cargo xtask catalog`: regenerates docs/event-catalog.json from the event types.

use crate::repo::Repo;
use anyhow::{Context, Result};
use std::process::ExitCode;

pub fn run(repo: &Repo) -> Result<ExitCode> {
    let path = repo.root.join("docs/event-catalog.json");
    let text = serde_json::to_string_pretty(&kassa_domain::catalog::catalog())? + "\n";
    std::fs::create_dir_all(path.parent().context("docs/")?)?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    let count = kassa_domain::catalog::declared_types().len();
    println!("wrote {} ({count} event types)", path.display());
    Ok(ExitCode::SUCCESS)
}
