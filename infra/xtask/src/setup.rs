//! Installs what the emulators need, and only what is missing, so every
//! command can start with it: the first run on a new machine installs, later
//! runs cost a few file reads. Everything lands inside the repository
//! (node_modules, .venv) so nothing depends on what a machine has globally
//! beyond java, node/npm and python3.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::repo::Repo;

/// DynamoDB Local's jar needs Java 17 or later.
const MINIMUM_JAVA: u32 = 17;

pub fn ensure(repo: &Repo) -> Result<()> {
    require_java(MINIMUM_JAVA)?;
    ensure_node_modules(repo)?;
    ensure_venv(repo)?;
    Ok(())
}

fn require_java(minimum: u32) -> Result<()> {
    let output = match Command::new("java").arg("-version").output() {
        Ok(output) => output,
        Err(error) => bail!(
            "java not found ({error}): DynamoDB Local needs Java {minimum}+ \
             (on Debian: apt-get install openjdk-17-jre-headless)"
        ),
    };
    // `java -version` writes to stderr: `openjdk version "17.0.15" 2025-04-15`.
    let banner = String::from_utf8_lossy(&output.stderr);
    let version = banner.split('"').nth(1).unwrap_or_default();
    match java_major(version) {
        Some(major) if major >= minimum => {
            println!("setup: java {version} ok");
            Ok(())
        }
        Some(_) => bail!(
            "java {version} is too old: DynamoDB Local needs Java {minimum}+ \
             (on Debian: apt-get install openjdk-17-jre-headless, then put its \
             `java` first on PATH or select it with update-alternatives)"
        ),
        None => bail!(
            "could not read the Java version from `java -version`:\n{banner}\
             DynamoDB Local needs Java {minimum}+"
        ),
    }
}

/// "17.0.15", "21", "17-ea" -> 17, 21, 17; the pre-9 scheme "1.8.0_392" -> 8.
fn java_major(version: &str) -> Option<u32> {
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 1 {
        parts.next()?.parse().ok()
    } else {
        Some(first)
    }
}

/// `npm ci` when node_modules is absent or package.json / package-lock.json
/// changed since the last install. The stamp lives inside node_modules, so
/// `npm ci` wiping that directory also wipes a stale stamp.
fn ensure_node_modules(repo: &Repo) -> Result<()> {
    let dir = repo.emulators();
    let stamp = repo.node_modules().join(".kassa-installed");
    let lock = dir.join("package-lock.json");
    let wanted = fingerprint_files(&[&dir.join("package.json"), &lock])?;
    if read_stamp(&stamp).as_deref() == Some(wanted.as_str()) {
        println!("setup: node_modules up to date");
        return Ok(());
    }

    // No lock yet means a first install: npm install writes one to commit.
    let (verb, why) = if lock.exists() {
        ("ci", "package-lock.json changed or node_modules missing")
    } else {
        ("install", "no package-lock.json yet")
    };
    println!("setup: npm {verb} in infra/emulators ({why})");
    run(Command::new("npm")
        .args([verb, "--no-audit", "--no-fund"])
        .current_dir(&dir))
    .with_context(|| format!("npm {verb} in {}", dir.display()))?;

    // Re-read: npm install may just have created the lock.
    let installed = fingerprint_files(&[&dir.join("package.json"), &lock])?;
    keep_out_of_git(&repo.node_modules())?;
    write_stamp(&stamp, &installed)
}

/// A venv at infra/emulators/.venv with requirements.txt installed, redone
/// when requirements.txt changes. A project venv rather than `pip install
/// --user`: the pins then cannot clash with anything else on the machine.
fn ensure_venv(repo: &Repo) -> Result<()> {
    let venv = repo.venv();
    let requirements = repo.emulators().join("requirements.txt");
    let stamp = venv.join(".kassa-requirements");
    let python = venv.join("bin/python");
    let wanted = fingerprint_files(&[&requirements])?;
    if python.exists() && read_stamp(&stamp).as_deref() == Some(wanted.as_str()) {
        println!("setup: python venv up to date");
        return Ok(());
    }

    if !python.exists() {
        println!("setup: creating infra/emulators/.venv");
        // --clear: a half-made venv from an interrupted run is rebuilt, not reused.
        run(Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv))
        .context("python3 -m venv (on Debian it needs the python3-venv package)")?;
    }
    println!("setup: pip install -r infra/emulators/requirements.txt");
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements))
    .context("pip install -r requirements.txt into the project venv")?;
    keep_out_of_git(&venv)?;
    write_stamp(&stamp, &wanted)
}

/// Installed trees ignore themselves (as Python 3.13's venv does), so they
/// stay out of commits whatever the repository's .gitignore says.
fn keep_out_of_git(installed: &Path) -> Result<()> {
    let ignore = installed.join(".gitignore");
    fs::write(
        &ignore,
        "# written by cargo xtask: installed, not source\n*\n",
    )
    .with_context(|| format!("writing {}", ignore.display()))
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("could not start {:?}", command.get_program()))?;
    if !status.success() {
        bail!("{:?} failed with {status}", command.get_program());
    }
    Ok(())
}

/// FNV-1a over the files' contents, missing files included as absent. Not a
/// security hash, only "did this change"; written out here because Rust's
/// `DefaultHasher` may change between releases and force a needless reinstall.
fn fingerprint_files(paths: &[&Path]) -> Result<String> {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for path in paths {
        let contents = match fs::read(path) {
            Ok(contents) => Some(contents),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        };
        let marker = [u8::from(contents.is_some())];
        for byte in marker.iter().chain(contents.iter().flatten()) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    Ok(format!("{hash:016x}"))
}

fn read_stamp(path: &Path) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|stamp| stamp.trim().to_owned())
}

fn write_stamp(path: &Path, fingerprint: &str) -> Result<()> {
    fs::write(path, format!("{fingerprint}\n"))
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::java_major;

    #[test]
    fn reads_the_major_java_version_of_both_numbering_schemes() {
        assert_eq!(java_major("17.0.15"), Some(17));
        assert_eq!(java_major("21"), Some(21));
        assert_eq!(java_major("17-ea"), Some(17));
        assert_eq!(java_major("1.8.0_392"), Some(8));
        assert_eq!(java_major(""), None);
    }
}
