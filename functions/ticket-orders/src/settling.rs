//! A paid ticket order settles one of two ways, decided by its reservation's version:
//! - its seats are still held: the reservation is confirmed (`reservation.confirmed`, the
//!   seats are sold and the tickets follow) and the order's invoice is issued, paid;
//! - its seats went back first (the reservation expired, was canceled or failed while the
//!   money was on its way): the whole payment is refunded at Stripe, recorded on the
//!   payment (`payment.refunded`, then `order.refunded`), and the buyer is told why. A
//!   ticket is never issued without a seat.
//!
//! Expiry and confirmation race on the reservation's head, so exactly one of them wins,
//! and a redelivered `order.completed` ends the same way: confirmation is idempotent, the
//! refund's key is the order's, and the invoice's id is the order's.

use crate::TicketOrders;
use kassa_commerce::invoicing::{self, Issued};
use kassa_commerce::Fail;
use kassa_domain::invoice::Draft;
use kassa_domain::money::Money;
use kassa_domain::order::Order;
use kassa_domain::payment::{IntentOrigin, Payment, PaymentCommand};
use kassa_domain::reservation::{
    Reservation, ReservationCommand, ReservationError, ReservationStatus,
};
use kassa_domain::user::User;
use kassa_payments::gateway::PaymentGateway;
use kassa_runtime::effect::EffectError;
use kassa_runtime::mail::{Mail, Mailer};
use kassa_store::Metadata;
use time::Date;
use uuid::Uuid;

/// Why the automatic refund's reason names itself: operators and the buyer's mail read it.
const SEATLESS: &str = "seats_released_before_payment";

impl TicketOrders {
    pub(crate) async fn settle(
        &self,
        order_id: Uuid,
        paid_on: Date,
        metadata: Metadata,
    ) -> Result<serde_json::Value, EffectError> {
        let store = self.kernel.store();
        // reserve-tickets records a reservation (held or failed) for every ticket order
        // that was not canceled or expired, paid ones included, so waiting is bounded.
        if store
            .load_aggregate::<Reservation>(&order_id)
            .await?
            .state
            .is_none()
        {
            return Err(EffectError::retry(format!(
                "the reservation of order {order_id} is not recorded yet"
            )));
        }
        let confirmed = self
            .kernel
            .run(metadata.clone(), |tx| {
                Box::pin(async move {
                    let mut reservation = tx.load::<Reservation>(&order_id).await?;
                    tx.decide(&mut reservation, ReservationCommand::Confirm)?;
                    Ok(())
                })
            })
            .await;
        match confirmed {
            Ok(_) => {
                let issued = self.invoice(order_id, paid_on, metadata).await?;
                Ok(serde_json::json!({
                    "reservation": "confirmed",
                    "invoice": issued.invoice.number,
                }))
            }
            Err(Fail::Refused(ReservationError::Lapsed(status))) => {
                self.refund_seatless(order_id, status, metadata).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The paid order's invoice, in the buyer's series; its id is the order's, so a
    /// redelivery finds it issued.
    async fn invoice(
        &self,
        order_id: Uuid,
        paid_on: Date,
        metadata: Metadata,
    ) -> Result<Issued, EffectError> {
        let order = self.paid_order(order_id).await?;
        let payment_id = order
            .payment_id
            .clone()
            .ok_or_else(|| EffectError::retry(format!("order {order_id} has no payment yet")))?;
        let draft = Draft {
            invoice_id: invoicing::invoice_id(&format!("order:{order_id}")),
            series: invoicing::series(None, &order.user_id),
            user_id: order.user_id.clone(),
            workspace_id: None,
            order_id: Some(order_id),
            provider_invoice_id: None,
            lines: order.lines.clone(),
            tax_rate: Some(order.tax_rate),
            tax: order.tax,
            issued_on: paid_on,
            due_date: paid_on,
        };
        Ok(self
            .invoicing
            .issue(
                draft,
                Some((payment_id, paid_on)),
                None,
                metadata,
                self.kernel.clock().now(),
            )
            .await?)
    }

    /// Gives the whole payment back: the seats it paid for are no longer held.
    async fn refund_seatless(
        &self,
        order_id: Uuid,
        reservation: ReservationStatus,
        metadata: Metadata,
    ) -> Result<serde_json::Value, EffectError> {
        let order = self.paid_order(order_id).await?;
        let (Some(intent), Some(payment_id)) = (&order.payment_intent_id, &order.payment_id) else {
            return Err(EffectError::retry(format!(
                "order {order_id} is paid but its payment is not on it yet"
            )));
        };
        // A redelivery after the refund was booked finds nothing left to give back: the
        // buyer may still need their mail, Stripe needs no second request.
        let payment = self
            .kernel
            .store()
            .load_aggregate::<Payment>(intent.as_str())
            .await?
            .state;
        if let Some(payment) = payment.filter(|p| p.refundable().amount.is_zero()) {
            self.tell_buyer(&order, payment.amount, reservation).await?;
            return Ok(
                serde_json::json!({ "reservation": reservation, "refunded": payment.amount }),
            );
        }
        // The key is the order's: every delivery asks Stripe for the same refund, and
        // without an amount Stripe refunds what is left of the charge, so the key never
        // meets a different request.
        let refund = self
            .gateway
            .refund(intent, None, &format!("seatless-{order_id}"))
            .await?;
        let amount = Money::from_minor(refund.amount_minor, order.total.currency);
        let command = PaymentCommand::Refund {
            origin: IntentOrigin {
                payment_intent_id: intent.clone(),
                order_id,
                user_id: order.user_id.clone(),
                amount: order.total,
            },
            payment_id: payment_id.clone(),
            refund_id: refund.id.clone(),
            amount,
            reason: Some(SEATLESS.to_owned()),
        };
        let command = &command;
        self.kernel
            .run(metadata, |tx| {
                Box::pin(async move {
                    let mut payment = tx.load::<Payment>(intent.as_str()).await?;
                    // A payment that already booked this refund id decides nothing.
                    tx.decide(&mut payment, command.clone())?;
                    Ok(())
                })
            })
            .await?;
        self.tell_buyer(&order, amount, reservation).await?;
        Ok(serde_json::json!({
            "reservation": reservation,
            "refunded": amount,
            "refund_id": refund.id,
        }))
    }

    async fn tell_buyer(
        &self,
        order: &Order,
        amount: Money,
        reservation: ReservationStatus,
    ) -> Result<(), EffectError> {
        let user = self
            .kernel
            .store()
            .load_aggregate::<User>(order.user_id.as_str())
            .await?
            .state;
        let Some(profile) = user.and_then(|u| u.profile.filter(|_| !u.deleted)) else {
            // Nobody to write to: the refund stands on its own.
            return Ok(());
        };
        let why = match reservation {
            ReservationStatus::Expired => "your seats were held for you until the payment window closed, and your payment arrived after that",
            ReservationStatus::Failed => "the seats you chose sold out before they could be held for you",
            _ => "your reservation was canceled before your payment arrived",
        };
        let mail = Mail {
            id: format!("seatless-refund-{}", order.order_id),
            from: self.mail_from.clone(),
            to: profile.email,
            subject: format!("Your payment of {amount} was refunded"),
            body: format!(
                "Hello {},\n\nWe refunded your payment of {amount} for order {}: {why}. \
                 No tickets were issued. The refund reaches your card within a few days.",
                profile.name, order.order_id,
            ),
        };
        self.mailer.send(&mail).await?;
        Ok(())
    }

    async fn paid_order(&self, order_id: Uuid) -> Result<Order, EffectError> {
        let order = self
            .kernel
            .store()
            .load_aggregate::<Order>(&order_id)
            .await?
            .state
            .ok_or_else(|| EffectError::retry(format!("order {order_id} is not there yet")))?;
        if !order.status.is_paid() {
            return Err(EffectError::retry(format!(
                "order {order_id} is {} here, but its completion was published",
                order.status.as_str()
            )));
        }
        Ok(order)
    }
}
