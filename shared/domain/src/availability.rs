//! A ticket level's seats as a pure rule (seed 003's `ConcertTicketsAvailability`): a
//! reservation of `n` seats holds them when at least `n` are free, and a release gives back
//! no more than are held. The figures are the level's capacity and the seats held on it
//! (reserved + sold); what is free is their difference, never below zero.
//!
//! This is the rule behind the hot counter the store keeps per level: a reservation is one
//! conditional update, `held = held + :n` on the condition `held <= :ceiling` with
//! [`Availability::reserve_ceiling`], and a release is `held = held - :n` on the condition
//! `held >= :n`. Concurrent reservations then never oversell, whatever their order.

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
}

impl AvailabilityError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoSeats => "invalid_seats",
            Self::NotEnoughSeats { .. } => "not_enough_seats",
            Self::ReleaseExceedsHeld { .. } => "release_exceeds_held",
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

    /// The most seats that may already be held for a reservation of `seats` on a level of
    /// `capacity` to succeed: the condition of the counter's conditional increment. `None`
    /// when no counter can take it (no seats asked, or more than the whole capacity).
    pub fn reserve_ceiling(capacity: u32, seats: u32) -> Option<u32> {
        if seats == 0 {
            return None;
        }
        capacity.checked_sub(seats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_counters_ceiling_admits_exactly_the_levels_the_rule_admits() {
        for capacity in 0..=6 {
            for held in 0..=8 {
                for seats in 0..=7 {
                    let by_rule = Availability::new(capacity, held).reserve(seats).is_ok();
                    let by_ceiling = Availability::reserve_ceiling(capacity, seats)
                        .is_some_and(|ceiling| held <= ceiling);
                    assert_eq!(by_rule, by_ceiling, "{capacity} {held} {seats}");
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
