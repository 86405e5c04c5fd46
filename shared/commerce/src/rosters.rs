//! The rosters a concert's cancellation walks, keyed by concert id: the orders whose
//! reservation holds its seats, and the carts that hold its levels. Each member is
//! entered in the commit that makes it one.

use aws_sdk_dynamodb::Client;
use kassa_store::Roster;

/// Orders, entered by the commit recording their reservation.
pub fn concert_orders(client: Client, state_table: &str) -> Roster {
    Roster::new(client, state_table, "concert-orders")
}

/// Carts (by user id), entered by the commit adding one of the concert's levels.
pub fn concert_carts(client: Client, state_table: &str) -> Roster {
    Roster::new(client, state_table, "concert-carts")
}
