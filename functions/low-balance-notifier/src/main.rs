#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kassa_runtime::run_sqs::<
        kassa_low_balance_notifier::LowBalanceNotifier<kassa_runtime::mail::ConfiguredMailer>,
    >()
    .await
}
