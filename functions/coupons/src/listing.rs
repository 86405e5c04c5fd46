//! The coupon lists, read from the read models (`kassa_commerce::coupon_views`), which
//! trail the commits by the time their events take to arrive:
//! - `GET /coupons`: the caller's own coupons; `?seller=` another seller's (admins
//!   only); `?active=true` only those usable now, and for an admin without `seller`
//!   every seller's; `limit` (100, at most 500) at a time, from `after`, the `next` of
//!   the page before;
//! - `GET /users/{userId}/coupon-usages`: the coupons a buyer put on their orders, by
//!   coupon, with each order's usage (the buyer or an admin).

use crate::{CouponView, Coupons};
use kassa_commerce::coupon_views::UserUsage;
use kassa_domain::coupon_usage::UsageStatus;
use kassa_domain::identity::{Role, UserId};
use kassa_runtime::http::{cursor_param, limit_param, query_param, string_param};
use kassa_runtime::problem::store_problem;
use kassa_runtime::{access, caller, Problem};
use lambda_http::Request;
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Serialize)]
pub struct CouponList {
    pub coupons: Vec<CouponView>,
    /// The `after` of the next page; null on the last.
    pub next: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct UsageList {
    pub user_id: String,
    pub coupons: Vec<CouponUsages>,
}

/// One coupon's usages by one buyer.
#[derive(Debug, Serialize)]
pub struct CouponUsages {
    pub coupon_id: Uuid,
    pub code: String,
    pub locked: usize,
    pub redeemed: usize,
    pub released: usize,
    pub orders: Vec<OrderUsage>,
}

#[derive(Debug, Serialize)]
pub struct OrderUsage {
    pub order_id: Uuid,
    pub status: UsageStatus,
    pub discount: kassa_domain::money::Money,
}

impl Coupons {
    pub(crate) async fn list(&self, request: &Request) -> Result<CouponList, Problem> {
        let actor = access::recorded(self.kernel.store(), caller(request)?).await?;
        let active = match query_param(request, "active").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(Problem::bad_request(
                    "invalid_query",
                    format!("`active` is `true` or `false`, not `{other}`"),
                ))
            }
        };
        let seller = query_param(request, "seller").map(UserId::new);
        if seller.as_ref().is_some_and(|s| *s != actor.user) && actor.role != Role::Admin {
            return Err(Problem::forbidden(
                "only admins list another seller's coupons",
            ));
        }
        let limit = limit_param(request, 100, 500)? as usize;
        let after = cursor_param(request)?;
        let after = after.as_deref();
        let now = self.kernel.clock().now();
        let page = match (&seller, active, actor.role) {
            (None, true, Role::Admin) => self.views.active(now, after, limit).await,
            _ => {
                let seller = seller.as_ref().unwrap_or(&actor.user);
                self.views
                    .of_seller(seller, after, limit, |c| !active || c.usable_at(now))
                    .await
            }
        }
        .map_err(|e| store_problem(&e))?;
        Ok(CouponList {
            coupons: page.coupons.into_iter().map(CouponView::listed).collect(),
            next: page.next,
        })
    }

    pub(crate) async fn usages(&self, request: &Request) -> Result<UsageList, Problem> {
        let actor = access::recorded(self.kernel.store(), caller(request)?).await?;
        let user = UserId::new(string_param(request, "userId")?);
        if user != actor.user && actor.role != Role::Admin {
            return Err(Problem::forbidden(
                "a buyer's coupon usages are theirs to see",
            ));
        }
        let rows = self
            .views
            .usages_of(&user)
            .await
            .map_err(|e| store_problem(&e))?;
        Ok(UsageList {
            user_id: user.as_str().to_owned(),
            coupons: by_coupon(rows),
        })
    }
}

/// Rows come sorted by coupon then order, so each coupon's are consecutive.
fn by_coupon(rows: Vec<UserUsage>) -> Vec<CouponUsages> {
    let mut out: Vec<CouponUsages> = Vec::new();
    for row in rows {
        let entry = match out.last_mut() {
            Some(last) if last.coupon_id == row.coupon_id => last,
            _ => {
                out.push(CouponUsages {
                    coupon_id: row.coupon_id,
                    code: row.code.clone(),
                    locked: 0,
                    redeemed: 0,
                    released: 0,
                    orders: Vec::new(),
                });
                out.last_mut().expect("just pushed")
            }
        };
        match row.status {
            UsageStatus::Locked => entry.locked += 1,
            UsageStatus::Redeemed => entry.redeemed += 1,
            UsageStatus::Released => entry.released += 1,
        }
        entry.orders.push(OrderUsage {
            order_id: row.order_id,
            status: row.status,
            discount: row.discount,
        });
    }
    out
}
