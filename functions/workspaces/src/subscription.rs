//! `POST /workspaces/{id}/subscription`: the owner's card saved at Stripe and the paid
//! tier's subscription made there, then recorded (`workspace.subscribed`).
//!
//! The provider is asked first, under idempotency keys derived from the workspace as read
//! (its id and version) and the request's card and tier, so a retried request makes no
//! second customer or subscription; the record is then committed, and a retry that finds
//! the same subscription recorded answers it unchanged.
//!
//! The subscription's periods start at the end of the workspace's billing period
//! (`billing_cycle_anchor`), so it renews with the wallet, and nothing is prorated
//! there: kassa charges the rest of this period itself (the events' `charge`).

use kassa_commerce::dunning::{self, Attempt, DUNNING_AGENDA};
use kassa_commerce::{Fail, Kernel};
use kassa_domain::billing_period::Period;
use kassa_domain::identity::Actor;
use kassa_domain::tier::TierId;
use kassa_domain::workspace::{self, Billing, Workspace};
use kassa_payments::dues;
use kassa_payments::gateway::{GatewayError, PaymentGateway, SubscriptionRequest};
use kassa_payments::stripe::StripeGateway;
use kassa_runtime::{Config, Problem};
use kassa_store::lease::Leases;
use kassa_store::{Agenda, Metadata};
use serde::Deserialize;
use std::collections::BTreeMap;
use time::OffsetDateTime;
use uuid::Uuid;

pub use kassa_payments::dues::WORKSPACE_KEY;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeBody {
    /// A payment method collected the provider's way (Stripe.js, a SetupIntent): `pm_...`.
    pub payment_method: String,
    /// The tier to pay for; the workspace's own by default.
    pub tier: Option<TierId>,
}

impl SubscribeBody {
    pub fn payment_method(&self) -> Result<&str, Problem> {
        payment_method_id(&self.payment_method)
    }
}

/// A payment method id as the provider's client libraries hand it over (`pm_...`).
pub fn payment_method_id(raw: &str) -> Result<&str, Problem> {
    let pm = raw.trim();
    let plausible = pm.starts_with("pm_")
        && pm.len() <= 255
        && pm[3..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if pm.len() > 3 && plausible {
        Ok(pm)
    } else {
        Err(Problem::new(
            422,
            "invalid_payment_method",
            "payment_method must be a payment method id (`pm_...`)",
        ))
    }
}

/// The provider side of subscribing and of settling what a workspace owes.
pub struct Subscriptions {
    gateway: StripeGateway,
    pro: String,
    enterprise: String,
    agenda: Agenda,
    leases: Leases,
}

impl Subscriptions {
    /// `None` when the function is not given the provider's key and prices: the route then
    /// answers that subscribing is not available here.
    pub fn from_config(config: &Config, aws: &kassa_runtime::SdkConfig) -> Option<Self> {
        let stripe = &config.stripe;
        let client = aws_sdk_dynamodb::Client::new(aws);
        Some(Self {
            leases: Leases::new(client.clone(), &config.events_table),
            agenda: Agenda::new(client, &config.state_table, DUNNING_AGENDA),
            gateway: stripe.gateway().ok()?,
            pro: stripe.price_of(TierId::Pro).ok()?.to_owned(),
            enterprise: stripe.price_of(TierId::Enterprise).ok()?.to_owned(),
        })
    }

    fn price(&self, tier: TierId) -> Option<&str> {
        match tier {
            TierId::Pro => Some(&self.pro),
            TierId::Enterprise => Some(&self.enterprise),
            TierId::Free => None,
        }
    }

    /// Saves the card and subscribes `ws` (read at `version`) to `tier` at the provider.
    pub async fn subscribe(
        &self,
        ws: &Workspace,
        version: u64,
        payment_method: &str,
        tier: TierId,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<Billing, Problem> {
        workspace::may_subscribe(ws, tier, actor).map_err(crate::refusal)?;
        let price = self
            .price(tier)
            .ok_or_else(|| crate::refusal(workspace::WorkspaceError::FreeTier))?;
        let key = format!("workspace-{}-v{version}", ws.id);
        let customer = self
            .gateway
            .create_customer(
                ws.billing_email.as_deref(),
                &ws.id.to_string(),
                &format!("{key}-customer"),
            )
            .await
            .map_err(provider_problem)?;
        let card_key = format!("{key}-{payment_method}");
        self.gateway
            .save_payment_method(&customer.id, payment_method, &card_key)
            .await
            .map_err(provider_problem)?;
        let period = Period::holding(ws.anchor_day, now);
        let anchor = period
            .end
            .with_time(time::Time::MIDNIGHT)
            .assume_utc()
            .unix_timestamp();
        let request = SubscriptionRequest {
            customer: customer.id.clone(),
            price: price.to_owned(),
            metadata: BTreeMap::from([(WORKSPACE_KEY.to_owned(), ws.id.to_string())]),
            billing_cycle_anchor: Some(anchor),
        };
        let subscription = self
            .gateway
            .create_subscription(&request, &format!("{card_key}-{tier}-subscription"))
            .await
            .map_err(provider_problem)?;
        Ok(Billing {
            customer: customer.id,
            subscription_id: subscription.id,
            payment_method: payment_method.to_owned(),
        })
    }

    /// Cancels at the provider a subscription [`Self::subscribe`] created but the
    /// workspace refused to record (another request changed it meanwhile), so nothing
    /// goes on billing for a subscription kassa does not know.
    pub async fn abandon(&self, workspace: Uuid, billing: &Billing) {
        let id = &billing.subscription_id;
        if let Err(e) = self
            .gateway
            .cancel_subscription(id, &format!("abandon-{id}"))
            .await
        {
            tracing::error!(alert = "subscription_abandoned", %workspace, subscription = %id, error = %e, "a refused subscription is still live at the provider");
        }
    }
}

impl Subscriptions {
    /// A SetupIntent whose confirmation in the owner's browser collects the card that
    /// subscribing or `PUT .../payment-method` then saves; keyed by the workspace as read,
    /// so a retried request answers the same one.
    pub async fn setup_intent(
        &self,
        ws: &Workspace,
        version: u64,
        actor: &Actor,
    ) -> Result<kassa_payments::gateway::SetupIntent, Problem> {
        workspace::may_manage_billing(ws, actor).map_err(crate::refusal)?;
        self.gateway
            .create_setup_intent(
                &BTreeMap::from([(WORKSPACE_KEY.to_owned(), ws.id.to_string())]),
                &format!("workspace-{}-v{version}-setup", ws.id),
            )
            .await
            .map_err(provider_problem)
    }

    /// Saves the owner's new card on the workspace's customer.
    pub async fn save_card(
        &self,
        ws: &Workspace,
        version: u64,
        payment_method: &str,
    ) -> Result<(), Problem> {
        let billing = ws
            .billing
            .as_ref()
            .ok_or_else(|| crate::refusal(workspace::WorkspaceError::NoSubscription))?;
        self.gateway
            .save_payment_method(
                &billing.customer,
                payment_method,
                &format!("workspace-{}-v{version}-{payment_method}", ws.id),
            )
            .await
            .map_err(provider_problem)
    }

    /// Charges what the workspace owes to its card as saved now. Each payment settles its
    /// charge (and a workspace that owes nothing more is reactivated); a refusal is the
    /// answer, and the dunning goes on as scheduled.
    pub async fn settle(
        &self,
        kernel: &Kernel,
        id: uuid::Uuid,
        correlation: &uuid::Uuid,
    ) -> Result<Vec<uuid::Uuid>, Problem> {
        let store_problem = |e: kassa_store::StoreError| kassa_runtime::problem::store_problem(&e);
        let Some(ws) = kernel
            .store()
            .load_aggregate::<Workspace>(&id)
            .await
            .map_err(store_problem)?
            .state
        else {
            return Ok(Vec::new());
        };
        if ws.billing.is_none() {
            return Ok(Vec::new());
        }
        let mut settled = Vec::new();
        for source_event in ws.overdue.iter().map(|o| o.source_event) {
            let now = kernel.clock().now();
            let Some(turn) = dunning::take_turn(&self.leases, id, source_event, now)
                .await
                .map_err(store_problem)?
            else {
                return Err(Problem::new(
                    409,
                    "payment_in_progress",
                    "a charge of what this workspace owes is being made right now; retry in a minute",
                )
                .retry_after(u32::try_from(dunning::CHARGE_TURN.as_secs()).unwrap_or(60)));
            };
            let paid = self
                .settle_in_turn(kernel, id, source_event, correlation)
                .await;
            dunning::end_turn(&self.leases, turn).await;
            if paid? {
                settled.push(source_event);
            }
        }
        Ok(settled)
    }

    /// Charges the debt `source_event` of workspace `id`, read again now that this request
    /// holds its turn (a retry may have paid it meanwhile); whether it was still owed.
    async fn settle_in_turn(
        &self,
        kernel: &Kernel,
        id: uuid::Uuid,
        source_event: uuid::Uuid,
        correlation: &uuid::Uuid,
    ) -> Result<bool, Problem> {
        let store_problem = |e: kassa_store::StoreError| kassa_runtime::problem::store_problem(&e);
        let ws = kernel
            .store()
            .load_aggregate::<Workspace>(&id)
            .await
            .map_err(store_problem)?
            .state;
        let Some((ws, billing)) = ws.and_then(|ws| ws.billing.clone().map(|b| (ws, b))) else {
            return Ok(false);
        };
        let Some(owed) = ws.overdue.iter().find(|o| o.source_event == source_event) else {
            return Ok(false);
        };
        let key = format!("settle-{}-{}", owed.source_event, billing.payment_method);
        let description = format!("kassa workspace {}: settling", ws.name);
        let payment = match dues::pay(&self.gateway, &ws, owed, description, &key).await {
            Ok(Ok(payment)) => payment,
            Ok(Err(message)) => {
                return Err(provider_problem(GatewayError::Refused {
                    kind: "card_error".into(),
                    message,
                }))
            }
            Err(e) => return Err(provider_problem(e)),
        };
        let attempt = Attempt {
            workspace: id,
            source_event: owed.source_event,
            reason: owed.reason,
            amount: owed.amount,
            outcome: Ok(payment),
            marker: format!("settle:{}:{}", owed.source_event, billing.payment_method),
            due: None,
            invoice: owed.invoice.clone(),
        };
        dunning::record(
            kernel,
            &self.agenda,
            &attempt,
            Metadata::origin(*correlation, "system:workspaces"),
            kernel.clock().now(),
        )
        .await
        .map_err(|f| match f {
            Fail::Refused(e) => crate::refusal(e),
            Fail::Store(e) => store_problem(e),
        })?;
        Ok(true)
    }
}

/// A refusal is the caller's to fix (a declined card, an unknown payment method); an
/// outage is worth a retry.
fn provider_problem(e: GatewayError) -> Problem {
    match e {
        GatewayError::Refused { message, .. } => Problem::new(
            402,
            "payment_method_refused",
            format!("the payment provider refused: {message}"),
        ),
        GatewayError::InvalidAmount(a) => Problem::internal(&a),
        GatewayError::Unavailable(e) => {
            tracing::warn!(error = %e, "the payment provider is unavailable");
            Problem::new(
                503,
                "payment_provider_unavailable",
                "the payment provider is unavailable; retry shortly",
            )
        }
    }
}
