#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kassa_runtime::run_http::<kassa_coupons::Coupons>().await
}
