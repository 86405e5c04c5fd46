//! Payments: the payment gateway port, its Stripe adapter, verifying that a webhook really
//! comes from Stripe, and reading what it says.

pub mod dues;
pub mod gateway;
pub mod stripe;
pub mod stripe_event;
pub mod webhook_signature;
