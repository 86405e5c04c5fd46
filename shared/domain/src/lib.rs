//! kassa's domain, free of I/O: every context is a set of commands, events and a
//! `decide`/`evolve` pair. Time and identifiers come in as parameters so that the same
//! inputs always give the same events.

pub mod aggregate;
pub mod availability;
pub mod billing_period;
pub mod cart;
pub mod catalog;
pub mod concert;
pub mod coupon;
pub mod coupon_code;
pub mod coupon_usage;
pub mod credits;
pub mod delivery;
pub mod discount;
pub mod event;
pub mod identity;
pub mod invoice;
pub mod money;
pub mod order;
pub mod pack;
pub mod payment;
pub mod promotion;
pub mod reservation;
pub mod revenue;
pub mod scenario;
pub mod subscription;
pub mod ticket;
pub mod ticket_code;
pub mod tier;
pub mod user;
pub mod workspace;
