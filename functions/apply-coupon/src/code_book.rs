//! The codes this instance has seen, with the coupon each names. A code is claimed for
//! one coupon under a condition and never given to another, so a remembered answer
//! stays true; remembering it spares an apply one read and lets the coupon's head join
//! the apply's one batched read. Unknown codes are not remembered: a code claimed later
//! must be found.

use kassa_domain::coupon_code::CouponCode;
use std::collections::HashMap;
use std::sync::Mutex;
use uuid::Uuid;

/// Codes remembered at most: a campaign of generated codes must not grow an instance
/// without bound. Past it, the book starts again.
const CAPACITY: usize = 10_000;

#[derive(Default)]
pub(crate) struct CodeBook {
    codes: Mutex<HashMap<CouponCode, Uuid>>,
}

impl CodeBook {
    pub(crate) fn find(&self, code: &CouponCode) -> Option<Uuid> {
        self.codes.lock().ok()?.get(code).copied()
    }

    pub(crate) fn remember(&self, code: &CouponCode, coupon: Uuid) {
        if let Ok(mut codes) = self.codes.lock() {
            if codes.len() >= CAPACITY {
                codes.clear();
            }
            codes.insert(code.clone(), coupon);
        }
    }
}
