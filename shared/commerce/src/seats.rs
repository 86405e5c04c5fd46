//! The seats of every ticket level, one hot counter each (`Availability#<concert>/<level>`,
//! the FREE seats; see `kassa_domain::availability` for why free rather than held).
//!
//! A level's counter is opened in the commit that creates its level, resized and closed in
//! the commits that change or cancel its concert, and moved by holds (one conditional step
//! each, no transaction: the hot path of a sale) and releases (inside the commit that ends
//! the reservation, or under a marker per hold).

use kassa_domain::availability::{Availability, SeatEvent, FREE_AFTER};
use kassa_domain::concert::Concert;
use kassa_domain::reservation::Hold;
use kassa_store::counter::Carried;
use kassa_store::{Bounds, Commit, EventStore, Metadata, Step, Stepped, StoreError, StreamId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::OffsetDateTime;
use uuid::Uuid;

/// The counter heads' state schema.
pub const SCHEMA: u32 = 1;

/// The stream of a level's counter.
pub fn level_stream(concert: Uuid, level_id: &str) -> StreamId {
    StreamId::new("Availability", format!("{concert}/{level_id}"))
}

/// What a level counter's head keeps beside its figure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelHead {
    pub concert_id: Uuid,
    pub level_id: String,
}

/// Free seats per level id, as the counters say now (levels without a counter are absent).
pub async fn free_seats(
    store: &EventStore,
    concert: &Concert,
) -> Result<BTreeMap<String, i64>, StoreError> {
    let streams: Vec<StreamId> = concert
        .levels
        .iter()
        .map(|l| level_stream(concert.concert_id, &l.level_id))
        .collect();
    let heads = store.load_many(&streams.iter().collect::<Vec<_>>()).await?;
    Ok(concert
        .levels
        .iter()
        .zip(&streams)
        .filter_map(|(level, stream)| Some((level.level_id.clone(), heads.get(stream)?.counter?)))
        .collect())
}

/// Each level's figures, as the counters say now: a canceled concert offers nothing.
pub async fn availability(
    store: &EventStore,
    concert: &Concert,
) -> Result<BTreeMap<String, Availability>, StoreError> {
    let free = free_seats(store, concert).await?;
    Ok(concert
        .levels
        .iter()
        .map(|level| {
            let free = if concert.is_canceled() {
                0
            } else {
                free.get(&level.level_id).copied().unwrap_or(0)
            };
            (
                level.level_id.clone(),
                Availability::from_free(level.capacity, free),
            )
        })
        .collect())
}

/// Seats held (reserved or sold) per level id, for the concert decider's capacity rule.
pub async fn held(
    store: &EventStore,
    concert: &Concert,
) -> Result<BTreeMap<String, u32>, StoreError> {
    let free = free_seats(store, concert).await?;
    Ok(concert
        .levels
        .iter()
        .map(|level| {
            let free = free.get(&level.level_id).copied().unwrap_or(0);
            (
                level.level_id.clone(),
                Availability::from_free(level.capacity, free).held,
            )
        })
        .collect())
}

/// Stages in `commit` what a concert's change does to its counters: levels that appear
/// are opened with their capacity (or, when an earlier removal left their counter at zero,
/// resized back), levels whose capacity changes are resized by the difference (refused,
/// [`kassa_store::Refusal::OutOfBounds`], if the seats it takes away are not free by the
/// time it commits), levels that go are resized to zero, and a canceled concert's levels
/// are closed.
pub async fn follow(
    store: &EventStore,
    commit: &mut Commit,
    before: Option<&Concert>,
    after: &Concert,
) -> Result<(), StoreError> {
    let concert_id = after.concert_id;
    if after.is_canceled() {
        if !before.is_some_and(Concert::is_canceled) {
            for level in &after.levels {
                commit.close_counter(&level_stream(concert_id, &level.level_id))?;
            }
        }
        return Ok(());
    }
    let capacity_before = |level_id: &str| {
        before
            .and_then(|c| c.level(level_id))
            .map(|l| i64::from(l.capacity))
    };
    let appearing: Vec<StreamId> = after
        .levels
        .iter()
        .filter(|l| capacity_before(&l.level_id).is_none())
        .map(|l| level_stream(concert_id, &l.level_id))
        .collect();
    let existing = if before.is_some() {
        store
            .load_many(&appearing.iter().collect::<Vec<_>>())
            .await?
    } else {
        Default::default()
    };
    for level in &after.levels {
        let stream = level_stream(concert_id, &level.level_id);
        let capacity = i64::from(level.capacity);
        match capacity_before(&level.level_id) {
            Some(before) => resize(commit, &stream, capacity - before)?,
            None if existing.contains_key(&stream) => resize(commit, &stream, capacity)?,
            None => {
                commit.open_counter(
                    &stream,
                    capacity,
                    SCHEMA,
                    &LevelHead {
                        concert_id,
                        level_id: level.level_id.clone(),
                    },
                )?;
            }
        }
    }
    for level in before.map(|c| c.levels.as_slice()).unwrap_or_default() {
        if after.level(&level.level_id).is_none() {
            let stream = level_stream(concert_id, &level.level_id);
            resize(commit, &stream, -i64::from(level.capacity))?;
        }
    }
    Ok(())
}

fn resize(commit: &mut Commit, stream: &StreamId, delta: i64) -> Result<(), StoreError> {
    if delta == 0 {
        return Ok(());
    }
    let bounds = Bounds {
        at_least: (delta < 0).then_some(-delta),
        below: None,
    };
    commit.move_counter::<SeatEvent>(stream, delta, bounds, &[], &[])?;
    Ok(())
}

/// What became of a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// The seats are taken, with the free seats left after.
    Taken { free_after: i64 },
    /// Fewer than asked were free, or the level is closed (its concert canceled) or has no
    /// counter: nothing was taken.
    Refused { free: u32 },
}

/// Takes `hold.seats` of its level for `reservation`: one conditional step, recording
/// `seats.held`. `completes` is set on the reservation's last hold, with the holds taken
/// before it: the reservation is recorded from that event. Throttling and a cold commit
/// holding the head come back as errors for the caller to retry.
pub async fn hold(
    store: &EventStore,
    reservation: Uuid,
    hold: &Hold,
    completes: Option<Vec<Hold>>,
    metadata: &Metadata,
    now: OffsetDateTime,
) -> Result<Held, StoreError> {
    let stream = level_stream(hold.concert_id, &hold.level_id);
    let event = SeatEvent::Held {
        concert_id: hold.concert_id,
        level_id: hold.level_id.clone(),
        seats: hold.seats,
        reservation_id: reservation,
        hold_id: hold.hold_id,
        free_after: 0,
        completes,
    };
    let stepped = store
        .step(Step {
            stream: &stream,
            schema: SCHEMA,
            delta: -i64::from(hold.seats),
            bounds: Bounds {
                at_least: Some(Availability::hold_bound(hold.seats)),
                below: None,
            },
            member: None,
            terms: None,
            while_open: true,
            carried: vec![Carried::new(&event, metadata, now, &[FREE_AFTER])],
            measure: false,
        })
        .await?;
    Ok(match stepped {
        Stepped::Moved { counter, .. } => Held::Taken {
            free_after: counter,
        },
        Stepped::Refused(head) => Held::Refused {
            free: head
                .filter(|h| !h.closed)
                .and_then(|h| h.counter)
                .map_or(0, |c| u32::try_from(c.max(0)).unwrap_or(u32::MAX)),
        },
    })
}

/// Stages in `commit` the marker that settles `hold`'s fate once: the commit recording
/// the reservation that owns it, or the one giving it back as nobody's, whichever comes
/// first; the other is refused ([`kassa_store::Refusal::AlreadyApplied`]).
pub fn settle(commit: &mut Commit, hold: &Hold) -> Result<(), StoreError> {
    let stream = level_stream(hold.concert_id, &hold.level_id);
    commit.mark(&stream, &format!("settled:{}", hold.hold_id))?;
    Ok(())
}

/// Stages the return of `hold` in `commit`, recording `seats.released`. With `once`, the
/// hold is [`settle`]d by it, so the commit is refused if the hold was given back or
/// recorded as owned before; without, the caller's own commit guarantees it (the
/// reservation's version).
pub fn release(
    commit: &mut Commit,
    reservation: Uuid,
    hold: &Hold,
    reason: &str,
    once: bool,
) -> Result<(), StoreError> {
    let stream = level_stream(hold.concert_id, &hold.level_id);
    if once {
        settle(commit, hold)?;
    }
    let event = SeatEvent::Released {
        concert_id: hold.concert_id,
        level_id: hold.level_id.clone(),
        seats: hold.seats,
        reservation_id: reservation,
        hold_id: hold.hold_id,
        reason: reason.to_owned(),
        free_after: 0,
    };
    commit.move_counter(
        &stream,
        i64::from(hold.seats),
        Bounds::default(),
        &[event],
        &[FREE_AFTER],
    )?;
    Ok(())
}
