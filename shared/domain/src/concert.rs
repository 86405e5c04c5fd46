//! Concerts (seed 003's concert management): an organizer's event, its ticket levels and
//! their prices, and the door staff who check tickets at the door.
//!
//! Rules: a concert is created by an organizer (for themselves) or an admin (for an
//! organizer) with an artist, a venue, a start in the future and at least one ticket level;
//! levels have unique ids and names, a capacity above zero and a price of zero or more in the
//! concert's currency. Only its organizer or an admin changes a concert, and nothing changes
//! once it is canceled or has started, but for its door staff, who may still change at the
//! door (after the start) until the concert is canceled. A level's capacity never drops
//! below the seats already held on it (reserved + sold), which the caller reads from the
//! level's counter and passes in; removing a level is dropping it to zero.
//!
//! Time comes in with the commands (`now`): the decider never reads a clock.

use crate::availability::Availability;
use crate::event::DomainEvent;
use crate::identity::{Actor, Role, UserId};
use crate::money::{Currency, Money};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use time::OffsetDateTime;
use uuid::Uuid;

/// Longest artist or venue, in characters.
pub const MAX_TEXT_LEN: usize = 200;

/// Most ticket levels one concert offers.
pub const MAX_LEVELS: usize = 20;

/// Longest level id: it names the level's counter in the store.
pub const MAX_LEVEL_ID_LEN: usize = 32;

/// Longest level name, in characters.
pub const MAX_LEVEL_NAME_LEN: usize = 60;

/// Longest cancellation reason, in characters.
pub const MAX_REASON_LEN: usize = 500;

/// One kind of ticket (seed 003: `Regular`, `Golden Circle`) and what it costs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TicketLevel {
    /// Stable key of the level: 1 to 32 of `a-z`, `0-9`, `-` and `_` (`golden-circle`).
    pub level_id: String,
    /// What buyers see (`Golden Circle`).
    pub name: String,
    /// Seats the level offers; more than zero.
    pub capacity: u32,
    /// The price of one seat, in the concert's currency; zero for free tickets.
    pub price: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Concert {
    pub concert_id: Uuid,
    pub organizer: UserId,
    pub artist: String,
    pub venue: String,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    pub currency: Currency,
    pub levels: Vec<TicketLevel>,
    pub door_staff: BTreeSet<UserId>,
    /// Why it was canceled; `None` while it is not.
    pub cancel_reason: Option<String>,
}

impl Concert {
    pub fn is_canceled(&self) -> bool {
        self.cancel_reason.is_some()
    }

    pub fn has_started(&self, now: OffsetDateTime) -> bool {
        now >= self.starts_at
    }

    /// Its organizer and operators may change it.
    pub fn admits(&self, actor: &Actor) -> bool {
        actor.role == Role::Admin || actor.user == self.organizer
    }

    /// Who may check tickets at the door: its door staff, organizer and operators.
    pub fn admits_at_door(&self, actor: &Actor) -> bool {
        self.admits(actor) || self.door_staff.contains(&actor.user)
    }

    pub fn level(&self, level_id: &str) -> Option<&TicketLevel> {
        self.levels.iter().find(|l| l.level_id == level_id)
    }

    /// A level's seats given those held on it: a canceled concert offers none (seed 003
    /// sets its availability to zero), so only releases apply to it.
    pub fn availability(&self, level_id: &str, held: u32) -> Option<Availability> {
        let level = self.level(level_id)?;
        let capacity = if self.is_canceled() {
            0
        } else {
            level.capacity
        };
        Some(Availability::new(capacity, held))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConcertCommand {
    Create {
        concert_id: Uuid,
        organizer: UserId,
        artist: String,
        venue: String,
        starts_at: OffsetDateTime,
        currency: Currency,
        levels: Vec<TicketLevel>,
        now: OffsetDateTime,
    },
    /// Artist, venue and start, all three as they are to be.
    UpdateDetails {
        artist: String,
        venue: String,
        starts_at: OffsetDateTime,
        now: OffsetDateTime,
    },
    /// The levels and prices as they are to be: levels left out are removed.
    UpdateLevels {
        levels: Vec<TicketLevel>,
        /// Seats already held (reserved + sold) per level id, as the level counters say.
        /// Levels not named hold none.
        held: BTreeMap<String, u32>,
        now: OffsetDateTime,
    },
    Cancel {
        reason: String,
        now: OffsetDateTime,
    },
    AddDoorStaff {
        user: UserId,
    },
    RemoveDoorStaff {
        user: UserId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "payload")]
pub enum ConcertEvent {
    #[serde(rename = "concert.created")]
    Created {
        concert_id: Uuid,
        organizer: UserId,
        artist: String,
        venue: String,
        #[serde(with = "time::serde::rfc3339")]
        #[schemars(with = "String")]
        starts_at: OffsetDateTime,
        currency: Currency,
        levels: Vec<TicketLevel>,
    },
    /// Seed 003's `ConcertUpdated`: artist, venue and start as they now are.
    #[serde(rename = "concert.details_updated")]
    DetailsUpdated {
        concert_id: Uuid,
        artist: String,
        venue: String,
        #[serde(with = "time::serde::rfc3339")]
        #[schemars(with = "String")]
        starts_at: OffsetDateTime,
    },
    /// Seed 003's `TicketLevelsUpdated`: every level as it now is.
    #[serde(rename = "concert.ticket_levels_updated")]
    TicketLevelsUpdated {
        concert_id: Uuid,
        levels: Vec<TicketLevel>,
    },
    #[serde(rename = "concert.canceled")]
    Canceled {
        concert_id: Uuid,
        reason: String,
        canceled_by: UserId,
    },
    #[serde(rename = "concert.door_staff_added")]
    DoorStaffAdded { concert_id: Uuid, user: UserId },
    #[serde(rename = "concert.door_staff_removed")]
    DoorStaffRemoved { concert_id: Uuid, user: UserId },
}

impl DomainEvent for ConcertEvent {
    const CONTEXT: &'static str = "concerts";
    const TYPES: &'static [&'static str] = &[
        "concert.created",
        "concert.details_updated",
        "concert.ticket_levels_updated",
        "concert.canceled",
        "concert.door_staff_added",
        "concert.door_staff_removed",
    ];

    fn event_type(&self) -> &'static str {
        match self {
            Self::Created { .. } => "concert.created",
            Self::DetailsUpdated { .. } => "concert.details_updated",
            Self::TicketLevelsUpdated { .. } => "concert.ticket_levels_updated",
            Self::Canceled { .. } => "concert.canceled",
            Self::DoorStaffAdded { .. } => "concert.door_staff_added",
            Self::DoorStaffRemoved { .. } => "concert.door_staff_removed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConcertError {
    #[error("a concert with this id already exists")]
    AlreadyExists,
    #[error("no such concert")]
    NotFound,
    #[error("only organizers and operators create concerts")]
    OrganizersOnly,
    #[error("you may not change this concert")]
    Forbidden,
    #[error("the artist must be 1 to {MAX_TEXT_LEN} characters and not only spaces")]
    InvalidArtist,
    #[error("the venue must be 1 to {MAX_TEXT_LEN} characters and not only spaces")]
    InvalidVenue,
    #[error("the concert must start after {now}")]
    StartsInPast { now: String },
    #[error("a concert offers 1 to {MAX_LEVELS} ticket levels")]
    InvalidLevelCount,
    #[error(
        "level id `{0}` must be 1 to {MAX_LEVEL_ID_LEN} of lower-case letters, digits, `-`, `_`"
    )]
    InvalidLevelId(String),
    #[error("level `{0}` needs a name of 1 to {MAX_LEVEL_NAME_LEN} characters")]
    InvalidLevelName(String),
    #[error("level id `{0}` appears more than once")]
    DuplicateLevelId(String),
    #[error("level name `{0}` appears more than once")]
    DuplicateLevelName(String),
    #[error("level `{0}` must offer at least one seat")]
    InvalidCapacity(String),
    #[error("level `{0}` must cost zero to 999999.99, in whole cents")]
    InvalidPrice(String),
    #[error("level `{level}` is priced in {got}; the concert sells in {expected}")]
    PriceCurrency {
        level: String,
        expected: &'static str,
        got: &'static str,
    },
    #[error("level `{level}` holds {held} seats already; its capacity cannot be {capacity}")]
    CapacityBelowHeld {
        level: String,
        capacity: u32,
        held: u32,
    },
    #[error("the concert is canceled")]
    Canceled,
    #[error("the concert is already canceled")]
    AlreadyCanceled,
    #[error("the concert has started")]
    Started,
    #[error("a cancellation needs a reason of 1 to {MAX_REASON_LEN} characters")]
    InvalidReason,
    #[error("{0} is already door staff of this concert")]
    AlreadyDoorStaff(UserId),
    #[error("{0} is not door staff of this concert")]
    NotDoorStaff(UserId),
}

impl ConcertError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::AlreadyExists => "concert_exists",
            Self::NotFound => "concert_not_found",
            Self::OrganizersOnly => "organizers_only",
            Self::Forbidden => "forbidden",
            Self::InvalidArtist => "invalid_artist",
            Self::InvalidVenue => "invalid_venue",
            Self::StartsInPast { .. } => "starts_in_past",
            Self::InvalidLevelCount => "invalid_level_count",
            Self::InvalidLevelId(_) => "invalid_level_id",
            Self::InvalidLevelName(_) => "invalid_level_name",
            Self::DuplicateLevelId(_) => "duplicate_level_id",
            Self::DuplicateLevelName(_) => "duplicate_level_name",
            Self::InvalidCapacity(_) => "invalid_capacity",
            Self::InvalidPrice(_) => "invalid_price",
            Self::PriceCurrency { .. } => "currency_mismatch",
            Self::CapacityBelowHeld { .. } => "capacity_below_held",
            Self::Canceled => "concert_canceled",
            Self::AlreadyCanceled => "already_canceled",
            Self::Started => "concert_started",
            Self::InvalidReason => "invalid_reason",
            Self::AlreadyDoorStaff(_) => "already_door_staff",
            Self::NotDoorStaff(_) => "not_door_staff",
        }
    }
}

pub fn decide(
    state: Option<&Concert>,
    command: ConcertCommand,
    actor: &Actor,
) -> Result<Vec<ConcertEvent>, ConcertError> {
    match (state, command) {
        (Some(_), ConcertCommand::Create { .. }) => Err(ConcertError::AlreadyExists),
        (
            None,
            ConcertCommand::Create {
                concert_id,
                organizer,
                artist,
                venue,
                starts_at,
                currency,
                levels,
                now,
            },
        ) => {
            match actor.role {
                Role::Admin => {}
                Role::Organizer if actor.user == organizer => {}
                Role::Organizer => return Err(ConcertError::Forbidden),
                Role::User | Role::System => return Err(ConcertError::OrganizersOnly),
            }
            let (artist, venue) = details(&artist, &venue, starts_at, now)?;
            let levels = valid_levels(levels, currency)?;
            Ok(vec![ConcertEvent::Created {
                concert_id,
                organizer,
                artist,
                venue,
                starts_at,
                currency,
                levels,
            }])
        }
        (None, _) => Err(ConcertError::NotFound),
        (Some(concert), command) => {
            if !concert.admits(actor) {
                return Err(ConcertError::Forbidden);
            }
            change(concert, command, actor)
        }
    }
}

/// A command to an existing concert, by someone it admits.
fn change(
    concert: &Concert,
    command: ConcertCommand,
    actor: &Actor,
) -> Result<Vec<ConcertEvent>, ConcertError> {
    let concert_id = concert.concert_id;
    match command {
        ConcertCommand::Create { .. } => Err(ConcertError::AlreadyExists),
        ConcertCommand::Cancel { reason, now } => {
            if concert.is_canceled() {
                return Err(ConcertError::AlreadyCanceled);
            }
            if concert.has_started(now) {
                return Err(ConcertError::Started);
            }
            let reason = reason.trim().to_owned();
            if reason.is_empty() || reason.chars().count() > MAX_REASON_LEN {
                return Err(ConcertError::InvalidReason);
            }
            Ok(vec![ConcertEvent::Canceled {
                concert_id,
                reason,
                canceled_by: actor.user.clone(),
            }])
        }
        _ if concert.is_canceled() => Err(ConcertError::Canceled),
        ConcertCommand::UpdateDetails {
            artist,
            venue,
            starts_at,
            now,
        } => {
            if concert.has_started(now) {
                return Err(ConcertError::Started);
            }
            let (artist, venue) = details(&artist, &venue, starts_at, now)?;
            if artist == concert.artist && venue == concert.venue && starts_at == concert.starts_at
            {
                return Ok(vec![]);
            }
            Ok(vec![ConcertEvent::DetailsUpdated {
                concert_id,
                artist,
                venue,
                starts_at,
            }])
        }
        ConcertCommand::UpdateLevels { levels, held, now } => {
            if concert.has_started(now) {
                return Err(ConcertError::Started);
            }
            let levels = valid_levels(levels, concert.currency)?;
            for (level_id, held) in held {
                let capacity = levels
                    .iter()
                    .find(|l| l.level_id == level_id)
                    .map_or(0, |l| l.capacity);
                if held > capacity {
                    return Err(ConcertError::CapacityBelowHeld {
                        level: level_id,
                        capacity,
                        held,
                    });
                }
            }
            if levels == concert.levels {
                return Ok(vec![]);
            }
            Ok(vec![ConcertEvent::TicketLevelsUpdated {
                concert_id,
                levels,
            }])
        }
        ConcertCommand::AddDoorStaff { user } => {
            if concert.door_staff.contains(&user) {
                return Err(ConcertError::AlreadyDoorStaff(user));
            }
            Ok(vec![ConcertEvent::DoorStaffAdded { concert_id, user }])
        }
        ConcertCommand::RemoveDoorStaff { user } => {
            if !concert.door_staff.contains(&user) {
                return Err(ConcertError::NotDoorStaff(user));
            }
            Ok(vec![ConcertEvent::DoorStaffRemoved { concert_id, user }])
        }
    }
}

/// The artist and venue trimmed, for a concert starting after `now`.
fn details(
    artist: &str,
    venue: &str,
    starts_at: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<(String, String), ConcertError> {
    let artist = text(artist, MAX_TEXT_LEN).ok_or(ConcertError::InvalidArtist)?;
    let venue = text(venue, MAX_TEXT_LEN).ok_or(ConcertError::InvalidVenue)?;
    if starts_at <= now {
        return Err(ConcertError::StartsInPast {
            now: now.to_string(),
        });
    }
    Ok((artist, venue))
}

/// `s` trimmed, when 1 to `max` characters remain.
fn text(s: &str, max: usize) -> Option<String> {
    let s = s.trim();
    (!s.is_empty() && s.chars().count() <= max).then(|| s.to_owned())
}

/// Whether `id` may name a ticket level (it becomes part of a counter's key).
pub fn valid_level_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEVEL_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Whether `price` can be charged for a seat (see [`Money::is_price`]).
pub fn valid_price(price: Money) -> bool {
    price.is_price()
}

/// The levels with their names trimmed, when every rule holds for them.
fn valid_levels(
    levels: Vec<TicketLevel>,
    currency: Currency,
) -> Result<Vec<TicketLevel>, ConcertError> {
    if levels.is_empty() || levels.len() > MAX_LEVELS {
        return Err(ConcertError::InvalidLevelCount);
    }
    let mut ids = BTreeSet::new();
    let mut names = BTreeSet::new();
    levels
        .into_iter()
        .map(|level| {
            let level_id = level.level_id;
            if !valid_level_id(&level_id) {
                return Err(ConcertError::InvalidLevelId(level_id));
            }
            let Some(name) = text(&level.name, MAX_LEVEL_NAME_LEN) else {
                return Err(ConcertError::InvalidLevelName(level_id));
            };
            if !ids.insert(level_id.clone()) {
                return Err(ConcertError::DuplicateLevelId(level_id));
            }
            if !names.insert(name.to_lowercase()) {
                return Err(ConcertError::DuplicateLevelName(name));
            }
            if level.capacity == 0 {
                return Err(ConcertError::InvalidCapacity(level_id));
            }
            if level.price.currency != currency {
                return Err(ConcertError::PriceCurrency {
                    level: level_id,
                    expected: currency.code(),
                    got: level.price.currency.code(),
                });
            }
            if !valid_price(level.price) {
                return Err(ConcertError::InvalidPrice(level_id));
            }
            Ok(TicketLevel {
                level_id,
                name,
                capacity: level.capacity,
                price: level.price.in_minor_digits(),
            })
        })
        .collect()
}

pub fn evolve(state: Option<Concert>, event: &ConcertEvent) -> Option<Concert> {
    match (state, event) {
        (
            None,
            ConcertEvent::Created {
                concert_id,
                organizer,
                artist,
                venue,
                starts_at,
                currency,
                levels,
            },
        ) => Some(Concert {
            concert_id: *concert_id,
            organizer: organizer.clone(),
            artist: artist.clone(),
            venue: venue.clone(),
            starts_at: *starts_at,
            currency: *currency,
            levels: levels.clone(),
            door_staff: BTreeSet::new(),
            cancel_reason: None,
        }),
        (
            Some(mut c),
            ConcertEvent::DetailsUpdated {
                artist,
                venue,
                starts_at,
                ..
            },
        ) => {
            c.artist = artist.clone();
            c.venue = venue.clone();
            c.starts_at = *starts_at;
            Some(c)
        }
        (Some(mut c), ConcertEvent::TicketLevelsUpdated { levels, .. }) => {
            c.levels = levels.clone();
            Some(c)
        }
        (Some(mut c), ConcertEvent::Canceled { reason, .. }) => {
            c.cancel_reason = Some(reason.clone());
            Some(c)
        }
        (Some(mut c), ConcertEvent::DoorStaffAdded { user, .. }) => {
            c.door_staff.insert(user.clone());
            Some(c)
        }
        (Some(mut c), ConcertEvent::DoorStaffRemoved { user, .. }) => {
            c.door_staff.remove(user);
            Some(c)
        }
        // Events that do not apply leave the state as it is: replay must not panic.
        (state, _) => state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::ByActor;
    use crate::scenario::given;
    use rust_decimal::Decimal;
    use std::str::FromStr;
    use time::macros::datetime;

    const ID: Uuid = Uuid::from_u128(3);
    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
    const STARTS: OffsetDateTime = datetime!(2026-06-20 20:00 UTC);

    fn usd(amount: &str) -> Money {
        Money::new(Decimal::from_str(amount).unwrap(), Currency::Usd)
    }

    fn level(id: &str, name: &str, capacity: u32, price: &str) -> TicketLevel {
        TicketLevel {
            level_id: id.into(),
            name: name.into(),
            capacity,
            price: usd(price),
        }
    }

    fn levels() -> Vec<TicketLevel> {
        vec![
            level("regular", "Regular", 1000, "49.99"),
            level("golden-circle", "Golden Circle", 100, "199.00"),
        ]
    }

    fn by(actor: Actor, command: ConcertCommand) -> ByActor<ConcertCommand> {
        ByActor { command, actor }
    }

    fn ann() -> Actor {
        Actor::organizer("ann")
    }

    fn create_with(levels: Vec<TicketLevel>) -> ConcertCommand {
        ConcertCommand::Create {
            concert_id: ID,
            organizer: UserId::new("ann"),
            artist: " Beyoncé ".into(),
            venue: "PGE Narodowy, Warsaw".into(),
            starts_at: STARTS,
            currency: Currency::Usd,
            levels,
            now: NOW,
        }
    }

    fn created() -> ConcertEvent {
        ConcertEvent::Created {
            concert_id: ID,
            organizer: UserId::new("ann"),
            artist: "Beyoncé".into(),
            venue: "PGE Narodowy, Warsaw".into(),
            starts_at: STARTS,
            currency: Currency::Usd,
            levels: levels(),
        }
    }

    fn canceled() -> ConcertEvent {
        ConcertEvent::Canceled {
            concert_id: ID,
            reason: "illness".into(),
            canceled_by: UserId::new("ann"),
        }
    }

    fn update_levels(levels: Vec<TicketLevel>, held: &[(&str, u32)]) -> ConcertCommand {
        ConcertCommand::UpdateLevels {
            levels,
            held: held.iter().map(|(id, n)| (id.to_string(), *n)).collect(),
            now: NOW,
        }
    }

    fn update_details(artist: &str, starts_at: OffsetDateTime) -> ConcertCommand {
        ConcertCommand::UpdateDetails {
            artist: artist.into(),
            venue: "PGE Narodowy, Warsaw".into(),
            starts_at,
            now: NOW,
        }
    }

    fn cancel(now: OffsetDateTime) -> ConcertCommand {
        ConcertCommand::Cancel {
            reason: " illness ".into(),
            now,
        }
    }

    fn staff(user: &str) -> ConcertCommand {
        ConcertCommand::AddDoorStaff {
            user: UserId::new(user),
        }
    }

    #[test]
    fn an_organizer_creates_a_concert_for_themselves() {
        let concert = given::<Concert>([])
            .when(by(ann(), create_with(levels())))
            .then([created()])
            .unwrap();
        assert_eq!(concert.level("golden-circle").unwrap().capacity, 100);
        assert!(!concert.is_canceled());
        assert!(concert.admits(&Actor::user("ann")));
    }

    #[test]
    fn an_admin_creates_a_concert_for_an_organizer() {
        given::<Concert>([])
            .when(by(Actor::admin("ops"), create_with(levels())))
            .then([created()]);
    }

    #[test]
    fn users_and_handlers_do_not_create_concerts() {
        for actor in [Actor::user("ann"), Actor::system("import")] {
            given::<Concert>([])
                .when(by(actor, create_with(levels())))
                .then_refused(ConcertError::OrganizersOnly);
        }
    }

    #[test]
    fn an_organizer_does_not_create_a_concert_for_another() {
        given::<Concert>([])
            .when(by(Actor::organizer("bob"), create_with(levels())))
            .then_refused(ConcertError::Forbidden);
    }

    #[test]
    fn creating_twice_is_refused() {
        given::<Concert>([created()])
            .when(by(ann(), create_with(levels())))
            .then_refused(ConcertError::AlreadyExists);
    }

    #[test]
    fn a_concert_needs_an_artist_and_a_venue() {
        let mut blank_artist = create_with(levels());
        let mut long_venue = create_with(levels());
        if let ConcertCommand::Create { artist, .. } = &mut blank_artist {
            *artist = "   ".into();
        }
        if let ConcertCommand::Create { venue, .. } = &mut long_venue {
            *venue = "v".repeat(MAX_TEXT_LEN + 1);
        }
        given::<Concert>([])
            .when(by(ann(), blank_artist))
            .then_refused(ConcertError::InvalidArtist);
        given::<Concert>([])
            .when(by(ann(), long_venue))
            .then_refused(ConcertError::InvalidVenue);
    }

    #[test]
    fn a_concert_starts_in_the_future() {
        for starts_at in [NOW, datetime!(2026-02-28 20:00 UTC)] {
            let mut command = create_with(levels());
            if let ConcertCommand::Create { starts_at: s, .. } = &mut command {
                *s = starts_at;
            }
            given::<Concert>([]).when(by(ann(), command)).then_refused(
                ConcertError::StartsInPast {
                    now: NOW.to_string(),
                },
            );
        }
    }

    #[test]
    fn a_concert_offers_at_least_one_and_at_most_max_levels() {
        given::<Concert>([])
            .when(by(ann(), create_with(vec![])))
            .then_refused(ConcertError::InvalidLevelCount);
        let many = (0..=MAX_LEVELS)
            .map(|i| level(&format!("l{i}"), &format!("Level {i}"), 1, "1"))
            .collect();
        given::<Concert>([])
            .when(by(ann(), create_with(many)))
            .then_refused(ConcertError::InvalidLevelCount);
    }

    #[test]
    fn level_ids_are_short_lower_case_keys() {
        for id in [
            "",
            "Regular",
            "vip seats",
            "vip#1",
            &"x".repeat(MAX_LEVEL_ID_LEN + 1),
        ] {
            given::<Concert>([])
                .when(by(ann(), create_with(vec![level(id, "VIP", 10, "1")])))
                .then_refused(ConcertError::InvalidLevelId(id.into()));
        }
        assert!(valid_level_id("golden_circle-2"));
    }

    #[test]
    fn levels_need_a_name() {
        given::<Concert>([])
            .when(by(ann(), create_with(vec![level("vip", "  ", 10, "1")])))
            .then_refused(ConcertError::InvalidLevelName("vip".into()));
    }

    #[test]
    fn level_ids_and_names_are_unique() {
        let same_id = vec![level("vip", "VIP", 10, "1"), level("vip", "Other", 10, "1")];
        given::<Concert>([])
            .when(by(ann(), create_with(same_id)))
            .then_refused(ConcertError::DuplicateLevelId("vip".into()));
        // Names compare trimmed and whatever their case.
        let same_name = vec![level("a", "VIP", 10, "1"), level("b", " vip ", 10, "1")];
        given::<Concert>([])
            .when(by(ann(), create_with(same_name)))
            .then_refused(ConcertError::DuplicateLevelName("vip".into()));
    }

    #[test]
    fn a_level_offers_at_least_one_seat() {
        given::<Concert>([])
            .when(by(ann(), create_with(vec![level("vip", "VIP", 0, "1")])))
            .then_refused(ConcertError::InvalidCapacity("vip".into()));
    }

    #[test]
    fn prices_are_zero_or_more_in_whole_cents() {
        for price in ["-0.01", "10.005"] {
            given::<Concert>([])
                .when(by(ann(), create_with(vec![level("vip", "VIP", 5, price)])))
                .then_refused(ConcertError::InvalidPrice("vip".into()));
        }
        // Free tickets, and trailing zeros past the cents, are fine.
        given::<Concert>([])
            .when(by(
                ann(),
                create_with(vec![
                    level("free", "Free", 5, "0"),
                    level("vip", "VIP", 5, "10.5000"),
                ]),
            ))
            .outcome()
            .unwrap();
    }

    #[test]
    fn prices_are_in_the_concerts_currency() {
        let mut eur = level("vip", "VIP", 5, "10");
        eur.price.currency = Currency::Eur;
        given::<Concert>([])
            .when(by(ann(), create_with(vec![eur])))
            .then_refused(ConcertError::PriceCurrency {
                level: "vip".into(),
                expected: "USD",
                got: "EUR",
            });
    }

    #[test]
    fn commands_to_an_unknown_concert_are_refused() {
        given::<Concert>([])
            .when(by(ann(), cancel(NOW)))
            .then_refused(ConcertError::NotFound);
    }

    #[test]
    fn only_the_organizer_or_an_admin_changes_a_concert() {
        for actor in [
            Actor::organizer("bob"),
            Actor::user("mallory"),
            Actor::system("x"),
        ] {
            given::<Concert>([created()])
                .when(by(actor, cancel(NOW)))
                .then_refused(ConcertError::Forbidden);
        }
        given::<Concert>([created()])
            .when(by(Actor::admin("ops"), cancel(NOW)))
            .then([ConcertEvent::Canceled {
                concert_id: ID,
                reason: "illness".into(),
                canceled_by: UserId::new("ops"),
            }]);
    }

    #[test]
    fn updating_details_records_them_all() {
        let later = datetime!(2026-06-21 20:00 UTC);
        let concert = given::<Concert>([created()])
            .when(by(ann(), update_details("Beyoncé & guests", later)))
            .then([ConcertEvent::DetailsUpdated {
                concert_id: ID,
                artist: "Beyoncé & guests".into(),
                venue: "PGE Narodowy, Warsaw".into(),
                starts_at: later,
            }])
            .unwrap();
        assert_eq!(concert.starts_at, later);
    }

    #[test]
    fn details_as_they_are_record_nothing() {
        given::<Concert>([created()])
            .when(by(ann(), update_details("Beyoncé", STARTS)))
            .then([]);
    }

    #[test]
    fn details_follow_the_rules_of_creation() {
        given::<Concert>([created()])
            .when(by(ann(), update_details("", STARTS)))
            .then_refused(ConcertError::InvalidArtist);
        given::<Concert>([created()])
            .when(by(ann(), update_details("Beyoncé", NOW)))
            .then_refused(ConcertError::StartsInPast {
                now: NOW.to_string(),
            });
    }

    #[test]
    fn updating_levels_records_every_level() {
        let new = vec![
            level("regular", "Regular", 1200, "59.99"),
            level("vip", "VIP", 20, "499.00"),
        ];
        let concert = given::<Concert>([created()])
            .when(by(ann(), update_levels(new.clone(), &[("regular", 1200)])))
            .then([ConcertEvent::TicketLevelsUpdated {
                concert_id: ID,
                levels: new,
            }])
            .unwrap();
        assert!(concert.level("golden-circle").is_none());
        assert_eq!(concert.level("vip").unwrap().price, usd("499.00"));
    }

    #[test]
    fn levels_as_they_are_record_nothing() {
        given::<Concert>([created()])
            .when(by(ann(), update_levels(levels(), &[("regular", 3)])))
            .then([]);
    }

    #[test]
    fn updated_levels_follow_the_rules_of_creation() {
        given::<Concert>([created()])
            .when(by(ann(), update_levels(vec![], &[])))
            .then_refused(ConcertError::InvalidLevelCount);
        let mut eur = level("vip", "VIP", 5, "10");
        eur.price.currency = Currency::Eur;
        given::<Concert>([created()])
            .when(by(ann(), update_levels(vec![eur], &[])))
            .then_refused(ConcertError::PriceCurrency {
                level: "vip".into(),
                expected: "USD",
                got: "EUR",
            });
    }

    #[test]
    fn a_capacity_never_drops_below_the_seats_held() {
        let smaller = vec![
            level("regular", "Regular", 1000, "49.99"),
            level("golden-circle", "Golden Circle", 40, "199.00"),
        ];
        given::<Concert>([created()])
            .when(by(
                ann(),
                update_levels(smaller.clone(), &[("golden-circle", 41)]),
            ))
            .then_refused(ConcertError::CapacityBelowHeld {
                level: "golden-circle".into(),
                capacity: 40,
                held: 41,
            });
        // Down to exactly the seats held is fine.
        given::<Concert>([created()])
            .when(by(ann(), update_levels(smaller, &[("golden-circle", 40)])))
            .outcome()
            .unwrap();
    }

    #[test]
    fn a_level_with_seats_held_is_not_removed() {
        let without_golden = vec![level("regular", "Regular", 1000, "49.99")];
        given::<Concert>([created()])
            .when(by(
                ann(),
                update_levels(without_golden.clone(), &[("golden-circle", 1)]),
            ))
            .then_refused(ConcertError::CapacityBelowHeld {
                level: "golden-circle".into(),
                capacity: 0,
                held: 1,
            });
        given::<Concert>([created()])
            .when(by(
                ann(),
                update_levels(without_golden, &[("golden-circle", 0)]),
            ))
            .outcome()
            .unwrap();
    }

    #[test]
    fn canceling_records_the_reason_trimmed_and_who_canceled() {
        let concert = given::<Concert>([created()])
            .when(by(ann(), cancel(NOW)))
            .then([canceled()])
            .unwrap();
        assert!(concert.is_canceled());
        assert_eq!(concert.cancel_reason.as_deref(), Some("illness"));
    }

    #[test]
    fn a_cancellation_needs_a_reason() {
        for reason in ["  ".to_owned(), "r".repeat(MAX_REASON_LEN + 1)] {
            given::<Concert>([created()])
                .when(by(ann(), ConcertCommand::Cancel { reason, now: NOW }))
                .then_refused(ConcertError::InvalidReason);
        }
    }

    #[test]
    fn canceling_twice_is_refused() {
        given::<Concert>([created(), canceled()])
            .when(by(ann(), cancel(NOW)))
            .then_refused(ConcertError::AlreadyCanceled);
    }

    #[test]
    fn nothing_changes_after_cancellation() {
        for command in [
            update_details("Someone else", STARTS),
            update_levels(levels(), &[]),
            staff("dan"),
            ConcertCommand::RemoveDoorStaff {
                user: UserId::new("dan"),
            },
        ] {
            given::<Concert>([created(), canceled()])
                .when(by(ann(), command))
                .then_refused(ConcertError::Canceled);
        }
    }

    #[test]
    fn nothing_but_door_staff_changes_once_the_concert_started() {
        let later = datetime!(2026-06-20 20:30 UTC);
        for mut command in [
            update_details("Beyoncé", datetime!(2026-06-21 20:00 UTC)),
            update_levels(levels(), &[]),
            cancel(STARTS),
        ] {
            match &mut command {
                ConcertCommand::UpdateDetails { now, .. }
                | ConcertCommand::UpdateLevels { now, .. }
                | ConcertCommand::Cancel { now, .. } => *now = later,
                _ => {}
            }
            given::<Concert>([created()])
                .when(by(ann(), command))
                .then_refused(ConcertError::Started);
        }
        // At the start itself the concert has started.
        given::<Concert>([created()])
            .when(by(ann(), cancel(STARTS)))
            .then_refused(ConcertError::Started);
        given::<Concert>([created()])
            .when(by(ann(), staff("dan")))
            .then([ConcertEvent::DoorStaffAdded {
                concert_id: ID,
                user: UserId::new("dan"),
            }]);
    }

    #[test]
    fn door_staff_are_added_once_and_removed_once() {
        let added = ConcertEvent::DoorStaffAdded {
            concert_id: ID,
            user: UserId::new("dan"),
        };
        let concert = given::<Concert>([created()])
            .when(by(ann(), staff("dan")))
            .then([added.clone()])
            .unwrap();
        assert!(concert.admits_at_door(&Actor::user("dan")));
        assert!(!concert.admits(&Actor::user("dan")));
        given::<Concert>([created(), added.clone()])
            .when(by(ann(), staff("dan")))
            .then_refused(ConcertError::AlreadyDoorStaff(UserId::new("dan")));
        let remove = ConcertCommand::RemoveDoorStaff {
            user: UserId::new("dan"),
        };
        let concert = given::<Concert>([created(), added])
            .when(by(ann(), remove.clone()))
            .then([ConcertEvent::DoorStaffRemoved {
                concert_id: ID,
                user: UserId::new("dan"),
            }])
            .unwrap();
        assert!(!concert.admits_at_door(&Actor::user("dan")));
        given::<Concert>([created()])
            .when(by(ann(), remove))
            .then_refused(ConcertError::NotDoorStaff(UserId::new("dan")));
    }

    #[test]
    fn door_staff_do_not_change_the_concert() {
        let added = ConcertEvent::DoorStaffAdded {
            concert_id: ID,
            user: UserId::new("dan"),
        };
        given::<Concert>([created(), added])
            .when(by(Actor::user("dan"), staff("eve")))
            .then_refused(ConcertError::Forbidden);
    }

    #[test]
    fn a_canceled_concert_offers_no_seats_but_takes_releases() {
        let open = given::<Concert>([created()]).state().cloned().unwrap();
        assert_eq!(
            open.availability("golden-circle", 30),
            Some(Availability::new(100, 30))
        );
        assert_eq!(open.availability("nope", 0), None);
        let gone = given::<Concert>([created(), canceled()])
            .state()
            .cloned()
            .unwrap();
        let level = gone.availability("golden-circle", 30).unwrap();
        assert_eq!(level.free(), 0);
        assert!(level.reserve(1).is_err());
        assert_eq!(level.release(30).map(|l| l.held), Ok(0));
    }

    #[test]
    fn every_error_has_a_distinct_code() {
        let user = UserId::new("u");
        let errors = [
            ConcertError::AlreadyExists,
            ConcertError::NotFound,
            ConcertError::OrganizersOnly,
            ConcertError::Forbidden,
            ConcertError::InvalidArtist,
            ConcertError::InvalidVenue,
            ConcertError::StartsInPast { now: String::new() },
            ConcertError::InvalidLevelCount,
            ConcertError::InvalidLevelId(String::new()),
            ConcertError::InvalidLevelName(String::new()),
            ConcertError::DuplicateLevelId(String::new()),
            ConcertError::DuplicateLevelName(String::new()),
            ConcertError::InvalidCapacity(String::new()),
            ConcertError::InvalidPrice(String::new()),
            ConcertError::PriceCurrency {
                level: String::new(),
                expected: "USD",
                got: "EUR",
            },
            ConcertError::CapacityBelowHeld {
                level: String::new(),
                capacity: 0,
                held: 1,
            },
            ConcertError::Canceled,
            ConcertError::AlreadyCanceled,
            ConcertError::Started,
            ConcertError::InvalidReason,
            ConcertError::AlreadyDoorStaff(user.clone()),
            ConcertError::NotDoorStaff(user),
        ];
        let codes: BTreeSet<&str> = errors.iter().map(ConcertError::code).collect();
        assert_eq!(codes.len(), errors.len());
    }

    fn every_event() -> Vec<ConcertEvent> {
        vec![
            created(),
            ConcertEvent::DetailsUpdated {
                concert_id: ID,
                artist: "Beyoncé".into(),
                venue: "Stadion Śląski".into(),
                starts_at: STARTS,
            },
            ConcertEvent::TicketLevelsUpdated {
                concert_id: ID,
                levels: levels(),
            },
            canceled(),
            ConcertEvent::DoorStaffAdded {
                concert_id: ID,
                user: UserId::new("dan"),
            },
            ConcertEvent::DoorStaffRemoved {
                concert_id: ID,
                user: UserId::new("dan"),
            },
        ]
    }

    #[test]
    fn events_round_trip_through_type_and_payload() {
        let events = every_event();
        let types: Vec<&str> = events.iter().map(ConcertEvent::event_type).collect();
        assert_eq!(types, ConcertEvent::TYPES);
        for event in events {
            let back = ConcertEvent::from_parts(event.event_type(), event.payload()).unwrap();
            assert_eq!(back, event);
        }
    }

    #[test]
    fn the_type_list_matches_the_variants() {
        let mut from_schema = crate::catalog::schema_types::<ConcertEvent>();
        from_schema.sort();
        let mut declared: Vec<String> = ConcertEvent::TYPES.iter().map(|t| t.to_string()).collect();
        declared.sort();
        assert_eq!(from_schema, declared);
    }

    #[test]
    fn prices_are_written_as_decimal_strings() {
        let payload = created().payload();
        assert_eq!(
            payload["levels"][0]["price"],
            serde_json::json!({ "amount": "49.99", "currency": "USD" })
        );
        assert_eq!(payload["starts_at"], "2026-06-20T20:00:00Z");
    }
}
