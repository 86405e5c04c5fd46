//! Reserving a ticket order's seats, all or nothing, without a lock, in two moves.
//!
//! **Taking** (reserve-tickets, the hot path): each level is one conditional step on its
//! free-seats counter (`seats::hold`), and nothing else is written. The last step's
//! `seats.held` carries the holds taken before it (`completes`), so a sale's only write
//! on the hot level is that step, and the reservation is as durable as the step that
//! completes it. When a level runs out, the holds already taken go back in the commit
//! recording `reservation.failed`.
//!
//! **Recording** (record-reservations, on that last `seats.held`, off the hot item):
//! `reservation.created` owning the holds, with its expiry on the agenda and the order
//! on its concerts' rosters, and a marker per hold that settles it as owned. A hold is
//! settled once, by that commit or by the one giving it back as nobody's (another
//! delivery of the order recorded first, the order closed meanwhile, or reclaim-holds
//! found an invocation stopped before its last step), so whatever the deliveries, one
//! reservation owns the seats and every other hold goes back exactly once.

use crate::kernel::{Fail, Kernel};
use crate::order_book::agenda_time;
use crate::seats::{self, Held};
use kassa_domain::identity::UserId;
use kassa_domain::order::{Order, Seats};
use kassa_domain::reservation::{
    Hold, Reservation, ReservationCommand, ReservationError, ReservationStatus,
};
use kassa_store::{stream_of, Agenda, Entry, EventStore, Metadata, Roster, StoreError};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// The agenda partition of reservations waiting to expire.
pub const EXPIRY_AGENDA: &str = "reservations-expiring";

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
    /// Every level's seats are taken, the last step carrying the reservation to record
    /// ([`Reservations::record`]).
    Taken(Vec<Hold>),
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

/// What recording a completed set of holds did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The reservation is recorded, owning the holds.
    Created(Reservation),
    /// It was recorded before with these holds (a redelivery): nothing to do.
    Already,
    /// The holds went back, for `reason` (each at most once).
    GivenBack { reason: &'static str },
}

/// What a recording attempt decided, before its holds go back or not.
enum Recording {
    Created(Reservation),
    Already,
    Refused(&'static str),
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

    /// Takes `request`'s seats (see the module's comment). Nothing is read first: a
    /// redelivered order takes seats again, and recording finds the reservation owned by
    /// the first delivery's holds and gives the new ones back.
    pub async fn reserve(
        &self,
        request: &Request,
        metadata: &Metadata,
    ) -> Result<Reserved, StoreError> {
        let id = request.order_id;
        // The same order always walks its levels in the same order.
        let mut wanted: Vec<&Seats> = request.seats.iter().filter(|s| s.seats > 0).collect();
        wanted.sort_by(|a, b| (a.concert_id, &a.level_id).cmp(&(b.concert_id, &b.level_id)));
        if wanted.is_empty() {
            return Err(StoreError::Corrupt(format!("order {id} asks for no seats")));
        }
        let now = self.kernel.clock().now();
        let last = wanted.len() - 1;
        let mut taken: Vec<Hold> = Vec::new();
        for (i, want) in wanted.into_iter().enumerate() {
            let hold = Hold {
                concert_id: want.concert_id,
                level_id: want.level_id.clone(),
                seats: want.seats,
                hold_id: Uuid::now_v7(),
            };
            let completes = (i == last).then(|| taken.clone());
            match self.hold(id, &hold, completes, metadata, now).await? {
                Held::Taken { .. } => taken.push(hold),
                Held::Refused { free } => {
                    return self.refuse(request, &taken, hold, free, metadata).await
                }
            }
        }
        Ok(Reserved::Taken(taken))
    }

    /// Records that `hold`'s level had `free` seats, giving back the holds `taken` before
    /// it in the same commit. Another delivery of the same order may have recorded the
    /// reservation meanwhile (its seats may be why this one ran out): then that one
    /// stands, and these holds go back on their own.
    async fn refuse(
        &self,
        request: &Request,
        taken: &[Hold],
        hold: Hold,
        free: u32,
        metadata: &Metadata,
    ) -> Result<Reserved, StoreError> {
        let id = request.order_id;
        let store = self.kernel.store();
        let command = ReservationCommand::Fail {
            reservation_id: id,
            order_id: id,
            user_id: request.user_id.clone(),
            concert_id: hold.concert_id,
            level_id: hold.level_id.clone(),
            requested: hold.seats,
            free,
        };
        let refused = Reserved::Refused {
            concert_id: hold.concert_id,
            level_id: hold.level_id.clone(),
            requested: hold.seats,
            free,
        };
        // A sold-out level refuses every order after its last seat, so this is a hot path
        // too. With nothing to give back, the failure is one conditional write creating
        // the reservation's head, carrying its event as a counter head does; had a record
        // been made meanwhile, the write is refused and the commit below decides on it.
        if taken.is_empty() {
            match self.fail_alone(id, &command, metadata).await {
                Ok(()) => return Ok(refused),
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let command = &command;
        let done = self
            .kernel
            // Taken to be absent, as it nearly always is: a record made meanwhile fails
            // the commit's condition and is decided on.
            .run_creating(metadata.clone(), stream_of::<Reservation>(&id), |tx| {
                Box::pin(async move {
                    let mut reservation = tx.load::<Reservation>(&id).await?;
                    tx.decide(&mut reservation, command.clone())?;
                    for hold in taken {
                        seats::release(tx.commit(), id, hold, "level_ran_out", true)?;
                    }
                    Ok(())
                })
            })
            .await;
        match done {
            Ok(_) => Ok(refused),
            Err(Fail::Refused(ReservationError::AlreadyRecorded)) => {
                self.give_back(id, taken, "duplicate_reservation", metadata)
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
                // Whether it committed is read back: a failure that went through gave the
                // holds back with it; otherwise they go back now, before the error is
                // handed on for a retry.
                match store.load_aggregate::<Reservation>(&id).await?.state {
                    Some(existing) if existing.status == ReservationStatus::Failed => Ok(refused),
                    Some(existing) => {
                        self.give_back(id, taken, "duplicate_reservation", metadata)
                            .await?;
                        Ok(Reserved::Recorded(existing))
                    }
                    None => {
                        self.give_back(id, taken, "not_recorded", metadata).await?;
                        Err(e)
                    }
                }
            }
        }
    }

    /// Records `command` (a failure) as the first and only write of the reservation's
    /// stream: its head, carrying the event for the relay to persist and publish.
    async fn fail_alone(
        &self,
        id: Uuid,
        command: &ReservationCommand,
        metadata: &Metadata,
    ) -> Result<(), StoreError> {
        let store = self.kernel.store();
        let events = kassa_domain::reservation::decide(None, command.clone())
            .map_err(|e| StoreError::Corrupt(format!("reservation {id} cannot fail: {e}")))?;
        let state = events.iter().fold(None, kassa_domain::reservation::evolve);
        let mut commit = store.commit_builder(metadata.clone(), self.kernel.clock().now());
        commit.append_counter(
            &stream_of::<Reservation>(&id),
            0,
            &events,
            &state,
            0,
            <Reservation as kassa_domain::aggregate::Aggregate>::SCHEMA,
        )?;
        store.commit(commit).await.map(drop)
    }

    /// Records the reservation `reservation` whose last hold completed `holds` (see the
    /// module's comment), or gives the holds back when it cannot own them.
    pub async fn record(
        &self,
        reservation: Uuid,
        holds: &[Hold],
        metadata: &Metadata,
    ) -> Result<Recorded, StoreError> {
        let id = reservation;
        let store = self.kernel.store();
        let (agenda, roster) = (&self.agenda, &self.orders);
        let done = self
            .kernel
            .run(metadata.clone(), |tx| {
                Box::pin(async move {
                    let mut reservation = tx.load::<Reservation>(&id).await?;
                    if reservation
                        .state
                        .as_ref()
                        .is_some_and(|r| holds.iter().all(|h| r.owns(h.hold_id)))
                    {
                        return Ok(Recording::Already);
                    }
                    // order.created came before the holds, so the order is there; whether
                    // it is still worth seats is decided here, off the hot path, on the
                    // order as it is when the reservation commits (its version is a
                    // condition), so a cancellation racing this record either comes
                    // first and gets its seats back here, or finds the reservation to
                    // cancel. A paid order still gets them (its order.created came late):
                    // settling the payment waits for the reservation.
                    let order = tx.load::<Order>(&id).await?;
                    let Some(o) = order.state.as_ref() else {
                        return Ok(Recording::Refused("no_order"));
                    };
                    if !(o.status.is_open() || o.status.is_paid()) {
                        return Ok(Recording::Refused("order_closed"));
                    }
                    tx.commit().require_version(&order.stream, order.version)?;
                    let expires_at = o.expires_at;
                    tx.decide(
                        &mut reservation,
                        ReservationCommand::Create {
                            reservation_id: id,
                            order_id: id,
                            user_id: o.user_id.clone(),
                            holds: holds.to_vec(),
                            expires_at,
                        },
                    )?;
                    tx.commit().put(
                        agenda.schedule(&agenda_time(expires_at), &id.to_string())?,
                        kassa_store::Refusal::AlreadyScheduled,
                    );
                    let mut concerts: Vec<Uuid> = holds.iter().map(|h| h.concert_id).collect();
                    concerts.sort();
                    concerts.dedup();
                    for concert in concerts {
                        tx.commit()
                            .index(roster.enter(&concert.to_string(), &id.to_string())?);
                    }
                    for hold in holds {
                        seats::settle(tx.commit(), hold)?;
                    }
                    Ok(reservation
                        .state
                        .map_or(Recording::Already, Recording::Created))
                })
            })
            .await;
        match done {
            Ok(done) => match done.value {
                Recording::Created(created) => Ok(Recorded::Created(created)),
                Recording::Already => Ok(Recorded::Already),
                Recording::Refused(reason) => self.give_up(id, holds, reason, metadata).await,
            },
            // Another delivery's holds were recorded first (or its failure): these are
            // nobody's.
            Err(Fail::Refused(ReservationError::AlreadyRecorded)) => {
                self.give_up(id, holds, "duplicate_reservation", metadata)
                    .await
            }
            // A record of the same reservation committed between this one's read and its
            // commit (its expiry entry is there): as above, once that record is read.
            Err(Fail::Store(StoreError::Refused(kassa_store::Refusal::AlreadyScheduled))) => {
                match store.load_aggregate::<Reservation>(&id).await?.state {
                    Some(r) if holds.iter().all(|h| r.owns(h.hold_id)) => Ok(Recorded::Already),
                    Some(_) => {
                        self.give_up(id, holds, "duplicate_reservation", metadata)
                            .await
                    }
                    None => Err(StoreError::Corrupt(format!(
                        "reservation {id} has an expiry entry and no record"
                    ))),
                }
            }
            // One of the holds was settled as nobody's already: reclaim-holds judged an
            // earlier level's hold before this record came. The reservation cannot be
            // whole, so it fails as if that level had run out, and the rest go back.
            Err(Fail::Store(StoreError::Refused(kassa_store::Refusal::AlreadyApplied))) => {
                self.give_back(id, holds, "reclaimed", metadata).await?;
                let lost = &holds[0];
                let buyer = store
                    .load_aggregate::<Order>(&id)
                    .await?
                    .state
                    .map(|o| o.user_id)
                    .ok_or_else(|| StoreError::Corrupt(format!("order {id} vanished")))?;
                let fail = ReservationCommand::Fail {
                    reservation_id: id,
                    order_id: id,
                    user_id: buyer,
                    concert_id: lost.concert_id,
                    level_id: lost.level_id.clone(),
                    requested: lost.seats,
                    free: 0,
                };
                let fail = &fail;
                match self
                    .kernel
                    .run(metadata.clone(), |tx| {
                        Box::pin(async move {
                            let mut reservation = tx.load::<Reservation>(&id).await?;
                            tx.decide(&mut reservation, fail.clone())?;
                            Ok(())
                        })
                    })
                    .await
                {
                    Ok(_) | Err(Fail::Refused(ReservationError::AlreadyRecorded)) => {
                        Ok(Recorded::GivenBack {
                            reason: "reclaimed",
                        })
                    }
                    Err(Fail::Refused(e)) => Err(StoreError::Corrupt(format!(
                        "reservation {id} cannot fail: {e}"
                    ))),
                    Err(Fail::Store(e)) => Err(e),
                }
            }
            Err(Fail::Refused(e)) => Err(StoreError::Corrupt(format!(
                "reservation {id} refused: {e}"
            ))),
            Err(Fail::Store(e)) => Err(e),
        }
    }

    async fn give_up(
        &self,
        reservation: Uuid,
        holds: &[Hold],
        reason: &'static str,
        metadata: &Metadata,
    ) -> Result<Recorded, StoreError> {
        self.give_back(reservation, holds, reason, metadata).await?;
        Ok(Recorded::GivenBack { reason })
    }

    /// One hold, retried while a cold commit holds the head or DynamoDB throttles.
    async fn hold(
        &self,
        reservation: Uuid,
        hold: &Hold,
        completes: Option<Vec<Hold>>,
        metadata: &Metadata,
        now: OffsetDateTime,
    ) -> Result<Held, StoreError> {
        let mut pause = Duration::from_millis(5);
        let mut tries = 0;
        loop {
            tries += 1;
            let completes = completes.clone();
            match seats::hold(
                self.kernel.store(),
                reservation,
                hold,
                completes,
                metadata,
                now,
            )
            .await
            {
                Err(e) if tries < HOLD_TRIES && (e.is_conflict() || e.is_throttled()) => {
                    tokio::time::sleep(pause + Duration::from_millis(fastrand::u64(0..5))).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    /// Gives `hold` back unless a recorded reservation owns it. For a hold that is not
    /// the last of its reservation, asked once the reserve-tickets invocation that took it
    /// can no longer take the rest (long past the function's timeout): a hold is owned by
    /// the reservation that lists it, settled already (under its marker) when its
    /// reservation failed or was recorded without it, or an orphan when the invocation
    /// stopped before its last step. Orphans go back once, under the same marker.
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
