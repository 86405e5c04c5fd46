//! Stripe webhook events, read into the facts kassa acts on. Pure: the body has already
//! passed [`crate::webhook_signature::verify`] (whose `sign` also builds headers for tests).
//!
//! Strict about the envelope (`id`, `type`, `created`, `data.object`) and about the ids and
//! figures kassa books, because guessing those would book the wrong thing. Lenient about
//! everything Stripe omits depending on the API version, or that localstripe never sends:
//! absent optional fields become `None`, empty or `false`. Where Stripe moved a field between
//! API versions, both places are read, so an account upgrade does not break delivery.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeEvent {
    pub id: String,
    pub event_type: String,
    pub created: i64,
    pub signal: Signal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// `payment_intent.succeeded`.
    IntentSucceeded {
        intent: IntentFacts,
        charge_id: Option<String>,
        /// The payment method charged (`pm_...`), for the fraud rules that look at the
        /// card behind it.
        payment_method: Option<String>,
    },
    /// `payment_intent.payment_failed`; `code` and `message` come from `last_payment_error`.
    IntentFailed {
        intent: IntentFacts,
        code: Option<String>,
        message: String,
    },
    /// `payment_intent.canceled`; `reason` is Stripe's `cancellation_reason`.
    IntentCanceled {
        intent: IntentFacts,
        reason: Option<String>,
    },
    /// `charge.refunded`. `amount_minor` is the charge's cumulative `amount_refunded`: from
    /// API version 2022-11-15 Stripe no longer embeds `refunds`, so `refunds` may be empty
    /// and this is then the only figure the event carries.
    ChargeRefunded {
        intent_id: String,
        charge_id: String,
        currency: String,
        amount_minor: i64,
        refunds: Vec<RefundFacts>,
    },
    /// `invoice.paid`.
    InvoicePaid { invoice: InvoiceFacts },
    /// `invoice.payment_failed`.
    InvoicePaymentFailed { invoice: InvoiceFacts },
    /// `invoice.payment_succeeded`: Stripe sends it with `invoice.paid` for a payment
    /// (localstripe sends it alone).
    InvoicePaymentSucceeded { invoice: InvoiceFacts },
    /// `customer.subscription.created`.
    SubscriptionCreated(SubscriptionFacts),
    /// `customer.subscription.updated`.
    SubscriptionUpdated(SubscriptionFacts),
    /// `customer.subscription.deleted`.
    SubscriptionDeleted(SubscriptionFacts),
    /// Any other type: answered 2xx and logged by the caller.
    Unhandled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentFacts {
    pub id: String,
    pub amount_minor: i64,
    /// Lowercase, as Stripe sends it.
    pub currency: String,
    pub customer: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundFacts {
    pub id: String,
    pub amount_minor: i64,
    pub reason: Option<String>,
    pub status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceFacts {
    pub id: String,
    pub number: Option<String>,
    pub customer: Option<String>,
    pub subscription: Option<String>,
    pub currency: String,
    pub amount_due_minor: i64,
    pub amount_paid_minor: i64,
    pub subtotal_minor: i64,
    /// `tax`, or the sum of `total_taxes` / `total_tax_amounts` on API versions without it.
    pub tax_minor: Option<i64>,
    pub total_minor: i64,
    pub due_date: Option<i64>,
    pub attempt_count: u32,
    /// Why Stripe made it: `subscription_create`, `subscription_cycle`, `manual`, ...
    pub billing_reason: Option<String>,
    /// The payment intent that paid it or last tried to.
    pub payment_intent: Option<String>,
    pub lines: Vec<InvoiceLineFacts>,
    pub metadata: BTreeMap<String, String>,
    /// The subscription's metadata as of the invoice, else empty.
    pub subscription_metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceLineFacts {
    pub description: Option<String>,
    pub amount_minor: i64,
    pub quantity: Option<u64>,
    pub price: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionFacts {
    pub id: String,
    pub customer: Option<String>,
    pub status: String,
    /// The first item's price, else its (legacy) plan.
    pub price: Option<String>,
    /// Top-level before API version 2025-03-31, on the item since.
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub metadata: BTreeMap<String, String>,
    /// For `customer.subscription.updated`, what the update changed of the fields above
    /// (Stripe's `data.previous_attributes`); `None` when the event does not say.
    pub previous: Option<PreviousTerms>,
}

/// The values an update replaced, for the fields kassa reads that it lists; a field the
/// update did not change is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreviousTerms {
    pub status: Option<String>,
    pub price: Option<String>,
    pub cancel_at_period_end: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not a JSON object: {0}")]
    NotJson(String),
    #[error("`{0}` is missing")]
    Missing(String),
    #[error("`{field}` is not {expected}")]
    Invalid {
        field: String,
        expected: &'static str,
    },
}

pub fn parse(body: &[u8]) -> Result<StripeEvent, ParseError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let Value::Object(map) = &value else {
        return Err(ParseError::NotJson(format!("found {}", kind(&value))));
    };
    let event = Obj {
        map,
        path: String::new(),
    };
    let id = event.string("id")?;
    let event_type = event.string("type")?;
    let created = event.int("created")?;
    let data = event.object("data")?;
    let object = data.object("object")?;
    let signal = match event_type.as_str() {
        "payment_intent.succeeded" => Signal::IntentSucceeded {
            intent: intent_facts(&object)?,
            charge_id: latest_charge(&object)?,
            payment_method: match object.get("payment_method") {
                None | Some(Value::Null) => None,
                Some(_) => object.id_ref("payment_method")?,
            },
        },
        "payment_intent.payment_failed" => {
            let error = object.opt_object("last_payment_error")?;
            let code = match &error {
                Some(error) => error.opt_string("code")?,
                None => None,
            };
            let message = match &error {
                Some(error) => error.opt_string("message")?,
                None => None,
            };
            Signal::IntentFailed {
                intent: intent_facts(&object)?,
                code,
                message: message.unwrap_or_else(|| "payment failed".to_owned()),
            }
        }
        "payment_intent.canceled" => Signal::IntentCanceled {
            intent: intent_facts(&object)?,
            reason: object.opt_string("cancellation_reason")?,
        },
        "charge.refunded" => Signal::ChargeRefunded {
            intent_id: object
                .id_ref("payment_intent")?
                .ok_or_else(|| ParseError::Missing(object.field("payment_intent")))?,
            charge_id: object.string("id")?,
            currency: object.string("currency")?,
            amount_minor: object.int("amount_refunded")?,
            refunds: object
                .list("refunds")?
                .iter()
                .map(refund_facts)
                .collect::<Result<_, _>>()?,
        },
        "invoice.paid" => Signal::InvoicePaid {
            invoice: invoice_facts(&object)?,
        },
        "invoice.payment_failed" => Signal::InvoicePaymentFailed {
            invoice: invoice_facts(&object)?,
        },
        "invoice.payment_succeeded" => Signal::InvoicePaymentSucceeded {
            invoice: invoice_facts(&object)?,
        },
        "customer.subscription.created" => {
            Signal::SubscriptionCreated(subscription_facts(&object)?)
        }
        "customer.subscription.updated" => {
            let mut facts = subscription_facts(&object)?;
            facts.previous = match data.opt_object("previous_attributes")? {
                Some(previous) => Some(previous_terms(&previous)?),
                None => None,
            };
            Signal::SubscriptionUpdated(facts)
        }
        "customer.subscription.deleted" => {
            Signal::SubscriptionDeleted(subscription_facts(&object)?)
        }
        _ => Signal::Unhandled,
    };
    Ok(StripeEvent {
        id,
        event_type,
        created,
        signal,
    })
}

/// The same reading for a subscription the API answered with, so the gateway and the
/// webhooks agree on what a subscription's price and period are.
pub(crate) fn subscription_from_value(value: &Value) -> Result<SubscriptionFacts, ParseError> {
    let Value::Object(map) = value else {
        return Err(ParseError::NotJson(format!("found {}", kind(value))));
    };
    subscription_facts(&Obj {
        map,
        path: String::new(),
    })
}

fn intent_facts(intent: &Obj) -> Result<IntentFacts, ParseError> {
    Ok(IntentFacts {
        id: intent.string("id")?,
        amount_minor: intent.intent_amount("amount")?,
        currency: intent.string("currency")?,
        customer: intent.id_ref("customer")?,
        metadata: intent.metadata("metadata")?,
    })
}

/// `latest_charge` is an id on Stripe and an embedded charge on localstripe; API versions
/// before 2022-11-15 only list the intent's `charges`.
fn latest_charge(intent: &Obj) -> Result<Option<String>, ParseError> {
    if let Some(id) = intent.id_ref("latest_charge")? {
        return Ok(Some(id));
    }
    match intent.list("charges")?.first() {
        Some(charge) => charge.string("id").map(Some),
        None => Ok(None),
    }
}

fn refund_facts(refund: &Obj) -> Result<RefundFacts, ParseError> {
    Ok(RefundFacts {
        id: refund.string("id")?,
        amount_minor: refund.int("amount")?,
        reason: refund.opt_string("reason")?,
        status: refund.opt_string("status")?,
    })
}

fn invoice_facts(invoice: &Obj) -> Result<InvoiceFacts, ParseError> {
    // From API version 2025-03-31 the subscription moved under `parent`.
    let parent_details = match invoice.opt_object("parent")? {
        Some(parent) => parent.opt_object("subscription_details")?,
        None => None,
    };
    let subscription = match invoice.id_ref("subscription")? {
        Some(id) => Some(id),
        None => match &parent_details {
            Some(details) => details.id_ref("subscription")?,
            None => None,
        },
    };
    let subscription_metadata = match invoice.opt_object("subscription_details")? {
        Some(details) => details.metadata("metadata")?,
        None => match &parent_details {
            Some(details) => details.metadata("metadata")?,
            None => BTreeMap::new(),
        },
    };
    let attempt_count = match invoice.opt_int("attempt_count")? {
        Some(n) => u32::try_from(n).map_err(|_| invoice.invalid("attempt_count", "a count"))?,
        None => 0,
    };
    Ok(InvoiceFacts {
        id: invoice.string("id")?,
        number: invoice.opt_string("number")?,
        customer: invoice.id_ref("customer")?,
        subscription,
        currency: invoice.string("currency")?,
        amount_due_minor: invoice.int("amount_due")?,
        amount_paid_minor: invoice.int("amount_paid")?,
        subtotal_minor: invoice.int("subtotal")?,
        tax_minor: invoice_tax(invoice)?,
        total_minor: invoice.int("total")?,
        due_date: invoice.opt_int("due_date")?,
        attempt_count,
        billing_reason: invoice.opt_string("billing_reason")?,
        payment_intent: invoice.id_ref("payment_intent")?,
        lines: invoice
            .list("lines")?
            .iter()
            .map(line_facts)
            .collect::<Result<_, _>>()?,
        metadata: invoice.metadata("metadata")?,
        subscription_metadata,
    })
}

/// `tax` was removed in API version 2025-03-31 in favour of `total_taxes`; older versions
/// also carry `total_tax_amounts`. An empty list means no tax, not an unknown one.
fn invoice_tax(invoice: &Obj) -> Result<Option<i64>, ParseError> {
    if let Some(tax) = invoice.opt_int("tax")? {
        return Ok(Some(tax));
    }
    for key in ["total_taxes", "total_tax_amounts"] {
        if invoice.get(key).is_some() {
            let mut sum = 0i64;
            for tax in invoice.list(key)? {
                sum = sum
                    .checked_add(tax.int("amount")?)
                    .ok_or_else(|| invoice.invalid(key, "a representable sum"))?;
            }
            return Ok(Some(sum));
        }
    }
    Ok(None)
}

fn line_facts(line: &Obj) -> Result<InvoiceLineFacts, ParseError> {
    let quantity = match line.opt_int("quantity")? {
        Some(n) => Some(u64::try_from(n).map_err(|_| line.invalid("quantity", "a count"))?),
        None => None,
    };
    Ok(InvoiceLineFacts {
        description: line.opt_string("description")?,
        amount_minor: line.int("amount")?,
        quantity,
        price: line_price(line)?,
    })
}

/// `price` before API version 2025-03-31, `pricing.price_details.price` since; `plan` on
/// localstripe, which knows no prices.
fn line_price(line: &Obj) -> Result<Option<String>, ParseError> {
    if let Some(price) = line.id_ref("price")? {
        return Ok(Some(price));
    }
    if let Some(pricing) = line.opt_object("pricing")? {
        if let Some(details) = pricing.opt_object("price_details")? {
            if let Some(price) = details.id_ref("price")? {
                return Ok(Some(price));
            }
        }
    }
    line.id_ref("plan")
}

/// The first item's price, else its plan, else the subscription's (legacy) plan.
fn subscription_price(subscription: &Obj) -> Result<Option<String>, ParseError> {
    let items = subscription.list("items")?;
    let price = match items.first() {
        Some(item) => match item.id_ref("price")? {
            Some(price) => Some(price),
            None => item.id_ref("plan")?,
        },
        None => None,
    };
    match price {
        Some(price) => Ok(Some(price)),
        None => subscription.id_ref("plan"),
    }
}

fn previous_terms(previous: &Obj) -> Result<PreviousTerms, ParseError> {
    let cancel_at_period_end = match previous.get("cancel_at_period_end") {
        None => None,
        Some(_) => Some(previous.flag("cancel_at_period_end")?),
    };
    Ok(PreviousTerms {
        status: previous.opt_string("status")?,
        price: subscription_price(previous)?,
        cancel_at_period_end,
    })
}

fn subscription_facts(subscription: &Obj) -> Result<SubscriptionFacts, ParseError> {
    let items = subscription.list("items")?;
    let first = items.first();
    let price = subscription_price(subscription)?;
    let current_period_end = match subscription.opt_int("current_period_end")? {
        Some(end) => Some(end),
        None => match first {
            Some(item) => item.opt_int("current_period_end")?,
            None => None,
        },
    };
    Ok(SubscriptionFacts {
        id: subscription.string("id")?,
        customer: subscription.id_ref("customer")?,
        status: subscription.string("status")?,
        price,
        current_period_end,
        cancel_at_period_end: subscription.flag("cancel_at_period_end")?,
        canceled_at: subscription.opt_int("canceled_at")?,
        ended_at: subscription.opt_int("ended_at")?,
        metadata: subscription.metadata("metadata")?,
        previous: None,
    })
}

/// A JSON object and where it sits in the event, so an error can name the exact field.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn invalid(&self, key: &str, expected: &'static str) -> ParseError {
        ParseError::Invalid {
            field: self.field(key),
            expected,
        }
    }

    /// Stripe writes `null` for an unset field and some API versions leave it out: the same.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn string(&self, key: &str) -> Result<String, ParseError> {
        self.opt_string(key)?
            .ok_or_else(|| ParseError::Missing(self.field(key)))
    }

    fn opt_string(&self, key: &str) -> Result<Option<String>, ParseError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.invalid(key, "a string")),
        }
    }

    /// A payment intent's `amount`: an integer from Stripe; localstripe echoes an amount
    /// set by an update as the form's digits, which are read as the number they spell.
    fn intent_amount(&self, key: &str) -> Result<i64, ParseError> {
        match self.get(key) {
            Some(serde_json::Value::String(digits)) => {
                digits.parse().map_err(|_| self.invalid(key, "an integer"))
            }
            _ => self.int(key),
        }
    }

    fn int(&self, key: &str) -> Result<i64, ParseError> {
        self.opt_int(key)?
            .ok_or_else(|| ParseError::Missing(self.field(key)))
    }

    fn opt_int(&self, key: &str) -> Result<Option<i64>, ParseError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.invalid(key, "an integer")),
        }
    }

    fn flag(&self, key: &str) -> Result<bool, ParseError> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(self.invalid(key, "a boolean")),
        }
    }

    fn object(&self, key: &str) -> Result<Obj<'a>, ParseError> {
        self.opt_object(key)?
            .ok_or_else(|| ParseError::Missing(self.field(key)))
    }

    fn opt_object(&self, key: &str) -> Result<Option<Obj<'a>>, ParseError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Obj {
                map,
                path: self.field(key),
            })),
            Some(_) => Err(self.invalid(key, "an object")),
        }
    }

    /// A reference Stripe sends as an id, or as the whole object when expanded.
    fn id_ref(&self, key: &str) -> Result<Option<String>, ParseError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(id)) => Ok(Some(id.clone())),
            Some(Value::Object(_)) => self.object(key)?.string("id").map(Some),
            Some(_) => Err(self.invalid(key, "an id or an object")),
        }
    }

    /// The objects of a list object's `data`; none when the list is absent (Stripe only
    /// embeds some lists when asked to expand them).
    fn list(&self, key: &str) -> Result<Vec<Obj<'a>>, ParseError> {
        let (items, path) = match self.get(key) {
            None => return Ok(Vec::new()),
            Some(Value::Array(items)) => (items, self.field(key)),
            Some(Value::Object(_)) => {
                let list = self.object(key)?;
                match list.get("data") {
                    None => return Ok(Vec::new()),
                    Some(Value::Array(items)) => (items, list.field("data")),
                    Some(_) => return Err(list.invalid("data", "an array")),
                }
            }
            Some(_) => return Err(self.invalid(key, "a list")),
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(map) => Ok(Obj {
                    map,
                    path: format!("{path}[{i}]"),
                }),
                _ => Err(ParseError::Invalid {
                    field: format!("{path}[{i}]"),
                    expected: "an object",
                }),
            })
            .collect()
    }

    /// Stripe only stores strings in metadata; anything else did not come from kassa and is
    /// dropped rather than failing the whole delivery.
    fn metadata(&self, key: &str) -> Result<BTreeMap<String, String>, ParseError> {
        match self.get(key) {
            None => Ok(BTreeMap::new()),
            Some(Value::Object(map)) => Ok(map
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()),
            Some(_) => Err(self.invalid(key, "an object")),
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str, object: &str) -> Vec<u8> {
        format!(
            r#"{{"id":"evt_1PqRsT2eZvKYlo2C0a1b2c3d","object":"event","api_version":"2024-06-20","created":1718900000,"livemode":false,"pending_webhooks":1,"request":{{"id":null,"idempotency_key":null}},"type":"{event_type}","data":{{"object":{object}}}}}"#
        )
        .into_bytes()
    }

    fn signal(event_type: &str, object: &str) -> Signal {
        let parsed = parse(&event(event_type, object)).unwrap();
        assert_eq!(parsed.id, "evt_1PqRsT2eZvKYlo2C0a1b2c3d");
        assert_eq!(parsed.event_type, event_type);
        assert_eq!(parsed.created, 1_718_900_000);
        parsed.signal
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const INTENT: &str = r#"{
        "id": "pi_3PqRsT2eZvKYlo2C1xYz0aBc",
        "object": "payment_intent",
        "amount": 1234,
        "amount_received": 1234,
        "capture_method": "automatic_async",
        "client_secret": "pi_3PqRsT2eZvKYlo2C1xYz0aBc_secret_abc",
        "created": 1718899990,
        "currency": "usd",
        "customer": "cus_QhHx1aBcDeFgHi",
        "last_payment_error": null,
        "latest_charge": "ch_3PqRsT2eZvKYlo2C1aB2cD3e",
        "livemode": false,
        "metadata": {"order_id": "order-1", "attempt": 2},
        "payment_method": "pm_1PqRsT2eZvKYlo2CaBcDeFgH",
        "payment_method_types": ["card"],
        "status": "succeeded"
    }"#;

    fn intent() -> IntentFacts {
        IntentFacts {
            id: "pi_3PqRsT2eZvKYlo2C1xYz0aBc".to_owned(),
            amount_minor: 1234,
            currency: "usd".to_owned(),
            customer: Some("cus_QhHx1aBcDeFgHi".to_owned()),
            // `attempt` is a number: not something Stripe or kassa put there.
            metadata: map(&[("order_id", "order-1")]),
        }
    }

    #[test]
    fn payment_intent_succeeded() {
        assert_eq!(
            signal("payment_intent.succeeded", INTENT),
            Signal::IntentSucceeded {
                intent: intent(),
                charge_id: Some("ch_3PqRsT2eZvKYlo2C1aB2cD3e".to_owned()),
                payment_method: Some("pm_1PqRsT2eZvKYlo2CaBcDeFgH".to_owned()),
            }
        );
    }

    #[test]
    fn payment_intent_succeeded_before_latest_charge_existed() {
        let object = INTENT.replace(
            r#""latest_charge": "ch_3PqRsT2eZvKYlo2C1aB2cD3e","#,
            r#""charges": {"object": "list", "data": [{"id": "ch_old", "object": "charge"}], "has_more": false},"#,
        );
        let Signal::IntentSucceeded { charge_id, .. } = signal("payment_intent.succeeded", &object)
        else {
            panic!("not a success");
        };
        assert_eq!(charge_id.as_deref(), Some("ch_old"));
    }

    #[test]
    fn payment_intent_payment_failed_carries_the_decline() {
        let object = INTENT.replace(r#""status": "succeeded""#, r#""status": "requires_payment_method""#).replace(
            r#""last_payment_error": null"#,
            r#""last_payment_error": {"charge": "ch_3PqRsT2eZvKYlo2C1aB2cD3e", "code": "card_declined", "decline_code": "insufficient_funds", "doc_url": "https://stripe.com/docs/error-codes/card-declined", "message": "Your card has insufficient funds.", "type": "card_error"}"#,
        );
        assert_eq!(
            signal("payment_intent.payment_failed", &object),
            Signal::IntentFailed {
                intent: intent(),
                code: Some("card_declined".to_owned()),
                message: "Your card has insufficient funds.".to_owned(),
            }
        );
    }

    #[test]
    fn a_failure_without_last_payment_error_still_has_a_message() {
        assert_eq!(
            signal("payment_intent.payment_failed", INTENT),
            Signal::IntentFailed {
                intent: intent(),
                code: None,
                message: "payment failed".to_owned(),
            }
        );
    }

    #[test]
    fn payment_intent_canceled() {
        let object = INTENT.replace(
            r#""status": "succeeded""#,
            r#""status": "canceled", "canceled_at": 1718900000, "cancellation_reason": "abandoned""#,
        );
        assert_eq!(
            signal("payment_intent.canceled", &object),
            Signal::IntentCanceled {
                intent: intent(),
                reason: Some("abandoned".to_owned()),
            }
        );
    }

    const CHARGE: &str = r#"{
        "id": "ch_3PqRsT2eZvKYlo2C1aB2cD3e",
        "object": "charge",
        "amount": 1234,
        "amount_captured": 1234,
        "amount_refunded": 734,
        "captured": true,
        "created": 1718899995,
        "currency": "usd",
        "customer": "cus_QhHx1aBcDeFgHi",
        "metadata": {},
        "paid": true,
        "payment_intent": "pi_3PqRsT2eZvKYlo2C1xYz0aBc",
        "refunded": false,
        "refunds": {
            "object": "list",
            "data": [
                {"id": "re_3PqRsT2eZvKYlo2C1r2", "object": "refund", "amount": 234, "charge": "ch_3PqRsT2eZvKYlo2C1aB2cD3e", "currency": "usd", "reason": null, "status": "pending"},
                {"id": "re_3PqRsT2eZvKYlo2C1r1", "object": "refund", "amount": 500, "charge": "ch_3PqRsT2eZvKYlo2C1aB2cD3e", "currency": "usd", "reason": "requested_by_customer", "status": "succeeded"}
            ],
            "has_more": false,
            "total_count": 2,
            "url": "/v1/charges/ch_3PqRsT2eZvKYlo2C1aB2cD3e/refunds"
        },
        "status": "succeeded"
    }"#;

    #[test]
    fn charge_refunded_lists_its_refunds() {
        assert_eq!(
            signal("charge.refunded", CHARGE),
            Signal::ChargeRefunded {
                intent_id: "pi_3PqRsT2eZvKYlo2C1xYz0aBc".to_owned(),
                charge_id: "ch_3PqRsT2eZvKYlo2C1aB2cD3e".to_owned(),
                currency: "usd".to_owned(),
                amount_minor: 734,
                refunds: vec![
                    RefundFacts {
                        id: "re_3PqRsT2eZvKYlo2C1r2".to_owned(),
                        amount_minor: 234,
                        reason: None,
                        status: Some("pending".to_owned()),
                    },
                    RefundFacts {
                        id: "re_3PqRsT2eZvKYlo2C1r1".to_owned(),
                        amount_minor: 500,
                        reason: Some("requested_by_customer".to_owned()),
                        status: Some("succeeded".to_owned()),
                    },
                ],
            }
        );
    }

    #[test]
    fn charge_refunded_without_embedded_refunds_still_carries_the_amount() {
        let start = CHARGE.find(r#""refunds""#).unwrap();
        let end = CHARGE.rfind(r#""status": "succeeded""#).unwrap();
        let object = format!("{}{}", &CHARGE[..start], &CHARGE[end..]);
        let Signal::ChargeRefunded {
            amount_minor,
            refunds,
            ..
        } = signal("charge.refunded", &object)
        else {
            panic!("not a refund");
        };
        assert_eq!(amount_minor, 734);
        assert_eq!(refunds, vec![]);
    }

    #[test]
    fn a_refunded_charge_without_its_intent_is_refused() {
        let object = CHARGE.replace(
            r#""payment_intent": "pi_3PqRsT2eZvKYlo2C1xYz0aBc""#,
            r#""payment_intent": null"#,
        );
        assert_eq!(
            parse(&event("charge.refunded", &object)),
            Err(ParseError::Missing("data.object.payment_intent".to_owned()))
        );
    }

    #[test]
    fn invoice_paid() {
        let object = r#"{
            "id": "in_1PqRsT2eZvKYlo2CInv0001",
            "object": "invoice",
            "amount_due": 2380,
            "amount_paid": 2380,
            "amount_remaining": 0,
            "attempt_count": 1,
            "attempted": true,
            "billing_reason": "subscription_cycle",
            "collection_method": "charge_automatically",
            "billing_reason": "subscription_cycle",
            "created": 1718899000,
            "currency": "eur",
            "customer": "cus_QhHx1aBcDeFgHi",
            "payment_intent": "pi_1PqRsT2eZvKYlo2CPay0001",
            "due_date": null,
            "lines": {
                "object": "list",
                "data": [{
                    "id": "il_1PqRsT2eZvKYlo2CLine0001",
                    "object": "line_item",
                    "amount": 2000,
                    "currency": "eur",
                    "description": "1 × Kassa Pro (at €20.00 / month)",
                    "period": {"end": 1721491200, "start": 1718899200},
                    "plan": {"id": "price_1PqRsT2eZvKYlo2CPro", "object": "plan"},
                    "price": {"id": "price_1PqRsT2eZvKYlo2CPro", "object": "price", "unit_amount": 2000},
                    "proration": false,
                    "quantity": 1,
                    "subscription": "sub_1PqRsT2eZvKYlo2CSub01",
                    "type": "subscription"
                }],
                "has_more": false,
                "total_count": 1,
                "url": "/v1/invoices/in_1PqRsT2eZvKYlo2CInv0001/lines"
            },
            "metadata": {},
            "number": "A1B2C3D4-0007",
            "paid": true,
            "status": "paid",
            "subscription": "sub_1PqRsT2eZvKYlo2CSub01",
            "subscription_details": {"metadata": {"workspace_id": "ws-1"}},
            "subtotal": 2000,
            "tax": 380,
            "total": 2380,
            "total_tax_amounts": [{"amount": 380, "inclusive": false, "tax_rate": "txr_1"}]
        }"#;
        assert_eq!(
            signal("invoice.paid", object),
            Signal::InvoicePaid {
                invoice: InvoiceFacts {
                    id: "in_1PqRsT2eZvKYlo2CInv0001".to_owned(),
                    number: Some("A1B2C3D4-0007".to_owned()),
                    customer: Some("cus_QhHx1aBcDeFgHi".to_owned()),
                    subscription: Some("sub_1PqRsT2eZvKYlo2CSub01".to_owned()),
                    currency: "eur".to_owned(),
                    amount_due_minor: 2380,
                    amount_paid_minor: 2380,
                    subtotal_minor: 2000,
                    tax_minor: Some(380),
                    total_minor: 2380,
                    due_date: None,
                    attempt_count: 1,
                    billing_reason: Some("subscription_cycle".to_owned()),
                    payment_intent: Some("pi_1PqRsT2eZvKYlo2CPay0001".to_owned()),
                    lines: vec![InvoiceLineFacts {
                        description: Some("1 × Kassa Pro (at €20.00 / month)".to_owned()),
                        amount_minor: 2000,
                        quantity: Some(1),
                        price: Some("price_1PqRsT2eZvKYlo2CPro".to_owned()),
                    }],
                    metadata: BTreeMap::new(),
                    subscription_metadata: map(&[("workspace_id", "ws-1")]),
                },
            }
        );
    }

    /// API version 2025-03-31 moved the subscription under `parent`, the price under
    /// `pricing`, and replaced `tax` with `total_taxes`.
    #[test]
    fn invoice_payment_failed_in_the_2025_shape() {
        let object = r#"{
            "id": "in_1RaBcD2eZvKYlo2CInv0002",
            "object": "invoice",
            "amount_due": 4900,
            "amount_paid": 0,
            "amount_remaining": 4900,
            "attempt_count": 3,
            "attempted": true,
            "currency": "usd",
            "customer": {"id": "cus_QhHx1aBcDeFgHi", "object": "customer"},
            "due_date": 1719504000,
            "lines": {
                "object": "list",
                "data": [{
                    "id": "il_1RaBcD2eZvKYlo2CLine0002",
                    "object": "line_item",
                    "amount": 4900,
                    "currency": "usd",
                    "description": null,
                    "pricing": {"price_details": {"price": "price_1RaBcD2eZvKYlo2CTeam", "product": "prod_R1"}, "type": "price_details", "unit_amount_decimal": "4900"},
                    "quantity": 1
                }],
                "has_more": false,
                "url": "/v1/invoices/in_1RaBcD2eZvKYlo2CInv0002/lines"
            },
            "metadata": {"kassa_invoice": "inv-9"},
            "number": null,
            "parent": {
                "quote_details": null,
                "subscription_details": {"metadata": {"workspace_id": "ws-2"}, "subscription": "sub_1RaBcD2eZvKYlo2CSub02"},
                "type": "subscription_details"
            },
            "status": "open",
            "subtotal": 4900,
            "total": 4900,
            "total_taxes": []
        }"#;
        assert_eq!(
            signal("invoice.payment_failed", object),
            Signal::InvoicePaymentFailed {
                invoice: InvoiceFacts {
                    id: "in_1RaBcD2eZvKYlo2CInv0002".to_owned(),
                    number: None,
                    customer: Some("cus_QhHx1aBcDeFgHi".to_owned()),
                    subscription: Some("sub_1RaBcD2eZvKYlo2CSub02".to_owned()),
                    currency: "usd".to_owned(),
                    amount_due_minor: 4900,
                    amount_paid_minor: 0,
                    subtotal_minor: 4900,
                    tax_minor: Some(0),
                    total_minor: 4900,
                    due_date: Some(1_719_504_000),
                    attempt_count: 3,
                    billing_reason: None,
                    payment_intent: None,
                    lines: vec![InvoiceLineFacts {
                        description: None,
                        amount_minor: 4900,
                        quantity: Some(1),
                        price: Some("price_1RaBcD2eZvKYlo2CTeam".to_owned()),
                    }],
                    metadata: map(&[("kassa_invoice", "inv-9")]),
                    subscription_metadata: map(&[("workspace_id", "ws-2")]),
                },
            }
        );
    }

    #[test]
    fn an_invoice_without_tax_fields_has_no_tax_figure() {
        let object = r#"{"id": "in_1", "currency": "usd", "amount_due": 0, "amount_paid": 0, "subtotal": 0, "total": 0}"#;
        let Signal::InvoicePaid { invoice } = signal("invoice.paid", object) else {
            panic!("not an invoice");
        };
        assert_eq!(invoice.tax_minor, None);
        assert_eq!(invoice.attempt_count, 0);
        assert_eq!(invoice.lines, vec![]);
        assert_eq!(invoice.subscription_metadata, BTreeMap::new());
    }

    const SUBSCRIPTION: &str = r#"{
        "id": "sub_1PqRsT2eZvKYlo2CSub01",
        "object": "subscription",
        "billing_cycle_anchor": 1718899200,
        "cancel_at": null,
        "cancel_at_period_end": false,
        "canceled_at": null,
        "collection_method": "charge_automatically",
        "created": 1718899200,
        "currency": "eur",
        "current_period_end": 1721491200,
        "current_period_start": 1718899200,
        "customer": "cus_QhHx1aBcDeFgHi",
        "ended_at": null,
        "items": {
            "object": "list",
            "data": [{
                "id": "si_QhHxSubItem01",
                "object": "subscription_item",
                "plan": {"id": "price_1PqRsT2eZvKYlo2CPro", "object": "plan", "amount": 2000},
                "price": {"id": "price_1PqRsT2eZvKYlo2CPro", "object": "price", "unit_amount": 2000},
                "quantity": 1,
                "subscription": "sub_1PqRsT2eZvKYlo2CSub01"
            }],
            "has_more": false,
            "total_count": 1,
            "url": "/v1/subscription_items?subscription=sub_1PqRsT2eZvKYlo2CSub01"
        },
        "latest_invoice": "in_1PqRsT2eZvKYlo2CInv0001",
        "metadata": {"workspace_id": "ws-1"},
        "plan": {"id": "price_1PqRsT2eZvKYlo2CPro", "object": "plan", "amount": 2000},
        "quantity": 1,
        "start_date": 1718899200,
        "status": "active"
    }"#;

    fn subscription() -> SubscriptionFacts {
        SubscriptionFacts {
            id: "sub_1PqRsT2eZvKYlo2CSub01".to_owned(),
            customer: Some("cus_QhHx1aBcDeFgHi".to_owned()),
            status: "active".to_owned(),
            price: Some("price_1PqRsT2eZvKYlo2CPro".to_owned()),
            current_period_end: Some(1_721_491_200),
            cancel_at_period_end: false,
            canceled_at: None,
            ended_at: None,
            metadata: map(&[("workspace_id", "ws-1")]),
            previous: None,
        }
    }

    #[test]
    fn customer_subscription_created() {
        assert_eq!(
            signal("customer.subscription.created", SUBSCRIPTION),
            Signal::SubscriptionCreated(subscription())
        );
    }

    /// API version 2025-03-31 moved the period onto the item and dropped `plan`.
    #[test]
    fn customer_subscription_updated_in_the_2025_shape() {
        let object = r#"{
            "id": "sub_1PqRsT2eZvKYlo2CSub01",
            "object": "subscription",
            "cancel_at_period_end": true,
            "canceled_at": null,
            "customer": "cus_QhHx1aBcDeFgHi",
            "ended_at": null,
            "items": {
                "object": "list",
                "data": [{
                    "id": "si_QhHxSubItem01",
                    "object": "subscription_item",
                    "current_period_end": 1721491200,
                    "current_period_start": 1718899200,
                    "price": {"id": "price_1PqRsT2eZvKYlo2CPro", "object": "price"},
                    "quantity": 1
                }],
                "has_more": false
            },
            "metadata": {"workspace_id": "ws-1"},
            "status": "active"
        }"#;
        let mut expected = subscription();
        expected.cancel_at_period_end = true;
        assert_eq!(
            signal("customer.subscription.updated", object),
            Signal::SubscriptionUpdated(expected)
        );
    }

    #[test]
    fn an_update_says_what_it_changed() {
        let body = String::from_utf8(event("customer.subscription.updated", SUBSCRIPTION))
            .unwrap()
            .replace(
                r#""data":{"object":"#,
                r#""data":{"previous_attributes":{"items":{"object":"list","data":[{"id":"si_QhHxSubItem01","price":{"id":"price_basic"}}]},"plan":{"id":"price_basic"},"status":"trialing","cancel_at_period_end":true},"object":"#,
            );
        let Signal::SubscriptionUpdated(facts) = parse(body.as_bytes()).unwrap().signal else {
            panic!("not an update");
        };
        assert_eq!(
            facts.previous,
            Some(PreviousTerms {
                status: Some("trialing".to_owned()),
                price: Some("price_basic".to_owned()),
                cancel_at_period_end: Some(true),
            })
        );
        // An update of something else lists none of them.
        let body = String::from_utf8(event("customer.subscription.updated", SUBSCRIPTION))
            .unwrap()
            .replace(
                r#""data":{"object":"#,
                r#""data":{"previous_attributes":{"metadata":{}},"object":"#,
            );
        let Signal::SubscriptionUpdated(facts) = parse(body.as_bytes()).unwrap().signal else {
            panic!("not an update");
        };
        assert_eq!(facts.previous, Some(PreviousTerms::default()));
    }

    #[test]
    fn customer_subscription_deleted() {
        let object = SUBSCRIPTION
            .replace(r#""status": "active""#, r#""status": "canceled""#)
            .replace(r#""canceled_at": null"#, r#""canceled_at": 1719000000"#)
            .replace(r#""ended_at": null"#, r#""ended_at": 1719000000"#);
        let mut expected = subscription();
        expected.status = "canceled".to_owned();
        expected.canceled_at = Some(1_719_000_000);
        expected.ended_at = Some(1_719_000_000);
        assert_eq!(
            signal("customer.subscription.deleted", &object),
            Signal::SubscriptionDeleted(expected)
        );
    }

    #[test]
    fn an_unknown_type_is_unhandled() {
        let object =
            r#"{"id": "cus_QhHx1aBcDeFgHi", "object": "customer", "email": "ops@acme.test"}"#;
        assert_eq!(signal("customer.created", object), Signal::Unhandled);
    }

    #[test]
    fn malformed_json_is_refused() {
        assert!(matches!(
            parse(br#"{"id": "evt_1", "type": "#),
            Err(ParseError::NotJson(_))
        ));
        assert!(matches!(parse(b"[]"), Err(ParseError::NotJson(_))));
        assert!(matches!(parse(b""), Err(ParseError::NotJson(_))));
    }

    #[test]
    fn the_envelope_is_required_even_for_unhandled_types() {
        let missing_id =
            br#"{"type": "customer.created", "created": 1718900000, "data": {"object": {}}}"#;
        assert_eq!(parse(missing_id), Err(ParseError::Missing("id".to_owned())));
        let missing_object =
            br#"{"id": "evt_1", "type": "customer.created", "created": 1718900000, "data": {}}"#;
        assert_eq!(
            parse(missing_object),
            Err(ParseError::Missing("data.object".to_owned()))
        );
        let textual_created =
            br#"{"id": "evt_1", "type": "customer.created", "created": "now", "data": {"object": {}}}"#;
        assert_eq!(
            parse(textual_created),
            Err(ParseError::Invalid {
                field: "created".to_owned(),
                expected: "an integer"
            })
        );
    }

    #[test]
    fn errors_name_the_field_inside_lists() {
        let object = CHARGE.replace(r#""amount": 500,"#, r#""amount": "500","#);
        let error = parse(&event("charge.refunded", &object)).unwrap_err();
        assert_eq!(
            error,
            ParseError::Invalid {
                field: "data.object.refunds.data[1].amount".to_owned(),
                expected: "an integer"
            }
        );
        assert_eq!(
            error.to_string(),
            "`data.object.refunds.data[1].amount` is not an integer"
        );
    }

    /// Byte for byte what localstripe 1.15 posts (`json.dumps(event._export(), indent=2,
    /// sort_keys=True)`): an old API version, `latest_charge` embedded as a whole charge.
    const LOCALSTRIPE_INTENT_SUCCEEDED: &str = r#"{
  "api_version": "2017-08-15",
  "created": 1795309113,
  "data": {
    "object": {
      "amount": 1234,
      "capture_method": "automatic_async",
      "charges": {
        "data": [
          {
            "amount": 1234,
            "amount_refunded": 0,
            "balance_transaction": "txn_gW4Kqfj8d1kmkT",
            "captured": true,
            "created": 1795309113,
            "currency": "usd",
            "customer": "cus_5JmrYuSJhowdOe",
            "description": null,
            "failure_code": null,
            "failure_message": null,
            "id": "ch_j1MtnKdBtmJut2",
            "invoice": null,
            "livemode": false,
            "metadata": {},
            "object": "charge",
            "paid": true,
            "payment_intent": "pi_Vk7NptxBVVSosI",
            "payment_method": "pm_kLnKfAC32d4vfr",
            "receipt_email": null,
            "receipt_number": null,
            "refunded": false,
            "refunds": {
              "data": [],
              "has_more": false,
              "object": "list",
              "total_count": 0,
              "url": "/v1/charges/ch_j1MtnKdBtmJut2/refunds"
            },
            "statement_descriptor": null,
            "status": "succeeded"
          }
        ],
        "has_more": false,
        "object": "list",
        "total_count": 1,
        "url": "/v1/charges?payment_intent=pi_Vk7NptxBVVSosI"
      },
      "client_secret": "pi_Vk7NptxBVVSosI_secret_SO3wKzFmkNZvqvQa",
      "created": 1795309113,
      "currency": "usd",
      "customer": "cus_5JmrYuSJhowdOe",
      "id": "pi_Vk7NptxBVVSosI",
      "invoice": null,
      "last_payment_error": null,
      "latest_charge": {
        "amount": 1234,
        "amount_refunded": 0,
        "balance_transaction": "txn_gW4Kqfj8d1kmkT",
        "captured": true,
        "created": 1795309113,
        "currency": "usd",
        "customer": "cus_5JmrYuSJhowdOe",
        "description": null,
        "failure_code": null,
        "failure_message": null,
        "id": "ch_j1MtnKdBtmJut2",
        "invoice": null,
        "livemode": false,
        "metadata": {},
        "object": "charge",
        "paid": true,
        "payment_intent": "pi_Vk7NptxBVVSosI",
        "payment_method": "pm_kLnKfAC32d4vfr",
        "receipt_email": null,
        "receipt_number": null,
        "refunded": false,
        "refunds": {
          "data": [],
          "has_more": false,
          "object": "list",
          "total_count": 0,
          "url": "/v1/charges/ch_j1MtnKdBtmJut2/refunds"
        },
        "statement_descriptor": null,
        "status": "succeeded"
      },
      "livemode": false,
      "metadata": {
        "order_id": "order-1"
      },
      "next_action": null,
      "object": "payment_intent",
      "payment_method": "pm_kLnKfAC32d4vfr",
      "status": "succeeded"
    }
  },
  "id": "evt_mLoqV5SP1PNfye",
  "livemode": false,
  "object": "event",
  "type": "payment_intent.succeeded"
}"#;

    #[test]
    fn payment_intent_succeeded_as_localstripe_emits_it() {
        assert_eq!(
            parse(LOCALSTRIPE_INTENT_SUCCEEDED.as_bytes()),
            Ok(StripeEvent {
                id: "evt_mLoqV5SP1PNfye".to_owned(),
                event_type: "payment_intent.succeeded".to_owned(),
                created: 1_795_309_113,
                signal: Signal::IntentSucceeded {
                    intent: IntentFacts {
                        id: "pi_Vk7NptxBVVSosI".to_owned(),
                        amount_minor: 1234,
                        currency: "usd".to_owned(),
                        customer: Some("cus_5JmrYuSJhowdOe".to_owned()),
                        metadata: map(&[("order_id", "order-1")]),
                    },
                    charge_id: Some("ch_j1MtnKdBtmJut2".to_owned()),
                    payment_method: Some("pm_kLnKfAC32d4vfr".to_owned()),
                },
            })
        );
    }
}
