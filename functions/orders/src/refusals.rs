//! How the routes' refusals are answered: the decider's, a missing order, and the payment
//! provider's.

use kassa_domain::order::OrderError;
use kassa_payments::gateway::GatewayError;
use kassa_runtime::Problem;
use uuid::Uuid;

pub(crate) fn refusal(e: OrderError) -> Problem {
    let status = match e {
        OrderError::NotFound => 404,
        OrderError::AlreadyExists
        | OrderError::NotOpen(_)
        | OrderError::NotPaid(_)
        | OrderError::NotDue
        | OrderError::RefundExceedsPayment { .. }
        | OrderError::NotStackable => 409,
        OrderError::Empty
        | OrderError::InvalidReference
        | OrderError::InvalidTaxRate
        | OrderError::InvalidDeliveryFee
        | OrderError::Currency(_)
        | OrderError::Discount(_) => 422,
    };
    Problem::new(status, e.code(), e.to_string())
}

pub(crate) fn order_not_found(id: Uuid) -> Problem {
    Problem::not_found("order_not_found", format!("no order {id}"))
}

pub(crate) fn gateway_problem(e: &GatewayError) -> Problem {
    match e {
        GatewayError::Refused { .. } | GatewayError::InvalidAmount(_) => {
            Problem::new(409, "payment_provider_refused", e.to_string())
        }
        GatewayError::Unavailable(_) => {
            Problem::new(503, "payment_provider_unavailable", e.to_string()).retry_after(5)
        }
    }
}
