//! Payments: the payment gateway port, its Stripe adapter, and verifying that a webhook
//! really comes from Stripe.

pub mod gateway;
pub mod stripe;
pub mod webhook_signature;
