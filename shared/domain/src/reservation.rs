//! Reservations (seed 003's reservation module): the seats a ticket order holds while its
//! buyer pays.
//!
//! A reservation belongs to one ticket order and shares its id. Its seats are taken from
//! the levels' counters first, one conditional step per level (`seats.held`, each with a
//! fresh hold id), and only then is the reservation recorded with the holds it owns
//! (`reservation.created`), or refused with the level that ran out
//! (`reservation.failed`, its holds given back in the same commit). From then on exactly
//! one of these ends it: expiry when its window passes unpaid, cancellation (the order
//! canceled, its payment failed), or confirmation (the order paid: the seats are sold).
//! Expiry and cancellation give the seats back in the commit that records them, so seats
//! return exactly once whichever comes first: the reservation's version decides.
//!
//! A hold the reservation does not list (its command ran twice at once, or died between
//! holding and recording) is an orphan; whoever sees it released gives it back under a
//! marker keyed by its hold id, so that too happens once.

use crate::event::DomainEvent;
use crate::identity::UserId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Seats of one level taken by one conditional step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Hold {
    pub concert_id: Uuid,
    pub level_id: String,
    pub seats: u32,
    /// Names this step, so that giving it back can be done once.
    pub hold_id: Uuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Seats held, waiting for payment.
    Held,
    /// A level ran out: nothing is held.
    Failed,
    /// The window passed unpaid: the seats went back.
    Expired,
    /// The order was canceled or its payment failed: the seats went back.
    Canceled,
    /// Paid: the seats are sold.
    Confirmed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub reservation_id: Uuid,
    pub order_id: Uuid,
    pub user_id: UserId,
    pub holds: Vec<Hold>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub status: ReservationStatus,
}

impl Reservation {
    /// Whether `hold_id` is one of the holds this reservation owns.
    pub fn owns(&self, hold_id: Uuid) -> bool {
        self.holds.iter().any(|h| h.hold_id == hold_id)
    }

    /// Whether its seats have gone back (or were never taken).
    pub fn released(&self) -> bool {
        matches!(
            self.status,
            ReservationStatus::Failed | ReservationStatus::Expired | ReservationStatus::Canceled
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReservationCommand {
    /// Records the holds the steps took.
    Create {
        reservation_id: Uuid,
        order_id: Uuid,
        user_id: UserId,
        holds: Vec<Hold>,
        expires_at: OffsetDateTime,
    },
    /// Records that `level_id` of `concert_id` had `free` seats where `requested` were
    /// needed (none when the level is unknown or its concert canceled).
    Fail {
        reservation_id: Uuid,
        order_id: Uuid,
        user_id: UserId,
        concert_id: Uuid,
        level_id: String,
        requested: u32,
        free: u32,
    },
    Expire {
        now: OffsetDateTime,
    },
    Cancel {
        reason: String,
    },
    Confirm,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "payload")]
pub enum ReservationEvent {
    /// Seed 003's `ReservationCreated`: the seats are held until `expires_at`.
    #[serde(rename = "reservation.created")]
    Created {
        reservation_id: Uuid,
        order_id: Uuid,
        user_id: UserId,
        holds: Vec<Hold>,
        #[serde(with = "time::serde::rfc3339")]
        #[schemars(with = "String")]
        expires_at: OffsetDateTime,
    },
    /// A level had fewer seats free than the order needs; nothing is held.
    #[serde(rename = "reservation.failed")]
    Failed {
        reservation_id: Uuid,
        order_id: Uuid,
        user_id: UserId,
        concert_id: Uuid,
        level_id: String,
        requested: u32,
        free: u32,
    },
    /// Seed 003's `ReservationExpired`: unpaid in time, the holds went back.
    #[serde(rename = "reservation.expired")]
    Expired {
        reservation_id: Uuid,
        order_id: Uuid,
        holds: Vec<Hold>,
    },
    /// Seed 003's `ReservationCancelled`: the holds went back.
    #[serde(rename = "reservation.canceled")]
    Canceled {
        reservation_id: Uuid,
        order_id: Uuid,
        reason: String,
        holds: Vec<Hold>,
    },
    /// The order was paid: the held seats are sold, and the buyer gets their tickets.
    #[serde(rename = "reservation.confirmed")]
    Confirmed {
        reservation_id: Uuid,
        order_id: Uuid,
        user_id: UserId,
        holds: Vec<Hold>,
    },
}

impl DomainEvent for ReservationEvent {
    const CONTEXT: &'static str = "ticketing";
    const TYPES: &'static [&'static str] = &[
        "reservation.created",
        "reservation.failed",
        "reservation.expired",
        "reservation.canceled",
        "reservation.confirmed",
    ];

    fn event_type(&self) -> &'static str {
        match self {
            Self::Created { .. } => "reservation.created",
            Self::Failed { .. } => "reservation.failed",
            Self::Expired { .. } => "reservation.expired",
            Self::Canceled { .. } => "reservation.canceled",
            Self::Confirmed { .. } => "reservation.confirmed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReservationError {
    #[error("the reservation is recorded already")]
    AlreadyRecorded,
    #[error("there is no such reservation")]
    NotFound,
    #[error("a reservation holds at least one seat")]
    NoSeats,
    #[error("the reservation holds its seats until {0}")]
    NotDue(String),
    /// Its seats went back (expired, canceled, failed): a payment arriving now cannot
    /// have them.
    #[error("the reservation's seats went back ({0:?})")]
    Lapsed(ReservationStatus),
}

impl ReservationError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::AlreadyRecorded => "reservation_exists",
            Self::NotFound => "reservation_not_found",
            Self::NoSeats => "invalid_seats",
            Self::NotDue(_) => "reservation_not_due",
            Self::Lapsed(_) => "reservation_lapsed",
        }
    }
}

pub fn decide(
    state: Option<&Reservation>,
    command: ReservationCommand,
) -> Result<Vec<ReservationEvent>, ReservationError> {
    match (state, command) {
        (
            None,
            ReservationCommand::Create {
                reservation_id,
                order_id,
                user_id,
                holds,
                expires_at,
            },
        ) => {
            if holds.is_empty() || holds.iter().any(|h| h.seats == 0) {
                return Err(ReservationError::NoSeats);
            }
            Ok(vec![ReservationEvent::Created {
                reservation_id,
                order_id,
                user_id,
                holds,
                expires_at,
            }])
        }
        (
            None,
            ReservationCommand::Fail {
                reservation_id,
                order_id,
                user_id,
                concert_id,
                level_id,
                requested,
                free,
            },
        ) => Ok(vec![ReservationEvent::Failed {
            reservation_id,
            order_id,
            user_id,
            concert_id,
            level_id,
            requested,
            free,
        }]),
        (Some(_), ReservationCommand::Create { .. } | ReservationCommand::Fail { .. }) => {
            Err(ReservationError::AlreadyRecorded)
        }
        (None, _) => Err(ReservationError::NotFound),
        (Some(r), ReservationCommand::Expire { now }) => match r.status {
            ReservationStatus::Held if now >= r.expires_at => Ok(vec![ReservationEvent::Expired {
                reservation_id: r.reservation_id,
                order_id: r.order_id,
                holds: r.holds.clone(),
            }]),
            ReservationStatus::Held => Err(ReservationError::NotDue(
                r.expires_at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
            )),
            // Ended otherwise first: nothing more to give back.
            _ => Ok(vec![]),
        },
        (Some(r), ReservationCommand::Cancel { reason }) => match r.status {
            ReservationStatus::Held => Ok(vec![ReservationEvent::Canceled {
                reservation_id: r.reservation_id,
                order_id: r.order_id,
                reason,
                holds: r.holds.clone(),
            }]),
            // A sold reservation is undone by refunding its order, not by canceling it.
            ReservationStatus::Confirmed => Err(ReservationError::Lapsed(r.status)),
            _ => Ok(vec![]),
        },
        (Some(r), ReservationCommand::Confirm) => match r.status {
            ReservationStatus::Held => Ok(vec![ReservationEvent::Confirmed {
                reservation_id: r.reservation_id,
                order_id: r.order_id,
                user_id: r.user_id.clone(),
                holds: r.holds.clone(),
            }]),
            ReservationStatus::Confirmed => Ok(vec![]),
            status => Err(ReservationError::Lapsed(status)),
        },
    }
}

pub fn evolve(state: Option<Reservation>, event: &ReservationEvent) -> Option<Reservation> {
    let ended = |state: Option<Reservation>, status| state.map(|r| Reservation { status, ..r });
    match event {
        ReservationEvent::Created {
            reservation_id,
            order_id,
            user_id,
            holds,
            expires_at,
        } => Some(Reservation {
            reservation_id: *reservation_id,
            order_id: *order_id,
            user_id: user_id.clone(),
            holds: holds.clone(),
            expires_at: *expires_at,
            status: ReservationStatus::Held,
        }),
        ReservationEvent::Failed {
            reservation_id,
            order_id,
            user_id,
            ..
        } => Some(Reservation {
            reservation_id: *reservation_id,
            order_id: *order_id,
            user_id: user_id.clone(),
            holds: Vec::new(),
            expires_at: OffsetDateTime::UNIX_EPOCH,
            status: ReservationStatus::Failed,
        }),
        ReservationEvent::Expired { .. } => ended(state, ReservationStatus::Expired),
        ReservationEvent::Canceled { .. } => ended(state, ReservationStatus::Canceled),
        ReservationEvent::Confirmed { .. } => ended(state, ReservationStatus::Confirmed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::given;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-23 20:00 UTC);

    fn hold(level: &str, seats: u32) -> Hold {
        Hold {
            concert_id: Uuid::from_u128(7),
            level_id: level.into(),
            seats,
            hold_id: Uuid::from_u128(u128::from(seats) + 100),
        }
    }

    fn create() -> ReservationCommand {
        ReservationCommand::Create {
            reservation_id: Uuid::from_u128(1),
            order_id: Uuid::from_u128(1),
            user_id: UserId::new("ana"),
            holds: vec![hold("floor", 2), hold("balcony", 1)],
            expires_at: NOW + time::Duration::minutes(15),
        }
    }

    fn created() -> ReservationEvent {
        ReservationEvent::Created {
            reservation_id: Uuid::from_u128(1),
            order_id: Uuid::from_u128(1),
            user_id: UserId::new("ana"),
            holds: vec![hold("floor", 2), hold("balcony", 1)],
            expires_at: NOW + time::Duration::minutes(15),
        }
    }

    #[test]
    fn a_reservation_records_the_holds_its_steps_took() {
        given::<Reservation>([]).when(create()).then([created()]);
    }

    #[test]
    fn a_reservation_is_recorded_once() {
        given::<Reservation>([created()])
            .when(create())
            .then_refused(ReservationError::AlreadyRecorded);
    }

    #[test]
    fn expiry_gives_every_hold_back_once_and_not_before_its_time() {
        given::<Reservation>([created()])
            .when(ReservationCommand::Expire {
                now: NOW + time::Duration::minutes(14),
            })
            .then_refused(ReservationError::NotDue("2026-11-23T20:15:00Z".into()));
        let expired = ReservationEvent::Expired {
            reservation_id: Uuid::from_u128(1),
            order_id: Uuid::from_u128(1),
            holds: vec![hold("floor", 2), hold("balcony", 1)],
        };
        given::<Reservation>([created()])
            .when(ReservationCommand::Expire {
                now: NOW + time::Duration::minutes(15),
            })
            .then([expired.clone()]);
        given::<Reservation>([created(), expired])
            .when(ReservationCommand::Cancel {
                reason: "payment failed".into(),
            })
            .then([]);
    }

    #[test]
    fn whichever_of_cancel_and_expiry_comes_first_gives_the_seats_back() {
        let canceled = ReservationEvent::Canceled {
            reservation_id: Uuid::from_u128(1),
            order_id: Uuid::from_u128(1),
            reason: "payment failed".into(),
            holds: vec![hold("floor", 2), hold("balcony", 1)],
        };
        given::<Reservation>([created()])
            .when(ReservationCommand::Cancel {
                reason: "payment failed".into(),
            })
            .then([canceled.clone()]);
        given::<Reservation>([created(), canceled])
            .when(ReservationCommand::Expire {
                now: NOW + time::Duration::hours(1),
            })
            .then([]);
    }

    #[test]
    fn a_payment_after_the_seats_went_back_cannot_confirm() {
        let expired = ReservationEvent::Expired {
            reservation_id: Uuid::from_u128(1),
            order_id: Uuid::from_u128(1),
            holds: vec![hold("floor", 2), hold("balcony", 1)],
        };
        given::<Reservation>([created(), expired])
            .when(ReservationCommand::Confirm)
            .then_refused(ReservationError::Lapsed(ReservationStatus::Expired));
    }

    #[test]
    fn confirming_twice_sells_once_and_a_sold_reservation_is_not_canceled() {
        let confirmed = ReservationEvent::Confirmed {
            reservation_id: Uuid::from_u128(1),
            order_id: Uuid::from_u128(1),
            user_id: UserId::new("ana"),
            holds: vec![hold("floor", 2), hold("balcony", 1)],
        };
        given::<Reservation>([created()])
            .when(ReservationCommand::Confirm)
            .then([confirmed.clone()]);
        given::<Reservation>([created(), confirmed.clone()])
            .when(ReservationCommand::Confirm)
            .then([]);
        given::<Reservation>([created(), confirmed])
            .when(ReservationCommand::Cancel {
                reason: "changed my mind".into(),
            })
            .then_refused(ReservationError::Lapsed(ReservationStatus::Confirmed));
    }

    #[test]
    fn a_failed_reservation_holds_nothing_and_cannot_be_confirmed() {
        let failed = ReservationEvent::Failed {
            reservation_id: Uuid::from_u128(1),
            order_id: Uuid::from_u128(1),
            user_id: UserId::new("ana"),
            concert_id: Uuid::from_u128(7),
            level_id: "floor".into(),
            requested: 2,
            free: 1,
        };
        given::<Reservation>([failed.clone()])
            .when(ReservationCommand::Confirm)
            .then_refused(ReservationError::Lapsed(ReservationStatus::Failed));
        given::<Reservation>([failed])
            .when(create())
            .then_refused(ReservationError::AlreadyRecorded);
    }
}
