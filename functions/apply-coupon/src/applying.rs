//! Applying a code to an order: eligibility, the discount, one use locked and the order
//! repriced, in one commit; or the refusal recorded and answered alike for every reason.

use crate::{not_applicable, order_not_found, ApplyCoupon, Pricing};
use kassa_commerce::coupon_ledger::{self, Took};
use kassa_commerce::{Fail, Tx};
use kassa_domain::aggregate::Aggregate;
use kassa_domain::coupon::{Coupon, OrderFacts};
use kassa_domain::coupon_code::CouponCode;
use kassa_domain::coupon_usage::{
    Attempts, OrderCoupons, Reject, RejectReason, UsageCommand, UsageError,
};
use kassa_domain::identity::Actor;
use kassa_domain::order::{Order, OrderCommand, OrderError, Purpose};
use kassa_domain::reservation::{Reservation, ReservationStatus};
use kassa_domain::user::User;
use kassa_runtime::http::{json_body, request_id, uuid_param};
use kassa_runtime::problem::store_problem;
use kassa_runtime::{access, caller, Problem};
use kassa_store::{stream_of, Metadata, Refusal, StoreError, StreamId};
use lambda_http::Request;
use serde::Deserialize;
use uuid::Uuid;

/// The longest text taken as a code; anything longer is bad input, not a guess.
const MAX_TYPED: usize = 64;

/// Tries at recording a refusal: each loses only to another refusal of the same buyer.
const REJECT_ATTEMPTS: u32 = 40;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Application {
    code: String,
}

/// Why an attempt did not commit.
pub(crate) enum Refused {
    /// An answer of its own (the order is not the caller's, or not open).
    Answer(Problem),
    /// The code does not apply: recorded, and answered as every other such code.
    Rejected {
        reason: RejectReason,
        coupon_id: Option<Uuid>,
    },
}

impl From<Problem> for Refused {
    fn from(p: Problem) -> Self {
        Self::Answer(p)
    }
}

impl ApplyCoupon {
    pub(crate) async fn apply(&self, request: &Request) -> Result<Pricing, Problem> {
        let store = self.kernel.store();
        let claimed = caller(request)?;
        let order_id = uuid_param(request, "orderId", "order_not_found")?;
        let body: Application = json_body(request)?;
        let typed = body.code.trim();
        if typed.is_empty() || typed.chars().count() > MAX_TYPED {
            return Err(Problem::new(
                422,
                "invalid_code",
                format!("`code` must be 1 to {MAX_TYPED} characters"),
            ));
        }
        let code = CouponCode::parse(typed).ok();
        let shown = code
            .as_ref()
            .map_or_else(|| typed.to_owned(), ToString::to_string);
        let known = code.as_ref().and_then(|c| self.codes.find(c));
        // One read for what a decision needs and a warm instance knows where to find: the
        // caller's record, their refused attempts, the order and its coupon usages, and
        // the coupon of a code seen before. The order's, its usages' and the coupon's
        // heads then seed the commit.
        let user_stream = stream_of::<User>(claimed.user.as_str());
        let attempts_stream = stream_of::<Attempts>(claimed.user.as_str());
        let order_stream = stream_of::<Order>(&order_id);
        let usages_stream = stream_of::<OrderCoupons>(&order_id);
        let known_stream = known.map(|id| stream_of::<Coupon>(&id));
        let mut wanted = vec![
            &user_stream,
            &attempts_stream,
            &order_stream,
            &usages_stream,
        ];
        wanted.extend(known_stream.as_ref());
        let mut heads = store
            .load_many(&wanted)
            .await
            .map_err(|e| store_problem(&e))?;
        let user = state_of::<User>(store, heads.remove(&user_stream)).await?;
        let actor = access::as_recorded(claimed, user.as_ref())?;
        let attempts = state_of::<Attempts>(store, heads.remove(&attempts_stream)).await?;
        self.not_guessing(attempts)?;
        let order_head = heads.remove(&order_stream);
        let order = state_of::<Order>(store, order_head.clone())
            .await?
            .filter(|o| o.user_id == actor.user)
            .ok_or_else(|| order_not_found(order_id))?;
        if !order.status.is_open() {
            return Err(not_open(order.status.as_str()));
        }
        let coupon_id = match (&code, known) {
            (_, Some(id)) => Some(id),
            (Some(code), None) => {
                let found = self
                    .ledger
                    .find(code)
                    .await
                    .map_err(|e| store_problem(&e))?;
                if let Some(id) = found {
                    self.codes.remember(code, id);
                }
                found
            }
            (None, None) => None,
        };
        let coupon_head = match (coupon_id, known_stream) {
            (_, Some(stream)) => heads.remove(&stream),
            (Some(id), None) => store
                .load(&stream_of::<Coupon>(&id))
                .await
                .map_err(|e| store_problem(&e))?,
            (None, None) => None,
        };
        let Some(coupon) = state_of::<Coupon>(store, coupon_head.clone()).await? else {
            return Err(self
                .reject(
                    request,
                    &actor,
                    order_id,
                    shown,
                    None,
                    RejectReason::UnknownCode,
                )
                .await);
        };
        let coupon_id = coupon.coupon_id;
        // Reading every earlier order of the buyer is only worth it for a coupon that asks.
        let paid_before =
            coupon.terms.first_order_only && self.paid_before(&actor, order_id).await?;
        let now = self.kernel.clock().now();
        // Decided first on what was read, so an apply that cannot lock takes no use; the
        // commit decides again on the order as it is then.
        let precheck = applying(&order, &coupon, paid_before, now).and_then(|apply| {
            <Order as Aggregate>::decide(Some(&order), apply)
                .map_err(|e| order_refusal(e, coupon_id))
        });
        match precheck {
            // On the order already: nothing to lock.
            Ok(events) if events.is_empty() => return Ok(Pricing::of(&order)),
            Ok(_) => {}
            Err(refused) => {
                return Err(self
                    .refused(request, &actor, order_id, shown, refused)
                    .await)
            }
        }
        let metadata = Metadata::origin(request_id(request), actor.user.as_str());
        let take_id =
            match coupon_ledger::take(store, &coupon, order_id, &actor.user, &metadata, now)
                .await
                .map_err(|e| store_problem(&e))?
            {
                Took::Taken { take_id, .. } => take_id,
                Took::Exhausted => {
                    return Err(self
                        .reject(
                            request,
                            &actor,
                            order_id,
                            shown,
                            Some(coupon_id),
                            RejectReason::Exhausted,
                        )
                        .await)
                }
            };
        // The order, read above, exists; its usages do not before its first coupon.
        let (seeds, absent) = match heads.remove(&usages_stream) {
            Some(usages) => (vec![usages], Vec::new()),
            None => (Vec::new(), vec![usages_stream]),
        };
        let seeds = seeds
            .into_iter()
            .chain(order_head)
            .chain(coupon_head)
            .collect();
        let locked = self
            .lock(
                &metadata,
                &actor,
                order_id,
                coupon_id,
                paid_before,
                (seeds, absent),
                take_id,
            )
            .await;
        if !matches!(locked, Ok((_, true))) {
            self.give_back(&metadata, &actor, order_id, coupon_id, take_id, &locked)
                .await;
        }
        match locked {
            Ok((order, _)) => {
                // Without an intent yet, payment-intents creates it from the total as
                // stored and follows later changes itself.
                if order.payment_intent_id.is_some() {
                    self.follow_intent(order_id).await?;
                }
                Ok(Pricing::of(&order))
            }
            Err(Fail::Refused(refused)) => Err(self
                .refused(request, &actor, order_id, shown, refused)
                .await),
            Err(Fail::Store(StoreError::Refused(Refusal::LimitReached(_)))) => Err(self
                .reject(
                    request,
                    &actor,
                    order_id,
                    shown,
                    Some(coupon_id),
                    RejectReason::UserLimit,
                )
                .await),
            Err(Fail::Store(e)) => Err(store_problem(&e)),
        }
    }

    /// Answers a refusal: its own problem, or the code's rejection recorded.
    async fn refused(
        &self,
        request: &Request,
        actor: &Actor,
        order_id: Uuid,
        shown: String,
        refused: Refused,
    ) -> Problem {
        match refused {
            Refused::Answer(problem) => problem,
            Refused::Rejected { reason, coupon_id } => {
                self.reject(request, actor, order_id, shown, coupon_id, reason)
                    .await
            }
        }
    }

    /// Gives back, once, the use taken as `take_id` that the lock did not settle. Should
    /// this fail too, the use stays taken until reclaim-coupon-uses gives it back.
    async fn give_back<T>(
        &self,
        metadata: &Metadata,
        actor: &Actor,
        order_id: Uuid,
        coupon_id: Uuid,
        take_id: Uuid,
        locked: &Result<T, Fail<Refused>>,
    ) {
        let reason = match locked {
            Ok(_) => "already_applied",
            Err(Fail::Refused(_)) => "not_applicable",
            Err(Fail::Store(StoreError::Refused(Refusal::LimitReached(_)))) => "user_limit",
            Err(Fail::Store(_)) => "lock_failed",
        };
        let given = self
            .ledger
            .give_back_take(
                &self.kernel,
                metadata.clone(),
                coupon_id,
                order_id,
                actor.user.as_str(),
                take_id,
                reason,
            )
            .await;
        // Refused as settled: the lock committed after all (its answer was lost).
        if let Err(e) = given {
            tracing::warn!(%coupon_id, %take_id, error = %e, "a taken use was not given back; reclaim-coupon-uses will");
        }
    }

    /// 429 while the caller has used up their refused codes for the window.
    fn not_guessing(&self, attempts: Option<Attempts>) -> Result<(), Problem> {
        let now = self.kernel.clock().now();
        match attempts.and_then(|a| a.wait(now)) {
            None => Ok(()),
            Some(wait) => {
                let seconds =
                    wait.whole_seconds().max(1) as u32 + u32::from(wait.subsec_nanoseconds() > 0);
                Err(Problem::new(
                    429,
                    "too_many_attempts",
                    "too many coupon codes were refused; wait before trying another",
                )
                .retry_after(seconds))
            }
        }
    }

    /// Whether the caller paid for an order before this one (for first-order coupons).
    async fn paid_before(&self, actor: &Actor, this: Uuid) -> Result<bool, Problem> {
        let store = self.kernel.store();
        let orders = self
            .book
            .orders_of(actor.user.as_str())
            .await
            .map_err(|e| store_problem(&e))?;
        for id in orders.into_iter().filter(|id| *id != this) {
            let order = store
                .load_aggregate::<Order>(&id)
                .await
                .map_err(|e| store_problem(&e))?;
            if order.state.is_some_and(|o| o.status.is_paid()) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Locks the use taken as `take_id` and reprices the order, in one commit that
    /// settles the take; answers the order and whether it did (not when the coupon was on
    /// the order already).
    #[allow(clippy::too_many_arguments)]
    async fn lock(
        &self,
        metadata: &Metadata,
        actor: &Actor,
        order_id: Uuid,
        coupon_id: Uuid,
        paid_before: bool,
        (seeds, absent): (Vec<kassa_store::Head>, Vec<StreamId>),
        take_id: Uuid,
    ) -> Result<(Order, bool), Fail<Refused>> {
        let ledger = &self.ledger;
        let done = self
            .kernel
            .run_seeded(metadata.clone(), seeds, absent, |tx: &mut Tx<'_>| {
                Box::pin(async move {
                    let mut order = tx.load::<Order>(&order_id).await?;
                    let current = order
                        .state
                        .clone()
                        .filter(|o| o.user_id == actor.user)
                        .ok_or_else(|| Fail::Refused(order_not_found(order_id).into()))?;
                    let coupon = tx.load::<Coupon>(&coupon_id).await?;
                    let Some(coupon) = coupon.state else {
                        return Err(Fail::Refused(Refused::Rejected {
                            reason: RejectReason::UnknownCode,
                            coupon_id: None,
                        }));
                    };
                    let apply = applying(&current, &coupon, paid_before, tx.now())
                        .map_err(Fail::Refused)?;
                    let applied = tx.decide(&mut order, apply).map_err(|f| match f {
                        Fail::Refused(e) => Fail::Refused(order_refusal(e, coupon_id)),
                        Fail::Store(e) => Fail::Store(e),
                    })?;
                    if applied.is_empty() {
                        // On the order already: nothing more to lock.
                        return Ok((current, false));
                    }
                    let repriced = order.state.clone().ok_or_else(|| {
                        Fail::Store(StoreError::Corrupt(format!("order {order_id} vanished")))
                    })?;
                    if repriced.owes_nothing() {
                        settle_free(tx, &mut order, &repriced).await?;
                    }
                    let taken = repriced
                        .coupons
                        .iter()
                        .find(|c| c.coupon_id == coupon_id)
                        .map(|c| c.taken)
                        .unwrap_or(repriced.total);
                    let mut usages = tx.load::<OrderCoupons>(&order_id).await?;
                    let lock = UsageCommand::Lock {
                        order_id,
                        user_id: actor.user.clone(),
                        coupon_id,
                        code: coupon.code.to_string(),
                        discount: taken,
                    };
                    tx.decide(&mut usages, lock).map_err(|f| match f {
                        Fail::Refused(UsageError::Released) => Fail::Refused(Refused::Rejected {
                            reason: RejectReason::ReleasedBefore,
                            coupon_id: Some(coupon_id),
                        }),
                        Fail::Refused(UsageError::Mismatch) => Fail::Store(StoreError::Corrupt(
                            format!("the coupon usages of order {order_id} are another's"),
                        )),
                        Fail::Store(e) => Fail::Store(e),
                    })?;
                    ledger.lock_user(tx.commit(), &coupon, actor.user.as_str())?;
                    ledger.settle(tx.commit(), coupon_id, take_id)?;
                    ledger.audit(tx.commit())?;
                    Ok((order.state.unwrap_or(repriced), true))
                })
            })
            .await?;
        Ok(done.value)
    }

    /// Records the refusal on the caller's attempts (and the coupon's audit, when the code
    /// named one), then answers as for every code that does not apply.
    async fn reject(
        &self,
        request: &Request,
        actor: &Actor,
        order_id: Uuid,
        code: String,
        coupon_id: Option<Uuid>,
        reason: RejectReason,
    ) -> Problem {
        let ledger = &self.ledger;
        let (code, user) = (&code, actor.user.as_str());
        // A buyer's refusals append to one stream: many at once take turns.
        let recorded = self
            .kernel
            .patient(REJECT_ATTEMPTS)
            .run(
                Metadata::origin(request_id(request), user),
                |tx: &mut Tx<'_>| {
                    Box::pin(async move {
                        let mut attempts = tx.load::<Attempts>(user).await?;
                        let reject = Reject {
                            user_id: actor.user.clone(),
                            order_id,
                            code: code.clone(),
                            coupon_id,
                            reason,
                            at: tx.now(),
                        };
                        tx.decide(&mut attempts, reject)
                            .map_err(|f| f.map(|never| match never {}))?;
                        ledger.audit(tx.commit())?;
                        Ok::<_, Fail<std::convert::Infallible>>(())
                    })
                },
            )
            .await;
        match recorded {
            Ok(_) => {
                tracing::info!(%order_id, reason = reason.as_str(), "coupon code refused");
                not_applicable()
            }
            // Unrecorded, a refusal would escape the guessing limit: the caller retries.
            Err(Fail::Store(e)) => store_problem(&e),
            Err(Fail::Refused(never)) => match never {},
        }
    }
}

/// The state a head holds (none without a head).
async fn state_of<A: Aggregate>(
    store: &kassa_store::EventStore,
    head: Option<kassa_store::Head>,
) -> Result<Option<A>, Problem> {
    match head {
        Some(head) => Ok(store
            .state_of::<A>(head)
            .await
            .map_err(|e| store_problem(&e))?
            .state),
        None => Ok(None),
    }
}

/// The coupons took the whole total: a credit pack completes in this commit; a ticket
/// order whose seats are held does too (the reservation's version a condition of the
/// commit); one whose reservation is not recorded yet completes when it is
/// (ticket-orders, on `reservation.created`).
async fn settle_free(
    tx: &mut Tx<'_>,
    order: &mut kassa_store::Loaded<Order>,
    repriced: &Order,
) -> Result<(), Fail<Refused>> {
    let Some(complete) = repriced.complete_free() else {
        return Ok(());
    };
    if let Purpose::Tickets { .. } = repriced.purpose {
        let reservation = tx.load::<Reservation>(&repriced.order_id).await?;
        let held = reservation
            .state
            .as_ref()
            .is_some_and(|r| r.status == ReservationStatus::Held);
        if !held {
            return Ok(());
        }
        tx.commit()
            .require_version(&reservation.stream, reservation.version)?;
    }
    tx.decide(order, complete)
        .map_err(|f| f.map(|e| Refused::Answer(Problem::new(409, e.code(), e.to_string()))))?;
    Ok(())
}

/// The order command applying `coupon`, once the coupon is eligible for the order.
fn applying(
    order: &Order,
    coupon: &Coupon,
    paid_before: bool,
    now: time::OffsetDateTime,
) -> Result<OrderCommand, Refused> {
    coupon
        .eligible(&facts(order, paid_before), now)
        .map_err(|why| Refused::Rejected {
            reason: why.into(),
            coupon_id: Some(coupon.coupon_id),
        })?;
    Ok(OrderCommand::ApplyCoupon {
        coupon_id: coupon.coupon_id,
        code: coupon.code.to_string(),
        discount: coupon.terms.discount,
        stacking: coupon.terms.stacking,
    })
}

/// How the order's refusal of a coupon is answered.
fn order_refusal(e: OrderError, coupon_id: Uuid) -> Refused {
    match e {
        OrderError::NotStackable => Refused::Rejected {
            reason: RejectReason::NotStackable,
            coupon_id: Some(coupon_id),
        },
        OrderError::NotOpen(status) => Refused::Answer(not_open(status)),
        e => Refused::Answer(Problem::new(422, e.code(), e.to_string())),
    }
}

fn not_open(status: &str) -> Problem {
    Problem::conflict(
        "order_not_open",
        format!("the order is {status}; coupons change only open orders"),
    )
}

/// What eligibility looks at, from the order as kassa stored it. A ticket order whose
/// seats are of several concerts is in no single concert's scope.
fn facts(order: &Order, paid_before: bool) -> OrderFacts {
    let (concert, levels) = match &order.purpose {
        Purpose::CreditPack { .. } => (None, Vec::new()),
        Purpose::Tickets { seats, .. } => {
            let first = seats.first().map(|s| s.concert_id).unwrap_or_default();
            let one = seats.iter().all(|s| s.concert_id == first);
            (
                Some(if one { first } else { Uuid::nil() }),
                seats.iter().map(|s| s.level_id.clone()).collect(),
            )
        }
    };
    OrderFacts {
        concert,
        levels,
        amount: order.subtotal,
        buyer_has_paid_before: paid_before,
        // What the shipping coupons on it left: a second one has nothing to waive.
        delivery_fee: order.delivery_left(),
    }
}
