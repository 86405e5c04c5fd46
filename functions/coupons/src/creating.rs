//! Creating coupons: one with the code its owner chose (or a generated one), or a batch
//! of generated codes for a campaign, each coupon with its own limits.
//!
//! Generated codes draw from the OS's random source over [`ALPHABET`], so they cannot be
//! predicted from one another; a clash with an existing code (as unlikely as two equal
//! 45-bit numbers) refuses the commit and the chunk is drawn again.

use crate::view::CouponView;
use crate::{failed, refused, Coupons};
use kassa_commerce::{Fail, Tx};
use kassa_domain::concert::Concert;
use kassa_domain::coupon::{Coupon, CouponCommand, Scope, SharedCard, Stacking, Terms, Velocity};
use kassa_domain::coupon_code::{CouponCode, ALPHABET};
use kassa_domain::discount::Discount;
use kassa_domain::identity::{Actor, Role, UserId};
use kassa_domain::money::Money;
use kassa_runtime::http::{json_body, request_id};
use kassa_runtime::{access, caller, Problem};
use kassa_store::{stream_of, Loaded, Metadata};
use lambda_http::Request;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Generated codes are this long unless the request says otherwise (24 symbols: about 46
/// bits).
const GENERATED_LENGTH: usize = 10;
const MAX_LENGTH: usize = 20;
/// The most coupons one batch request creates.
pub const MAX_BATCH: u32 = 500;
/// Coupons per commit in a batch: each writes up to two events (created, activated), its
/// head, its code and an audit line per event, and a transaction holds at most 100 items.
const CHUNK: usize = 12;
/// Draws of a chunk's codes before a batch gives up (each clash redraws the chunk).
const DRAWS: u32 = 3;

/// `POST /coupons` and `POST /coupons/batches` take the same terms; `code` is for the
/// first, `count` and `length` for the second.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CouponBody {
    code: Option<String>,
    count: Option<u32>,
    length: Option<usize>,
    discount: Discount,
    #[serde(with = "time::serde::rfc3339")]
    valid_from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    valid_until: OffsetDateTime,
    /// Per coupon; a batch's coupons are single-use unless it says otherwise.
    max_uses: Option<u32>,
    max_uses_per_user: Option<u32>,
    min_order: Option<Money>,
    #[serde(default)]
    first_order_only: bool,
    scope: Scope,
    stacking: Option<Stacking>,
    /// `{max_redemptions, window_minutes, disable?}`: the fraud rule on redemptions.
    velocity: Option<Velocity>,
    /// `{max_accounts, disable?}`: the fraud rule on one card behind many accounts.
    shared_card: Option<SharedCard>,
    /// Active at once, rather than created inactive.
    #[serde(default)]
    active: bool,
}

impl CouponBody {
    fn terms(&self, default_uses: u32) -> Result<Terms, Problem> {
        let max_uses = match self.max_uses {
            Some(n) => n,
            None if default_uses > 0 => default_uses,
            None => {
                return Err(Problem::new(
                    422,
                    "invalid_limits",
                    "`max_uses` is required",
                ))
            }
        };
        Ok(Terms {
            discount: self.discount,
            valid_from: self.valid_from,
            valid_until: self.valid_until,
            max_uses,
            max_uses_per_user: self.max_uses_per_user.unwrap_or(1),
            min_order: self.min_order,
            first_order_only: self.first_order_only,
            scope: self.scope.clone(),
            stacking: self.stacking.unwrap_or(Stacking::Exclusive),
            velocity: self.velocity,
            shared_card: self.shared_card,
        })
    }
}

#[derive(Debug, Serialize)]
pub struct Batch {
    pub count: usize,
    pub coupons: Vec<BatchCoupon>,
}

#[derive(Debug, Serialize)]
pub struct BatchCoupon {
    pub coupon_id: Uuid,
    pub code: String,
}

impl Coupons {
    pub(crate) async fn create(&self, request: &Request) -> Result<CouponView, Problem> {
        let actor = access::recorded(self.kernel.store(), caller(request)?).await?;
        let body: CouponBody = json_body(request)?;
        if body.count.is_some() || body.length.is_some() {
            return Err(Problem::new(
                422,
                "invalid_field",
                "`count` and `length` are for POST /coupons/batches",
            ));
        }
        let terms = body.terms(0)?;
        let code = match &body.code {
            Some(typed) => CouponCode::parse(typed)
                .map_err(|e| Problem::new(422, "invalid_code", e.to_string()))?,
            None => generate(GENERATED_LENGTH)?,
        };
        let coupon_id = Uuid::now_v7();
        let created = self
            .commit_new(
                request,
                &actor,
                vec![(coupon_id, code)],
                &terms,
                body.active,
            )
            .await?;
        let coupon = created
            .into_iter()
            .next()
            .ok_or_else(|| Problem::internal(&format!("coupon {coupon_id} was not created")))?;
        Ok(CouponView::of(&coupon, 0))
    }

    pub(crate) async fn batch(&self, request: &Request) -> Result<Batch, Problem> {
        let actor = access::recorded(self.kernel.store(), caller(request)?).await?;
        let body: CouponBody = json_body(request)?;
        if body.code.is_some() {
            return Err(Problem::new(
                422,
                "invalid_field",
                "a batch's codes are generated: leave out `code`",
            ));
        }
        let count = body.count.unwrap_or(0);
        if count == 0 || count > MAX_BATCH {
            return Err(Problem::new(
                422,
                "invalid_count",
                format!("`count` must be 1 to {MAX_BATCH}"),
            ));
        }
        let length = body.length.unwrap_or(GENERATED_LENGTH);
        if !(kassa_domain::coupon_code::MIN_GENERATED..=MAX_LENGTH).contains(&length) {
            return Err(Problem::new(
                422,
                "invalid_length",
                format!(
                    "`length` must be {} to {MAX_LENGTH}",
                    kassa_domain::coupon_code::MIN_GENERATED
                ),
            ));
        }
        let terms = body.terms(1)?;
        let mut coupons = Vec::with_capacity(count as usize);
        let mut left = count as usize;
        while left > 0 {
            let size = left.min(CHUNK);
            let mut draws = 0;
            let created = loop {
                draws += 1;
                let chunk = (0..size)
                    .map(|_| Ok((Uuid::now_v7(), generate(length)?)))
                    .collect::<Result<Vec<_>, Problem>>()?;
                match self
                    .commit_new(request, &actor, chunk, &terms, body.active)
                    .await
                {
                    Err(p) if p.code == "code_taken" && draws < DRAWS => continue,
                    other => break other?,
                }
            };
            left -= size;
            coupons.extend(created.into_iter().map(|c| BatchCoupon {
                coupon_id: c.coupon_id,
                code: c.code.to_string(),
            }));
        }
        Ok(Batch {
            count: coupons.len(),
            coupons,
        })
    }

    /// Creates `coupons` (new ids, codes to claim) with `terms` in one commit.
    async fn commit_new(
        &self,
        request: &Request,
        actor: &Actor,
        coupons: Vec<(Uuid, CouponCode)>,
        terms: &Terms,
        active: bool,
    ) -> Result<Vec<Coupon>, Problem> {
        let (coupons, ledger) = (&coupons, &self.ledger);
        let done = self
            .kernel
            .run(
                Metadata::origin(request_id(request), actor.user.as_str()),
                |tx: &mut Tx<'_>| {
                    Box::pin(async move {
                        let organizer = concert_organizer(tx, &terms.scope, actor).await?;
                        let mut created = Vec::with_capacity(coupons.len());
                        for (coupon_id, code) in coupons {
                            // A fresh id: nothing to read.
                            let mut coupon = Loaded::<Coupon> {
                                stream: stream_of::<Coupon>(coupon_id),
                                version: 0,
                                state: None,
                            };
                            let create = CouponCommand::Create {
                                coupon_id: *coupon_id,
                                code: code.clone(),
                                terms: terms.clone(),
                                by: actor.clone(),
                                concert_organizer: organizer.clone(),
                            };
                            tx.decide(&mut coupon, create).map_err(|f| f.map(refused))?;
                            if active {
                                tx.decide(
                                    &mut coupon,
                                    CouponCommand::Activate { by: actor.clone() },
                                )
                                .map_err(|f| f.map(refused))?;
                            }
                            ledger.claim_code(tx.commit(), code, *coupon_id)?;
                            ledger.open_uses(tx.commit(), *coupon_id)?;
                            created.extend(coupon.state);
                        }
                        ledger.audit(tx.commit())?;
                        Ok(created)
                    })
                },
            )
            .await
            .map_err(failed)?;
        Ok(done.value)
    }
}

/// The organizer of the concert a concert-scoped coupon is for, as the concert records
/// it; only an organizer's own concerts may carry their coupons. The concert's head is a
/// condition of the commit, so a concert handed to another organizer meanwhile is seen.
async fn concert_organizer(
    tx: &mut Tx<'_>,
    scope: &Scope,
    actor: &Actor,
) -> Result<Option<UserId>, Fail<Problem>> {
    let Scope::Concert { concert_id, .. } = scope else {
        return Ok(None);
    };
    let concert = tx.load::<Concert>(concert_id).await?;
    let Some(state) = concert.state else {
        return Err(Fail::Refused(Problem::new(
            422,
            "concert_not_found",
            format!("no concert {concert_id} to scope the coupon to"),
        )));
    };
    if actor.role != Role::Admin {
        tx.commit()
            .require_version(&concert.stream, concert.version)
            .map_err(Fail::Store)?;
    }
    Ok(Some(state.organizer))
}

/// A code of `length` symbols from the OS's random source.
fn generate(length: usize) -> Result<CouponCode, Problem> {
    let mut pool = vec![0u8; length * 2];
    let mut at = pool.len();
    let mut random = || {
        if at == pool.len() {
            // Rejection sampling may want more bytes than one fill: refill as it goes.
            let _ = getrandom::fill(&mut pool);
            at = 0;
        }
        at += 1;
        pool[at - 1]
    };
    let code = CouponCode::generate(length, &mut random)
        .map_err(|e| Problem::internal(&format!("generating a code: {e}")))?;
    debug_assert!(code.as_str().bytes().all(|b| ALPHABET.contains(&b)));
    Ok(code)
}
