//! A coupon as the routes answer it.

use kassa_commerce::coupon_views::CouponSummary;
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
    /// Uses locked or redeemed now; lists leave it out (it is a counter, not a view).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uses: Option<u64>,
}

impl CouponView {
    pub fn of(coupon: &Coupon, uses: u64) -> Self {
        Self {
            uses: Some(uses),
            ..Self::listed(CouponSummary::of(coupon))
        }
    }

    pub fn listed(summary: CouponSummary) -> Self {
        Self {
            coupon_id: summary.coupon_id,
            code: summary.code,
            owner: summary.owner,
            status: summary.status,
            disabled_reason: summary.disabled_reason,
            terms: summary.terms,
            uses: None,
        }
    }
}
