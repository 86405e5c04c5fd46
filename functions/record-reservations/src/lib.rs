//! The record-reservations Lambda: on the `seats.held` that completes a ticket order's
//! holds (the one carrying `completes`), records `reservation.created` owning them, with
//! its expiry and the order's place on its concerts' rosters, or gives them back when
//! the order closed meanwhile or another delivery's holds were recorded first
//! (`kassa_commerce::reservations`). The other holds are left to the reservation their
//! last hold records, or to reclaim-holds.
//!
//! This is the reservation's cold half: reserve-tickets writes only the level counters,
//! the hot items, and everything written here is on items of the one order. Every
//! outcome is once-only on its own (the reservation's version and a marker per hold), so
//! no idempotency record is kept.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_commerce::reservations::{Recorded, Reservations};
use kassa_commerce::Clock;
use kassa_domain::availability::SeatEvent;
use kassa_domain::reservation::Hold;
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::inbox::Inbox;
use kassa_runtime::{Config, Function, SdkConfig, SqsFunction};
use kassa_store::{Metadata, RecordedEvent};
use std::sync::Arc;

pub const NAME: &str = "record-reservations";

pub struct RecordReservations {
    reservations: Reservations,
    inbox: Inbox,
}

impl Function for RecordReservations {
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

impl SqsFunction for RecordReservations {
    async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        self.inbox
            .each(batch, |event| async move {
                let outcome = self.react(&event).await?;
                tracing::debug!(event_id = %event.event_id, %outcome, "recorded");
                Ok(())
            })
            .await
    }
}

impl RecordReservations {
    async fn react(&self, event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {
        let SeatEvent::Held {
            concert_id,
            level_id,
            seats,
            reservation_id,
            hold_id,
            completes: Some(mut holds),
            ..
        } = event.decode::<SeatEvent>()?
        else {
            return Ok(serde_json::json!({ "skipped": event.event_type }));
        };
        holds.push(Hold {
            concert_id,
            level_id,
            seats,
            hold_id,
        });
        let metadata = Metadata::caused_by(event, format!("system:{NAME}"));
        Ok(
            match self
                .reservations
                .record(reservation_id, &holds, &metadata)
                .await?
            {
                Recorded::Created(r) => serde_json::json!({ "created": r.holds.len() }),
                Recorded::Already => serde_json::json!({ "recorded": "before" }),
                Recorded::GivenBack { reason } => {
                    tracing::info!(%reservation_id, reason, "holds given back");
                    serde_json::json!({ "given_back": reason })
                }
            },
        )
    }
}
