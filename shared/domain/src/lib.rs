//! kassa's domain, free of I/O: every context is a set of commands, events and a
//! `decide`/`evolve` pair. Time and identifiers come in as parameters so that the same
//! inputs always give the same events.

pub mod credits;
pub mod event;
pub mod identity;
pub mod money;
pub mod tier;
pub mod workspace;
