//! `cargo xtask bench`: placeholder until the load benchmark is written.

use std::process::ExitCode;

use anyhow::Result;

use crate::repo::Repo;

pub fn run(_repo: &Repo, _args: &[String]) -> Result<ExitCode> {
    eprintln!("bench: not yet implemented");
    Ok(ExitCode::from(2))
}
