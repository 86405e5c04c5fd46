//! `cargo xtask test`: what CI runs. Lints the template, builds every test
//! binary of the workspace, and runs each integration test binary against
//! emulators started for it alone, so no test sees state left by an earlier
//! one. Sharing one DynamoDB Local across binaries made the later ones several
//! times slower than alone (the flash-sale binary: 638 s after the others
//! against 50 s by itself), as the tables and stream records of every earlier
//! binary pile up in it. The unit-test binaries share one set.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::dev::cargo;
use crate::emulators::Emulators;
use crate::repo::Repo;
use crate::setup;
use crate::supervisor::{self, Supervised};

/// Caps the test harness's threads, e.g. on a small CI machine where tests
/// that each start work on the emulators would otherwise starve each other.
const THREADS_VARIABLE: &str = "KASSA_TEST_THREADS";

/// `args` (after an optional leading `--`) are `cargo test`'s: what comes
/// before a further `--` picks and builds the targets, what comes after goes to
/// every test binary.
pub fn run(repo: &Repo, args: &[String]) -> Result<ExitCode> {
    let passthrough = match args.split_first() {
        Some((first, rest)) if first == "--" => rest,
        _ => args,
    };
    let (cargo_args, harness_args) = split_harness_args(passthrough);
    let harness_args = harness_args_with_cap(harness_args, std::env::var(THREADS_VARIABLE).ok())?;
    let no_fail_fast = cargo_args.iter().any(|arg| arg == "--no-fail-fast");
    supervisor::stop_everything_on_interrupt()?;

    let started = Instant::now();
    setup::ensure(repo)?;
    println!(
        "test: setup done ({:.1} s)",
        started.elapsed().as_secs_f64()
    );

    lint_template(repo)?;

    let started = Instant::now();
    let binaries = build(repo, cargo_args)?;
    println!(
        "test: {} test binaries built ({:.1} s)",
        binaries.len(),
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let mut shared: Option<Emulators> = None;
    let mut ran: Vec<(&TestBinary, Duration, ExitStatus)> = Vec::new();
    for binary in &binaries {
        let fresh;
        let emulators = if binary.integration {
            fresh = start_emulators(repo)?;
            &fresh
        } else {
            match &mut shared {
                Some(emulators) => &*emulators,
                None => &*shared.insert(start_emulators(repo)?),
            }
        };
        println!(
            "     Running {} ({})",
            binary.source.display(),
            binary.executable.display()
        );
        let mut command = Command::new(&binary.executable);
        command
            .args(&harness_args)
            .current_dir(&binary.package_dir)
            .envs(emulators.environment());
        let began = Instant::now();
        let status = Supervised::spawn(&binary.name, command)?.wait()?;
        ran.push((binary, began.elapsed(), status));
        if !status.success() && !no_fail_fast {
            break;
        }
    }
    drop(shared);
    println!("test: emulators stopped");

    let failed: Vec<&str> = ran
        .iter()
        .filter(|(_, _, status)| !status.success())
        .map(|(binary, _, _)| binary.name.as_str())
        .collect();
    let mut slowest: Vec<_> = ran.iter().map(|(b, took, _)| (*took, &b.name)).collect();
    slowest.sort_by_key(|b| std::cmp::Reverse(b.0));
    println!("test: the slowest binaries:");
    for (took, name) in slowest.iter().take(8) {
        println!("test:   {:>7.1} s  {name}", took.as_secs_f64());
    }
    println!(
        "test: {} binaries ran, {} failed{} ({:.1} s)",
        ran.len(),
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(": {}", failed.join(", "))
        },
        started.elapsed().as_secs_f64()
    );
    let worst = ran
        .iter()
        .find(|(_, _, status)| !status.success())
        .map(|(_, _, status)| supervisor::exit_code(*status));
    Ok(ExitCode::from(worst.unwrap_or(0)))
}

fn start_emulators(repo: &Repo) -> Result<Emulators> {
    let started = Instant::now();
    let emulators = Emulators::start(repo)?;
    println!(
        "test: emulators up ({:.1} s): dynamodb {}, moto {}",
        started.elapsed().as_secs_f64(),
        emulators.dynamodb_url,
        emulators.moto_url
    );
    Ok(emulators)
}

/// One test executable, as `cargo test --no-run` reported it.
struct TestBinary {
    /// `package/target`, for the report.
    name: String,
    executable: PathBuf,
    /// Where `cargo test` would run it: the package's root.
    package_dir: PathBuf,
    source: PathBuf,
    /// An integration test (a `tests/` target), which gets emulators of its own.
    integration: bool,
}

/// Builds what `cargo test` would run, without running it, and lists the
/// executables from cargo's JSON messages (diagnostics are still rendered).
fn build(repo: &Repo, cargo_args: &[String]) -> Result<Vec<TestBinary>> {
    // Arguments that pick targets replace the default of every target of every package.
    let picks_targets = cargo_args.iter().any(|arg| {
        matches!(
            arg.as_str(),
            "-p" | "--package" | "--test" | "--lib" | "--bin" | "--tests"
        )
    });
    let mut command = Command::new(cargo());
    command.arg("test");
    if !picks_targets {
        command.args(["--workspace", "--all-targets"]);
    }
    command
        .args(cargo_args)
        .args(["--no-run", "--message-format=json-render-diagnostics"])
        .current_dir(&repo.root)
        .stdout(Stdio::piped());
    let output = command
        .spawn()
        .context("starting cargo test --no-run")?
        .wait_with_output()
        .context("waiting for cargo test --no-run")?;
    if !output.status.success() {
        bail!("test: building the tests failed ({})", output.status);
    }
    binaries(&String::from_utf8_lossy(&output.stdout), &repo.root)
}

/// The test executables among cargo's `--message-format=json` lines.
fn binaries(messages: &str, root: &Path) -> Result<Vec<TestBinary>> {
    let mut found = Vec::new();
    for line in messages.lines().filter(|l| l.starts_with('{')) {
        let message: serde_json::Value =
            serde_json::from_str(line).context("a cargo JSON message")?;
        if message["reason"] != "compiler-artifact" || message["profile"]["test"] != true {
            continue;
        }
        let Some(executable) = message["executable"].as_str() else {
            continue;
        };
        let target = &message["target"];
        let manifest = message["manifest_path"].as_str().unwrap_or_default();
        let package_dir = Path::new(manifest)
            .parent()
            .map_or_else(|| root.to_path_buf(), Path::to_path_buf);
        let package = package_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let source = Path::new(target["src_path"].as_str().unwrap_or_default());
        let kinds: Vec<&str> = target["kind"]
            .as_array()
            .map(|kinds| kinds.iter().filter_map(|k| k.as_str()).collect())
            .unwrap_or_default();
        found.push(TestBinary {
            name: format!("{package}/{}", target["name"].as_str().unwrap_or_default()),
            executable: PathBuf::from(executable),
            // Relative to the package, as cargo test names it.
            source: source
                .strip_prefix(&package_dir)
                .unwrap_or(source)
                .to_path_buf(),
            package_dir,
            integration: kinds == ["test"],
        });
    }
    Ok(found)
}

/// Splits `cargo test`'s arguments at the first `--`: cargo's, then the harness's.
fn split_harness_args(args: &[String]) -> (&[String], &[String]) {
    match args.iter().position(|arg| arg == "--") {
        Some(at) => (&args[..at], &args[at + 1..]),
        None => (args, &[]),
    }
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

/// The harness arguments, plus `--test-threads N` when asked for.
fn harness_args_with_cap(harness: &[String], threads: Option<String>) -> Result<Vec<String>> {
    let mut args = harness.to_vec();
    if let Some(threads) = threads.filter(|threads| !threads.is_empty()) {
        if threads.parse::<u32>().map_or(true, |threads| threads == 0) {
            bail!("test: {THREADS_VARIABLE}=`{threads}` is not a positive whole number");
        }
        args.push(format!("--test-threads={threads}"));
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::{binaries, harness_args_with_cap, lint, split_harness_args};
    use crate::repo::Repo;
    use std::path::Path;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn splits_cargo_arguments_from_the_harness_arguments() {
        let args = strings(&["-p", "kassa-tests", "--test", "carts", "--", "--nocapture"]);
        let (cargo, harness) = split_harness_args(&args);
        assert_eq!(cargo, &args[..4]);
        assert_eq!(harness, &args[5..]);
        let (cargo, harness) = split_harness_args(&args[..2]);
        assert_eq!((cargo.len(), harness.len()), (2, 0));
    }

    #[test]
    fn adds_the_thread_cap_for_the_test_binaries() {
        assert_eq!(
            harness_args_with_cap(&[], None).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            harness_args_with_cap(&[], Some("2".into())).unwrap(),
            strings(&["--test-threads=2"])
        );
        assert_eq!(
            harness_args_with_cap(&strings(&["--nocapture"]), Some("1".into())).unwrap(),
            strings(&["--nocapture", "--test-threads=1"])
        );
    }

    #[test]
    fn refuses_a_thread_cap_that_is_not_a_count() {
        assert!(harness_args_with_cap(&[], Some("many".into())).is_err());
        assert!(harness_args_with_cap(&[], Some("0".into())).is_err());
    }

    /// Lines as cargo 1.95 prints them (shortened): a library built for its
    /// tests, an integration test, a plain build of a dependency, and a
    /// message that is not an artifact.
    #[test]
    fn lists_the_test_executables_from_cargo_messages() {
        let messages = r#"{"reason":"compiler-artifact","package_id":"path+file:///r/shared/domain#kassa-domain@0.1.0","manifest_path":"/r/shared/domain/Cargo.toml","target":{"kind":["lib"],"name":"kassa_domain","src_path":"/r/shared/domain/src/lib.rs"},"profile":{"test":true},"executable":"/t/debug/deps/kassa_domain-1"}
{"reason":"compiler-artifact","package_id":"path+file:///r/tests#kassa-tests@0.1.0","manifest_path":"/r/tests/Cargo.toml","target":{"kind":["test"],"name":"carts","src_path":"/r/tests/tests/carts.rs"},"profile":{"test":true},"executable":"/t/debug/deps/carts-2"}
{"reason":"compiler-artifact","package_id":"registry+x#serde@1.0.0","manifest_path":"/c/serde/Cargo.toml","target":{"kind":["lib"],"name":"serde","src_path":"/c/serde/src/lib.rs"},"profile":{"test":false},"executable":null}
{"reason":"build-finished","success":true}"#;
        let found = binaries(messages, Path::new("/r")).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].name, "domain/kassa_domain");
        assert!(!found[0].integration);
        assert_eq!(found[1].name, "tests/carts");
        assert!(found[1].integration);
        assert_eq!(found[1].source, Path::new("tests/carts.rs"));
        assert_eq!(found[1].package_dir, Path::new("/r/tests"));
        assert_eq!(found[1].executable, Path::new("/t/debug/deps/carts-2"));
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
