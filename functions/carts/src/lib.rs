//! The carts Lambda (seed 003's shopping cart module): each user's one cart, read and
//! changed only by them. Every route addresses the caller's own cart as `/cart`, so no
//! request can name another's.
//!
//! Adding an item prices it at its level's price now and checks its quantity against the
//! seats the level's counter has free now. A cart holds no seats: the reservation made when
//! the cart is confirmed (`confirm-cart`, a function of its own) takes them, or fails.
//!
//! - `offer`: what a concert's level offers now (price, free seats), or why nothing;
//! - `changes`: the commands on the cart;
//! - `view`: the cart as the routes answer it.

mod changes;
mod offer;
mod view;

pub use view::{CartView, ItemView};

use kassa_commerce::{Clock, Fail, Kernel};
use kassa_domain::cart::CartError;
use kassa_runtime::function::StartError;
use kassa_runtime::http::{json, respond, route_key};
use kassa_runtime::problem::store_problem;
use kassa_runtime::{Config, Function, HttpFunction, Problem, SdkConfig};
use kassa_store::{EventStore, Roster};
use lambda_http::{Body, Request, Response};
use std::sync::Arc;

pub const NAME: &str = "carts";

pub struct Carts {
    kernel: Kernel,
    concert_carts: Roster,
}

impl Function for Carts {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {
            kernel: Kernel::new(EventStore::new(client.clone(), &config.events_table), clock),
            concert_carts: kassa_commerce::rosters::concert_carts(client, &config.state_table),
        })
    }
}

impl HttpFunction for Carts {
    async fn handle(&self, request: Request) -> Response<Body> {
        let answer = match route_key(&request).as_str() {
            "GET /cart" => self.get(&request).await.map(|v| json(200, &v)),
            "POST /cart/items" => self.add(&request).await.map(|v| json(201, &v)),
            "PUT /cart/items/{concertId}/{levelId}" => {
                self.update(&request).await.map(|v| json(200, &v))
            }
            "DELETE /cart/items/{concertId}/{levelId}" => {
                self.remove(&request).await.map(|v| json(200, &v))
            }
            "POST /cart/clear" => self.clear(&request).await.map(|v| json(200, &v)),
            "DELETE /cart" => self.cancel(&request).await.map(|v| json(200, &v)),
            other => Err(Problem::not_found(
                "no_route",
                format!("route `{other}` is not served here"),
            )),
        };
        respond(answer)
    }
}

/// The cart's refusal as an answer: an item the cart does not hold is not found; what the
/// cart's state forbids now (closed, the item there already, full, empty) is a conflict;
/// a quantity or price the rules never allow is unprocessable.
pub(crate) fn refused(e: CartError) -> Problem {
    let status = match &e {
        CartError::Forbidden => 403,
        CartError::NotInCart { .. } => 404,
        CartError::NotOpen
        | CartError::AlreadyInCart { .. }
        | CartError::Full
        | CartError::Empty => 409,
        CartError::InvalidLevelId(_)
        | CartError::InvalidQuantity
        | CartError::NotEnoughTickets { .. }
        | CartError::InvalidPrice
        | CartError::CurrencyMismatch { .. } => 422,
    };
    Problem::new(status, e.code(), e.to_string())
}

/// A command's failure as an answer.
pub(crate) fn failed(fail: Fail<Problem>) -> Problem {
    match fail {
        Fail::Refused(problem) => problem,
        Fail::Store(e) => store_problem(&e),
    }
}
