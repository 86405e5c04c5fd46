//! The organizer's sales figures per concert and level (`kassa_store::sales`), fed by:
//! - `reservation.created` (seats reserved), `reservation.expired` and
//!   `reservation.canceled` (released), `reservation.confirmed` (reserved → sold);
//! - `ticket.validated`: a seat checked in at the door;
//! - `order.completed` and `order.refunded` of a ticket order: money taken and given back,
//!   each split over the order's levels in proportion to their lines after coupons, to
//!   the cent (`Money::apportion`), so the levels' figures add up to what Stripe moved
//!   but for the share of a courier delivery fee, which is no concert's sales.
//!
//! Each event moves sums once (a marker per event), so any order of arrival and any
//! number of deliveries end in the same figures.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_commerce::Clock;
use kassa_domain::money::Money;
use kassa_domain::order::{Order, OrderEvent, Purpose};
use kassa_domain::reservation::{Hold, ReservationEvent};
use kassa_domain::ticket::{Ticket, TicketEvent};
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::inbox::Inbox;
use kassa_runtime::{Config, Function, SdkConfig, SqsFunction};
use kassa_store::{EventStore, Movement, RecordedEvent, Sales};
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

pub const NAME: &str = "concert-sales";

pub struct ConcertSales {
    store: EventStore,
    sales: Sales,
    inbox: Inbox,
}

impl Function for ConcertSales {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {
            store: EventStore::new(client.clone(), &config.events_table),
            sales: Sales::new(client, &config.state_table),
            inbox: Inbox::from_config(config, aws, NAME, clock),
        })
    }
}

impl SqsFunction for ConcertSales {
    async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        self.inbox
            .each_once(batch, |event| async move { self.react(&event).await })
            .await
    }
}

/// Movements of one event, by concert.
type ByConcert = BTreeMap<Uuid, Vec<Movement>>;

impl ConcertSales {
    async fn react(&self, event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {
        let moved = match event.context.as_str() {
            "ticketing" if event.event_type == "ticket.validated" => {
                self.check_in(event.decode::<TicketEvent>()?).await?
            }
            "ticketing" => seats(event.decode::<ReservationEvent>()?),
            "orders" => self.money(event.decode::<OrderEvent>()?).await?,
            _ => ByConcert::new(),
        };
        let mut counted = 0;
        for (concert, movements) in &moved {
            // The marker is per event and concert, so an event spanning two concerts
            // that failed half-way counts the other half on its retry.
            if self
                .sales
                .count(
                    event.event_id,
                    *concert,
                    movements,
                    event.time.unix_timestamp(),
                )
                .await?
            {
                counted += 1;
            }
        }
        Ok(serde_json::json!({ "concerts": moved.len(), "counted": counted }))
    }

    /// A ticket admitted at the door, on its level.
    async fn check_in(&self, event: TicketEvent) -> Result<ByConcert, EffectError> {
        let TicketEvent::Validated { ticket_id, .. } = event else {
            return Ok(ByConcert::new());
        };
        let ticket = self
            .store
            .load_aggregate::<Ticket>(&ticket_id)
            .await?
            .state
            .ok_or_else(|| EffectError::retry(format!("ticket {ticket_id} is not there yet")))?;
        Ok(ByConcert::from([(
            ticket.concert_id,
            vec![Movement {
                level_id: ticket.level_id,
                checked_in: 1,
                ..Movement::default()
            }],
        )]))
    }

    /// Money taken or given back for a ticket order, split over its levels.
    async fn money(&self, event: OrderEvent) -> Result<ByConcert, EffectError> {
        let (order_id, amount, taken) = match event {
            OrderEvent::Completed {
                order_id,
                purpose: Purpose::Tickets { .. },
                total_amount,
                ..
            } => (order_id, total_amount, true),
            OrderEvent::Refunded {
                order_id,
                purpose: Purpose::Tickets { .. },
                amount,
                ..
            } => (order_id, amount, false),
            _ => return Ok(ByConcert::new()),
        };
        let order = self
            .store
            .load_aggregate::<Order>(&order_id)
            .await?
            .state
            .ok_or_else(|| EffectError::retry(format!("order {order_id} is not there yet")))?;
        let Purpose::Tickets { seats, .. } = &order.purpose else {
            return Ok(ByConcert::new());
        };
        // Lines and seats are made together, one per cart item, in the same order. Each
        // line weighs what is left of it after coupons; the courier fee left weighs last
        // and its share is nobody's sales, so the levels get what the seats brought.
        let mut weights: Vec<_> = order
            .lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let off = order.line_discounts.get(i).map(|d| d.amount);
                line.amount.amount - off.unwrap_or_default()
            })
            .collect();
        weights.push(order.delivery_left().amount);
        let shares: Vec<Money> = amount.apportion(&weights);
        let mut moved = ByConcert::new();
        for (want, share) in seats.iter().zip(shares) {
            let movement = Movement {
                level_id: want.level_id.clone(),
                revenue: if taken {
                    share.amount
                } else {
                    Default::default()
                },
                refunds: if taken {
                    Default::default()
                } else {
                    share.amount
                },
                ..Movement::default()
            };
            moved.entry(want.concert_id).or_default().push(movement);
        }
        Ok(moved)
    }
}

/// Seats reserved, released or sold by a reservation's event.
fn seats(event: ReservationEvent) -> ByConcert {
    let (holds, reserved, sold) = match event {
        ReservationEvent::Created { holds, .. } => (holds, 1, 0),
        ReservationEvent::Expired { holds, .. } | ReservationEvent::Canceled { holds, .. } => {
            (holds, -1, 0)
        }
        ReservationEvent::Confirmed { holds, .. } => (holds, -1, 1),
        ReservationEvent::Failed { .. } => (Vec::new(), 0, 0),
    };
    let mut moved = ByConcert::new();
    for Hold {
        concert_id,
        level_id,
        seats,
        ..
    } in holds
    {
        let seats = i64::from(seats);
        moved.entry(concert_id).or_default().push(Movement {
            level_id,
            reserved: reserved * seats,
            sold: sold * seats,
            ..Movement::default()
        });
    }
    moved
}
