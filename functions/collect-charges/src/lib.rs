//! Collects what kassa charges a subscribed workspace itself, with its saved card: the
//! rest of the period it subscribed in (`workspace.subscribed`), the rest of the period
//! after a move up (`workspace.tier_changed`) and a closed period's overage
//! (`overage.charged`). It also keeps the subscription's price on the workspace's tier.
//!
//! Each charge is keyed by the event that owes it, at the provider (`charge-{event id}`)
//! and in kassa (a marker on the workspace's stream, written with the outcome), so a
//! redelivery, even one after the commit, charges and records once. A failure starts the
//! workspace's dunning (`kassa_commerce::dunning`): retry-payments retries it on schedule.
//!
//! The subscription follows the tier the workspace's next period will be on (a scheduled
//! move down, else its tier), as the workspace is when the event is handled, not as the
//! event names it: changes handled out of order still leave the latest. Its price changes
//! from the next invoice on, so a move down scheduled now is billed from the period's end;
//! a move down to the free tier lets the subscription end with the period, and once it
//! has taken effect the subscription is ended (`workspace.unsubscribed`).
//!
//! A cancellation at once (`workspace.subscription_cancelled`) ends the subscription at
//! the provider now and pays back its refund, each share against the payment the
//! workspace decided it from, keyed by the event and payment at the provider and marked
//! done (`refunded:<event>`) in kassa once all are paid. A charge that was at the
//! provider while the cancellation was decided is recorded after it, outside that refund:
//! the workspace returns it (`workspace.charge_returned`), and it is paid back whole. A
//! delivery that died after charging finds, when it comes again after the end, its charge
//! at the provider by the event on it, and records it to be returned the same way.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_commerce::dunning::{self, Attempt, DUNNING_AGENDA};
use kassa_commerce::{Clock, Kernel};
use kassa_domain::aggregate::ByActor;
use kassa_domain::credits::CreditEvent;
use kassa_domain::identity::Actor;
use kassa_domain::money::Money;
use kassa_domain::tier::TierId;
use kassa_domain::workspace::{ChargeFor, Workspace, WorkspaceCommand, WorkspaceEvent};
use kassa_payments::dues;
use kassa_payments::gateway::{GatewayError, PaymentGateway, SavedCardCharge};
use kassa_payments::stripe::StripeGateway;
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::inbox::Inbox;
use kassa_runtime::{Config, Function, SdkConfig, SqsFunction};
use kassa_store::{
    stream_of, Agenda, EventStore, Loaded, Metadata, RecordedEvent, Refusal, StoreError,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

pub const NAME: &str = "collect-charges";

/// How many times one handler sets the subscription again for a workspace that moved on
/// while it did; a workspace still moving after that is followed by a redelivery.
const FOLLOW_ROUNDS: usize = 5;

/// The events after which the subscription must follow the workspace's tiers.
const TIER_EVENTS: [&str; 3] = [
    "workspace.tier_changed",
    "workspace.tier_change_scheduled",
    "workspace.tier_change_cancelled",
];

pub struct CollectCharges {
    kernel: Kernel,
    agenda: Agenda,
    inbox: Inbox,
    gateway: StripeGateway,
    pro: String,
    enterprise: String,
}

impl Function for CollectCharges {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {
            kernel: Kernel::new(
                EventStore::new(client.clone(), &config.events_table),
                clock.clone(),
            ),
            agenda: Agenda::new(client, &config.state_table, DUNNING_AGENDA),
            inbox: Inbox::from_config(config, aws, NAME, clock),
            gateway: config.stripe.gateway()?,
            pro: config.stripe.price_of(TierId::Pro)?.to_owned(),
            enterprise: config.stripe.price_of(TierId::Enterprise)?.to_owned(),
        })
    }
}

impl SqsFunction for CollectCharges {
    async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        self.inbox
            .each_once(batch, |event| async move { self.react(&event).await })
            .await
    }
}

/// What an event owes: whose, why, how much.
struct Owed {
    workspace: Uuid,
    reason: ChargeFor,
    amount: Money,
}

fn owed(event: &RecordedEvent) -> Result<Option<Owed>, EffectError> {
    Ok(match event.event_type.as_str() {
        "overage.charged" => match event.decode::<CreditEvent>()? {
            CreditEvent::OverageCharged {
                workspace_id,
                amount,
                ..
            } => Some(Owed {
                workspace: workspace_id,
                reason: ChargeFor::Overage,
                amount,
            }),
            _ => None,
        },
        _ => match event.decode::<WorkspaceEvent>()? {
            WorkspaceEvent::Subscribed {
                workspace_id,
                charge,
                ..
            } => Some(Owed {
                workspace: workspace_id,
                reason: ChargeFor::Subscription,
                amount: charge,
            }),
            WorkspaceEvent::TierChanged {
                workspace_id,
                charge,
                ..
            } => Some(Owed {
                workspace: workspace_id,
                reason: ChargeFor::TierChange,
                amount: charge,
            }),
            _ => None,
        },
    })
}

fn marker(event: &RecordedEvent) -> String {
    format!("charge:{}", event.event_id)
}

impl CollectCharges {
    async fn react(&self, event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {
        if event.event_type == "workspace.subscription_cancelled" {
            return self.cancel_now(event).await;
        }
        if event.event_type == "workspace.charge_returned" {
            return self.give_back(event).await;
        }
        if matches!(
            event.event_type.as_str(),
            "workspace.tier_change_scheduled" | "workspace.tier_change_cancelled"
        ) {
            let id = match event.decode::<WorkspaceEvent>()? {
                WorkspaceEvent::TierChangeScheduled { workspace_id, .. }
                | WorkspaceEvent::TierChangeCancelled { workspace_id, .. } => workspace_id,
                _ => return Ok(serde_json::json!({ "skipped": event.event_type })),
            };
            let loaded = self.kernel.store().load_aggregate::<Workspace>(&id).await?;
            self.follow_tier(loaded, event).await?;
            return Ok(serde_json::json!({ "followed": event.event_type }));
        }
        let Some(owed) = owed(event)? else {
            return Ok(serde_json::json!({ "skipped": event.event_type }));
        };
        let store = self.kernel.store();
        let loaded = store.load_aggregate::<Workspace>(&owed.workspace).await?;
        let Some(ws) = loaded.state.clone() else {
            return Err(EffectError::retry(format!(
                "workspace {} not found yet",
                owed.workspace
            )));
        };
        if TIER_EVENTS.contains(&event.event_type.as_str()) {
            self.follow_tier(loaded, event).await?;
        }
        if owed.amount.amount.is_zero() {
            return Ok(serde_json::json!({ "owed": "nothing" }));
        }
        let stream = stream_of::<Workspace>(&owed.workspace);
        if store.is_marked(&stream, &marker(event)).await? {
            return Ok(serde_json::json!({ "charged": "already" }));
        }
        // A subscription or move up is charged only while the subscription lasts: one
        // ended at once before its charge came here had its refund computed without it,
        // so charging now would bill an ended subscription (and, with no card left, dun
        // and suspend a workspace that owes nothing).
        let ended = ws.billing.is_none()
            && matches!(owed.reason, ChargeFor::Subscription | ChargeFor::TierChange);
        if ended {
            // A delivery that died between its charge and its record may have charged the
            // card before the subscription ended: that charge is found at the provider
            // and recorded, so it is returned like any charge recorded after the end.
            let made = match &ws.former_customer {
                Some(customer) => {
                    self.gateway
                        .succeeded_charge(customer, dues::EVENT_KEY, &event.event_id.to_string())
                        .await?
                }
                None => None,
            };
            let Some(made) = made else {
                return Ok(serde_json::json!({ "charged": false, "subscription": "ended" }));
            };
            self.record(event, &owed, Ok(made.id)).await?;
            return Ok(serde_json::json!({ "charged": "before the end", "returned": true }));
        }
        let outcome = match &ws.billing {
            None => Err("the workspace has no saved payment method".to_owned()),
            Some(billing) => {
                let charge = SavedCardCharge {
                    customer: billing.customer.clone(),
                    payment_method: billing.payment_method.clone(),
                    amount: owed.amount,
                    description: format!("kassa workspace {}: {:?}", ws.name, owed.reason),
                    metadata: BTreeMap::from([
                        (dues::WORKSPACE_KEY.to_owned(), ws.id.to_string()),
                        (dues::EVENT_KEY.to_owned(), event.event_id.to_string()),
                    ]),
                };
                match self
                    .gateway
                    .charge_saved_card(&charge, &format!("charge-{}", event.event_id))
                    .await
                {
                    Ok(intent) => Ok(intent.id),
                    Err(GatewayError::Refused { message, .. }) => Err(message),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let succeeded = outcome.is_ok();
        self.record(event, &owed, outcome).await?;
        Ok(serde_json::json!({ "charged": succeeded }))
    }

    /// Records what became of the charge `event` owes, once (under its marker).
    async fn record(
        &self,
        event: &RecordedEvent,
        owed: &Owed,
        outcome: Result<String, String>,
    ) -> Result<(), EffectError> {
        let attempt = Attempt {
            workspace: owed.workspace,
            source_event: event.event_id,
            reason: owed.reason,
            amount: owed.amount,
            outcome,
            marker: marker(event),
            due: None,
            invoice: None,
        };
        dunning::record(
            &self.kernel,
            &self.agenda,
            &attempt,
            Metadata::caused_by(event, format!("system:{NAME}")),
            self.kernel.clock().now(),
        )
        .await?;
        Ok(())
    }

    /// Keeps the subscription on the tier the workspace's next period will be on.
    ///
    /// Two tier events of one workspace may be followed at once (a move down scheduled,
    /// then called off), each handler setting the subscription to the state it read, and
    /// the staler call may land last. So after its call a handler reads the workspace
    /// again and, if it moved on meanwhile, sets the newer state under a key of its own
    /// (the first call's key would only replay the first answer): whichever handler
    /// returns last has set what the newest state says.
    async fn follow_tier(
        &self,
        mut loaded: Loaded<Workspace>,
        event: &RecordedEvent,
    ) -> Result<(), EffectError> {
        let Some(id) = loaded.state.as_ref().map(|ws| ws.id) else {
            return Ok(());
        };
        let mut key = event.event_id.to_string();
        for _ in 0..FOLLOW_ROUNDS {
            let Some(ws) = &loaded.state else {
                return Ok(());
            };
            let acted = loaded.version;
            self.set_tier(ws, &key, event).await?;
            loaded = self.kernel.store().load_aggregate::<Workspace>(&id).await?;
            if loaded.version == acted {
                return Ok(());
            }
            key = format!("{}-v{}", event.event_id, loaded.version);
        }
        Err(EffectError::retry(format!(
            "workspace {id} kept changing while its subscription followed it"
        )))
    }

    /// Sets the subscription to the tier `ws`'s next period will be on, under `key`.
    async fn set_tier(
        &self,
        ws: &Workspace,
        key: &str,
        event: &RecordedEvent,
    ) -> Result<(), EffectError> {
        let Some(billing) = &ws.billing else {
            return Ok(());
        };
        let next = ws.scheduled.as_ref().map_or(ws.tier, |s| s.tier);
        let price = match (ws.tier, next) {
            (TierId::Free, _) => return self.unsubscribe(ws, event).await,
            (_, TierId::Free) => {
                self.gateway
                    .end_subscription_at_period_end(&billing.subscription_id, &format!("end-{key}"))
                    .await?;
                return Ok(());
            }
            (_, TierId::Pro) => &self.pro,
            (_, TierId::Enterprise) => &self.enterprise,
        };
        self.gateway
            .update_subscription(
                &billing.subscription_id,
                price,
                &format!("price-{key}-{next}"),
            )
            .await?;
        Ok(())
    }

    async fn cancel_now(&self, event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {
        let WorkspaceEvent::SubscriptionCancelled {
            workspace_id,
            subscription_id,
            refunds,
            ..
        } = event.decode::<WorkspaceEvent>()?
        else {
            return Ok(serde_json::json!({ "skipped": event.event_type }));
        };
        let store = self.kernel.store();
        let stream = stream_of::<Workspace>(&workspace_id);
        let done = format!("refunded:{}", event.event_id);
        if store.is_marked(&stream, &done).await? {
            return Ok(serde_json::json!({ "refunded": "already" }));
        }
        self.gateway
            .cancel_subscription(&subscription_id, &format!("cancel-{subscription_id}"))
            .await?;
        for share in &refunds {
            let key = format!("refund-{}-{}", event.event_id, share.payment_intent);
            self.pay_back(workspace_id, &share.payment_intent, share.amount, &key)
                .await?;
        }
        self.mark_done(event, workspace_id, &done).await?;
        Ok(serde_json::json!({ "refunded": refunds.len() }))
    }

    /// Refunds `amount` of `payment_intent` under `key`. The workspace decided it from a
    /// payment it recorded, so a refusal (the payment refunded by hand meanwhile) needs a
    /// person, not a retry.
    async fn pay_back(
        &self,
        workspace_id: Uuid,
        payment_intent: &str,
        amount: Money,
        key: &str,
    ) -> Result<(), EffectError> {
        match self.gateway.refund(payment_intent, Some(amount), key).await {
            Ok(_) => Ok(()),
            Err(GatewayError::Refused { message, .. }) => Err(EffectError::poison(format!(
                "refund of {amount} from {payment_intent} for workspace {workspace_id}: {message}"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Marks `event`'s payments back done on the workspace's stream, once.
    async fn mark_done(
        &self,
        event: &RecordedEvent,
        workspace_id: Uuid,
        done: &str,
    ) -> Result<(), EffectError> {
        let store = self.kernel.store();
        let mut commit = store.commit_builder(
            Metadata::caused_by(event, format!("system:{NAME}")),
            self.kernel.clock().now(),
        );
        commit.mark(&stream_of::<Workspace>(&workspace_id), done)?;
        match store.commit(commit).await {
            Ok(_) | Err(StoreError::Refused(Refusal::AlreadyApplied)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Pays back whole a charge the workspace recorded after its subscription had ended
    /// at once (`workspace.charge_returned`), keyed by the charge's source at the provider
    /// and marked done (`returned:<event>`) in kassa.
    async fn give_back(&self, event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {
        let WorkspaceEvent::ChargeReturned {
            workspace_id,
            source_event,
            amount,
            payment_intent,
            ..
        } = event.decode::<WorkspaceEvent>()?
        else {
            return Ok(serde_json::json!({ "skipped": event.event_type }));
        };
        let store = self.kernel.store();
        let stream = stream_of::<Workspace>(&workspace_id);
        let done = format!("returned:{}", event.event_id);
        if store.is_marked(&stream, &done).await? {
            return Ok(serde_json::json!({ "returned": "already" }));
        }
        let key = format!("return-{source_event}");
        self.pay_back(workspace_id, &payment_intent, amount, &key)
            .await?;
        self.mark_done(event, workspace_id, &done).await?;
        Ok(serde_json::json!({ "returned": amount }))
    }

    async fn unsubscribe(&self, ws: &Workspace, event: &RecordedEvent) -> Result<(), EffectError> {
        let Some(billing) = &ws.billing else {
            return Ok(());
        };
        self.gateway
            .cancel_subscription(
                &billing.subscription_id,
                &format!("cancel-{}", billing.subscription_id),
            )
            .await?;
        let id = ws.id;
        let command = ByActor {
            command: WorkspaceCommand::Unsubscribe {
                at: self.kernel.clock().now(),
            },
            actor: Actor::system(NAME),
        };
        let command = &command;
        self.kernel
            .run(Metadata::caused_by(event, format!("system:{NAME}")), |tx| {
                Box::pin(async move {
                    let mut ws = tx.load::<Workspace>(&id).await?;
                    tx.decide(&mut ws, command.clone())?;
                    Ok(())
                })
            })
            .await?;
        Ok(())
    }
}
