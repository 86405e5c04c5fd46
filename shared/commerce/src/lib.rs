//! The application layer every kassa function decides through, below the Lambda glue:
//! the command kernel, the clock it decides by, and the services built on it (invoicing,
//! the order book, the wallet's cold commands). Nothing here knows about HTTP, queues or
//! problem+json answers.

pub mod clock;
pub mod coupon_ledger;
pub mod coupon_views;
pub mod dunning;
pub mod invoicing;
pub mod kernel;
pub mod order_book;
pub mod reservations;
pub mod rosters;
pub mod seats;
pub mod tickets;
pub mod trials;
pub mod wallet;

pub use clock::{Clock, SystemClock};
pub use kernel::{Done, Fail, Kernel, Tx};
