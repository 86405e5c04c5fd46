//! Reserving a ticket order's seats, all or nothing, without a lock: each level is one
//! conditional step on its free-seats counter (`seats::hold`), and only when every step took
//! its seats is the reservation recorded, owning those holds, with its expiry on the
//! agenda. When a level runs out, the holds already taken go back in the commit that
//! records the failure. Either commit is conditional on the reservation not existing, so a
//! redelivered order that raced the first delivery loses there and gives back its own holds
//! under their markers: whatever the deliveries, one reservation owns the seats.

use crate::kernel::{Fail, Kernel};
use crate::order_book::agenda_time;
use crate::seats::{self, Held};
use kassa_domain::identity::UserId;
use kassa_domain::order::Seats;
use kassa_domain::reservation::{Hold, Reservation, ReservationCommand, ReservationError};
use kassa_store::{Agenda, Entry, EventStore, Metadata, Roster, StoreError};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// The agenda partition of reservations waiting to expire.
pub const EXPIRY_AGENDA: &str = "reservations-expiring";

/// How long a refused reservation waits for a twin delivery of its order to record the
/// reservation before recording the failure (see `reserve`).
const TWIN_GRACE: Duration = Duration::from_millis(500);

/// Tries a hold makes when the head is briefly held by a cold commit or throttled.
const HOLD_TRIES: u32 = 8;

/// What an order asks for.
#[derive(Debug, Clone)]
pub struct Request {
    pub order_id: Uuid,
    pub user_id: UserId,
    pub seats: Vec<Seats>,
    pub expires_at: OffsetDateTime,
}

/// What became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// Every level's seats are held until the reservation expires.
    Held(Reservation),
    /// `level_id` of `concert_id` had `free` seats where `requested` were needed; nothing
    /// is held.
    Refused {
        concert_id: Uuid,
        level_id: String,
        requested: u32,
        free: u32,
    },
    /// The order's reservation was recorded before (a redelivery): as it stands.
    Recorded(Reservation),
}

/// What a check of one hold found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reclaimed {
    /// Its reservation lists it: the reservation's expiry, cancellation or sale decides.
    Owned,
    /// Given back before, under its marker.
    AlreadyBack,
    /// An orphan: given back now.
    GivenBack,
}

pub struct Reservations {
    kernel: Kernel,
    agenda: Agenda,
    orders: Roster,
}

impl Reservations {
    /// `orders` is [`crate::rosters::concert_orders`].
    pub fn new(kernel: Kernel, agenda: Agenda, orders: Roster) -> Self {
        Self {
            kernel,
            agenda,
            orders,
        }
    }

    /// The service every function that reserves, expires or reclaims seats uses: the
    /// events table for the kernel, the state table for the expiry agenda and the
    /// concerts' order rosters.
    pub fn on_tables(
        client: aws_sdk_dynamodb::Client,
        events_table: &str,
        state_table: &str,
        clock: std::sync::Arc<dyn crate::Clock>,
    ) -> Self {
        let kernel = Kernel::new(EventStore::new(client.clone(), events_table), clock);
        let agenda = Agenda::new(client.clone(), state_table, EXPIRY_AGENDA);
        Self::new(
            kernel,
            agenda,
            crate::rosters::concert_orders(client, state_table),
        )
    }

    pub fn agenda(&self) -> &Agenda {
        &self.agenda
    }

    pub fn store(&self) -> &EventStore {
        self.kernel.store()
    }

    pub fn now(&self) -> OffsetDateTime {
        self.kernel.clock().now()
    }

    /// Reserves `request`'s seats (see the module's comment).
    pub async fn reserve(
        &self,
        request: &Request,
        metadata: &Metadata,
    ) -> Result<Reserved, StoreError> {
        let store = self.kernel.store();
        let id = request.order_id;
        let before = store.load_aggregate::<Reservation>(&id).await?;
        if let Some(existing) = before.state {
            return Ok(Reserved::Recorded(existing));
        }
        // The same order always walks its levels in the same order.
        let mut wanted: Vec<&Seats> = request.seats.iter().filter(|s| s.seats > 0).collect();
        wanted.sort_by(|a, b| (a.concert_id, &a.level_id).cmp(&(b.concert_id, &b.level_id)));
        let now = self.kernel.clock().now();
        let mut taken: Vec<Hold> = Vec::new();
        let mut refusal = None;
        for want in wanted {
            let hold = Hold {
                concert_id: want.concert_id,
                level_id: want.level_id.clone(),
                seats: want.seats,
                hold_id: Uuid::now_v7(),
            };
            match self.hold(id, &hold, metadata, now).await? {
                Held::Taken { .. } => taken.push(hold),
                Held::Refused { free } => {
                    refusal = Some((hold, free));
                    break;
                }
            }
        }
        let mut absent = before.stream;
        if refusal.is_some() {
            // A refusal may come from a twin delivery of this same order holding the seats
            // this one wanted (SQS delivers twice at once now and then). Recording the
            // failure first would fail an order whose seats are held: the twin would lose
            // at its commit and give them back. The twin commits moments after its holds,
            // so the failure waits that long and defers to a reservation recorded
            // meanwhile. A twin slower than that still leaves a consistent end: its
            // holds go back and the order is canceled for want of seats.
            tokio::time::sleep(TWIN_GRACE).await;
            let again = store.load_aggregate::<Reservation>(&id).await?;
            if let Some(existing) = again.state {
                self.give_back(id, &taken, "duplicate_reservation", metadata)
                    .await?;
                return Ok(Reserved::Recorded(existing));
            }
            absent = again.stream;
        }
        let command = match &refusal {
            None => ReservationCommand::Create {
                reservation_id: id,
                order_id: id,
                user_id: request.user_id.clone(),
                holds: taken.clone(),
                expires_at: request.expires_at,
            },
            Some((hold, free)) => ReservationCommand::Fail {
                reservation_id: id,
                order_id: id,
                user_id: request.user_id.clone(),
                concert_id: hold.concert_id,
                level_id: hold.level_id.clone(),
                requested: hold.seats,
                free: *free,
            },
        };
        let (agenda, roster, taken_ref, command) = (&self.agenda, &self.orders, &taken, &command);
        let done = self
            .kernel
            // The reservation was absent a moment ago; a delivery that recorded it since
            // fails the commit's condition, and the retry decides on what it recorded.
            .run_creating(metadata.clone(), absent, |tx| {
                Box::pin(async move {
                    let mut reservation = tx.load::<Reservation>(&id).await?;
                    tx.decide(&mut reservation, command.clone())?;
                    match command {
                        ReservationCommand::Create {
                            expires_at, holds, ..
                        } => {
                            tx.commit().put(
                                agenda.schedule(&agenda_time(*expires_at), &id.to_string())?,
                                kassa_store::Refusal::AlreadyScheduled,
                            );
                            let mut concerts: Vec<Uuid> =
                                holds.iter().map(|h| h.concert_id).collect();
                            concerts.dedup();
                            for concert in concerts {
                                tx.commit()
                                    .index(roster.enter(&concert.to_string(), &id.to_string())?);
                            }
                        }
                        _ => {
                            for hold in taken_ref {
                                // Under its marker, so a later check for orphaned holds
                                // finds it given back.
                                seats::release(tx.commit(), id, hold, "level_ran_out", true)?;
                            }
                        }
                    }
                    Ok(reservation.state)
                })
            })
            .await;
        match done {
            Ok(done) => Ok(match (done.value, refusal) {
                (_, Some((hold, free))) => Reserved::Refused {
                    concert_id: hold.concert_id,
                    level_id: hold.level_id,
                    requested: hold.seats,
                    free,
                },
                (Some(reservation), None) => Reserved::Held(reservation),
                (None, None) => {
                    return Err(StoreError::Corrupt(format!(
                        "reservation {id} recorded nothing"
                    )))
                }
            }),
            // Another delivery of the same order recorded it first: these holds are
            // orphans, given back once each.
            Err(Fail::Refused(ReservationError::AlreadyRecorded)) => {
                self.give_back(id, &taken, "duplicate_reservation", metadata)
                    .await?;
                let existing = store
                    .load_aggregate::<Reservation>(&id)
                    .await?
                    .state
                    .ok_or_else(|| StoreError::Corrupt(format!("reservation {id} vanished")))?;
                Ok(Reserved::Recorded(existing))
            }
            Err(Fail::Refused(e)) => Err(StoreError::Corrupt(format!(
                "reservation {id} refused: {e}"
            ))),
            Err(Fail::Store(e)) => {
                // Whether it committed is read back: a reservation that exists owns the
                // holds (an ambiguous failure that went through); otherwise they are
                // orphans and go back now, before the error is handed on for a retry.
                match store.load_aggregate::<Reservation>(&id).await?.state {
                    Some(existing) if existing.holds == taken || refusal.is_some() => {
                        Ok(Reserved::Recorded(existing))
                    }
                    Some(existing) => {
                        self.give_back(id, &taken, "duplicate_reservation", metadata)
                            .await?;
                        Ok(Reserved::Recorded(existing))
                    }
                    None => {
                        self.give_back(id, &taken, "not_recorded", metadata).await?;
                        Err(e)
                    }
                }
            }
        }
    }

    /// One hold, retried while a cold commit holds the head or DynamoDB throttles.
    async fn hold(
        &self,
        reservation: Uuid,
        hold: &Hold,
        metadata: &Metadata,
        now: OffsetDateTime,
    ) -> Result<Held, StoreError> {
        let mut pause = Duration::from_millis(5);
        let mut tries = 0;
        loop {
            tries += 1;
            match seats::hold(self.kernel.store(), reservation, hold, metadata, now).await {
                Err(e) if tries < HOLD_TRIES && (e.is_conflict() || e.is_throttled()) => {
                    tokio::time::sleep(pause + Duration::from_millis(fastrand::u64(0..5))).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    /// Gives `hold` back unless a recorded reservation owns it. For a hold taken by a
    /// reserve-tickets invocation that can no longer commit (asked long enough after the
    /// hold, past the function's timeout): a hold is owned by the reservation that lists
    /// it, given back already (under its marker) when its reservation failed or another
    /// delivery recorded the reservation, or an orphan when the invocation stopped between
    /// the hold and the commit. Orphans go back once, under the same marker.
    pub async fn reclaim(
        &self,
        reservation: Uuid,
        hold: &Hold,
        metadata: &Metadata,
    ) -> Result<Reclaimed, StoreError> {
        let recorded = self
            .kernel
            .store()
            .load_aggregate::<Reservation>(&reservation)
            .await?
            .state;
        if recorded.is_some_and(|r| r.holds.iter().any(|h| h.hold_id == hold.hold_id)) {
            return Ok(Reclaimed::Owned);
        }
        let done = self
            .kernel
            .run::<(), std::convert::Infallible, _>(metadata.clone(), |tx| {
                Box::pin(async move {
                    seats::release(tx.commit(), reservation, hold, "orphaned", true)?;
                    Ok(())
                })
            })
            .await;
        match done {
            Ok(_) => Ok(Reclaimed::GivenBack),
            Err(Fail::Store(StoreError::Refused(kassa_store::Refusal::AlreadyApplied))) => {
                Ok(Reclaimed::AlreadyBack)
            }
            Err(Fail::Store(e)) => Err(e),
            Err(Fail::Refused(never)) => match never {},
        }
    }

    /// Gives `holds` back, each at most once (a marker per hold).
    pub async fn give_back(
        &self,
        reservation: Uuid,
        holds: &[Hold],
        reason: &str,
        metadata: &Metadata,
    ) -> Result<(), StoreError> {
        for hold in holds {
            let done = self
                .kernel
                .run::<(), std::convert::Infallible, _>(metadata.clone(), |tx| {
                    Box::pin(async move {
                        seats::release(tx.commit(), reservation, hold, reason, true)?;
                        Ok(())
                    })
                })
                .await;
            match done {
                Ok(_)
                | Err(Fail::Store(StoreError::Refused(kassa_store::Refusal::AlreadyApplied))) => {}
                Err(Fail::Store(e)) => return Err(e),
                Err(Fail::Refused(never)) => match never {},
            }
        }
        Ok(())
    }

    /// Expires the reservation of the due agenda `entry`, giving its seats back in the same
    /// commit and taking the entry. `Ok(false)` when there was nothing to do.
    pub async fn expire(&self, entry: &Entry, metadata: &Metadata) -> Result<bool, StoreError> {
        let id: Uuid = entry
            .subject
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("agenda subject {}", entry.subject)))?;
        let now = self.kernel.clock().now();
        let agenda = &self.agenda;
        let done = self
            .kernel
            .run(metadata.clone(), |tx| {
                Box::pin(async move {
                    let mut reservation = tx.load::<Reservation>(&id).await?;
                    let events = tx.decide(&mut reservation, ReservationCommand::Expire { now })?;
                    if let Some(r) = reservation.state.as_ref().filter(|_| !events.is_empty()) {
                        for hold in &r.holds {
                            seats::release(tx.commit(), id, hold, "expired", false)?;
                        }
                    }
                    tx.commit()
                        .delete(agenda.take(entry)?, kassa_store::Refusal::EntryTaken);
                    Ok(!events.is_empty())
                })
            })
            .await;
        match done {
            Ok(done) => Ok(done.value),
            Err(Fail::Store(StoreError::Refused(kassa_store::Refusal::EntryTaken))) => Ok(false),
            Err(Fail::Refused(ReservationError::NotDue(_))) => Ok(false),
            Err(Fail::Refused(e)) => Err(StoreError::Corrupt(format!(
                "reservation {id} cannot expire: {e}"
            ))),
            Err(Fail::Store(e)) => Err(e),
        }
    }
}
