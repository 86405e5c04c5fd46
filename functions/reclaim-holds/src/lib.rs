//! The reclaim-holds Lambda: on `seats.held`, delivered a while after the hold (the
//! queue's DelaySeconds), gives the hold's seats back if no reservation owns it.
//!
//! reserve-tickets takes each level's seats with one conditional step, and the last step
//! carries the reservation that record-reservations records, owning them all. An
//! invocation that stops before its last step (a timeout, a crash) leaves the earlier
//! levels' seats taken by nobody, and its redelivery takes new ones: without this check
//! those seats would be lost to the sale for good. Asked once reserve-tickets'
//! invocation can no longer step, the answer is final: the reservation lists the hold,
//! or the hold was settled under its marker, or it is an orphan and goes back now, once.
//! A last hold is record-reservations' to settle, always, so it is left alone here.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_commerce::reservations::{Reclaimed, Reservations};
use kassa_commerce::Clock;
use kassa_domain::availability::SeatEvent;
use kassa_domain::reservation::Hold;
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::inbox::Inbox;
use kassa_runtime::{Config, Function, SdkConfig, SqsFunction};
use kassa_store::{Metadata, RecordedEvent};
use std::sync::Arc;

pub const NAME: &str = "reclaim-holds";

/// How old a hold must be before it is judged: well past reserve-tickets' timeout (10 s,
/// the template's Globals), after which the invocation that took it cannot commit. The
/// queue delays each message longer than this, so a younger one is only seen when the
/// delay is missing; it is handed back for a later delivery.
pub const SETTLE: time::Duration = time::Duration::seconds(60);

pub struct ReclaimHolds {
    reservations: Reservations,
    inbox: Inbox,
}

impl Function for ReclaimHolds {
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

impl SqsFunction for ReclaimHolds {
    async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        self.inbox
            .each_once(batch, |event| async move { self.react(&event).await })
            .await
    }
}

impl ReclaimHolds {
    async fn react(&self, event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {
        let SeatEvent::Held {
            concert_id,
            level_id,
            seats,
            reservation_id,
            hold_id,
            completes: None,
            ..
        } = event.decode::<SeatEvent>()?
        else {
            return Ok(serde_json::json!({ "skipped": event.event_type }));
        };
        let age = self.reservations.now() - event.time;
        if age < SETTLE {
            return Err(EffectError::retry(format!(
                "hold {hold_id} is {age} old; it is judged after {SETTLE}"
            )));
        }
        let hold = Hold {
            concert_id,
            level_id,
            seats,
            hold_id,
        };
        let metadata = Metadata::caused_by(event, format!("system:{NAME}"));
        let found = self
            .reservations
            .reclaim(reservation_id, &hold, &metadata)
            .await?;
        if found == Reclaimed::GivenBack {
            tracing::warn!(%reservation_id, %hold_id, seats, "an orphaned hold was given back");
        }
        Ok(serde_json::json!({
            "hold_id": hold_id,
            "reclaimed": format!("{found:?}"),
        }))
    }
}
