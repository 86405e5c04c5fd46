//! Buying credit packs for a workspace: the order, its place on the expiry agenda and its
//! entry in the buyer's list commit together, and (unless an operator buys) only while the
//! buyer is still a member.

use crate::reading::{view, OrderView};
use crate::refusals::refusal;
use crate::Orders;
use kassa_commerce::Fail;
use kassa_domain::identity::Role;
use kassa_domain::order::{self, NewOrder, Order, OrderCommand, OrderLine, Purpose};
use kassa_domain::pack::{self, MAX_PACKS_PER_ORDER};
use kassa_runtime::access::{self, workspace_stream};
use kassa_runtime::http::{json_body, request_id, uuid_param};
use kassa_runtime::{problem, Problem};
use kassa_store::{Metadata, Refusal, StoreError};
use lambda_http::Request;
use serde::Deserialize;
use uuid::Uuid;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurchaseBody {
    pack: String,
    #[serde(default = "one")]
    quantity: u64,
    reference: Option<String>,
}

fn one() -> u64 {
    1
}

impl Orders {
    pub(crate) async fn purchase(&self, request: &Request) -> Result<OrderView, Problem> {
        let actor = self.caller(request).await?;
        let workspace = uuid_param(request, "workspaceId", "workspace_not_found")?;
        let body: PurchaseBody = json_body(request)?;
        let Some(pack) = pack::find(&body.pack) else {
            return Err(Problem::new(
                422,
                "unknown_pack",
                format!("unknown pack `{}`; packs: {}", body.pack, pack::codes()),
            ));
        };
        if body.quantity == 0 || body.quantity > MAX_PACKS_PER_ORDER {
            return Err(Problem::new(
                422,
                "invalid_quantity",
                format!("quantity must be between 1 and {MAX_PACKS_PER_ORDER}"),
            ));
        }
        order::validate_reference(&body.reference).map_err(refusal)?;
        access::load_admitted(&self.store, workspace, &actor).await?;

        let now = self.clock.now();
        let new = NewOrder {
            order_id: Uuid::now_v7(),
            user_id: actor.user.clone(),
            purpose: Purpose::CreditPack {
                workspace_id: workspace,
                pack: pack.code.to_owned(),
                quantity: body.quantity,
                credits: pack.credits * body.quantity,
            },
            lines: vec![OrderLine {
                description: pack.describe(),
                quantity: body.quantity,
                unit_price: pack.price(),
                amount: pack.price().times(body.quantity),
            }],
            delivery_fee: None,
            tax_rate: self.tax_rate,
            reference: body.reference,
            now,
            window: kassa_domain::order::PAYMENT_WINDOW,
        };
        let user = actor.user.as_str();
        let is_admin = actor.role == Role::Admin;
        let new = &new;
        let outcome = self
            .kernel
            .run(Metadata::origin(request_id(request), user), |tx| {
                Box::pin(async move {
                    let mut order = tx.load::<Order>(&new.order_id).await?;
                    let events = tx.decide(&mut order, OrderCommand::Create(new.clone()))?;
                    if let (Some(created), false) = (&order.state, events.is_empty()) {
                        // Membership is checked again inside the transaction: a
                        // collaborator removed between the read and the commit cannot buy.
                        if !is_admin {
                            tx.commit()
                                .require_member(&workspace_stream(workspace), user)?;
                        }
                        self.book.on_create(tx.commit(), created)?;
                    }
                    Ok(order.state)
                })
            })
            .await;
        match outcome {
            Ok(done) => {
                let order = done.value.ok_or_else(|| Problem::internal(&"no order"))?;
                Ok(view(&order, 1, None))
            }
            Err(Fail::Refused(e)) => Err(refusal(e)),
            Err(Fail::Store(StoreError::Refused(Refusal::NotMember))) => {
                Err(access::not_found(workspace))
            }
            Err(Fail::Store(e)) => Err(problem::store_problem(&e)),
        }
    }
}
