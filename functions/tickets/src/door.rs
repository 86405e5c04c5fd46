//! The door: check-ins and the revocation list scanners download to refuse offline.
//!
//! A check-in verifies the code's signature before anything is read, so a forged code
//! costs one write (its `ticket.validation_failed`, on a stream of its own: nothing a
//! forger sends can touch a real ticket's stream). A valid code is one commit on its
//! ticket's stream, conditional on the version read: of concurrent scans of one ticket
//! exactly one records `ticket.validated`; the others decide again on the state it left
//! and are refused with its time. A refusal for another concert or a voided ticket is
//! recorded on the ticket in a second commit, off the happy path.

use crate::{failed, refused, Tickets};
use kassa_commerce::tickets::MAX_REVOCATIONS_PAGE;
use kassa_commerce::Fail;
use kassa_domain::concert::{Concert, ConcertError};
use kassa_domain::identity::Actor;
use kassa_domain::ticket::{
    rfc3339, FailureReason, Ticket, TicketCommand, TicketError, TicketEvent,
};
use kassa_domain::ticket_code::CodeError;
use kassa_runtime::http::{json_body, limit_param, query_param, request_id, uuid_param};
use kassa_runtime::problem::store_problem;
use kassa_runtime::{access, caller, Problem};
use kassa_store::{Metadata, StoreError, StreamId};
use lambda_http::Request;
use serde::Deserialize;
use uuid::Uuid;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scan {
    code: String,
}

/// Longest code accepted; real ones are about 150 characters.
const MAX_CODE_LEN: usize = 1024;

impl Tickets {
    /// The concert, if `actor` may work its door: its organizer, door staff or an admin.
    async fn door(&self, request: &Request, actor: &Actor) -> Result<Concert, Problem> {
        let id = uuid_param(request, "concertId", "concert_not_found")?;
        let concert = self
            .kernel
            .store()
            .load_aggregate::<Concert>(&id)
            .await
            .map_err(|e| store_problem(&e))?
            .state
            .ok_or_else(|| {
                let e = ConcertError::NotFound;
                Problem::not_found(e.code(), e.to_string())
            })?;
        if concert.admits_at_door(actor) {
            Ok(concert)
        } else {
            Err(Problem::forbidden(
                "only the concert's organizer and door staff work its door",
            ))
        }
    }

    pub(crate) async fn check_in(&self, request: &Request) -> Result<serde_json::Value, Problem> {
        let actor = access::recorded(self.kernel.store(), caller(request)?).await?;
        let body: Scan = json_body(request)?;
        let code = body.code.trim();
        if code.is_empty() || code.len() > MAX_CODE_LEN {
            return Err(Problem::new(
                422,
                "invalid_code",
                format!("`code` must be a ticket code of 1 to {MAX_CODE_LEN} characters"),
            ));
        }
        let concert = self.door(request, &actor).await?;
        let concert_id = concert.concert_id;
        let claims = match self.verifier.verify(code) {
            Ok(claims) => claims,
            // Text that is no code at all is a bad request; nothing is recorded.
            Err(CodeError::Malformed) => {
                return Err(Problem::new(
                    422,
                    "invalid_code",
                    CodeError::Malformed.to_string(),
                ))
            }
            Err(e @ CodeError::Forged) => {
                self.record_stray(request, &actor, concert_id, None, FailureReason::Forged)
                    .await?;
                return Err(Problem::new(422, "invalid_code", e.to_string()));
            }
        };
        let id = claims.ticket_id;
        let by = &actor.user;
        let metadata = Metadata::origin(request_id(request), actor.user.as_str());
        let done = self
            .kernel
            .run(metadata.clone(), |tx| {
                Box::pin(async move {
                    let mut ticket = tx.load::<Ticket>(&id).await?;
                    let at = tx.now();
                    tx.decide(
                        &mut ticket,
                        TicketCommand::Validate {
                            concert_id,
                            at,
                            by: by.clone(),
                        },
                    )?;
                    ticket.state.ok_or(Fail::Refused(TicketError::NotFound))
                })
            })
            .await;
        match done {
            Ok(done) => {
                let ticket = done.value;
                Ok(serde_json::json!({
                    "status": "checked_in",
                    "ticket_id": ticket.ticket_id,
                    "concert_id": ticket.concert_id,
                    "level_id": ticket.level_id,
                    "seat": ticket.seat,
                    "checked_in_at": ticket.checked_in.as_ref().map(|c| rfc3339(c.at)),
                }))
            }
            // Signed by kassa yet not recorded: a code from another deployment.
            Err(Fail::Refused(TicketError::NotFound)) => {
                let reason = FailureReason::UnknownTicket;
                self.record_stray(request, &actor, concert_id, Some(id), reason)
                    .await?;
                Err(Problem::new(
                    422,
                    "unknown_ticket",
                    "the code is signed, but no such ticket is recorded",
                ))
            }
            Err(Fail::Refused(e)) => {
                if let Some(reason) = e.scan_failure() {
                    self.record_failure(metadata, id, concert_id, reason, by)
                        .await?;
                }
                Err(refused(e))
            }
            Err(fail) => Err(failed(fail)),
        }
    }

    /// Records a refused scan on the ticket scanned.
    async fn record_failure(
        &self,
        metadata: Metadata,
        id: Uuid,
        concert_id: Uuid,
        reason: FailureReason,
        by: &kassa_domain::identity::UserId,
    ) -> Result<(), Problem> {
        self.kernel
            .run(metadata, |tx| {
                Box::pin(async move {
                    let mut ticket = tx.load::<Ticket>(&id).await?;
                    let at = tx.now();
                    tx.decide(
                        &mut ticket,
                        TicketCommand::RecordFailure {
                            concert_id,
                            reason,
                            at,
                            by: by.clone(),
                        },
                    )?;
                    Ok(())
                })
            })
            .await
            .map_err(failed)?;
        Ok(())
    }

    /// Records a scan that names no trustworthy ticket, on a stream of its own
    /// (`Scan#<id>`), so forgeries never contend with, or write to, real tickets.
    async fn record_stray(
        &self,
        request: &Request,
        actor: &Actor,
        concert_id: Uuid,
        ticket_id: Option<Uuid>,
        reason: FailureReason,
    ) -> Result<(), Problem> {
        let stream = StreamId::new("Scan", Uuid::now_v7());
        let stream = &stream;
        let by = &actor.user;
        self.kernel
            .run::<_, std::convert::Infallible, _>(
                Metadata::origin(request_id(request), actor.user.as_str()),
                |tx| {
                    Box::pin(async move {
                        let event = TicketEvent::ValidationFailed {
                            ticket_id,
                            concert_id,
                            reason,
                            at: tx.now(),
                            by: by.clone(),
                        };
                        tx.commit().append(
                            stream,
                            0,
                            &[event],
                            &serde_json::json!({ "reason": reason }),
                        )?;
                        Ok::<_, Fail<_>>(())
                    })
                },
            )
            .await
            .map_err(Problem::from)?;
        Ok(())
    }

    pub(crate) async fn revocations(
        &self,
        request: &Request,
    ) -> Result<serde_json::Value, Problem> {
        let actor = access::recorded(self.kernel.store(), caller(request)?).await?;
        let since = query_param(request, "since");
        if let Some(since) = since.as_deref() {
            if !valid_cursor(since) {
                return Err(Problem::bad_request(
                    "invalid_cursor",
                    "`since` must be a cursor a previous answer gave as `next`",
                ));
            }
        }
        let limit = limit_param(request, MAX_REVOCATIONS_PAGE, MAX_REVOCATIONS_PAGE)?;
        let concert = self.door(request, &actor).await?;
        let (revoked, next) = self
            .book
            .revocations(concert.concert_id, since.as_deref(), limit)
            .await
            .map_err(|e: StoreError| store_problem(&e))?;
        Ok(serde_json::json!({ "revocations": revoked, "next": next }))
    }
}

/// `<20 digits>_<uuid>`, as the book writes them.
fn valid_cursor(cursor: &str) -> bool {
    cursor.split_once('_').is_some_and(|(nanos, id)| {
        nanos.len() == 20
            && nanos.bytes().all(|b| b.is_ascii_digit())
            && Uuid::parse_str(id).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::valid_cursor;

    #[test]
    fn a_cursor_is_what_the_book_writes_and_nothing_else() {
        assert!(valid_cursor(
            "00000001790000000000_0190e0e4-0000-7000-8000-000000000000"
        ));
        for bad in ["", "12_x", "abc", "00000001790000000000_not-a-uuid"] {
            assert!(!valid_cursor(bad), "{bad}");
        }
    }
}
