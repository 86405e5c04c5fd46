#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kassa_runtime::run_sqs::<kassa_purge_workspaces::PurgeWorkspaces>().await
}
