//! The concerts Lambda (seed 003's concert management): organizers create, change and
//! cancel their concerts and name their door staff; anyone lists what is on sale and reads
//! a concert with its levels' live availability; organizers read their sales figures.
//!
//! Each command is one commit: the concert's events, its levels' seat counters (opened,
//! resized by the difference under a bound, or closed: `kassa_commerce::seats`) and the
//! upcoming-concerts index entry. A resize that would take away seats reserved meanwhile is
//! refused by the counter's own condition, so capacity never drops below what is held.

mod commands;
mod sales;
mod upcoming;
mod view;

use kassa_commerce::{Clock, Fail, Kernel};
use kassa_domain::concert::ConcertError;
use kassa_runtime::function::StartError;
use kassa_runtime::http::{json, respond, route_key};
use kassa_runtime::{Config, Function, HttpFunction, Problem, SdkConfig};
use kassa_store::{EventStore, Refusal, Sales, StoreError};
use lambda_http::{Body, Request, Response};
use std::sync::Arc;
use upcoming::Upcoming;

pub const NAME: &str = "concerts";

/// Most concerts one page of the list shows.
pub const MAX_PAGE: i32 = 100;

pub struct Concerts {
    kernel: Kernel,
    upcoming: Upcoming,
    sales: Sales,
}

impl Function for Concerts {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {
            kernel: Kernel::new(EventStore::new(client.clone(), &config.events_table), clock),
            upcoming: Upcoming::new(client.clone(), &config.state_table),
            sales: Sales::new(client, &config.state_table),
        })
    }
}

impl HttpFunction for Concerts {
    async fn handle(&self, request: Request) -> Response<Body> {
        let answer = match route_key(&request).as_str() {
            "POST /concerts" => self.create(&request).await.map(|v| json(201, &v)),
            "GET /concerts" => self.list(&request).await.map(|v| json(200, &v)),
            "GET /concerts/{concertId}" => self.get(&request).await.map(|v| json(200, &v)),
            "GET /concerts/{concertId}/sales" => self.sales(&request).await.map(|v| json(200, &v)),
            "PATCH /concerts/{concertId}" => self.update(&request).await.map(|v| json(200, &v)),
            "PUT /concerts/{concertId}/levels" => {
                self.levels(&request).await.map(|v| json(200, &v))
            }
            "POST /concerts/{concertId}/cancel" => {
                self.cancel(&request).await.map(|v| json(200, &v))
            }
            "PUT /concerts/{concertId}/door-staff/{userId}" => {
                self.door_staff(&request, true).await.map(|v| json(200, &v))
            }
            "DELETE /concerts/{concertId}/door-staff/{userId}" => self
                .door_staff(&request, false)
                .await
                .map(|v| json(200, &v)),
            other => Err(Problem::not_found(
                "no_route",
                format!("route `{other}` is not served here"),
            )),
        };
        respond(answer)
    }
}

/// A concert's refusal as an answer.
fn refused(e: ConcertError) -> Problem {
    let status = match &e {
        ConcertError::NotFound => 404,
        ConcertError::OrganizersOnly | ConcertError::Forbidden => 403,
        ConcertError::AlreadyExists
        | ConcertError::Canceled
        | ConcertError::AlreadyCanceled
        | ConcertError::Started
        | ConcertError::CapacityBelowHeld { .. }
        | ConcertError::AlreadyDoorStaff(_)
        | ConcertError::NotDoorStaff(_) => 409,
        _ => 422,
    };
    Problem::new(status, e.code(), e.to_string())
}

/// A command's failure as an answer. A resize refused by a level's counter lost a race
/// with reservations: the seats it would take away are held now.
fn failed(fail: Fail<ConcertError>) -> Problem {
    match fail {
        Fail::Refused(e) => refused(e),
        Fail::Store(StoreError::Refused(Refusal::OutOfBounds)) => Problem::conflict(
            "capacity_below_held",
            "seats of a level were reserved meanwhile: its capacity cannot drop that far now",
        ),
        Fail::Store(e) => kassa_runtime::problem::store_problem(&e),
    }
}
