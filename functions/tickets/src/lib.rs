//! The tickets Lambda: what buyers, organizers and door staff do with tickets.
//!
//! - `GET /tickets/signing-key` (public): the Ed25519 key door scanners verify codes with;
//! - `GET /tickets`, `GET /tickets/{id}`: the caller's tickets; one ticket for its owner,
//!   its concert's organizer or an admin (anyone else is told it does not exist);
//! - `POST /tickets/{id}/shipments`, `POST /tickets/{id}/void`: the organizer (or an
//!   admin) records a courier shipment, or voids a ticket;
//! - `POST /concerts/{id}/check-ins`, `GET /concerts/{id}/revocations`: the door (`door`).
//!
//! Every route but the key checks the caller as kassa recorded them (`access::recorded`).

mod door;
mod holders;
mod view;

use kassa_commerce::tickets::TicketBook;
use kassa_commerce::{Clock, Fail, Kernel};
use kassa_domain::ticket::TicketError;
use kassa_domain::ticket_code::CodeVerifier;
use kassa_runtime::function::StartError;
use kassa_runtime::http::{json, respond, route_key};
use kassa_runtime::problem::store_problem;
use kassa_runtime::{Config, Function, HttpFunction, Problem, SdkConfig};
use kassa_store::EventStore;
use lambda_http::{Body, Request, Response};
use std::sync::Arc;

pub const NAME: &str = "tickets";

pub struct Tickets {
    kernel: Kernel,
    book: TicketBook,
    verifier: CodeVerifier,
}

impl Function for Tickets {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {
            kernel: Kernel::new(EventStore::new(client.clone(), &config.events_table), clock),
            book: TicketBook::new(client, &config.state_table),
            // The public half only: this function verifies, it never signs.
            verifier: config.ticket_signer()?.verifier(),
        })
    }
}

impl HttpFunction for Tickets {
    async fn handle(&self, request: Request) -> Response<Body> {
        let answer = match route_key(&request).as_str() {
            "GET /tickets/signing-key" => Ok(json(
                200,
                &serde_json::json!({
                    "algorithm": "Ed25519",
                    "public_key": self.verifier.to_base64(),
                    "encoding": "base64url",
                }),
            )),
            "GET /tickets" => self.mine(&request).await.map(|v| json(200, &v)),
            "GET /tickets/{ticketId}" => self.one(&request).await.map(|v| json(200, &v)),
            "POST /tickets/{ticketId}/shipments" => {
                self.ship(&request).await.map(|v| json(200, &v))
            }
            "POST /tickets/{ticketId}/void" => self.void(&request).await.map(|v| json(200, &v)),
            "POST /concerts/{concertId}/check-ins" => {
                self.check_in(&request).await.map(|v| json(200, &v))
            }
            "GET /concerts/{concertId}/revocations" => {
                self.revocations(&request).await.map(|v| json(200, &v))
            }
            other => Err(Problem::not_found(
                "no_route",
                format!("route `{other}` is not served here"),
            )),
        };
        respond(answer)
    }
}

/// A ticket's refusal as an answer.
fn refused(e: TicketError) -> Problem {
    let status = match &e {
        TicketError::NotFound => 404,
        TicketError::OtherConcert | TicketError::InvalidShipment | TicketError::InvalidReason => {
            422
        }
        _ => 409,
    };
    let problem = Problem::new(status, e.code(), e.to_string());
    match e {
        TicketError::AlreadyCheckedIn { at } => problem.with("checked_in_at", at),
        _ => problem,
    }
}

fn failed(fail: Fail<TicketError>) -> Problem {
    match fail {
        Fail::Refused(e) => refused(e),
        Fail::Store(e) => store_problem(&e),
    }
}
