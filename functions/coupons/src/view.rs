//! A coupon as the routes answer it.

use kassa_domain::coupon::{Coupon, CouponStatus, Terms};
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
pub struct CouponView {
    pub coupon_id: Uuid,
    pub code: String,
    pub owner: String,
    pub status: CouponStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    #[serde(flatten)]
    pub terms: Terms,
    /// Uses locked or redeemed now.
    pub uses: u64,
}

impl CouponView {
    pub fn of(coupon: &Coupon, uses: u64) -> Self {
        Self {
            coupon_id: coupon.coupon_id,
            code: coupon.code.to_string(),
            owner: coupon.owner.as_str().to_owned(),
            status: coupon.status,
            disabled_reason: coupon.disabled_reason.clone(),
            terms: coupon.terms.clone(),
            uses,
        }
    }
}
