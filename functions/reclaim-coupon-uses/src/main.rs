#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kassa_runtime::run_sqs::<kassa_reclaim_coupon_uses::ReclaimCouponUses>().await
}
