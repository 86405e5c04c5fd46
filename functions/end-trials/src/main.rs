#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kassa_runtime::run_schedule::<kassa_end_trials::EndTrials>().await
}
