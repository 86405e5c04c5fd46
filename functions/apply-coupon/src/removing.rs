//! Taking a coupon off an open order: the order repriced without it and its use given
//! back, in one commit.

use crate::{order_not_found, ApplyCoupon, Pricing};
use kassa_commerce::{Fail, Tx};
use kassa_domain::coupon_code::CouponCode;
use kassa_domain::coupon_usage::{OrderCoupons, ReleaseReason, UsageCommand};
use kassa_domain::order::{Order, OrderCommand, OrderError};
use kassa_runtime::http::{request_id, string_param, uuid_param};
use kassa_runtime::problem::store_problem;
use kassa_runtime::{access, caller, Problem};
use kassa_store::{Metadata, StoreError};
use lambda_http::Request;

impl ApplyCoupon {
    pub(crate) async fn remove(&self, request: &Request) -> Result<Pricing, Problem> {
        let actor = access::recorded(self.kernel.store(), caller(request)?).await?;
        let order_id = uuid_param(request, "orderId", "order_not_found")?;
        let typed = string_param(request, "code")?;
        let code = CouponCode::parse(&typed)
            .map_err(|_| Problem::not_found("coupon_not_on_order", "the order has no such coupon"))?
            .to_string();
        let (ledger, actor, code) = (&self.ledger, &actor, &code);
        let done = self
            .kernel
            .run(
                Metadata::origin(request_id(request), actor.user.as_str()),
                |tx: &mut Tx<'_>| {
                    Box::pin(async move {
                        let mut order = tx.load::<Order>(&order_id).await?;
                        let current = order
                            .state
                            .clone()
                            .filter(|o| o.user_id == actor.user)
                            .ok_or_else(|| Fail::Refused(order_not_found(order_id)))?;
                        let Some(coupon_id) = current
                            .coupons
                            .iter()
                            .find(|c| &c.code == code)
                            .map(|c| c.coupon_id)
                        else {
                            return Err(Fail::Refused(Problem::not_found(
                                "coupon_not_on_order",
                                "the order has no such coupon",
                            )));
                        };
                        tx.decide(&mut order, OrderCommand::RemoveCoupon { coupon_id })
                            .map_err(|f| {
                                f.map(|e| match e {
                                    OrderError::NotOpen(status) => Problem::conflict(
                                        "order_not_open",
                                        format!("the order is {status}; coupons change only open orders"),
                                    ),
                                    other => Problem::new(422, other.code(), other.to_string()),
                                })
                            })?;
                        let mut usages = tx.load::<OrderCoupons>(&order_id).await?;
                        let release = UsageCommand::Release {
                            coupon_id: Some(coupon_id),
                            reason: ReleaseReason::Removed,
                        };
                        let released = tx.decide(&mut usages, release).map_err(|f| {
                            f.map(|e| Problem::internal(&e))
                        })?;
                        if !released.is_empty() {
                            ledger.release(
                                tx.commit(),
                                coupon_id,
                                order_id,
                                actor.user.as_str(),
                                ReleaseReason::Removed.as_str(),
                            )?;
                        }
                        ledger.audit(tx.commit())?;
                        order.state.ok_or_else(|| {
                            Fail::Store(StoreError::Corrupt(format!("order {order_id} vanished")))
                        })
                    })
                },
            )
            .await
            .map_err(|fail| match fail {
                Fail::Refused(problem) => problem,
                Fail::Store(e) => store_problem(&e),
            })?;
        self.follow_intent(order_id).await?;
        Ok(Pricing::of(&done.value))
    }
}
