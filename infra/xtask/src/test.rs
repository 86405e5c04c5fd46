//! `cargo xtask test`: what CI runs. Lints the template, then runs every test
//! of the workspace against freshly started emulators, so tests never see
//! state left by an earlier run.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::dev::cargo;
use crate::emulators::Emulators;
use crate::repo::Repo;
use crate::setup;
use crate::supervisor::{self, Supervised};

/// Caps the test harness's threads, e.g. on a small CI machine where tests
/// that each start work on the emulators would otherwise starve each other.
const THREADS_VARIABLE: &str = "KASSA_TEST_THREADS";

/// `args` (after an optional leading `--`) go to `cargo test` as they are.
pub fn run(repo: &Repo, args: &[String]) -> Result<ExitCode> {
    let passthrough = match args.split_first() {
        Some((first, rest)) if first == "--" => rest,
        _ => args,
    };
    supervisor::stop_everything_on_interrupt()?;

    let started = Instant::now();
    setup::ensure(repo)?;
    println!(
        "test: setup done ({:.1} s)",
        started.elapsed().as_secs_f64()
    );

    lint_template(repo)?;

    let started = Instant::now();
    let emulators = Emulators::start(repo)?;
    println!(
        "test: emulators up ({:.1} s): dynamodb {}, moto {}",
        started.elapsed().as_secs_f64(),
        emulators.dynamodb_url,
        emulators.moto_url
    );

    let started = Instant::now();
    let mut command = Command::new(cargo());
    // Arguments that pick targets replace the default of every target of every package.
    let picks_targets = passthrough.iter().any(|arg| {
        matches!(
            arg.as_str(),
            "-p" | "--package" | "--test" | "--lib" | "--bin" | "--tests"
        )
    });
    command.arg("test");
    if !picks_targets {
        command.args(["--workspace", "--all-targets"]);
    }
    command
        .args(cargo_test_args(
            passthrough,
            std::env::var(THREADS_VARIABLE).ok(),
        )?)
        .current_dir(&repo.root)
        .envs(emulators.environment());
    let status = Supervised::spawn("cargo test", command)?.wait()?;
    println!(
        "test: cargo test {} ({:.1} s)",
        if status.success() { "passed" } else { "failed" },
        started.elapsed().as_secs_f64()
    );

    drop(emulators);
    println!("test: emulators stopped");
    Ok(ExitCode::from(supervisor::exit_code(status)))
}

/// AWS's serverless rules (PyPI `cfn-lint-serverless`), run on top of
/// cfn-lint's own: throttling, access logs, log retention, DLQs, destinations.
const SERVERLESS_RULES: &str = "cfn_lint_serverless.rules";

fn lint_template(repo: &Repo) -> Result<()> {
    let started = Instant::now();
    lint(repo, &repo.template())?;
    println!(
        "test: cfn-lint template.yaml ok, serverless rules included ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Fails on any finding, warnings included: cfn-lint's exit status is non-zero
/// for each level, so a rule the project disagrees with is suppressed in the
/// template beside its reason rather than left to scroll past.
fn lint(repo: &Repo, template: &Path) -> Result<()> {
    let status = Command::new(repo.venv_program("cfn-lint"))
        .arg(template)
        .args(["--append-rules", SERVERLESS_RULES])
        .current_dir(&repo.root)
        .status()
        .context("starting cfn-lint from the project venv")?;
    if !status.success() {
        bail!(
            "test: cfn-lint {} reported findings ({status})",
            template.display()
        );
    }
    Ok(())
}

/// The caller's arguments, plus `--test-threads N` for the test binaries when
/// asked for: after the caller's own `--` if they gave one, else after a new one.
fn cargo_test_args(passthrough: &[String], threads: Option<String>) -> Result<Vec<String>> {
    let mut args = passthrough.to_vec();
    if let Some(threads) = threads.filter(|threads| !threads.is_empty()) {
        if threads.parse::<u32>().map_or(true, |threads| threads == 0) {
            bail!("test: {THREADS_VARIABLE}=`{threads}` is not a positive whole number");
        }
        if !args.iter().any(|arg| arg == "--") {
            args.push("--".to_owned());
        }
        args.push(format!("--test-threads={threads}"));
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::{cargo_test_args, lint};
    use crate::repo::Repo;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn passes_arguments_through_unchanged_without_a_thread_cap() {
        let args = strings(&["-p", "kassa-domain", "--", "--nocapture"]);
        assert_eq!(cargo_test_args(&args, None).unwrap(), args);
    }

    #[test]
    fn adds_the_thread_cap_for_the_test_binaries() {
        assert_eq!(
            cargo_test_args(&[], Some("2".into())).unwrap(),
            strings(&["--", "--test-threads=2"])
        );
        assert_eq!(
            cargo_test_args(&strings(&["--", "--nocapture"]), Some("1".into())).unwrap(),
            strings(&["--", "--nocapture", "--test-threads=1"])
        );
    }

    #[test]
    fn refuses_a_thread_cap_that_is_not_a_count() {
        assert!(cargo_test_args(&[], Some("many".into())).is_err());
        assert!(cargo_test_args(&[], Some("0".into())).is_err());
    }

    /// A function without a log group: clean for cfn-lint's own rules, a
    /// warning (WS1004) for the serverless rules.
    const FUNCTION: &str = r#"AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  Function:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: provided.al2023
      Handler: bootstrap
      CodeUri: .
      MemorySize: 128
      Timeout: 3
      Tracing: Active
"#;

    const LOG_GROUP: &str = r#"  FunctionLogs:
    Type: AWS::Logs::LogGroup
    Properties:
      LogGroupName: !Sub /aws/lambda/${Function}
      RetentionInDays: 7
"#;

    fn lint_text(name: &str, text: &str) -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("kassa-lint-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let template = dir.join("template.yaml");
        std::fs::write(&template, text)?;
        let linted = lint(&Repo::locate(), &template);
        std::fs::remove_dir_all(&dir)?;
        linted
    }

    #[test]
    fn a_serverless_warning_fails_the_lint() {
        let error = lint_text("warning", FUNCTION).expect_err("WS1004 is a finding");
        assert!(error.to_string().contains("reported findings"), "{error:#}");
    }

    #[test]
    fn a_template_that_follows_the_serverless_rules_passes() {
        lint_text("clean", &format!("{FUNCTION}{LOG_GROUP}")).unwrap();
    }
}
