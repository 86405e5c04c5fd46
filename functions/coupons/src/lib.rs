//! The coupons Lambda (seed 002's coupon management): admins create coupons for anything,
//! organizers only for their own concerts; a coupon's owner (or an admin) activates,
//! disables, reads and audits it.
//!
//! - `POST /coupons`: one coupon, with the code given or generated;
//! - `POST /coupons/batches`: a campaign of `count` coupons with generated codes, each
//!   with its own limits (single-use by default);
//! - `GET /coupons/{couponId}`, `POST /coupons/{couponId}/activate`,
//!   `POST /coupons/{couponId}/disable`;
//! - `GET /coupons/{couponId}/audit`: every event about the coupon, oldest first, paged;
//! - `GET /coupons` and `GET /users/{userId}/coupon-usages`: lists from the read models.
//!
//! A code is claimed in the coupon's creating commit, so two coupons never share one.

mod creating;
mod listing;
mod view;

pub use view::CouponView;

use kassa_commerce::coupon_ledger::{self, CouponLedger};
use kassa_commerce::coupon_views::CouponViews;
use kassa_commerce::{Clock, Fail, Kernel};
use kassa_domain::coupon::{Coupon, CouponCommand, CouponError};
use kassa_domain::identity::{Actor, Role};
use kassa_runtime::function::StartError;
use kassa_runtime::http::{
    cursor_param, json, json_body, limit_param, request_id, respond, route_key, uuid_param,
};
use kassa_runtime::problem::store_problem;
use kassa_runtime::{access, caller, Config, Function, HttpFunction, Problem, SdkConfig};
use kassa_store::{EventStore, Metadata, StoreError, Views};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use std::sync::Arc;
use uuid::Uuid;

pub const NAME: &str = "coupons";

pub struct Coupons {
    kernel: Kernel,
    ledger: CouponLedger,
    views: CouponViews,
}

impl Function for Coupons {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {
            kernel: Kernel::new(EventStore::new(client.clone(), &config.events_table), clock),
            ledger: CouponLedger::new(client.clone(), &config.state_table),
            views: CouponViews::new(
                EventStore::new(client.clone(), &config.events_table),
                Views::new(client, &config.state_table),
            ),
        })
    }
}

impl HttpFunction for Coupons {
    async fn handle(&self, request: Request) -> Response<Body> {
        let answer = match route_key(&request).as_str() {
            "POST /coupons" => self.create(&request).await.map(|v| json(201, &v)),
            "POST /coupons/batches" => self.batch(&request).await.map(|v| json(201, &v)),
            "GET /coupons" => self.list(&request).await.map(|v| json(200, &v)),
            "GET /users/{userId}/coupon-usages" => {
                self.usages(&request).await.map(|v| json(200, &v))
            }
            "GET /coupons/{couponId}" => self.get(&request).await.map(|v| json(200, &v)),
            "POST /coupons/{couponId}/activate" => {
                self.activate(&request).await.map(|v| json(200, &v))
            }
            "POST /coupons/{couponId}/disable" => {
                self.disable(&request).await.map(|v| json(200, &v))
            }
            "GET /coupons/{couponId}/audit" => self.audit(&request).await.map(|v| json(200, &v)),
            other => Err(Problem::not_found(
                "no_route",
                format!("route `{other}` is not served here"),
            )),
        };
        respond(answer)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Disabling {
    reason: String,
}

impl Coupons {
    async fn get(&self, request: &Request) -> Result<CouponView, Problem> {
        let actor = access::recorded(self.kernel.store(), caller(request)?).await?;
        let coupon = self.owned(request, &actor).await?;
        let uses = coupon_ledger::uses(self.kernel.store(), coupon.coupon_id)
            .await
            .map_err(|e| store_problem(&e))?;
        Ok(CouponView::of(&coupon, uses))
    }

    async fn audit(&self, request: &Request) -> Result<serde_json::Value, Problem> {
        let actor = access::recorded(self.kernel.store(), caller(request)?).await?;
        let coupon = self.owned(request, &actor).await?;
        let limit = limit_param(request, 100, 500)?;
        let after = cursor_param(request)?;
        let page = self
            .ledger
            .audit_of(coupon.coupon_id, after.as_deref(), limit)
            .await
            .map_err(|e| store_problem(&e))?;
        Ok(
            serde_json::json!({ "coupon_id": coupon.coupon_id, "entries": page.entries, "next": page.next }),
        )
    }

    async fn activate(&self, request: &Request) -> Result<CouponView, Problem> {
        let actor = access::recorded(self.kernel.store(), caller(request)?).await?;
        let id = uuid_param(request, "couponId", "coupon_not_found")?;
        self.change(
            request,
            id,
            actor.clone(),
            CouponCommand::Activate { by: actor },
        )
        .await
    }

    async fn disable(&self, request: &Request) -> Result<CouponView, Problem> {
        let actor = access::recorded(self.kernel.store(), caller(request)?).await?;
        let id = uuid_param(request, "couponId", "coupon_not_found")?;
        let body: Disabling = json_body(request)?;
        self.change(
            request,
            id,
            actor.clone(),
            CouponCommand::Disable {
                by: actor,
                reason: body.reason,
            },
        )
        .await
    }

    /// The coupon the path names, if the caller may see it: its owner or an admin. Anyone
    /// else is told it does not exist.
    async fn owned(&self, request: &Request, actor: &Actor) -> Result<Coupon, Problem> {
        let id = uuid_param(request, "couponId", "coupon_not_found")?;
        let coupon = self
            .kernel
            .store()
            .load_aggregate::<Coupon>(&id)
            .await
            .map_err(|e| store_problem(&e))?
            .state;
        match coupon {
            Some(c) if actor.role == Role::Admin || c.owner == actor.user => Ok(c),
            _ => Err(not_found(id)),
        }
    }

    async fn change(
        &self,
        request: &Request,
        id: Uuid,
        actor: Actor,
        command: CouponCommand,
    ) -> Result<CouponView, Problem> {
        let (command, ledger, actor) = (&command, &self.ledger, &actor);
        let done =
            self.kernel
                .run(
                    Metadata::origin(request_id(request), actor.user.as_str()),
                    |tx| {
                        Box::pin(async move {
                            let mut coupon = tx.load::<Coupon>(&id).await?;
                            let visible = coupon.state.as_ref().is_some_and(|c| {
                                actor.role == Role::Admin || c.owner == actor.user
                            });
                            if !visible {
                                return Err(Fail::Refused(not_found(id)));
                            }
                            tx.decide(&mut coupon, command.clone())
                                .map_err(|f| f.map(refused))?;
                            ledger.audit(tx.commit())?;
                            Ok(coupon.state)
                        })
                    },
                )
                .await
                .map_err(failed)?;
        let coupon = done.value.ok_or_else(|| not_found(id))?;
        let uses = coupon_ledger::uses(self.kernel.store(), id)
            .await
            .map_err(|e| store_problem(&e))?;
        Ok(CouponView::of(&coupon, uses))
    }
}

fn not_found(id: Uuid) -> Problem {
    Problem::not_found("coupon_not_found", format!("no coupon {id}"))
}

/// The coupon decider's refusal as an answer.
pub(crate) fn refused(e: CouponError) -> Problem {
    let status = match &e {
        CouponError::Forbidden | CouponError::NotOwner => 403,
        CouponError::NotFound => 404,
        CouponError::AlreadyExists | CouponError::Disabled => 409,
        CouponError::EmptyWindow
        | CouponError::InvalidLimits
        | CouponError::InvalidStacking
        | CouponError::ShippingOutOfScope
        | CouponError::InvalidReason
        | CouponError::InvalidVelocity
        | CouponError::InvalidSharedCard
        | CouponError::InvalidMinOrder
        | CouponError::Discount(_) => 422,
    };
    Problem::new(status, e.code(), e.to_string())
}

pub(crate) fn failed(fail: Fail<Problem>) -> Problem {
    match fail {
        Fail::Refused(problem) => problem,
        Fail::Store(StoreError::Refused(kassa_store::Refusal::Taken)) => {
            Problem::conflict("code_taken", "another coupon has this code already")
        }
        Fail::Store(e) => store_problem(&e),
    }
}
