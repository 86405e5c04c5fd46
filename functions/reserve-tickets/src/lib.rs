//! The reserve-tickets Lambda: on `order.created` for a ticket order, reserves every level
//! the order needs, all or nothing, with one conditional step per level on its free-seats
//! counter (`kassa_commerce::reservations`): no lock, no read-then-write. It records
//! `reservation.created` (the seats held until the order's payment window closes) or
//! `reservation.failed` with the level that ran out, on which the order is canceled.
//! A redelivered order finds its reservation recorded and does nothing, so no
//! idempotency record is kept.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_commerce::reservations::{Request, Reservations, Reserved};
use kassa_commerce::Clock;
use kassa_domain::order::{Order, OrderEvent, Purpose};
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::inbox::Inbox;
use kassa_runtime::{Config, Function, SdkConfig, SqsFunction};
use kassa_store::{Metadata, RecordedEvent};
use std::sync::Arc;

pub const NAME: &str = "reserve-tickets";

pub struct ReserveTickets {
    reservations: Reservations,
    inbox: Inbox,
}

impl Function for ReserveTickets {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        Ok(Self {
            reservations: Reservations::on_tables(
                aws_sdk_dynamodb::Client::new(aws),
                &config.events_table,
                &config.state_table,
                clock.clone(),
            ),
            inbox: Inbox::from_config(config, aws, NAME, clock),
        })
    }
}

impl SqsFunction for ReserveTickets {
    async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        // No idempotency record of its own: every outcome is already once-only. A
        // redelivery reads the reservation recorded and does nothing; one that races the
        // first delivery loses at the commit (conditional on no reservation) and gives its
        // holds back under their markers. The record would add two writes to each of the
        // flash sale's reservations for nothing.
        self.inbox
            .each(batch, |event| async move {
                let outcome = self.react(&event).await?;
                tracing::debug!(event_id = %event.event_id, %outcome, "reserved");
                Ok(())
            })
            .await
    }
}

impl ReserveTickets {
    async fn react(&self, event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {
        let OrderEvent::Created {
            order_id,
            user_id,
            purpose: Purpose::Tickets { seats, .. },
            expires_at,
            ..
        } = event.decode::<OrderEvent>()?
        else {
            return Ok(serde_json::json!({ "skipped": event.event_type }));
        };
        // An order canceled or expired before its reservation was made needs no seats. A
        // paid one still gets its reservation (its order.created came late): settling the
        // payment waits for it, and either confirms it or refunds.
        let live = self
            .reservations
            .store()
            .load_aggregate::<Order>(&order_id)
            .await?
            .state
            .is_some_and(|o| o.status.is_open() || o.status.is_paid());
        if !live {
            return Ok(serde_json::json!({ "skipped": "order_closed" }));
        }
        let request = Request {
            order_id,
            user_id,
            seats,
            expires_at,
        };
        let metadata = Metadata::caused_by(event, format!("system:{NAME}"));
        Ok(
            match self.reservations.reserve(&request, &metadata).await? {
                Reserved::Held(r) => serde_json::json!({ "held": r.holds.len() }),
                Reserved::Refused {
                    level_id,
                    requested,
                    free,
                    ..
                } => {
                    serde_json::json!({ "refused": level_id, "requested": requested, "free": free })
                }
                Reserved::Recorded(r) => serde_json::json!({ "recorded": r.status }),
            },
        )
    }
}
