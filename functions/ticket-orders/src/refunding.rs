//! Giving a paid ticket order its whole payment back, for one of two reasons kassa
//! decides on its own: its seats went back before the money arrived, or its concert was
//! canceled. Stripe is asked under a key made from the order and the reason, without an
//! amount (it refunds what is left of the charge, so the key never meets a different
//! request); the refund is booked on the payment (`payment.refunded`, then
//! `order.refunded`); and the buyer is told why. A redelivery that finds the payment
//! already refunded asks Stripe nothing and only makes sure the mail went out.

use crate::TicketOrders;
use kassa_domain::identity::UserId;
use kassa_domain::money::Money;
use kassa_domain::order::Order;
use kassa_domain::payment::{IntentOrigin, Payment, PaymentCommand};
use kassa_domain::reservation::ReservationStatus;
use kassa_domain::user::User;
use kassa_payments::gateway::PaymentGateway;
use kassa_runtime::effect::EffectError;
use kassa_runtime::mail::{Mail, Mailer};
use kassa_store::Metadata;

/// Why kassa gives the money back.
#[derive(Debug, Clone)]
pub(crate) enum Why {
    /// The reservation had ended (as `status`) before the payment was settled.
    Seatless(ReservationStatus),
    /// The concert will not take place.
    ConcertCanceled { concert: String },
}

impl Why {
    /// The refund's reason, as operators read it on the payment and the order.
    fn reason(&self) -> &'static str {
        match self {
            Self::Seatless(_) => "seats_released_before_payment",
            Self::ConcertCanceled { .. } => "concert_canceled",
        }
    }

    fn explanation(&self) -> String {
        match self {
            Self::Seatless(ReservationStatus::Expired) => "your seats were held for you until the payment window closed, and your payment arrived after that. No tickets were issued".to_owned(),
            Self::Seatless(ReservationStatus::Failed) => "the seats you chose sold out before they could be held for you. No tickets were issued".to_owned(),
            Self::Seatless(_) => "your reservation was canceled before your payment arrived. No tickets were issued".to_owned(),
            Self::ConcertCanceled { concert } => format!("{concert} was canceled. Your tickets are no longer valid"),
        }
    }
}

impl TicketOrders {
    pub(crate) async fn refund_whole(
        &self,
        order: &Order,
        why: Why,
        metadata: Metadata,
    ) -> Result<serde_json::Value, EffectError> {
        let order_id = order.order_id;
        if order.paid_nothing() {
            // Nothing was paid, so nothing goes back; the buyer still hears why.
            return self.tell_free(order, &why).await;
        }
        let (Some(intent), Some(payment_id)) = (&order.payment_intent_id, &order.payment_id) else {
            return Err(EffectError::retry(format!(
                "order {order_id} is paid but its payment is not on it yet"
            )));
        };
        let payment = self
            .kernel
            .store()
            .load_aggregate::<Payment>(intent.as_str())
            .await?
            .state;
        let (amount, refund_id) = match payment.filter(|p| p.refundable().amount.is_zero()) {
            Some(refunded) => (refunded.amount, None),
            None => {
                let refund = self
                    .gateway
                    .refund(intent, None, &format!("{}-{order_id}", why.reason()))
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
                    reason: Some(why.reason().to_owned()),
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
                (amount, Some(refund.id))
            }
        };
        self.tell_buyer(
            &order.user_id,
            Mail {
                id: format!("{}-{order_id}", why.reason()),
                from: self.mail_from.clone(),
                to: String::new(),
                subject: format!("Your payment of {amount} was refunded"),
                body: format!(
                    "We refunded your payment of {amount} for order {order_id}: {}. \
                     The refund reaches your card within a few days.",
                    why.explanation()
                ),
            },
        )
        .await?;
        Ok(serde_json::json!({
            "refunded": amount,
            "reason": why.reason(),
            "refund_id": refund_id,
        }))
    }

    /// The mail to a buyer of a free order whose tickets will not come (nothing to refund).
    async fn tell_free(&self, order: &Order, why: &Why) -> Result<serde_json::Value, EffectError> {
        let order_id = order.order_id;
        self.tell_buyer(
            &order.user_id,
            Mail {
                id: format!("{}-{order_id}", why.reason()),
                from: self.mail_from.clone(),
                to: String::new(),
                subject: format!("About your order {order_id}"),
                body: format!("{}. Nothing was charged for it.", why.explanation()),
            },
        )
        .await?;
        Ok(serde_json::json!({ "refunded": null, "reason": why.reason(), "free": true }))
    }

    /// Sends `mail` to the buyer's recorded address; a buyer who never registered (or was
    /// deleted) has nobody to write to, and what happened stands on its own.
    pub(crate) async fn tell_buyer(&self, buyer: &UserId, mail: Mail) -> Result<(), EffectError> {
        let user = self
            .kernel
            .store()
            .load_aggregate::<User>(buyer.as_str())
            .await?
            .state;
        let Some(profile) = user.and_then(|u| u.profile.filter(|_| !u.deleted)) else {
            return Ok(());
        };
        let mail = Mail {
            to: profile.email,
            body: format!("Hello {},\n\n{}", profile.name, mail.body),
            ..mail
        };
        self.mailer.send(&mail).await?;
        Ok(())
    }
}
