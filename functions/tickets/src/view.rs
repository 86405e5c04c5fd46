//! A ticket as answered: its code only to its owner, who shows it at the door.

use kassa_domain::delivery::Method;
use kassa_domain::identity::{Actor, Role};
use kassa_domain::ticket::{rfc3339, Shipment, Ticket};
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Serialize)]
pub struct TicketView {
    pub ticket_id: Uuid,
    pub order_id: Uuid,
    pub concert_id: Uuid,
    pub level_id: String,
    pub seat: u32,
    pub owner: String,
    pub delivery: Method,
    /// `valid`, `checked_in` or `voided`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub delivered: bool,
    pub shipment: Option<Shipment>,
    pub checked_in_at: Option<String>,
    pub voided: Option<String>,
}

impl TicketView {
    pub fn new(ticket: &Ticket, viewer: &Actor) -> Self {
        let holder = viewer.user == ticket.owner || viewer.role == Role::Admin;
        Self {
            ticket_id: ticket.ticket_id,
            order_id: ticket.order_id,
            concert_id: ticket.concert_id,
            level_id: ticket.level_id.clone(),
            seat: ticket.seat,
            owner: ticket.owner.to_string(),
            delivery: ticket.delivery,
            status: match (&ticket.voided, &ticket.checked_in) {
                (Some(_), _) => "voided",
                (None, Some(_)) => "checked_in",
                (None, None) => "valid",
            },
            code: holder.then(|| ticket.code.clone()),
            delivered: ticket.delivered || ticket.shipment.is_some(),
            shipment: ticket.shipment.clone(),
            checked_in_at: ticket.checked_in.as_ref().map(|c| rfc3339(c.at)),
            voided: ticket.voided.clone(),
        }
    }
}
