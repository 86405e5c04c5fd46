//! Invoices: what was sold, for how much, with which tax, under which number.
//!
//! Numbers run per series (a workspace, or a user for provider invoices without one) and
//! calendar year with no gaps: the store takes the next sequence number in the same
//! transaction that issues the invoice, so `decide` only formats it.

use crate::event::DomainEvent;
use crate::identity::UserId;
use crate::money::{CurrencyMismatch, Money};
use crate::order::OrderLine;
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::Date;
use uuid::Uuid;

time::serde::format_description!(day, Date, "[year]-[month]-[day]");

/// Days an issued invoice may stay unpaid before it is overdue.
pub const PAYMENT_TERMS_DAYS: i64 = 14;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Open,
    Paid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    pub invoice_id: Uuid,
    pub number: String,
    pub user_id: UserId,
    pub workspace_id: Option<Uuid>,
    pub order_id: Option<Uuid>,
    pub provider_invoice_id: Option<String>,
    pub lines: Vec<OrderLine>,
    pub subtotal: Money,
    pub tax_rate: Option<Decimal>,
    pub tax: Money,
    pub total: Money,
    #[serde(with = "day")]
    pub issued_on: Date,
    #[serde(with = "day")]
    pub due_date: Date,
    pub status: InvoiceStatus,
    pub overdue: bool,
    pub payment_id: Option<String>,
}

/// An invoice about to be issued; the number comes from the series' counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub invoice_id: Uuid,
    pub series: String,
    pub user_id: UserId,
    pub workspace_id: Option<Uuid>,
    pub order_id: Option<Uuid>,
    pub provider_invoice_id: Option<String>,
    pub lines: Vec<OrderLine>,
    pub tax_rate: Option<Decimal>,
    pub tax: Money,
    pub issued_on: Date,
    pub due_date: Date,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvoiceCommand {
    Issue { draft: Draft, sequence: u64 },
    Pay { payment_id: String, paid_on: Date },
    MarkOverdue { today: Date },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "payload")]
pub enum InvoiceEvent {
    #[serde(rename = "invoice.created")]
    Created {
        invoice_id: Uuid,
        number: String,
        user_id: UserId,
        workspace_id: Option<Uuid>,
        order_id: Option<Uuid>,
        provider_invoice_id: Option<String>,
        lines: Vec<OrderLine>,
        subtotal: Money,
        #[schemars(with = "Option<String>")]
        tax_rate: Option<Decimal>,
        tax: Money,
        amount: Money,
        #[serde(with = "day")]
        #[schemars(with = "String")]
        issued_on: Date,
        #[serde(with = "day")]
        #[schemars(with = "String")]
        due_date: Date,
    },
    #[serde(rename = "invoice.paid")]
    Paid {
        invoice_id: Uuid,
        number: String,
        user_id: UserId,
        workspace_id: Option<Uuid>,
        payment_id: String,
        amount: Money,
        #[serde(with = "day")]
        #[schemars(with = "String")]
        paid_on: Date,
    },
    #[serde(rename = "invoice.overdue")]
    Overdue {
        invoice_id: Uuid,
        number: String,
        user_id: UserId,
        workspace_id: Option<Uuid>,
        amount: Money,
        #[serde(with = "day")]
        #[schemars(with = "String")]
        due_date: Date,
        days_overdue: i64,
    },
}

impl DomainEvent for InvoiceEvent {
    const CONTEXT: &'static str = "billing";
    const TYPES: &'static [&'static str] = &["invoice.created", "invoice.paid", "invoice.overdue"];

    fn event_type(&self) -> &'static str {
        match self {
            Self::Created { .. } => "invoice.created",
            Self::Paid { .. } => "invoice.paid",
            Self::Overdue { .. } => "invoice.overdue",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceError {
    #[error("no such invoice")]
    NotFound,
    #[error("an invoice needs at least one line")]
    Empty,
    #[error(transparent)]
    Currency(#[from] CurrencyMismatch),
}

/// `2026-000042`: the year, then the sequence within the series and year.
pub fn number(year: i32, sequence: u64) -> String {
    format!("{year}-{sequence:06}")
}

pub fn decide(
    state: Option<&Invoice>,
    command: InvoiceCommand,
) -> Result<Vec<InvoiceEvent>, InvoiceError> {
    match (state, command) {
        (None, InvoiceCommand::Issue { draft, sequence }) => {
            let Some(first) = draft.lines.first() else {
                return Err(InvoiceError::Empty);
            };
            let mut subtotal = Money::zero(first.amount.currency);
            for line in &draft.lines {
                subtotal = subtotal.checked_add(line.amount)?;
            }
            let amount = subtotal.checked_add(draft.tax)?;
            Ok(vec![InvoiceEvent::Created {
                invoice_id: draft.invoice_id,
                number: number(draft.issued_on.year(), sequence),
                user_id: draft.user_id,
                workspace_id: draft.workspace_id,
                order_id: draft.order_id,
                provider_invoice_id: draft.provider_invoice_id,
                lines: draft.lines,
                subtotal,
                tax_rate: draft.tax_rate,
                tax: draft.tax,
                amount,
                issued_on: draft.issued_on,
                due_date: draft.due_date,
            }])
        }
        // Issuing is idempotent per invoice id: the second issue of one order is a no-op.
        (Some(_), InvoiceCommand::Issue { .. }) => Ok(vec![]),
        (None, _) => Err(InvoiceError::NotFound),
        (
            Some(inv),
            InvoiceCommand::Pay {
                payment_id,
                paid_on,
            },
        ) => {
            if inv.status == InvoiceStatus::Paid {
                return Ok(vec![]);
            }
            Ok(vec![InvoiceEvent::Paid {
                invoice_id: inv.invoice_id,
                number: inv.number.clone(),
                user_id: inv.user_id.clone(),
                workspace_id: inv.workspace_id,
                payment_id,
                amount: inv.total,
                paid_on,
            }])
        }
        (Some(inv), InvoiceCommand::MarkOverdue { today }) => {
            if inv.status == InvoiceStatus::Paid || inv.overdue || today <= inv.due_date {
                return Ok(vec![]);
            }
            Ok(vec![InvoiceEvent::Overdue {
                invoice_id: inv.invoice_id,
                number: inv.number.clone(),
                user_id: inv.user_id.clone(),
                workspace_id: inv.workspace_id,
                amount: inv.total,
                due_date: inv.due_date,
                days_overdue: (today - inv.due_date).whole_days(),
            }])
        }
    }
}

pub fn evolve(state: Option<Invoice>, event: &InvoiceEvent) -> Option<Invoice> {
    match (state, event) {
        (
            None,
            InvoiceEvent::Created {
                invoice_id,
                number,
                user_id,
                workspace_id,
                order_id,
                provider_invoice_id,
                lines,
                subtotal,
                tax_rate,
                tax,
                amount,
                issued_on,
                due_date,
            },
        ) => Some(Invoice {
            invoice_id: *invoice_id,
            number: number.clone(),
            user_id: user_id.clone(),
            workspace_id: *workspace_id,
            order_id: *order_id,
            provider_invoice_id: provider_invoice_id.clone(),
            lines: lines.clone(),
            subtotal: *subtotal,
            tax_rate: *tax_rate,
            tax: *tax,
            total: *amount,
            issued_on: *issued_on,
            due_date: *due_date,
            status: InvoiceStatus::Open,
            overdue: false,
            payment_id: None,
        }),
        (Some(mut inv), InvoiceEvent::Paid { payment_id, .. }) => {
            inv.status = InvoiceStatus::Paid;
            inv.payment_id = Some(payment_id.clone());
            Some(inv)
        }
        (Some(mut inv), InvoiceEvent::Overdue { .. }) => {
            inv.overdue = true;
            Some(inv)
        }
        (state, _) => state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use time::macros::date;

    fn usd(minor: i64) -> Money {
        Money::new(Decimal::new(minor, 2), Currency::Usd)
    }

    fn draft() -> Draft {
        Draft {
            invoice_id: Uuid::from_u128(9),
            series: "workspace-1".into(),
            user_id: UserId::new("ada"),
            workspace_id: Some(Uuid::from_u128(1)),
            order_id: Some(Uuid::from_u128(7)),
            provider_invoice_id: None,
            lines: vec![OrderLine {
                description: "1000 credits".into(),
                quantity: 1,
                unit_price: usd(1000),
                amount: usd(1000),
            }],
            tax_rate: Some(Decimal::new(2, 1)),
            tax: usd(200),
            issued_on: date!(2026 - 11 - 22),
            due_date: date!(2026 - 12 - 06),
        }
    }

    fn issued() -> Invoice {
        let events = decide(
            None,
            InvoiceCommand::Issue {
                draft: draft(),
                sequence: 42,
            },
        )
        .unwrap();
        events.iter().fold(None, evolve).unwrap()
    }

    #[test]
    fn issuing_numbers_and_totals() {
        let inv = issued();
        assert_eq!(inv.number, "2026-000042");
        assert_eq!(inv.subtotal, usd(1000));
        assert_eq!(inv.total, usd(1200));
        let json = serde_json::to_value(&inv).unwrap();
        assert_eq!(json["due_date"], "2026-12-06");
    }

    #[test]
    fn overdue_only_after_the_due_date_once_and_never_when_paid() {
        let inv = issued();
        let on = |d| InvoiceCommand::MarkOverdue { today: d };
        assert_eq!(decide(Some(&inv), on(date!(2026 - 12 - 06))), Ok(vec![]));
        let events = decide(Some(&inv), on(date!(2026 - 12 - 09))).unwrap();
        let InvoiceEvent::Overdue { days_overdue, .. } = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(*days_overdue, 3);
        let overdue = evolve(Some(inv.clone()), &events[0]).unwrap();
        assert_eq!(
            decide(Some(&overdue), on(date!(2026 - 12 - 10))),
            Ok(vec![])
        );
        let paid = decide(
            Some(&overdue),
            InvoiceCommand::Pay {
                payment_id: "ch_1".into(),
                paid_on: date!(2026 - 12 - 11),
            },
        )
        .unwrap();
        let paid = evolve(Some(overdue), &paid[0]).unwrap();
        assert_eq!(paid.status, InvoiceStatus::Paid);
        let mut fresh = inv;
        fresh.status = InvoiceStatus::Paid;
        assert_eq!(decide(Some(&fresh), on(date!(2027 - 01 - 01))), Ok(vec![]));
    }
}
