//! Payments. So far: verifying that a webhook really comes from Stripe.

pub mod webhook_signature;
