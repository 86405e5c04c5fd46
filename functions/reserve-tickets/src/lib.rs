//! The reserve-tickets Lambda: on `order.created` for a ticket order, takes every level's
//! seats the order needs, all or nothing, with one conditional step per level on its
//! free-seats counter (`kassa_commerce::reservations`): no lock, no read-then-write, and
//! nothing else written on the way. The last step's `seats.held` carries the reservation,
//! which record-reservations records (`reservation.created`, the seats held until the
//! order's payment window closes). When a level runs out it records `reservation.failed`
//! with that level, on which the order is canceled.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_commerce::reservations::{Request, Reservations, Reserved};
use kassa_commerce::Clock;
use kassa_domain::order::{OrderEvent, Purpose};
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
        // No idempotency record of its own, and no read before the steps: a sale's
        // reservation is its steps on the hot counters and nothing more. A redelivery
        // takes seats again; recording finds the reservation owned by the first
        // delivery's holds and gives the new ones back, once each.
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
        // Whether the order is still open is asked when the reservation is recorded, off
        // the hot path: an order closed before then gets its seats back from there.
        let request = Request {
            order_id,
            user_id,
            seats,
            expires_at,
        };
        let metadata = Metadata::caused_by(event, format!("system:{NAME}"));
        Ok(
            match self.reservations.reserve(&request, &metadata).await? {
                Reserved::Taken(holds) => serde_json::json!({ "taken": holds.len() }),
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
