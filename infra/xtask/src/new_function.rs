//! `cargo xtask new-function <name> --http|--sqs|--schedule`: scaffolds a function the
//! way every kassa function is built, so the next one starts from the kernel rather than
//! from a copy of a neighbour:
//! - `functions/<name>/` with its Cargo.toml, a `lib.rs` implementing the kernel's
//!   `Function` trait and a one-line `main.rs`;
//! - the package in the workspace's members and `[workspace.dependencies]`;
//! - in template.yaml: the function with its log group, and by kind its route, or its
//!   queue, dead-letter queue, queue policy and rule, or its schedule;
//! - the local runner's entry in `infra/local/src/functions.rs`.
//!
//! Every edit is an insertion before a marker line; a missing marker is an error that
//! names it, and nothing is written unless every edit applies.

use std::fs;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::repo::Repo;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// An API route, `METHOD /path`.
    Http { route: String },
    /// Reacts to one event type from the bus.
    Sqs { source: String, event: String },
    /// Runs on an EventBridge schedule expression.
    Schedule { expression: String },
}

/// The names one function goes by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// `ticket-reservations`: the folder and the binary's suffix.
    pub kebab: String,
    /// `TicketReservations`: the handler type and the template's prefix.
    pub camel: String,
}

impl Names {
    pub fn parse(name: &str) -> Result<Self> {
        let valid = !name.is_empty()
            && name.split('-').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            })
            && name.starts_with(|c: char| c.is_ascii_lowercase());
        if !valid {
            bail!("new-function: `{name}` is not a lower-case, dash-separated name like `reserve-tickets`");
        }
        let camel = name
            .split('-')
            .map(|part| {
                let mut chars = part.chars();
                chars
                    .next()
                    .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect();
        Ok(Self {
            kebab: name.to_owned(),
            camel,
        })
    }

    fn crate_name(&self) -> String {
        format!("kassa-{}", self.kebab)
    }

    fn crate_ident(&self) -> String {
        self.crate_name().replace('-', "_")
    }

    fn function_id(&self) -> String {
        format!("{}Function", self.camel)
    }
}

pub fn run(repo: &Repo, args: &[String]) -> Result<ExitCode> {
    let (names, kind) = parse(args)?;
    let dir = repo.root.join("functions").join(&names.kebab);
    if dir.exists() {
        bail!("new-function: {} already exists", dir.display());
    }
    let cargo_path = repo.root.join("Cargo.toml");
    let template_path = repo.template();
    let runner_path = repo.root.join("infra/local/src/functions.rs");
    let runner_manifest_path = repo.root.join("infra/local/Cargo.toml");
    let cargo = add_to_workspace(&read(&cargo_path)?, &names)?;
    let runner_manifest = add_to_runner_manifest(&read(&runner_manifest_path)?, &names)?;
    let template = add_to_template(&read(&template_path)?, &names, &kind)?;
    let runner = add_to_runner(&read(&runner_path)?, &names, &kind)?;

    fs::create_dir_all(dir.join("src"))?;
    for (path, text) in package_files(&names, &kind) {
        fs::write(dir.join(path), text)?;
    }
    fs::write(&cargo_path, cargo)?;
    fs::write(&template_path, template)?;
    fs::write(&runner_path, runner)?;
    fs::write(&runner_manifest_path, runner_manifest)?;
    println!(
        "new-function: functions/{} ({}), template.yaml, Cargo.toml and the runner's entry written",
        names.kebab,
        names.function_id()
    );
    println!("new-function: next, give it the template's IAM statements it needs and its logic in src/lib.rs");
    Ok(ExitCode::SUCCESS)
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

const USAGE: &str = "usage: cargo xtask new-function <name> --http [--route \"POST /path\"] \
| --sqs --event <type> [--source kassa.<context>] | --schedule [\"rate(1 day)\"]";

pub fn parse(args: &[String]) -> Result<(Names, Kind)> {
    let mut args = args.iter().map(String::as_str);
    let Some(name) = args.next() else {
        bail!("{USAGE}");
    };
    let names = Names::parse(name)?;
    let rest: Vec<&str> = args.collect();
    let option = |flag: &str| {
        rest.iter()
            .position(|a| *a == flag)
            .and_then(|i| rest.get(i + 1))
            .filter(|v| !v.starts_with("--"))
            .map(|v| (*v).to_owned())
    };
    let kind = match rest.first().copied() {
        Some("--http") => Kind::Http {
            route: option("--route").unwrap_or_else(|| format!("POST /{}", names.kebab)),
        },
        Some("--sqs") => {
            let Some(event) = option("--event") else {
                bail!("new-function: --sqs needs --event <type>, e.g. --event order.completed\n{USAGE}");
            };
            let context = event.split('.').next().unwrap_or_default().to_owned();
            Kind::Sqs {
                source: option("--source").unwrap_or_else(|| format!("kassa.{context}")),
                event,
            }
        }
        Some("--schedule") => Kind::Schedule {
            expression: rest
                .get(1)
                .filter(|v| !v.starts_with("--"))
                .map(|v| (*v).to_owned())
                .unwrap_or_else(|| "rate(1 day)".into()),
        },
        _ => bail!("{USAGE}"),
    };
    if let Kind::Http { route } = &kind {
        let valid = route.split_once(' ').is_some_and(|(method, path)| {
            ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method) && path.starts_with('/')
        });
        if !valid {
            bail!("new-function: --route `{route}` is not `METHOD /path`");
        }
    }
    Ok((names, kind))
}

/// Inserts `text` before the first line equal to `marker`.
fn insert_before(document: &str, marker: &str, text: &str, file: &str) -> Result<String> {
    let Some(at) = document
        .match_indices(marker)
        .map(|(i, _)| i)
        .find(|&i| i == 0 || document[..i].ends_with('\n'))
    else {
        bail!(
            "new-function: {file} has no line `{}` to insert before",
            marker.trim_end()
        );
    };
    Ok(format!("{}{text}{}", &document[..at], &document[at..]))
}

pub fn add_to_workspace(cargo: &str, names: &Names) -> Result<String> {
    let member = format!("    \"functions/{}\",\n", names.kebab);
    let cargo = insert_before(cargo, "    \"infra/local\",", &member, "Cargo.toml")?;
    let dependency = format!(
        "{} = {{ path = \"functions/{}\" }}\n",
        names.crate_name(),
        names.kebab
    );
    insert_before(&cargo, "kassa-local = {", &dependency, "Cargo.toml")
}

/// The runner links every function: its crate joins the runner's dependencies, after the
/// last function's (the third-party dependencies follow, starting with `aws-config`).
pub fn add_to_runner_manifest(manifest: &str, names: &Names) -> Result<String> {
    let dependency = format!("{}.workspace = true\n", names.crate_name());
    insert_before(
        manifest,
        "aws-config.workspace = true",
        &dependency,
        "infra/local/Cargo.toml",
    )
}

pub fn add_to_runner(runner: &str, names: &Names, kind: &Kind) -> Result<String> {
    let builder = match kind {
        Kind::Http { .. } => "http",
        Kind::Sqs { .. } => "sqs",
        Kind::Schedule { .. } => "scheduled",
    };
    let arm = format!(
        "        \"{}\" => {builder}::<{}::{}>(config, aws, clock)?,\n",
        names.function_id(),
        names.crate_ident(),
        names.camel
    );
    insert_before(
        runner,
        "        other => bail!(",
        &arm,
        "infra/local/src/functions.rs",
    )
}

pub fn add_to_template(template: &str, names: &Names, kind: &Kind) -> Result<String> {
    let id = names.function_id();
    let logs = format!(
        "  {id}Logs:\n    Type: AWS::Logs::LogGroup\n    Properties:\n      LogGroupName: !Sub /aws/lambda/${{{id}}}\n      RetentionInDays: !Ref LogRetentionDays\n\n"
    );
    let template = insert_before(
        template,
        "  # ------------------------------------------------------------ functions",
        &logs,
        "template.yaml",
    )?;
    let function = function_resource(names, kind);
    let template = insert_before(
        &template,
        "  # --------------------------------------------------------------- queues",
        &function,
        "template.yaml",
    )?;
    let Kind::Sqs { source, event } = kind else {
        return Ok(template);
    };
    let queue = format!("{}Queue", names.camel);
    let rule = format!("{}Rule", names.camel);
    let queues = format!(
        "  {queue}:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 60
      SqsManagedSseEnabled: true
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt {queue}Dlq.Arn
        maxReceiveCount: 5

  {queue}Dlq:
    Type: AWS::SQS::Queue
    Metadata:
      cfn-lint:
        config:
          # ES6000 asks for a redrive policy, but this queue is where redrive ends.
          ignore_checks:
            - ES6000
    Properties:
      MessageRetentionPeriod: 1209600
      SqsManagedSseEnabled: true

  {queue}Policy:
    Type: AWS::SQS::QueuePolicy
    Properties:
      Queues:
        - !Ref {queue}
      PolicyDocument:
        Version: \"2012-10-17\"
        Statement:
          - Effect: Allow
            Principal:
              Service: events.amazonaws.com
            Action: sqs:SendMessage
            Resource: !GetAtt {queue}.Arn
            Condition:
              ArnEquals:
                aws:SourceArn: !GetAtt {rule}.Arn

"
    );
    let template = insert_before(
        &template,
        "  # ---------------------------------------------------------------- rules",
        &queues,
        "template.yaml",
    )?;
    let rule_resource = format!(
        "  {rule}:
    Type: AWS::Events::Rule
    Properties:
      Description: {event} -> {queue}
      EventBusName: !Ref EventBus
      State: ENABLED
      EventPattern:
        source:
          - {source}
        detail-type:
          - {event}
      Targets:
        - Id: {queue}
          Arn: !GetAtt {queue}.Arn
          DeadLetterConfig:
            Arn: !GetAtt UndeliveredEventsDlq.Arn
          RetryPolicy:
            MaximumEventAgeInSeconds: 86400
            MaximumRetryAttempts: 185

"
    );
    insert_before(&template, "Outputs:", &rule_resource, "template.yaml")
}

fn function_resource(names: &Names, kind: &Kind) -> String {
    let id = names.function_id();
    let camel = &names.camel;
    let (description, extra, events) = match kind {
        Kind::Http { route } => {
            let (method, path) = route.split_once(' ').unwrap_or(("POST", "/"));
            (
                format!("HTTP: {route}"),
                String::new(),
                format!(
                    "        {camel}:
          Type: HttpApi
          Properties:
            ApiId: !Ref HttpApi
            Method: {method}
            Path: {path}
"
                ),
            )
        }
        Kind::Sqs { event, .. } => (
            format!("On {event}"),
            format!(
                "      Environment:
        Variables:
          KASSA_DEAD_LETTER_QUEUE_URL: !Ref {camel}QueueDlq
"
            ),
            format!(
                "        {camel}:
          Type: SQS
          Properties:
            Queue: !GetAtt {camel}Queue.Arn
            BatchSize: 10
            ScalingConfig:
              MaximumConcurrency: 5
            FunctionResponseTypes:
              - ReportBatchItemFailures
"
            ),
        ),
        Kind::Schedule { expression } => (
            format!("Scheduled: {expression}"),
            "      Timeout: 300
      # A run that still fails after Lambda's two retries leaves its record here.
      EventInvokeConfig:
        MaximumRetryAttempts: 2
        DestinationConfig:
          OnFailure:
            Type: SQS
            Destination: !GetAtt FailedScheduledRunsQueue.Arn
"
            .to_owned(),
            format!(
                "        {camel}Schedule:
          Type: Schedule
          Properties:
            Schedule: {expression}
            RetryPolicy:
              MaximumRetryAttempts: 2
            DeadLetterConfig:
              Arn: !GetAtt UndeliveredEventsDlq.Arn
"
            ),
        ),
    };
    let dead_letters = match kind {
        Kind::Sqs { .. } => format!(
            "            - Effect: Allow
              Action:
                - sqs:SendMessage
              Resource: !GetAtt {camel}QueueDlq.Arn
"
        ),
        _ => String::new(),
    };
    format!(
        "  {id}:
    Type: AWS::Serverless::Function
    Metadata:
      BuildMethod: rust-cargolambda
      BuildProperties:
        Binary: {crate_name}
    Properties:
      CodeUri: functions/{kebab}
      Description: \"{description}\"
{extra}      Policies:
        - Statement:
            - Effect: Allow
              Action:
                - dynamodb:GetItem
                - dynamodb:Query
                - dynamodb:PutItem
                - dynamodb:UpdateItem
                - dynamodb:DeleteItem
                - dynamodb:ConditionCheckItem
              Resource:
                - !GetAtt EventsTable.Arn
                - !GetAtt StateTable.Arn
{dead_letters}      Events:
{events}
",
        crate_name = names.crate_name(),
        kebab = names.kebab,
    )
}

pub fn package_files(names: &Names, kind: &Kind) -> Vec<(&'static str, String)> {
    let crate_name = names.crate_name();
    let camel = &names.camel;
    let kebab = &names.kebab;
    let (runner, description) = match kind {
        Kind::Http { route } => ("run_http", format!("HTTP: {route}")),
        Kind::Sqs { event, .. } => ("run_sqs", format!("On {event}")),
        Kind::Schedule { expression } => ("run_schedule", format!("Scheduled: {expression}")),
    };
    let manifest = format!(
        "[package]
name = \"{crate_name}\"
description = \"{description}\"
edition.workspace = true
version.workspace = true
license.workspace = true
publish.workspace = true

[lib]
path = \"src/lib.rs\"

[[bin]]
# Distinct binary names: SAM's cargo-lambda builder overwrites binaries that share one.
name = \"{crate_name}\"
path = \"src/main.rs\"

[dependencies]
kassa-domain.workspace = true
kassa-store.workspace = true
kassa-commerce.workspace = true
kassa-runtime.workspace = true
aws-sdk-dynamodb.workspace = true
aws_lambda_events.workspace = true
lambda_http.workspace = true
lambda_runtime.workspace = true
serde.workspace = true
serde_json.workspace = true
tokio.workspace = true
tracing.workspace = true
"
    );
    let main = format!(
        "#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {{
    kassa_runtime::{runner}::<{}::{camel}>().await
}}
",
        names.crate_ident()
    );
    let lib = match kind {
        Kind::Http { route } => format!(
            "//! {route}.

use kassa_commerce::{{Clock, Kernel}};
use kassa_runtime::function::StartError;
use kassa_runtime::http::respond;
use kassa_runtime::{{caller, Config, Function, HttpFunction, Problem, SdkConfig}};
use kassa_store::EventStore;
use lambda_http::{{Body, Request, Response}};
use std::sync::Arc;

pub struct {camel} {{
    kernel: Kernel,
}}

impl Function for {camel} {{
    fn from_config(config: &Config, aws: &SdkConfig, clock: Arc<dyn Clock>) -> Result<Self, StartError> {{
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {{
            kernel: Kernel::new(EventStore::new(client, &config.events_table), clock),
        }})
    }}
}}

impl HttpFunction for {camel} {{
    async fn handle(&self, request: Request) -> Response<Body> {{
        respond(self.serve(&request).await)
    }}
}}

impl {camel} {{
    async fn serve(&self, request: &Request) -> Result<Response<Body>, Problem> {{
        let _actor = caller(request)?;
        let _ = &self.kernel;
        Err(Problem::new(501, \"not_implemented\", \"{route} is not implemented yet\"))
    }}
}}
"
        ),
        Kind::Sqs { event, .. } => format!(
            "//! On `{event}`.

use aws_lambda_events::event::sqs::{{SqsBatchResponse, SqsEvent}};
use kassa_commerce::{{Clock, Kernel}};
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::inbox::Inbox;
use kassa_runtime::{{Config, Function, SdkConfig, SqsFunction}};
use kassa_store::{{EventStore, RecordedEvent}};
use std::sync::Arc;

pub const NAME: &str = \"{kebab}\";

pub struct {camel} {{
    kernel: Kernel,
    inbox: Inbox,
}}

impl Function for {camel} {{
    fn from_config(config: &Config, aws: &SdkConfig, clock: Arc<dyn Clock>) -> Result<Self, StartError> {{
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {{
            kernel: Kernel::new(EventStore::new(client, &config.events_table), clock.clone()),
            inbox: Inbox::from_config(config, aws, NAME, clock),
        }})
    }}
}}

impl SqsFunction for {camel} {{
    async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {{
        self.inbox
            .each_once(batch, |event| async move {{ self.react(&event).await }})
            .await
    }}
}}

impl {camel} {{
    async fn react(&self, event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {{
        let _ = &self.kernel;
        Ok(serde_json::json!({{ \"skipped\": event.event_type }}))
    }}
}}
"
        ),
        Kind::Schedule { expression } => format!(
            "//! Scheduled: {expression}.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use kassa_commerce::{{Clock, Kernel}};
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::sweep::Sweep;
use kassa_runtime::{{Config, Function, ScheduledFunction, SdkConfig}};
use kassa_store::EventStore;
use std::sync::Arc;

pub struct {camel} {{
    kernel: Kernel,
}}

impl Function for {camel} {{
    fn from_config(config: &Config, aws: &SdkConfig, clock: Arc<dyn Clock>) -> Result<Self, StartError> {{
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {{
            kernel: Kernel::new(EventStore::new(client, &config.events_table), clock),
        }})
    }}
}}

impl ScheduledFunction for {camel} {{
    type Run = Sweep;

    async fn handle(&self, _schedule: EventBridgeEvent) -> Result<Sweep, EffectError> {{
        let _ = &self.kernel;
        Ok(Sweep::default())
    }}
}}
"
        ),
    };
    vec![
        ("Cargo.toml", manifest),
        ("src/main.rs", main),
        ("src/lib.rs", lib),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_file(path: &str) -> String {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        fs::read_to_string(root.join(path)).unwrap()
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn names_and_kinds_are_read_from_the_arguments() {
        let (names, kind) = parse(&args(&[
            "reserve-tickets",
            "--sqs",
            "--event",
            "order.created",
        ]))
        .unwrap();
        assert_eq!(names.camel, "ReserveTickets");
        assert_eq!(
            kind,
            Kind::Sqs {
                source: "kassa.order".into(),
                event: "order.created".into()
            }
        );
        let (_, kind) = parse(&args(&[
            "confirm-cart",
            "--http",
            "--route",
            "POST /cart/confirm",
        ]))
        .unwrap();
        assert_eq!(
            kind,
            Kind::Http {
                route: "POST /cart/confirm".into()
            }
        );
        let (_, kind) = parse(&args(&[
            "expire-reservations",
            "--schedule",
            "rate(1 minute)",
        ]))
        .unwrap();
        assert_eq!(
            kind,
            Kind::Schedule {
                expression: "rate(1 minute)".into()
            }
        );
        assert!(parse(&args(&["Bad_Name", "--http"])).is_err());
        assert!(
            parse(&args(&["x", "--sqs"])).is_err(),
            "--sqs needs an event"
        );
        assert!(parse(&args(&["x", "--http", "--route", "FETCH x"])).is_err());
        assert!(parse(&args(&["x"])).is_err());
    }

    #[test]
    fn every_kind_lands_in_the_template_workspace_and_runner() {
        let kinds = [
            Kind::Http {
                route: "POST /cart/confirm".into(),
            },
            Kind::Sqs {
                source: "kassa.orders".into(),
                event: "order.created".into(),
            },
            Kind::Schedule {
                expression: "rate(1 minute)".into(),
            },
        ];
        for kind in kinds {
            let names = Names::parse("scaffold-probe").unwrap();
            let template = add_to_template(&repo_file("template.yaml"), &names, &kind).unwrap();
            // The runner reads the scaffolded template: the function, its trigger, and
            // for an SQS function the queue its rule feeds.
            let parsed = kassa_local::template::Template::parse(&template).unwrap();
            let function = parsed
                .functions()
                .unwrap()
                .into_iter()
                .find(|f| f.id == "ScaffoldProbeFunction")
                .expect("the new function is in the template");
            assert_eq!(function.triggers.len(), 1, "{kind:?}");
            assert!(template.contains("  ScaffoldProbeFunction:\n"), "{kind:?}");
            assert!(template.contains("  ScaffoldProbeFunctionLogs:\n"));
            assert_eq!(
                template.contains("  ScaffoldProbeRule:\n"),
                matches!(kind, Kind::Sqs { .. })
            );
            let cargo = add_to_workspace(&repo_file("Cargo.toml"), &names).unwrap();
            assert!(cargo.contains("    \"functions/scaffold-probe\",\n    \"infra/local\","));
            assert!(
                cargo.contains("kassa-scaffold-probe = { path = \"functions/scaffold-probe\" }")
            );
            let runner =
                add_to_runner(&repo_file("infra/local/src/functions.rs"), &names, &kind).unwrap();
            assert!(runner.contains("\"ScaffoldProbeFunction\" =>"));
            let manifest =
                add_to_runner_manifest(&repo_file("infra/local/Cargo.toml"), &names).unwrap();
            assert!(manifest
                .contains("kassa-scaffold-probe.workspace = true\naws-config.workspace = true"));
            let files = package_files(&names, &kind);
            assert!(files
                .iter()
                .any(|(p, t)| *p == "src/main.rs"
                    && t.contains("kassa_scaffold_probe::ScaffoldProbe")));
        }
    }

    #[test]
    fn a_missing_marker_is_an_error_that_names_it() {
        let names = Names::parse("x").unwrap();
        let error = add_to_workspace("[workspace]\n", &names).unwrap_err();
        assert!(error.to_string().contains("infra/local"), "{error}");
    }
}
