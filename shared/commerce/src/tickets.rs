//! Tickets as the application keeps them: issued one per seat of a confirmed reservation,
//! delivered, voided with a revocation entry, and listed per buyer and per concert.
//!
//! Beside each ticket's stream the state table holds, written in the commit that issues or
//! voids it (so they never lag):
//! - `tickets-of#<user>` / `<ticket id>`: the buyer's tickets;
//! - `tickets-at#<concert>` / `<level>#<ticket id>`: a concert's tickets;
//! - `revocations#<concert>` / `<cursor>` (`<nanos>_<ticket id>`): each voided ticket with its code, ordered by
//!   when it was voided, for door scanners that download what to refuse offline.
//!
//! A ticket's id derives from its order, level and seat number, and its stream is created
//! at version 0: issuing twice (a redelivered `reservation.confirmed`, two deliveries at
//! once) finds the first tickets and writes none of them again.

use crate::kernel::{Fail, Kernel, Tx};
use aws_sdk_dynamodb::types::{AttributeValue, Put};
use aws_sdk_dynamodb::Client;
use kassa_domain::delivery::Method;
use kassa_domain::identity::UserId;
use kassa_domain::reservation::Hold;
use kassa_domain::ticket::{Ticket, TicketCommand, TicketError, TicketEvent};
use kassa_domain::ticket_code::{Claims, CodeSigner};
use kassa_store::{stream_of, EventStore, Loaded, Metadata, StoreError, StreamId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::OffsetDateTime;
use uuid::Uuid;

/// Tickets issued per commit: each writes its event, its head and two index entries, and
/// a transaction holds at most 100 items.
pub const ISSUE_CHUNK: usize = 20;

/// Tickets marked delivered per commit (an event and a head each).
pub const DELIVER_CHUNK: usize = 50;

// Each chunk's commit fits one transaction, checked when this compiles.
const _: () = assert!(ISSUE_CHUNK * 4 <= kassa_store::MAX_TRANSACTION_ITEMS);
const _: () = assert!(DELIVER_CHUNK * 2 <= kassa_store::MAX_TRANSACTION_ITEMS);

/// Most revocations one page returns.
pub const MAX_REVOCATIONS_PAGE: i32 = 500;

/// The ticket for seat `seat` (1, 2, ...) of `level_id` of `concert_id` in `order_id`: the
/// same id whoever computes it, however often.
pub fn ticket_id(order_id: Uuid, concert_id: Uuid, level_id: &str, seat: u32) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("ticket:{order_id}:{concert_id}:{level_id}:{seat}").as_bytes(),
    )
}

/// One ticket to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub ticket_id: Uuid,
    pub concert_id: Uuid,
    pub level_id: String,
    pub seat: u32,
}

/// Every seat the holds sold, numbered per level from 1, in a stable order.
pub fn seats(order_id: Uuid, holds: &[Hold]) -> Vec<Seat> {
    let mut by_level: BTreeMap<(Uuid, &str), u32> = BTreeMap::new();
    for hold in holds {
        *by_level
            .entry((hold.concert_id, hold.level_id.as_str()))
            .or_default() += hold.seats;
    }
    by_level
        .into_iter()
        .flat_map(|((concert_id, level_id), count)| {
            (1..=count).map(move |seat| Seat {
                ticket_id: ticket_id(order_id, concert_id, level_id, seat),
                concert_id,
                level_id: level_id.to_owned(),
                seat,
            })
        })
        .collect()
}

/// A voided ticket as the door downloads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    pub ticket_id: Uuid,
    pub code: String,
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub voided_at: OffsetDateTime,
}

#[derive(Clone)]
pub struct TicketBook {
    client: Client,
    table: String,
}

fn owner_key(user: &str) -> String {
    format!("tickets-of#{user}")
}

fn concert_key(concert: Uuid) -> String {
    format!("tickets-at#{concert}")
}

fn revocations_key(concert: Uuid) -> String {
    format!("revocations#{concert}")
}

/// Sorts by the time of voiding; the ticket id breaks ties. Nanoseconds since the epoch,
/// zero-padded, sort as text; `_` keeps the cursor safe in a query string unencoded.
fn cursor(at: OffsetDateTime, ticket: Uuid) -> String {
    format!("{:020}_{ticket}", at.unix_timestamp_nanos().max(0))
}

impl TicketBook {
    pub fn new(client: Client, state_table: impl Into<String>) -> Self {
        Self {
            client,
            table: state_table.into(),
        }
    }

    fn entry(&self, pk: String, sk: String) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(pk))
            .item("sk", AttributeValue::S(sk))
            .build()
            .map_err(StoreError::dynamo)
    }

    /// The buyer's and the concert's index entries of a new ticket.
    pub fn entries(&self, ticket: &Ticket) -> Result<[Put; 2], StoreError> {
        Ok([
            self.entry(
                owner_key(ticket.owner.as_str()),
                ticket.ticket_id.to_string(),
            )?,
            self.entry(
                concert_key(ticket.concert_id),
                format!("{}#{}", ticket.level_id, ticket.ticket_id),
            )?,
        ])
    }

    fn revocation(
        &self,
        ticket: &Ticket,
        reason: &str,
        at: OffsetDateTime,
    ) -> Result<Put, StoreError> {
        let revoked = Revoked {
            ticket_id: ticket.ticket_id,
            code: ticket.code.clone(),
            reason: reason.to_owned(),
            voided_at: at,
        };
        let json =
            serde_json::to_string(&revoked).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Put::builder()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(revocations_key(ticket.concert_id)))
            .item("sk", AttributeValue::S(cursor(at, ticket.ticket_id)))
            .item("revoked", AttributeValue::S(json))
            .build()
            .map_err(StoreError::dynamo)
    }

    /// The ids of `user`'s tickets.
    pub async fn tickets_of(&self, user: &str) -> Result<Vec<Uuid>, StoreError> {
        self.ids(owner_key(user), |sk| sk).await
    }

    /// The ids of `concert`'s tickets.
    pub async fn tickets_at(&self, concert: Uuid) -> Result<Vec<Uuid>, StoreError> {
        self.ids(concert_key(concert), |sk| {
            sk.rsplit_once('#').map_or(sk, |(_, id)| id)
        })
        .await
    }

    async fn ids(&self, partition: String, id: fn(&str) -> &str) -> Result<Vec<Uuid>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(partition))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut ids = Vec::new();
        while let Some(item) = pages.next().await {
            if let Some(AttributeValue::S(sk)) = item.map_err(StoreError::dynamo)?.get("sk") {
                ids.push(Uuid::parse_str(id(sk)).map_err(|e| StoreError::Corrupt(e.to_string()))?);
            }
        }
        Ok(ids)
    }

    /// Tickets of `concert` voided after `since` (a cursor this returned before; from the
    /// start when `None`), oldest first, and the cursor to ask from next time.
    pub async fn revocations(
        &self,
        concert: Uuid,
        since: Option<&str>,
        limit: i32,
    ) -> Result<(Vec<Revoked>, Option<String>), StoreError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_values(":pk", AttributeValue::S(revocations_key(concert)))
            .consistent_read(true)
            .limit(limit);
        query = match since {
            Some(since) => query
                .key_condition_expression("pk = :pk AND sk > :since")
                .expression_attribute_values(":since", AttributeValue::S(since.to_owned())),
            None => query.key_condition_expression("pk = :pk"),
        };
        let out = query.send().await.map_err(StoreError::dynamo)?;
        let mut revoked = Vec::new();
        let mut next = since.map(str::to_owned);
        for item in out.items() {
            if let (Some(AttributeValue::S(sk)), Some(AttributeValue::S(json))) =
                (item.get("sk"), item.get("revoked"))
            {
                revoked.push(
                    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                );
                next = Some(sk.clone());
            }
        }
        Ok((revoked, next))
    }
}

/// Tickets loaded by id, in the order asked; absent ones are `None`.
pub async fn load(store: &EventStore, ids: &[Uuid]) -> Result<Vec<Option<Ticket>>, StoreError> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(100) {
        let streams: Vec<StreamId> = chunk.iter().map(stream_of::<Ticket>).collect();
        let mut heads = store.load_many(&streams.iter().collect::<Vec<_>>()).await?;
        for stream in &streams {
            found.push(match heads.remove(stream) {
                Some(head) => store.state_of::<Ticket>(head).await?.state,
                None => None,
            });
        }
    }
    Ok(found)
}

/// What issuing an order's tickets came to: every ticket of the order, issued now or
/// before.
#[derive(Debug, Clone)]
pub struct Issued {
    pub tickets: Vec<Ticket>,
    /// How many this call created (0 on a redelivery).
    pub created: usize,
}

/// What a confirmed reservation sold, and to whom.
#[derive(Debug, Clone)]
pub struct Purchase {
    pub order_id: Uuid,
    pub owner: UserId,
    pub holds: Vec<Hold>,
    pub delivery: Method,
}

/// Issues one ticket per seat of the purchase, in chunks, skipping those issued before.
pub async fn issue(
    kernel: &Kernel,
    book: &TicketBook,
    signer: &CodeSigner,
    purchase: &Purchase,
    metadata: &Metadata,
) -> Result<Issued, StoreError> {
    let Purchase {
        order_id,
        owner,
        holds,
        delivery,
    } = purchase;
    let (order_id, delivery) = (*order_id, *delivery);
    let mut issued = Issued {
        tickets: Vec::new(),
        created: 0,
    };
    for chunk in seats(order_id, holds).chunks(ISSUE_CHUNK) {
        let done = kernel
            .run::<_, TicketError, _>(metadata.clone(), |tx| {
                Box::pin(async move {
                    let ids: Vec<Uuid> = chunk.iter().map(|s| s.ticket_id).collect();
                    let existing = load(tx.store(), &ids).await?;
                    let mut tickets = Vec::with_capacity(chunk.len());
                    let mut created = 0;
                    for (seat, existing) in chunk.iter().zip(existing) {
                        if let Some(ticket) = existing {
                            tickets.push(ticket);
                            continue;
                        }
                        let code = signer.sign(&Claims {
                            ticket_id: seat.ticket_id,
                            concert_id: seat.concert_id,
                            level_id: seat.level_id.clone(),
                        });
                        let mut fresh = Loaded::<Ticket> {
                            stream: stream_of::<Ticket>(&seat.ticket_id),
                            version: 0,
                            state: None,
                        };
                        tx.decide(
                            &mut fresh,
                            TicketCommand::Issue {
                                ticket_id: seat.ticket_id,
                                order_id,
                                concert_id: seat.concert_id,
                                level_id: seat.level_id.clone(),
                                seat: seat.seat,
                                owner: owner.clone(),
                                delivery,
                                code,
                            },
                        )?;
                        let ticket = fresh.state.ok_or_else(|| {
                            StoreError::Corrupt(format!("ticket {} not issued", seat.ticket_id))
                        })?;
                        for entry in book.entries(&ticket)? {
                            tx.commit().index(entry);
                        }
                        tickets.push(ticket);
                        created += 1;
                    }
                    Ok((tickets, created))
                })
            })
            .await
            .map_err(|fail| match fail {
                Fail::Store(e) => e,
                Fail::Refused(e) => StoreError::Corrupt(format!("issuing a ticket: {e}")),
            })?;
        let (tickets, created) = done.value;
        issued.tickets.extend(tickets);
        issued.created += created;
    }
    Ok(issued)
}

/// Records `ticket.delivered` on each of `tickets` not delivered yet. Returns how many.
pub async fn deliver(
    kernel: &Kernel,
    tickets: &[Uuid],
    metadata: &Metadata,
) -> Result<usize, StoreError> {
    let mut delivered = 0;
    for chunk in tickets.chunks(DELIVER_CHUNK) {
        let done = kernel
            .run::<_, TicketError, _>(metadata.clone(), |tx| {
                Box::pin(async move {
                    let mut count = 0;
                    for id in chunk {
                        let mut ticket = tx.load::<Ticket>(id).await?;
                        count += tx.decide(&mut ticket, TicketCommand::Deliver)?.len();
                    }
                    Ok(count)
                })
            })
            .await
            .map_err(|fail| match fail {
                Fail::Store(e) => e,
                Fail::Refused(e) => StoreError::Corrupt(format!("delivering a ticket: {e}")),
            })?;
        delivered += done.value;
    }
    Ok(delivered)
}

/// Voids `ticket_id` inside the caller's attempt, and puts its code on its concert's
/// revocation list in the same commit. Voiding a voided ticket records nothing. What the
/// concert's cancellation (and a refund) calls for each ticket.
pub async fn void(
    tx: &mut Tx<'_>,
    book: &TicketBook,
    ticket_id: Uuid,
    reason: &str,
    by: &UserId,
) -> Result<Option<Ticket>, Fail<TicketError>> {
    let mut ticket = tx.load::<Ticket>(&ticket_id).await?;
    let events = tx.decide(
        &mut ticket,
        TicketCommand::Void {
            reason: reason.to_owned(),
            by: by.clone(),
        },
    )?;
    if let (Some(TicketEvent::Voided { reason, .. }), Some(state)) =
        (events.first(), ticket.state.as_ref())
    {
        let at = tx.now();
        let entry = book.revocation(state, reason, at)?;
        tx.commit().index(entry);
    }
    Ok(ticket.state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(level: &str, seats: u32) -> Hold {
        Hold {
            concert_id: Uuid::from_u128(7),
            level_id: level.into(),
            seats,
            hold_id: Uuid::now_v7(),
        }
    }

    #[test]
    fn one_ticket_per_seat_with_ids_the_same_on_every_run() {
        let order = Uuid::from_u128(1);
        let holds = [hold("floor", 2), hold("balcony", 1)];
        let first = seats(order, &holds);
        assert_eq!(first.len(), 3);
        assert_eq!(first, seats(order, &holds));
        let mut ids: Vec<Uuid> = first.iter().map(|s| s.ticket_id).collect();
        ids.dedup();
        assert_eq!(ids.len(), 3);
        assert_ne!(
            seats(Uuid::from_u128(2), &holds)[0].ticket_id,
            first[0].ticket_id
        );
    }

    #[test]
    fn the_largest_order_is_two_hundred_tickets() {
        let holds: Vec<Hold> = (0..20).map(|l| hold(&format!("level-{l}"), 10)).collect();
        assert_eq!(seats(Uuid::from_u128(1), &holds).len(), 200);
    }
}
