#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kassa_runtime::run_schedule::<kassa_retry_payments::RetryPayments>().await
}
