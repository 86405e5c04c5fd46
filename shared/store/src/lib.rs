//! kassa's DynamoDB layer.
//!
//! One table holds every event stream. Items are keyed `(pk = stream id, sk = version)`; the
//! stream's head sits at `sk = 0` and carries the version and a snapshot of the state, so a
//! load is one `GetItem` whatever the history's length. Lock and counter items also live at
//! `sk = 0` under their own keys. A command's events, heads and locks are committed in one
//! `TransactWriteItems`, which makes the table itself the transactional outbox: the stream
//! relay publishes the event items (and only those) after the commit.

pub mod agenda;
pub mod aggregate;
mod attribute;
pub mod commit;
pub mod counter;
pub mod error;
pub mod event;
pub mod idempotency;
pub mod lease;
pub mod store;
pub use store::EventItem;

pub use aggregate::{stream_of, Loaded};
pub use commit::{Commit, Guard};
pub use counter::{Bounds, Carried, Step, Stepped};
pub use error::{Refusal, StoreError};
pub use event::{Metadata, RecordedEvent, StreamId};
pub use idempotency::{Idempotency, IdempotencyConfig, Outcome};
pub use store::{EventStore, Head, Page};

/// DynamoDB's limit on items in one `TransactWriteItems`.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

pub use idempotency::IdempotencyError;
pub mod read_model;
pub mod retry;
pub use read_model::{FeatureUse, Listed, Notification, ReadModels, UsageRow};
pub mod receipt;
pub mod renewal;
pub mod sequence;
pub use agenda::{Agenda, Entry};
pub mod sales;
pub use sales::{LevelSales, Movement, Sales};
pub mod roster;
pub mod view;
pub use lease::Leases;
pub use renewal::{DueRenewal, Renewals};
pub use roster::{Members, Roster};
pub use sequence::Sequences;
pub use view::{Over, ViewRow, Views};
