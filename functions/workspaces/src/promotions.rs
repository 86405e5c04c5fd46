//! Promotions: `POST /promotions`, an operator's promo code that grants a free trial of a
//! paid tier; and `POST /workspaces/{id}/promotions`, the owner's use of one. A use is one
//! commit: the promotion's count under its limit (`promotion.applied`), the workspace's
//! trial and move (`free_trial.started`, `workspace.tier_changed`), the wallet's credits
//! and prices, and the trial's reminder and end on the `trials` agenda.

use crate::{answer, decide_on, load_admitted, view, Workspaces};
use kassa_commerce::Fail;
use kassa_domain::aggregate::ByActor;
use kassa_domain::coupon_code::CouponCode;
use kassa_domain::credits::Wallet;
use kassa_domain::identity::Actor;
use kassa_domain::promotion::{Promotion, PromotionCommand, PromotionError};
use kassa_domain::tier::TierId;
use kassa_domain::workspace::{self, WorkspaceCommand};
use kassa_runtime::http::{json, json_body, request_id};
use kassa_runtime::Problem;
use kassa_store::{Metadata, Refusal};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    code: String,
    tier: TierId,
    days: u16,
    #[serde(default, with = "time::serde::rfc3339::option")]
    valid_from: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    valid_until: OffsetDateTime,
    max_uses: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyBody {
    code: String,
}

fn promotion_problem(e: PromotionError) -> Problem {
    let status = match e {
        PromotionError::Forbidden => 403,
        PromotionError::AlreadyExists => 409,
        PromotionError::InvalidTrial
        | PromotionError::InvalidWindow
        | PromotionError::InvalidLimits
        | PromotionError::NotApplicable => 422,
    };
    Problem::new(status, e.code(), e.to_string())
}

fn not_applicable() -> Problem {
    promotion_problem(PromotionError::NotApplicable)
}

impl Workspaces {
    pub(crate) async fn create_promotion(
        &self,
        request: &Request,
        actor: Actor,
    ) -> Result<Response<Body>, Problem> {
        let body: CreateBody = json_body(request)?;
        let code = CouponCode::parse(&body.code)
            .map_err(|e| Problem::new(422, "invalid_code", e.to_string()))?;
        let command = ByActor {
            command: PromotionCommand::Create {
                code: code.clone(),
                tier: body.tier,
                days: body.days,
                valid_from: body.valid_from.unwrap_or(self.kernel.clock().now()),
                valid_until: body.valid_until,
                max_uses: body.max_uses,
            },
            actor: actor.clone(),
        };
        let (command, code) = (&command, &code);
        let done = self
            .kernel
            .run(
                Metadata::origin(request_id(request), actor.user.as_str()),
                |tx| {
                    Box::pin(async move {
                        let mut promotion = tx.load::<Promotion>(code.as_str()).await?;
                        tx.decide(&mut promotion, command.clone())
                            .map_err(|f| f.map(promotion_problem))?;
                        Ok(promotion.state)
                    })
                },
            )
            .await
            .map_err(answer)?;
        Ok(json(201, &done.value))
    }

    pub(crate) async fn apply_promotion(
        &self,
        request: &Request,
        id: Uuid,
        actor: Actor,
    ) -> Result<Response<Body>, Problem> {
        let body: ApplyBody = json_body(request)?;
        // A code that cannot exist is as inapplicable as one that does not.
        let code = CouponCode::parse(&body.code).map_err(|_| not_applicable())?;
        let trials = self
            .trials
            .as_ref()
            .ok_or_else(|| Problem::internal(&"no trial schedule configured"))?;
        let at = self.kernel.clock().now();
        let (code, actor_ref) = (&code, &actor);
        let done = self
            .kernel
            .run(
                Metadata::origin(request_id(request), actor.user.as_str()),
                |tx| {
                    Box::pin(async move {
                        // The workspace first: a stranger, a collaborator, or an owner whose
                        // workspace cannot take a trial learns nothing about codes.
                        let mut ws = load_admitted(tx, id, actor_ref).await?;
                        if let Some(current) = ws.state.as_ref() {
                            workspace::may_start_trial(current, actor_ref)
                                .map_err(|e| Fail::Refused(crate::refusal(e)))?;
                        }
                        let mut promotion = tx.load::<Promotion>(code.as_str()).await?;
                        tx.decide(
                            &mut promotion,
                            ByActor {
                                command: PromotionCommand::Apply {
                                    workspace_id: id,
                                    at,
                                },
                                actor: actor_ref.clone(),
                            },
                        )
                        .map_err(|f| f.map(promotion_problem))?;
                        let offer = promotion
                            .state
                            .as_ref()
                            .ok_or_else(|| Fail::Refused(not_applicable()))?;
                        let start = ByActor {
                            command: WorkspaceCommand::StartTrial {
                                code: code.as_str().to_owned(),
                                tier: offer.tier,
                                days: offer.days,
                                at,
                            },
                            actor: actor_ref.clone(),
                        };
                        let events = decide_on(tx, &mut ws, &start)?;
                        if let Some(retier) = kassa_commerce::wallet::retier(ws.version, &events) {
                            let mut wallet = tx.load::<Wallet>(&id).await?;
                            kassa_commerce::wallet::stage(tx, &mut wallet, retier)
                                .await
                                .map_err(|f| f.map(|e| Problem::internal(&e)))?;
                        }
                        for entry in kassa_commerce::trials::entries(trials, &events)? {
                            tx.commit().put(entry, Refusal::AlreadyScheduled);
                        }
                        Ok(ws)
                    })
                },
            )
            .await
            .map_err(answer)?;
        let loaded = done.value;
        let ws = loaded
            .state
            .as_ref()
            .ok_or_else(|| Problem::internal(&"workspace vanished"))?;
        Ok(json(200, &view(ws, loaded.version)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_of_a_code_are_one_answer_and_bad_terms_are_unprocessable() {
        let p = not_applicable();
        assert_eq!(
            (p.status, p.code.as_str()),
            (422, "promotion_not_applicable")
        );
        let p = promotion_problem(PromotionError::InvalidTrial);
        assert_eq!(p.status, 422);
        let p = promotion_problem(PromotionError::Forbidden);
        assert_eq!(p.status, 403);
    }
}
