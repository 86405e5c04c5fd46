//! The issue-tickets Lambda: on `reservation.confirmed` (a ticket order paid, its seats
//! sold), one ticket per seat, each with its signed code (`kassa_commerce::tickets`), then
//! delivery as the buyer chose when confirming the cart:
//! - email: one mail to the buyer's recorded address with every code of the order, its id
//!   derived from the order (a redelivery rewrites the same mail), then
//!   `ticket.delivered` once per ticket. A failed send is a retry: SQS redelivers, the
//!   tickets issued before are found, and the mail goes out again;
//! - courier: nothing is mailed; the organizer records each shipment (`tickets` function).
//!
//! On `order.refunded` of a ticket order refunded whole (its concert canceled, an
//! operator's refund), every ticket of the order is voided and its code goes on the
//! concert's revocation list, in commits of a few tickets each. A ticket not issued yet
//! is waited for (a retry): the refund may overtake the issue.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_commerce::tickets::{self, Purchase, TicketBook};
use kassa_commerce::{Clock, Kernel};
use kassa_domain::delivery::Method;
use kassa_domain::order::{Order, OrderEvent, Purpose};
use kassa_domain::reservation::{Reservation, ReservationEvent, ReservationStatus};
use kassa_domain::ticket::Ticket;
use kassa_domain::ticket_code::CodeSigner;
use kassa_domain::user::User;
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::inbox::Inbox;
use kassa_runtime::mail::{ConfiguredMailer, Mail, Mailer};
use kassa_runtime::{Config, Function, SdkConfig, SqsFunction};
use kassa_store::{EventStore, Metadata, RecordedEvent};
use std::sync::Arc;
use uuid::Uuid;

pub const NAME: &str = "issue-tickets";

/// Tickets voided per commit: each writes three items, well inside a transaction's 100.
const VOIDS_PER_COMMIT: usize = 20;

pub struct IssueTickets {
    kernel: Kernel,
    book: TicketBook,
    signer: CodeSigner,
    inbox: Inbox,
    mailer: ConfiguredMailer,
    mail_from: String,
}

impl Function for IssueTickets {
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
            book: TicketBook::new(client, &config.state_table),
            signer: config.ticket_signer()?,
            inbox: Inbox::from_config(config, aws, NAME, clock),
            mailer: ConfiguredMailer::from_config(config, aws),
            mail_from: config.mail_from.clone(),
        })
    }
}

impl SqsFunction for IssueTickets {
    async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        self.inbox
            .each_once(batch, |event| async move { self.react(&event).await })
            .await
    }
}

/// The mail of an order's tickets: one per order, whatever the deliveries.
pub fn mail_id(order_id: Uuid) -> String {
    format!("tickets-{order_id}")
}

impl IssueTickets {
    async fn react(&self, event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {
        if event.event_type == "order.refunded" {
            return match event.decode::<OrderEvent>()? {
                OrderEvent::Refunded {
                    order_id,
                    purpose: Purpose::Tickets { .. },
                    ..
                } => self.void_refunded(order_id, event).await,
                _ => Ok(serde_json::json!({ "skipped": "not_a_ticket_order" })),
            };
        }
        let ReservationEvent::Confirmed {
            order_id,
            user_id,
            holds,
            ..
        } = event.decode::<ReservationEvent>()?
        else {
            return Ok(serde_json::json!({ "skipped": event.event_type }));
        };
        let store = self.kernel.store();
        let order = store
            .load_aggregate::<Order>(&order_id)
            .await?
            .state
            .ok_or_else(|| EffectError::retry(format!("order {order_id} not found yet")))?;
        let Purpose::Tickets { delivery, .. } = order.purpose else {
            return Err(EffectError::poison(format!(
                "order {order_id} is not a ticket order"
            )));
        };
        let metadata = Metadata::caused_by(event, format!("system:{NAME}"));
        let purchase = Purchase {
            order_id,
            owner: user_id.clone(),
            holds,
            delivery: delivery.method(),
        };
        let issued =
            tickets::issue(&self.kernel, &self.book, &self.signer, &purchase, &metadata).await?;
        if purchase.delivery == Method::Courier {
            return Ok(serde_json::json!({
                "issued": issued.created,
                "tickets": issued.tickets.len(),
                "delivery": "courier",
            }));
        }
        let due: Vec<&Ticket> = issued
            .tickets
            .iter()
            .filter(|t| !t.delivered && t.voided.is_none())
            .collect();
        if due.is_empty() {
            return Ok(serde_json::json!({ "issued": issued.created, "mailed": false }));
        }
        let buyer = store.load_aggregate::<User>(user_id.as_str()).await?.state;
        let Some(to) = buyer.and_then(|u| u.profile).map(|p| p.email) else {
            // Registration is what gives kassa an address; without one no retry helps.
            return Err(EffectError::poison(format!(
                "buyer {user_id} has no email address on record"
            )));
        };
        let all: Vec<&Ticket> = issued
            .tickets
            .iter()
            .filter(|t| t.voided.is_none())
            .collect();
        self.mailer
            .send(&self.mail(order_id, &to, &all))
            .await
            .map_err(EffectError::retry)?;
        let ids: Vec<Uuid> = due.iter().map(|t| t.ticket_id).collect();
        let delivered = tickets::deliver(&self.kernel, &ids, &metadata).await?;
        Ok(serde_json::json!({ "issued": issued.created, "delivered": delivered }))
    }

    /// Voids every ticket of `order_id` once its whole payment is back.
    async fn void_refunded(
        &self,
        order_id: Uuid,
        event: &RecordedEvent,
    ) -> Result<serde_json::Value, EffectError> {
        let store = self.kernel.store();
        let order = store
            .load_aggregate::<Order>(&order_id)
            .await?
            .state
            .ok_or_else(|| EffectError::retry(format!("order {order_id} not found yet")))?;
        if !order.refunded_whole() {
            return Ok(serde_json::json!({ "voided": 0, "refund": "partial" }));
        }
        let Some(reservation) = store
            .load_aggregate::<Reservation>(&order_id)
            .await?
            .state
            .filter(|r| r.status == ReservationStatus::Confirmed)
        else {
            // Its seats were never sold, so it has no tickets.
            return Ok(serde_json::json!({ "voided": 0 }));
        };
        let metadata = Metadata::caused_by(event, format!("system:{NAME}"));
        let by = kassa_domain::identity::UserId::new(format!("system:{NAME}"));
        let seats = tickets::seats(order_id, &reservation.holds);
        let (book, by) = (&self.book, &by);
        // A void writes three items (event, head, revocation): a few per commit.
        for chunk in seats.chunks(VOIDS_PER_COMMIT) {
            self.kernel
                .run(metadata.clone(), |tx| {
                    Box::pin(async move {
                        for seat in chunk {
                            tickets::void(tx, book, seat.ticket_id, "refunded", by).await?;
                        }
                        Ok(())
                    })
                })
                .await
                .map_err(|e| match e {
                    kassa_commerce::Fail::Refused(kassa_domain::ticket::TicketError::NotFound) => {
                        EffectError::retry(format!(
                            "the tickets of order {order_id} are not issued yet"
                        ))
                    }
                    other => other.into(),
                })?;
        }
        Ok(serde_json::json!({ "voided": seats.len() }))
    }

    fn mail(&self, order_id: Uuid, to: &str, tickets: &[&Ticket]) -> Mail {
        let lines: Vec<String> = tickets
            .iter()
            .map(|t| {
                format!(
                    "Ticket {} (concert {}, level {}, seat {}):\n{}\n",
                    t.ticket_id, t.concert_id, t.level_id, t.seat, t.code
                )
            })
            .collect();
        Mail {
            id: mail_id(order_id),
            from: self.mail_from.clone(),
            to: to.to_owned(),
            subject: format!("Your kassa tickets (order {order_id})"),
            body: format!(
                "Thank you for your purchase. Show each code at the door; it is checked once.\n\n{}",
                lines.join("\n")
            ),
        }
    }
}
