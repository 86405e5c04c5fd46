//! Tickets (seed 003's tickets and check-in): one per seat of a paid ticket order, each
//! with a signed code the door verifies (`ticket_code`).
//!
//! Rules:
//! - a ticket is issued once (`Ticket#<id>` created at version 0);
//! - an email ticket is delivered once, when the mail with its code went out; a courier
//!   ticket is shipped once, by its concert's organizer or an admin, with the courier and
//!   tracking number (who may ship is the caller's check: the decider sees the concert's
//!   id only);
//! - a ticket validates only at its own concert, never once voided, and once: a later scan
//!   is refused with the first scan's time;
//! - voiding is final and voiding again records nothing (a cancellation's redelivery).
//!
//! Scans that fail (another concert's ticket, a voided one, a forged code) are recorded as
//! `ticket.validation_failed` by the caller, after the decider refused them, so the door's
//! refusals stay visible without the decider writing on a refusal.

use crate::delivery::Method;
use crate::event::DomainEvent;
use crate::identity::UserId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Longest courier name, tracking number or void reason, in characters.
pub const MAX_TEXT_LEN: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub ticket_id: Uuid,
    pub order_id: Uuid,
    pub concert_id: Uuid,
    pub level_id: String,
    /// The seat's number within its level in the order (1, 2, ...): what makes the id.
    pub seat: u32,
    pub owner: UserId,
    pub delivery: Method,
    pub code: String,
    pub delivered: bool,
    pub shipment: Option<Shipment>,
    pub checked_in: Option<CheckIn>,
    /// Why it was voided; `None` while it is valid.
    pub voided: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Shipment {
    pub courier: String,
    pub tracking_number: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckIn {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub by: UserId,
}

/// Why a scan was refused, as `ticket.validation_failed` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The signature does not hold: altered, or not issued by kassa.
    Forged,
    /// Not a kassa code at all.
    Malformed,
    /// Signed by kassa, but no such ticket is recorded.
    UnknownTicket,
    /// A ticket of another concert.
    OtherConcert,
    Voided,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forged => "forged",
            Self::Malformed => "malformed",
            Self::UnknownTicket => "unknown_ticket",
            Self::OtherConcert => "other_concert",
            Self::Voided => "voided",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketCommand {
    Issue {
        ticket_id: Uuid,
        order_id: Uuid,
        concert_id: Uuid,
        level_id: String,
        seat: u32,
        owner: UserId,
        delivery: Method,
        code: String,
    },
    /// The mail with its code went out.
    Deliver,
    Ship {
        courier: String,
        tracking_number: String,
        by: UserId,
    },
    /// A scan at `concert_id`'s door.
    Validate {
        concert_id: Uuid,
        at: OffsetDateTime,
        by: UserId,
    },
    /// Records a refused scan of this ticket.
    RecordFailure {
        concert_id: Uuid,
        reason: FailureReason,
        at: OffsetDateTime,
        by: UserId,
    },
    Void {
        reason: String,
        by: UserId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "payload")]
pub enum TicketEvent {
    /// Seed 003's `TicketCreated`: one seat of a paid order, with the code the door scans.
    #[serde(rename = "ticket.created")]
    Created {
        ticket_id: Uuid,
        order_id: Uuid,
        concert_id: Uuid,
        level_id: String,
        seat: u32,
        owner: UserId,
        delivery: Method,
        code: String,
    },
    /// The buyer was mailed the ticket's code.
    #[serde(rename = "ticket.delivered")]
    Delivered {
        ticket_id: Uuid,
        order_id: Uuid,
        owner: UserId,
    },
    /// A printed ticket went out by courier.
    #[serde(rename = "ticket.shipped")]
    Shipped {
        ticket_id: Uuid,
        order_id: Uuid,
        courier: String,
        tracking_number: String,
        by: UserId,
    },
    /// The ticket's first valid scan at its concert's door.
    #[serde(rename = "ticket.validated")]
    Validated {
        ticket_id: Uuid,
        concert_id: Uuid,
        #[serde(with = "time::serde::rfc3339")]
        #[schemars(with = "String")]
        at: OffsetDateTime,
        by: UserId,
    },
    /// A scan the door refused. `ticket_id` is absent when the code named no ticket kassa
    /// can trust (forged or malformed).
    #[serde(rename = "ticket.validation_failed")]
    ValidationFailed {
        ticket_id: Option<Uuid>,
        /// The concert at whose door it was scanned.
        concert_id: Uuid,
        reason: FailureReason,
        #[serde(with = "time::serde::rfc3339")]
        #[schemars(with = "String")]
        at: OffsetDateTime,
        by: UserId,
    },
    /// The ticket is no longer valid (its concert canceled, its order refunded); its code
    /// goes on the concert's revocation list.
    #[serde(rename = "ticket.voided")]
    Voided {
        ticket_id: Uuid,
        concert_id: Uuid,
        reason: String,
        by: UserId,
    },
}

impl DomainEvent for TicketEvent {
    const CONTEXT: &'static str = "ticketing";
    const TYPES: &'static [&'static str] = &[
        "ticket.created",
        "ticket.delivered",
        "ticket.shipped",
        "ticket.validated",
        "ticket.validation_failed",
        "ticket.voided",
    ];

    fn event_type(&self) -> &'static str {
        match self {
            Self::Created { .. } => "ticket.created",
            Self::Delivered { .. } => "ticket.delivered",
            Self::Shipped { .. } => "ticket.shipped",
            Self::Validated { .. } => "ticket.validated",
            Self::ValidationFailed { .. } => "ticket.validation_failed",
            Self::Voided { .. } => "ticket.voided",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("no such ticket")]
    NotFound,
    #[error("the ticket is issued already")]
    AlreadyIssued,
    #[error("the ticket was checked in at {at}")]
    AlreadyCheckedIn { at: String },
    #[error("the ticket is for another concert")]
    OtherConcert,
    #[error("the ticket was voided: {0}")]
    Voided(String),
    #[error("the ticket is delivered by email; there is nothing to ship")]
    NotCourier,
    #[error("the ticket is delivered by courier; its code is not mailed")]
    NotEmail,
    #[error("the ticket was shipped already")]
    AlreadyShipped,
    #[error("courier and tracking number must be 1 to {MAX_TEXT_LEN} characters")]
    InvalidShipment,
    #[error("a reason must be 1 to {MAX_TEXT_LEN} characters")]
    InvalidReason,
}

impl TicketError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "ticket_not_found",
            Self::AlreadyIssued => "ticket_exists",
            Self::AlreadyCheckedIn { .. } => "already_checked_in",
            Self::OtherConcert => "wrong_concert",
            Self::Voided(_) => "ticket_voided",
            Self::NotCourier => "not_courier",
            Self::NotEmail => "not_email",
            Self::AlreadyShipped => "already_shipped",
            Self::InvalidShipment => "invalid_shipment",
            Self::InvalidReason => "invalid_reason",
        }
    }

    /// The scan failure this refusal is, if it is one worth recording.
    pub fn scan_failure(&self) -> Option<FailureReason> {
        match self {
            Self::OtherConcert => Some(FailureReason::OtherConcert),
            Self::Voided(_) => Some(FailureReason::Voided),
            _ => None,
        }
    }
}

fn text(value: &str) -> Option<String> {
    let value = value.trim();
    let length = value.chars().count();
    ((1..=MAX_TEXT_LEN).contains(&length) && !value.chars().any(char::is_control))
        .then(|| value.to_owned())
}

pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub fn decide(
    state: Option<&Ticket>,
    command: TicketCommand,
) -> Result<Vec<TicketEvent>, TicketError> {
    let ticket = match (state, command) {
        (
            None,
            TicketCommand::Issue {
                ticket_id,
                order_id,
                concert_id,
                level_id,
                seat,
                owner,
                delivery,
                code,
            },
        ) => {
            return Ok(vec![TicketEvent::Created {
                ticket_id,
                order_id,
                concert_id,
                level_id,
                seat,
                owner,
                delivery,
                code,
            }])
        }
        (Some(_), TicketCommand::Issue { .. }) => return Err(TicketError::AlreadyIssued),
        (None, _) => return Err(TicketError::NotFound),
        (Some(ticket), command) => (ticket, command),
    };
    let (t, command) = ticket;
    match command {
        TicketCommand::Issue { .. } => Err(TicketError::AlreadyIssued),
        TicketCommand::Deliver => match t.delivery {
            Method::Courier => Err(TicketError::NotEmail),
            // A voided ticket's code is worthless; a delivered one is not mailed twice.
            Method::Email if t.delivered || t.voided.is_some() => Ok(vec![]),
            Method::Email => Ok(vec![TicketEvent::Delivered {
                ticket_id: t.ticket_id,
                order_id: t.order_id,
                owner: t.owner.clone(),
            }]),
        },
        TicketCommand::Ship {
            courier,
            tracking_number,
            by,
        } => {
            if t.delivery != Method::Courier {
                return Err(TicketError::NotCourier);
            }
            if let Some(reason) = &t.voided {
                return Err(TicketError::Voided(reason.clone()));
            }
            if t.shipment.is_some() {
                return Err(TicketError::AlreadyShipped);
            }
            let (Some(courier), Some(tracking_number)) = (text(&courier), text(&tracking_number))
            else {
                return Err(TicketError::InvalidShipment);
            };
            Ok(vec![TicketEvent::Shipped {
                ticket_id: t.ticket_id,
                order_id: t.order_id,
                courier,
                tracking_number,
                by,
            }])
        }
        TicketCommand::Validate { concert_id, at, by } => {
            if concert_id != t.concert_id {
                return Err(TicketError::OtherConcert);
            }
            if let Some(reason) = &t.voided {
                return Err(TicketError::Voided(reason.clone()));
            }
            if let Some(first) = &t.checked_in {
                return Err(TicketError::AlreadyCheckedIn {
                    at: rfc3339(first.at),
                });
            }
            Ok(vec![TicketEvent::Validated {
                ticket_id: t.ticket_id,
                concert_id,
                at,
                by,
            }])
        }
        TicketCommand::RecordFailure {
            concert_id,
            reason,
            at,
            by,
        } => Ok(vec![TicketEvent::ValidationFailed {
            ticket_id: Some(t.ticket_id),
            concert_id,
            reason,
            at,
            by,
        }]),
        TicketCommand::Void { reason, by } => {
            let reason = text(&reason).ok_or(TicketError::InvalidReason)?;
            if t.voided.is_some() {
                return Ok(vec![]);
            }
            Ok(vec![TicketEvent::Voided {
                ticket_id: t.ticket_id,
                concert_id: t.concert_id,
                reason,
                by,
            }])
        }
    }
}

pub fn evolve(state: Option<Ticket>, event: &TicketEvent) -> Option<Ticket> {
    match event {
        TicketEvent::Created {
            ticket_id,
            order_id,
            concert_id,
            level_id,
            seat,
            owner,
            delivery,
            code,
        } => Some(Ticket {
            ticket_id: *ticket_id,
            order_id: *order_id,
            concert_id: *concert_id,
            level_id: level_id.clone(),
            seat: *seat,
            owner: owner.clone(),
            delivery: *delivery,
            code: code.clone(),
            delivered: false,
            shipment: None,
            checked_in: None,
            voided: None,
        }),
        TicketEvent::Delivered { .. } => state.map(|t| Ticket {
            delivered: true,
            ..t
        }),
        TicketEvent::Shipped {
            courier,
            tracking_number,
            ..
        } => state.map(|t| Ticket {
            shipment: Some(Shipment {
                courier: courier.clone(),
                tracking_number: tracking_number.clone(),
            }),
            ..t
        }),
        TicketEvent::Validated { at, by, .. } => state.map(|t| Ticket {
            checked_in: Some(CheckIn {
                at: *at,
                by: by.clone(),
            }),
            ..t
        }),
        TicketEvent::ValidationFailed { .. } => state,
        TicketEvent::Voided { reason, .. } => state.map(|t| Ticket {
            voided: Some(reason.clone()),
            ..t
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::given;
    use time::macros::datetime;

    const DOORS: OffsetDateTime = datetime!(2026-11-23 19:00 UTC);
    const TICKET: Uuid = Uuid::from_u128(1);
    const CONCERT: Uuid = Uuid::from_u128(7);

    fn created(delivery: Method) -> TicketEvent {
        TicketEvent::Created {
            ticket_id: TICKET,
            order_id: Uuid::from_u128(2),
            concert_id: CONCERT,
            level_id: "floor".into(),
            seat: 1,
            owner: UserId::new("ana"),
            delivery,
            code: "code".into(),
        }
    }

    fn scan(at: OffsetDateTime) -> TicketCommand {
        TicketCommand::Validate {
            concert_id: CONCERT,
            at,
            by: UserId::new("door"),
        }
    }

    fn validated(at: OffsetDateTime) -> TicketEvent {
        TicketEvent::Validated {
            ticket_id: TICKET,
            concert_id: CONCERT,
            at,
            by: UserId::new("door"),
        }
    }

    fn voided() -> TicketEvent {
        TicketEvent::Voided {
            ticket_id: TICKET,
            concert_id: CONCERT,
            reason: "concert canceled".into(),
            by: UserId::new("system:concerts"),
        }
    }

    #[test]
    fn a_ticket_is_issued_once() {
        let issue = TicketCommand::Issue {
            ticket_id: TICKET,
            order_id: Uuid::from_u128(2),
            concert_id: CONCERT,
            level_id: "floor".into(),
            seat: 1,
            owner: UserId::new("ana"),
            delivery: Method::Email,
            code: "code".into(),
        };
        given::<Ticket>([])
            .when(issue.clone())
            .then([created(Method::Email)]);
        given::<Ticket>([created(Method::Email)])
            .when(issue)
            .then_refused(TicketError::AlreadyIssued);
    }

    #[test]
    fn the_first_scan_validates_and_a_later_one_is_refused_with_its_time() {
        given::<Ticket>([created(Method::Email)])
            .when(scan(DOORS))
            .then([validated(DOORS)]);
        given::<Ticket>([created(Method::Email), validated(DOORS)])
            .when(scan(DOORS + time::Duration::minutes(5)))
            .then_refused(TicketError::AlreadyCheckedIn {
                at: "2026-11-23T19:00:00Z".into(),
            });
    }

    #[test]
    fn a_ticket_validates_only_at_its_own_concert() {
        given::<Ticket>([created(Method::Email)])
            .when(TicketCommand::Validate {
                concert_id: Uuid::from_u128(8),
                at: DOORS,
                by: UserId::new("door"),
            })
            .then_refused(TicketError::OtherConcert);
    }

    #[test]
    fn a_voided_ticket_never_validates_and_voiding_again_records_nothing() {
        given::<Ticket>([created(Method::Email), voided()])
            .when(scan(DOORS))
            .then_refused(TicketError::Voided("concert canceled".into()));
        given::<Ticket>([created(Method::Email), voided()])
            .when(TicketCommand::Void {
                reason: "again".into(),
                by: UserId::new("olga"),
            })
            .then([]);
        given::<Ticket>([created(Method::Email)])
            .when(TicketCommand::Void {
                reason: " concert canceled ".into(),
                by: UserId::new("system:concerts"),
            })
            .then([voided()]);
    }

    #[test]
    fn an_email_ticket_is_delivered_once_and_a_courier_ticket_never_mailed() {
        let delivered = TicketEvent::Delivered {
            ticket_id: TICKET,
            order_id: Uuid::from_u128(2),
            owner: UserId::new("ana"),
        };
        given::<Ticket>([created(Method::Email)])
            .when(TicketCommand::Deliver)
            .then([delivered.clone()]);
        given::<Ticket>([created(Method::Email), delivered])
            .when(TicketCommand::Deliver)
            .then([]);
        given::<Ticket>([created(Method::Courier)])
            .when(TicketCommand::Deliver)
            .then_refused(TicketError::NotEmail);
    }

    #[test]
    fn a_courier_ticket_is_shipped_once_with_its_tracking_number() {
        let ship = TicketCommand::Ship {
            courier: "DHL".into(),
            tracking_number: "JD0142".into(),
            by: UserId::new("olga"),
        };
        let shipped = TicketEvent::Shipped {
            ticket_id: TICKET,
            order_id: Uuid::from_u128(2),
            courier: "DHL".into(),
            tracking_number: "JD0142".into(),
            by: UserId::new("olga"),
        };
        given::<Ticket>([created(Method::Courier)])
            .when(ship.clone())
            .then([shipped.clone()]);
        given::<Ticket>([created(Method::Courier), shipped])
            .when(ship.clone())
            .then_refused(TicketError::AlreadyShipped);
        given::<Ticket>([created(Method::Email)])
            .when(ship)
            .then_refused(TicketError::NotCourier);
        given::<Ticket>([created(Method::Courier)])
            .when(TicketCommand::Ship {
                courier: " ".into(),
                tracking_number: "JD0142".into(),
                by: UserId::new("olga"),
            })
            .then_refused(TicketError::InvalidShipment);
    }

    #[test]
    fn a_refused_scan_is_recorded_on_the_ticket() {
        given::<Ticket>([created(Method::Email), voided()])
            .when(TicketCommand::RecordFailure {
                concert_id: CONCERT,
                reason: FailureReason::Voided,
                at: DOORS,
                by: UserId::new("door"),
            })
            .then([TicketEvent::ValidationFailed {
                ticket_id: Some(TICKET),
                concert_id: CONCERT,
                reason: FailureReason::Voided,
                at: DOORS,
                by: UserId::new("door"),
            }]);
    }
}
