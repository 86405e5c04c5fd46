//! The organizer's commands. Each loads the concert, decides, and commits its events with
//! what they do to the level counters and the upcoming index.

use crate::view::ConcertView;
use crate::{failed, refused, Concerts, MAX_PAGE};
use kassa_commerce::{seats, Fail, Tx};
use kassa_domain::aggregate::ByActor;
use kassa_domain::concert::{Concert, ConcertCommand, ConcertError, TicketLevel};
use kassa_domain::identity::{Actor, Role, UserId};
use kassa_domain::money::Currency;
use kassa_runtime::http::{
    cursor_param, json_body, limit_param, request_id, string_param, uuid_param,
};
use kassa_runtime::{access, caller, Problem};
use kassa_store::{Loaded, Metadata, StoreError};
use lambda_http::Request;
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewConcert {
    artist: String,
    venue: String,
    #[serde(with = "time::serde::rfc3339")]
    starts_at: OffsetDateTime,
    currency: Currency,
    levels: Vec<TicketLevel>,
    /// An operator creates a concert for an organizer; an organizer for themselves.
    organizer: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Details {
    artist: Option<String>,
    venue: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    starts_at: Option<OffsetDateTime>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Levels {
    levels: Vec<TicketLevel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cancellation {
    reason: String,
}

impl Concerts {
    pub(crate) async fn create(&self, request: &Request) -> Result<ConcertView, Problem> {
        let actor = access::recorded(self.kernel.store(), caller(request)?).await?;
        let body: NewConcert = json_body(request)?;
        let organizer = match (body.organizer, actor.role) {
            (Some(o), Role::Admin) => {
                // A concert nobody can manage but admins is a typo, not a choice.
                let o = o.trim();
                if o.is_empty() || o.len() > 128 {
                    return Err(Problem::new(
                        422,
                        "invalid_organizer",
                        "organizer must be a user id of 1 to 128 characters",
                    ));
                }
                UserId::new(o)
            }
            (Some(o), _) if o != actor.user.as_str() => {
                return Err(refused(ConcertError::Forbidden))
            }
            _ => actor.user.clone(),
        };
        let command = ConcertCommand::Create {
            concert_id: Uuid::now_v7(),
            organizer,
            artist: body.artist,
            venue: body.venue,
            starts_at: body.starts_at,
            currency: body.currency,
            levels: body.levels,
            now: self.kernel.clock().now(),
        };
        let id = match &command {
            ConcertCommand::Create { concert_id, .. } => *concert_id,
            _ => unreachable!("built above"),
        };
        self.change(request, &actor, id, move |_| command.clone())
            .await
    }

    pub(crate) async fn update(&self, request: &Request) -> Result<ConcertView, Problem> {
        let actor = access::recorded(self.kernel.store(), caller(request)?).await?;
        let id = concert_id(request)?;
        let body: Details = json_body(request)?;
        let now = self.kernel.clock().now();
        self.change(request, &actor, id, move |concert| {
            let current = concert.state.as_ref();
            ConcertCommand::UpdateDetails {
                artist: body
                    .artist
                    .clone()
                    .or_else(|| current.map(|c| c.artist.clone()))
                    .unwrap_or_default(),
                venue: body
                    .venue
                    .clone()
                    .or_else(|| current.map(|c| c.venue.clone()))
                    .unwrap_or_default(),
                starts_at: body
                    .starts_at
                    .or_else(|| current.map(|c| c.starts_at))
                    .unwrap_or(now),
                now,
            }
        })
        .await
    }

    pub(crate) async fn levels(&self, request: &Request) -> Result<ConcertView, Problem> {
        let actor = access::recorded(self.kernel.store(), caller(request)?).await?;
        let id = concert_id(request)?;
        let body: Levels = json_body(request)?;
        let now = self.kernel.clock().now();
        let store = self.kernel.store().clone();
        let body = &body;
        let store = &store;
        self.change_async(
            request,
            &actor,
            id,
            move |concert: Loaded<Concert>| async move {
                let held = match &concert.state {
                    Some(c) => seats::held(store, c).await?,
                    None => Default::default(),
                };
                Ok(ConcertCommand::UpdateLevels {
                    levels: body.levels.clone(),
                    held,
                    now,
                })
            },
        )
        .await
    }

    pub(crate) async fn cancel(&self, request: &Request) -> Result<ConcertView, Problem> {
        let actor = access::recorded(self.kernel.store(), caller(request)?).await?;
        let id = concert_id(request)?;
        let body: Cancellation = json_body(request)?;
        let now = self.kernel.clock().now();
        self.change(request, &actor, id, move |_| ConcertCommand::Cancel {
            reason: body.reason.clone(),
            now,
        })
        .await
    }

    pub(crate) async fn door_staff(
        &self,
        request: &Request,
        add: bool,
    ) -> Result<ConcertView, Problem> {
        let actor = access::recorded(self.kernel.store(), caller(request)?).await?;
        let id = concert_id(request)?;
        let user = UserId::new(string_param(request, "userId")?);
        self.change(request, &actor, id, move |_| match add {
            true => ConcertCommand::AddDoorStaff { user: user.clone() },
            false => ConcertCommand::RemoveDoorStaff { user: user.clone() },
        })
        .await
    }

    pub(crate) async fn get(&self, request: &Request) -> Result<ConcertView, Problem> {
        let id = concert_id(request)?;
        let store = self.kernel.store();
        let concert = store
            .load_aggregate::<Concert>(&id)
            .await
            .map_err(|e| failed(Fail::Store(e)))?
            .state
            .ok_or_else(|| refused(ConcertError::NotFound))?;
        let seats = seats::availability(store, &concert)
            .await
            .map_err(|e| failed(Fail::Store(e)))?;
        Ok(ConcertView::new(
            &concert,
            &seats,
            None,
            self.kernel.clock().now(),
        ))
    }

    pub(crate) async fn list(&self, request: &Request) -> Result<serde_json::Value, Problem> {
        let limit = limit_param(request, 20, MAX_PAGE)?;
        let after = cursor_param(request)?;
        let (concerts, next) = self
            .upcoming
            .page(self.kernel.clock().now(), after.as_deref(), limit)
            .await
            .map_err(|e| failed(Fail::Store(e)))?;
        Ok(serde_json::json!({ "concerts": concerts, "next": next }))
    }

    /// Decides the command `make` builds from the concert as loaded, then commits its
    /// events with the counters and index entry they move.
    async fn change(
        &self,
        request: &Request,
        actor: &Actor,
        id: Uuid,
        make: impl Fn(&Loaded<Concert>) -> ConcertCommand + Sync,
    ) -> Result<ConcertView, Problem> {
        let make = &make;
        self.change_async(
            request,
            actor,
            id,
            move |concert: Loaded<Concert>| async move { Ok(make(&concert)) },
        )
        .await
    }

    async fn change_async<F, Fut>(
        &self,
        request: &Request,
        actor: &Actor,
        id: Uuid,
        make: F,
    ) -> Result<ConcertView, Problem>
    where
        F: Fn(Loaded<Concert>) -> Fut + Sync,
        Fut: std::future::Future<Output = Result<ConcertCommand, StoreError>> + Send,
    {
        let (make, upcoming) = (&make, &self.upcoming);
        let done = self
            .kernel
            .run(
                Metadata::origin(request_id(request), actor.user.as_str()),
                |tx: &mut Tx<'_>| {
                    Box::pin(async move {
                        let mut concert = tx.load::<Concert>(&id).await?;
                        let before = concert.state.clone();
                        let command = make(concert.clone()).await?;
                        let events = tx.decide(
                            &mut concert,
                            ByActor {
                                command,
                                actor: actor.clone(),
                            },
                        )?;
                        let Some(after) = concert.state.clone() else {
                            return Err(Fail::Refused(ConcertError::NotFound));
                        };
                        if !events.is_empty() {
                            let store = tx.store();
                            seats::follow(store, tx.commit(), before.as_ref(), &after).await?;
                            // One transaction touches an item once: an entry whose key
                            // stays is overwritten, not removed and put.
                            let moved = |b: &&Concert| {
                                !b.is_canceled()
                                    && (after.is_canceled() || b.starts_at != after.starts_at)
                            };
                            if let Some(before) = before.as_ref().filter(moved) {
                                tx.commit().unindex(upcoming.removal(before)?);
                            }
                            if !after.is_canceled() {
                                tx.commit().index(upcoming.entry(&after)?);
                            }
                        }
                        Ok(after)
                    })
                },
            )
            .await
            .map_err(failed)?;
        let concert = done.value;
        let seats = seats::availability(self.kernel.store(), &concert)
            .await
            .map_err(|e| failed(Fail::Store(e)))?;
        Ok(ConcertView::new(
            &concert,
            &seats,
            Some(actor),
            self.kernel.clock().now(),
        ))
    }
}

pub(crate) fn concert_id(request: &Request) -> Result<Uuid, Problem> {
    uuid_param(request, "concertId", "concert_not_found")
}
