#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kassa_runtime::run_sqs::<
        kassa_welcome_workspaces::WelcomeWorkspaces<kassa_runtime::mail::ConfiguredMailer>,
    >()
    .await
}
