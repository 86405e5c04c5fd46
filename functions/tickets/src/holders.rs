//! The buyer's and the organizer's routes on one ticket.

use crate::view::TicketView;
use crate::{failed, refused, Tickets};
use kassa_commerce::tickets;
use kassa_commerce::Fail;
use kassa_domain::concert::Concert;
use kassa_domain::identity::{Actor, Role};
use kassa_domain::ticket::{Ticket, TicketCommand, TicketError};
use kassa_runtime::http::{json_body, request_id, uuid_param};
use kassa_runtime::problem::store_problem;
use kassa_runtime::{access, caller, Problem};
use kassa_store::Metadata;
use lambda_http::Request;
use serde::Deserialize;
use uuid::Uuid;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewShipment {
    courier: String,
    tracking_number: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Voiding {
    reason: String,
}

fn ticket_id(request: &Request) -> Result<Uuid, Problem> {
    uuid_param(request, "ticketId", "ticket_not_found")
}

/// Who may change a ticket: its concert's organizer, or an admin.
fn manages(concert: Option<&Concert>, actor: &Actor) -> bool {
    actor.role == Role::Admin || concert.is_some_and(|c| c.admits(actor))
}

impl Tickets {
    pub(crate) async fn mine(&self, request: &Request) -> Result<serde_json::Value, Problem> {
        let actor = access::recorded(self.kernel.store(), caller(request)?).await?;
        let ids = self
            .book
            .tickets_of(actor.user.as_str())
            .await
            .map_err(|e| store_problem(&e))?;
        let found = tickets::load(self.kernel.store(), &ids)
            .await
            .map_err(|e| store_problem(&e))?;
        let views: Vec<TicketView> = found
            .iter()
            .flatten()
            .map(|t| TicketView::new(t, &actor))
            .collect();
        Ok(serde_json::json!({ "tickets": views }))
    }

    /// The ticket and its concert, if `actor` may see it: anyone else is told it does not
    /// exist, so a stranger learns nothing from guessing ids.
    async fn visible(&self, actor: &Actor, id: Uuid) -> Result<(Ticket, Option<Concert>), Problem> {
        let store = self.kernel.store();
        let ticket = store
            .load_aggregate::<Ticket>(&id)
            .await
            .map_err(|e| store_problem(&e))?
            .state
            .ok_or_else(|| refused(TicketError::NotFound))?;
        let concert = store
            .load_aggregate::<Concert>(&ticket.concert_id)
            .await
            .map_err(|e| store_problem(&e))?
            .state;
        if ticket.owner == actor.user || manages(concert.as_ref(), actor) {
            Ok((ticket, concert))
        } else {
            Err(refused(TicketError::NotFound))
        }
    }

    pub(crate) async fn one(&self, request: &Request) -> Result<TicketView, Problem> {
        let actor = access::recorded(self.kernel.store(), caller(request)?).await?;
        let id = ticket_id(request)?;
        let (ticket, _) = self.visible(&actor, id).await?;
        Ok(TicketView::new(&ticket, &actor))
    }

    /// Organizer or admin only; its owner may see the ticket but not ship it.
    async fn managed(&self, actor: &Actor, id: Uuid) -> Result<(), Problem> {
        let (_, concert) = self.visible(actor, id).await?;
        if manages(concert.as_ref(), actor) {
            Ok(())
        } else {
            Err(Problem::forbidden(
                "only the concert's organizer or an admin may do this",
            ))
        }
    }

    pub(crate) async fn ship(&self, request: &Request) -> Result<TicketView, Problem> {
        let actor = access::recorded(self.kernel.store(), caller(request)?).await?;
        let id = ticket_id(request)?;
        let body: NewShipment = json_body(request)?;
        self.managed(&actor, id).await?;
        let command = TicketCommand::Ship {
            courier: body.courier,
            tracking_number: body.tracking_number,
            by: actor.user.clone(),
        };
        let command = &command;
        let done = self
            .kernel
            .run(
                Metadata::origin(request_id(request), actor.user.as_str()),
                |tx| {
                    Box::pin(async move {
                        let mut ticket = tx.load::<Ticket>(&id).await?;
                        tx.decide(&mut ticket, command.clone())?;
                        ticket.state.ok_or(Fail::Refused(TicketError::NotFound))
                    })
                },
            )
            .await
            .map_err(failed)?;
        Ok(TicketView::new(&done.value, &actor))
    }

    pub(crate) async fn void(&self, request: &Request) -> Result<TicketView, Problem> {
        let actor = access::recorded(self.kernel.store(), caller(request)?).await?;
        let id = ticket_id(request)?;
        let body: Voiding = json_body(request)?;
        self.managed(&actor, id).await?;
        let (book, reason, by) = (&self.book, body.reason.as_str(), &actor.user);
        let done = self
            .kernel
            .run(
                Metadata::origin(request_id(request), actor.user.as_str()),
                |tx| {
                    Box::pin(async move {
                        tickets::void(tx, book, id, reason, by)
                            .await?
                            .ok_or(Fail::Refused(TicketError::NotFound))
                    })
                },
            )
            .await
            .map_err(failed)?;
        Ok(TicketView::new(&done.value, &actor))
    }
}
