//! What the concert routes answer: a concert with its levels' live availability. Anyone
//! may read a concert; its organizer and operators also see its door staff and the seats
//! held on each level.

use kassa_domain::availability::Availability;
use kassa_domain::concert::Concert;
use kassa_domain::identity::Actor;
use kassa_domain::money::Money;
use serde::Serialize;
use std::collections::BTreeMap;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Serialize)]
pub struct ConcertView {
    pub concert_id: Uuid,
    pub organizer: String,
    pub artist: String,
    pub venue: String,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    pub currency: &'static str,
    /// `on_sale`, `started` or `canceled`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    pub levels: Vec<LevelView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub door_staff: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
pub struct LevelView {
    pub level_id: String,
    pub name: String,
    pub price: Money,
    pub capacity: u32,
    pub available: u32,
    /// Reserved or sold: for the organizer and operators only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<u32>,
}

impl ConcertView {
    pub fn new(
        concert: &Concert,
        seats: &BTreeMap<String, Availability>,
        viewer: Option<&Actor>,
        now: OffsetDateTime,
    ) -> Self {
        let insider = viewer.is_some_and(|a| concert.admits(a));
        let status = if concert.is_canceled() {
            "canceled"
        } else if concert.has_started(now) {
            "started"
        } else {
            "on_sale"
        };
        Self {
            concert_id: concert.concert_id,
            organizer: concert.organizer.as_str().to_owned(),
            artist: concert.artist.clone(),
            venue: concert.venue.clone(),
            starts_at: concert.starts_at,
            currency: concert.currency.code(),
            status,
            cancel_reason: concert.cancel_reason.clone(),
            levels: concert
                .levels
                .iter()
                .map(|level| {
                    let figures = seats
                        .get(&level.level_id)
                        .copied()
                        .unwrap_or(Availability::new(level.capacity, level.capacity));
                    LevelView {
                        level_id: level.level_id.clone(),
                        name: level.name.clone(),
                        price: level.price,
                        capacity: level.capacity,
                        available: if status == "on_sale" {
                            figures.free()
                        } else {
                            0
                        },
                        held: insider.then_some(figures.held),
                    }
                })
                .collect(),
            door_staff: insider.then(|| {
                concert
                    .door_staff
                    .iter()
                    .map(|u| u.as_str().to_owned())
                    .collect()
            }),
        }
    }
}
