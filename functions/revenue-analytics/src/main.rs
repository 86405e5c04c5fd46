#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kassa_runtime::run_sqs::<kassa_revenue_analytics::RevenueAnalytics>().await
}
