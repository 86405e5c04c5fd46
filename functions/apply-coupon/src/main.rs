#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kassa_runtime::run_http::<kassa_apply_coupon::ApplyCoupon>().await
}
