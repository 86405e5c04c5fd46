//! A ticket level's seats as a pure rule (seed 003's `ConcertTicketsAvailability`): a
//! reservation of `n` seats holds them when at least `n` are free, and a release gives back
//! no more than are held. The figures are the level's capacity and the seats held on it
//! (reserved + sold); what is free is their difference, never below zero.
//!
//! The store keeps each level's FREE seats as a hot counter (`Availability#<concert>/<level>`),
//! not the held ones: then every rule is a bound on the counter alone, whatever the
//! capacity is at that moment.
//! - a reservation of `n` is one conditional step, `free - n` on `free >= n`
//!   ([`Availability::hold_bound`]), so concurrent reservations never oversell, in any order;
//! - a release is `free + n`, done once per hold (the reservation's state, or a marker);
//! - a resize from `c` to `c'` is `free + (c' - c)` on `free >= c - c'` in the concert's own
//!   commit ([`Availability::resize`]), so capacity never drops below what is held even while
//!   reservations race it;
//! - a canceled concert closes its counters: no reservation steps in, releases still do.
//!
//! Held seats are then `capacity - free`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Availability {
    /// Seats the level offers. A canceled concert offers none.
    pub capacity: u32,
    /// Seats reserved or sold. May exceed the capacity if the capacity dropped after they
    /// were held (a cancellation); nothing is free then.
    pub held: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvailabilityError {
    #[error("a reservation or release is of at least one seat")]
    NoSeats,
    #[error("not enough seats: {requested} requested, {free} free")]
    NotEnoughSeats { requested: u32, free: u32 },
    #[error("cannot release {released} seats: {held} are held")]
    ReleaseExceedsHeld { released: u32, held: u32 },
    #[error("a capacity of {capacity} is below the {held} seats reserved or sold")]
    CapacityBelowHeld { capacity: u32, held: u32 },
}

impl AvailabilityError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoSeats => "invalid_seats",
            Self::NotEnoughSeats { .. } => "not_enough_seats",
            Self::ReleaseExceedsHeld { .. } => "release_exceeds_held",
            Self::CapacityBelowHeld { .. } => "capacity_below_held",
        }
    }
}

impl Availability {
    pub fn new(capacity: u32, held: u32) -> Self {
        Self { capacity, held }
    }

    /// Seats still to be had.
    pub fn free(self) -> u32 {
        self.capacity.saturating_sub(self.held)
    }

    /// Holds `seats` more, when that many are free.
    pub fn reserve(self, seats: u32) -> Result<Self, AvailabilityError> {
        if seats == 0 {
            return Err(AvailabilityError::NoSeats);
        }
        let free = self.free();
        if seats > free {
            return Err(AvailabilityError::NotEnoughSeats {
                requested: seats,
                free,
            });
        }
        // `seats <= capacity - held`, so the sum stays within the capacity.
        Ok(Self {
            held: self.held + seats,
            ..self
        })
    }

    /// Gives back `seats` held ones (an expired or canceled reservation).
    pub fn release(self, seats: u32) -> Result<Self, AvailabilityError> {
        if seats == 0 {
            return Err(AvailabilityError::NoSeats);
        }
        if seats > self.held {
            return Err(AvailabilityError::ReleaseExceedsHeld {
                released: seats,
                held: self.held,
            });
        }
        Ok(Self {
            held: self.held - seats,
            ..self
        })
    }

    /// The level as its counter tells it: `free` seats of `capacity` (a counter below zero
    /// would be a bug; it reads as nothing free).
    pub fn from_free(capacity: u32, free: i64) -> Self {
        let free = u32::try_from(free.max(0)).unwrap_or(u32::MAX).min(capacity);
        Self::new(capacity, capacity - free)
    }

    /// The least the free-seats counter must hold for a reservation of `seats` to step in.
    pub fn hold_bound(seats: u32) -> i64 {
        i64::from(seats)
    }

    /// What a resize to `capacity` adds to the free-seats counter, and the least the
    /// counter must hold for it (the seats it takes away must be free), checked here
    /// against what is known and by the counter's condition against what is true.
    pub fn resize(self, capacity: u32) -> Result<(i64, Option<i64>), AvailabilityError> {
        if capacity < self.held {
            return Err(AvailabilityError::CapacityBelowHeld {
                capacity,
                held: self.held,
            });
        }
        let delta = i64::from(capacity) - i64::from(self.capacity);
        Ok((delta, (delta < 0).then_some(-delta)))
    }
}

/// What the level counters record, carried on their heads: each hold and release of
/// seats, with the free seats after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "payload")]
pub enum SeatEvent {
    /// Seats taken from a level for a reservation (one step).
    #[serde(rename = "seats.held")]
    Held {
        concert_id: uuid::Uuid,
        level_id: String,
        seats: u32,
        reservation_id: uuid::Uuid,
        hold_id: uuid::Uuid,
        /// Filled by the store with the counter after the step.
        free_after: i64,
        /// On the last hold of a reservation, the holds taken before it (none for a
        /// one-level order): the reservation is recorded from this event, owning them
        /// all. Absent on the other holds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        completes: Option<Vec<crate::reservation::Hold>>,
    },
    /// Seats given back: the reservation failed, expired or was canceled, or the hold was
    /// an orphan.
    #[serde(rename = "seats.released")]
    Released {
        concert_id: uuid::Uuid,
        level_id: String,
        seats: u32,
        reservation_id: uuid::Uuid,
        hold_id: uuid::Uuid,
        reason: String,
        free_after: i64,
    },
}

impl crate::event::DomainEvent for SeatEvent {
    const CONTEXT: &'static str = "ticketing";
    const TYPES: &'static [&'static str] = &["seats.held", "seats.released"];

    fn event_type(&self) -> &'static str {
        match self {
            Self::Held { .. } => "seats.held",
            Self::Released { .. } => "seats.released",
        }
    }
}

/// The field of a [`SeatEvent`] the store fills with the counter.
pub const FREE_AFTER: &str = "free_after";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resize_adds_the_difference_and_a_shrink_needs_those_seats_free() {
        let level = Availability::new(100, 60);
        assert_eq!(level.resize(120), Ok((20, None)));
        assert_eq!(level.resize(70), Ok((-30, Some(30))));
        assert_eq!(level.resize(60), Ok((-40, Some(40))));
        assert_eq!(
            level.resize(59),
            Err(AvailabilityError::CapacityBelowHeld {
                capacity: 59,
                held: 60
            })
        );
    }

    #[test]
    fn a_counter_reads_as_free_seats_of_the_capacity() {
        assert_eq!(
            Availability::from_free(500, 120),
            Availability::new(500, 380)
        );
        assert_eq!(Availability::from_free(500, -3).free(), 0);
        assert_eq!(Availability::from_free(10, 12), Availability::new(10, 0));
    }

    #[test]
    fn a_reservation_within_the_free_seats_holds_them() {
        let level = Availability::new(100, 90);
        assert_eq!(level.free(), 10);
        assert_eq!(level.reserve(10), Ok(Availability::new(100, 100)));
        assert_eq!(level.reserve(3).map(Availability::free), Ok(7));
    }

    #[test]
    fn a_reservation_past_the_free_seats_is_refused() {
        assert_eq!(
            Availability::new(100, 95).reserve(6),
            Err(AvailabilityError::NotEnoughSeats {
                requested: 6,
                free: 5
            })
        );
        assert_eq!(
            Availability::new(100, 100).reserve(1),
            Err(AvailabilityError::NotEnoughSeats {
                requested: 1,
                free: 0
            })
        );
    }

    #[test]
    fn nothing_is_free_when_more_are_held_than_offered() {
        // The capacity dropped to zero (the concert was canceled) after seats were held.
        let level = Availability::new(0, 12);
        assert_eq!(level.free(), 0);
        assert_eq!(
            level.reserve(1),
            Err(AvailabilityError::NotEnoughSeats {
                requested: 1,
                free: 0
            })
        );
        assert_eq!(level.release(12), Ok(Availability::new(0, 0)));
    }

    #[test]
    fn zero_seats_are_neither_reserved_nor_released() {
        let level = Availability::new(10, 5);
        assert_eq!(level.reserve(0), Err(AvailabilityError::NoSeats));
        assert_eq!(level.release(0), Err(AvailabilityError::NoSeats));
        assert_eq!(AvailabilityError::NoSeats.code(), "invalid_seats");
    }

    #[test]
    fn a_release_gives_back_at_most_the_held_seats() {
        let level = Availability::new(10, 4);
        assert_eq!(level.release(4), Ok(Availability::new(10, 0)));
        assert_eq!(
            level.release(5),
            Err(AvailabilityError::ReleaseExceedsHeld {
                released: 5,
                held: 4
            })
        );
    }

    #[test]
    fn reserving_then_releasing_restores_the_level() {
        let level = Availability::new(50, 20);
        assert_eq!(level.reserve(7).and_then(|l| l.release(7)), Ok(level));
    }

    #[test]
    fn the_counters_bound_admits_exactly_the_levels_the_rule_admits() {
        for capacity in 0..=6 {
            for held in 0..=6 {
                for seats in 1..=7 {
                    let level = Availability::new(capacity, held);
                    let by_rule = level.reserve(seats).is_ok();
                    let free = i64::from(level.free());
                    let by_bound = free >= Availability::hold_bound(seats);
                    assert_eq!(by_rule, by_bound, "{capacity} {held} {seats}");
                }
            }
        }
    }

    #[test]
    fn concurrent_reservations_in_any_order_never_oversell() {
        // Five buyers of 3 seats on a level of 10: whichever three come first get them.
        let mut level = Availability::new(10, 0);
        let outcomes: Vec<bool> = (0..5)
            .map(|_| match level.reserve(3) {
                Ok(next) => {
                    level = next;
                    true
                }
                Err(_) => false,
            })
            .collect();
        assert_eq!(outcomes, [true, true, true, false, false]);
        assert_eq!(level, Availability::new(10, 9));
        assert_eq!(level.reserve(1).map(Availability::free), Ok(0));
    }
}
