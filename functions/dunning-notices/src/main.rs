#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kassa_runtime::run_sqs::<
        kassa_dunning_notices::DunningNotices<kassa_runtime::mail::ConfiguredMailer>,
    >()
    .await
}
