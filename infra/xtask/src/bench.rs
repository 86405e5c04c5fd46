//! `cargo xtask bench`: builds the release consume-credits binary and the bench, starts
//! the emulators and runs `kassa-bench` against them. Release builds, because latency,
//! size and cold start of a debug build say nothing about what Lambda runs.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Result};

use crate::dev::cargo;
use crate::emulators::Emulators;
use crate::repo::Repo;
use crate::setup;
use crate::supervisor::{self, Supervised};

/// `args` (after an optional leading `--`) go to `kassa-bench` as they are, e.g.
/// `--hot-consumes 5000`.
pub fn run(repo: &Repo, args: &[String]) -> Result<ExitCode> {
    let passthrough = match args.split_first() {
        Some((first, rest)) if first == "--" => rest,
        _ => args,
    };
    supervisor::stop_everything_on_interrupt()?;

    let started = Instant::now();
    setup::ensure(repo)?;
    println!(
        "bench: setup done ({:.1} s)",
        started.elapsed().as_secs_f64()
    );

    // Built before the emulators start: with LTO this takes minutes on a small machine,
    // which the emulators would spend idle, and a failed build then needs no clean-up.
    let started = Instant::now();
    let mut build = Command::new(cargo());
    build
        .args([
            "build",
            "--release",
            "-p",
            "kassa-bench",
            "-p",
            "kassa-consume-credits",
        ])
        .current_dir(&repo.root);
    let status = Supervised::spawn("cargo build --release", build)?.wait()?;
    if !status.success() {
        bail!("bench: cargo build --release failed ({status})");
    }
    println!(
        "bench: release build done ({:.1} s)",
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let emulators = Emulators::start(repo)?;
    println!(
        "bench: emulators up ({:.1} s): dynamodb {}, moto {}",
        started.elapsed().as_secs_f64(),
        emulators.dynamodb_url,
        emulators.moto_url
    );

    let release = release_dir(repo);
    let mut bench = Command::new(release.join("kassa-bench"));
    bench
        .arg("--template")
        .arg(repo.template())
        .arg("--consume-binary")
        .arg(release.join("kassa-consume-credits"))
        .args(passthrough)
        .current_dir(&repo.root)
        .envs(emulators.environment());
    let status = Supervised::spawn("kassa-bench", bench)?.wait()?;

    drop(emulators);
    println!("bench: emulators stopped");
    Ok(ExitCode::from(supervisor::exit_code(status)))
}

/// Where cargo put the release binaries: `$CARGO_TARGET_DIR` when set, as cargo reads it.
fn release_dir(repo: &Repo) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map(|dir| repo.root.join(dir))
        .unwrap_or_else(|| repo.root.join("target"));
    target.join("release")
}
