//! The expire-reservations schedule (every minute): a reservation whose window passed
//! unpaid expires, and its seats go back in the same commit (`reservation.expired`), once:
//! the reservation's version decides between expiry, cancellation and confirmation,
//! whichever comes first. The order follows on `reservation.expired` (ticket-orders).

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use kassa_commerce::order_book::agenda_time;
use kassa_commerce::reservations::Reservations;
use kassa_commerce::Clock;
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::sweep::{self, Fate, Sweep};
use kassa_runtime::{Config, Function, ScheduledFunction, SdkConfig};
use kassa_store::Metadata;
use std::sync::Arc;
use uuid::Uuid;

pub const NAME: &str = "expire-reservations";

pub struct ExpireReservations {
    reservations: Reservations,
}

impl Function for ExpireReservations {
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
                clock,
            ),
        })
    }
}

impl ScheduledFunction for ExpireReservations {
    type Run = Sweep;

    async fn handle(&self, _schedule: EventBridgeEvent) -> Result<Sweep, EffectError> {
        let now = self.reservations.now();
        let correlation = Uuid::now_v7();
        sweep::sweep(
            self.reservations.agenda(),
            &agenda_time(now),
            "reservation expiry",
            |entry| async move {
                let metadata = Metadata::origin(correlation, format!("system:{NAME}"));
                Ok(match self.reservations.expire(&entry, &metadata).await? {
                    true => Fate::Done,
                    false => Fate::Settled,
                })
            },
        )
        .await
    }
}
