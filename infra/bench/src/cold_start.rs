//! Cold start of the release `kassa-consume-credits` binary: a fresh process under the
//! bench's Runtime API, timed from spawn to its first `next` (init done, DynamoDB client
//! built) and to its first answer (one consume, which a cold sandbox serves with a read
//! and a write since it has no cached head).

use crate::api;
use crate::runtime_api::{Call, RuntimeApi};
use crate::sample::Sample;
use crate::workspace::BenchWorkspace;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// Past this a start has failed rather than been slow.
const GIVE_UP: Duration = Duration::from_secs(20);

pub struct ColdStarts {
    pub to_next: Sample,
    pub to_response: Sample,
    /// Starts that did not end in a 200 answer, and why.
    pub failures: Vec<String>,
    pub binary: Binary,
}

pub struct Binary {
    pub bytes: u64,
    /// Whether the file has no symbol table, i.e. its size is the size Lambda ships.
    pub stripped: bool,
}

impl Binary {
    fn inspect(path: &Path) -> Result<Self> {
        let contents =
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        // A symbol table would be named in the section-name table; a stripped ELF has none.
        let stripped = !contents.windows(7).any(|w| w == b".symtab");
        Ok(Self {
            bytes: contents.len() as u64,
            stripped,
        })
    }

    pub fn mebibytes(&self) -> f64 {
        self.bytes as f64 / (1024.0 * 1024.0)
    }
}

/// How one start went.
struct Start {
    to_next: Option<Duration>,
    to_response: Option<Duration>,
    failure: Option<String>,
}

pub async fn measure(binary: &Path, workspace: &BenchWorkspace, runs: usize) -> Result<ColdStarts> {
    let mut starts = ColdStarts {
        to_next: Sample::default(),
        to_response: Sample::default(),
        failures: Vec::new(),
        binary: Binary::inspect(binary)?,
    };
    for run in 1..=runs {
        let start = once(binary, workspace).await?;
        if let Some(took) = start.to_next {
            starts.to_next.record(took);
        }
        if let Some(took) = start.to_response {
            starts.to_response.record(took);
        }
        if let Some(why) = start.failure {
            starts.failures.push(format!("start {run}: {why}"));
        }
    }
    Ok(starts)
}

async fn once(binary: &Path, workspace: &BenchWorkspace) -> Result<Start> {
    let event = api::consume_event(workspace.id, &workspace.owner)?;
    let mut runtime_api = RuntimeApi::serve(&event).await?;
    let mut command = Command::new(binary);
    command
        // Lambda's environment, not ours: no HOME, no profile files, nothing inherited.
        .env_clear()
        .envs(lambda_environment(runtime_api.address, workspace))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);

    let spawned = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    // Drained as it comes so a chatty process never blocks on a full pipe; shown on failure.
    let mut stderr = child.stderr.take();
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        if let Some(stderr) = stderr.as_mut() {
            let _ = stderr.read_to_string(&mut text).await;
        }
        text
    });

    let mut start = Start {
        to_next: None,
        to_response: None,
        failure: None,
    };
    let deadline = spawned + GIVE_UP;
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        tokio::select! {
            call = runtime_api.call(wait) => match call {
                Some(Call::Next(at)) => {
                    start.to_next.get_or_insert(at - spawned);
                }
                Some(Call::Response(at, body)) => {
                    start.to_response = Some(at - spawned);
                    let status = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|answer| answer["statusCode"].as_u64());
                    if status != Some(200) {
                        start.failure = Some(format!(
                            "answered {}",
                            String::from_utf8_lossy(&body)
                        ));
                    }
                    break;
                }
                Some(Call::InvocationError(body)) => {
                    start.failure = Some(format!(
                        "invocation error {}",
                        String::from_utf8_lossy(&body)
                    ));
                    break;
                }
                Some(Call::InitError(body)) => {
                    start.failure = Some(format!("init error {}", String::from_utf8_lossy(&body)));
                    break;
                }
                None => {
                    start.failure = Some(format!("no answer within {} s", GIVE_UP.as_secs()));
                    break;
                }
            },
            status = child.wait() => {
                start.failure = Some(format!("exited before answering ({status:?})"));
                break;
            }
        }
    }
    let _ = child.kill().await;
    let stderr = stderr.await.unwrap_or_default();
    if let Some(failure) = start.failure.as_mut() {
        if !stderr.trim().is_empty() {
            failure.push_str("; stderr: ");
            failure.push_str(stderr.trim());
        }
    }
    Ok(start)
}

/// What Lambda sets for a `provided.al2023` function with 256 MB, plus the emulators'
/// endpoints and credentials (the `AWS_*` variables `cargo xtask bench` gave us) and the
/// tables the template would pass.
fn lambda_environment(
    runtime_api: SocketAddr,
    workspace: &BenchWorkspace,
) -> Vec<(String, String)> {
    let mut environment: Vec<(String, String)> = std::env::vars()
        .filter(|(name, _)| name.starts_with("AWS_"))
        .collect();
    if !environment.iter().any(|(name, _)| name == "AWS_REGION") {
        environment.push(("AWS_REGION".into(), "us-east-1".into()));
    }
    let lambda = [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", "kassa-consume-credits".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/01/01/[$LATEST]bench".into(),
        ),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "/aws/lambda/kassa-consume-credits".into(),
        ),
        ("KASSA_EVENTS_TABLE", workspace.events_table.clone()),
        ("KASSA_STATE_TABLE", workspace.state_table.clone()),
    ];
    environment.extend(lambda.map(|(name, value)| (name.to_owned(), value)));
    environment
}
