//! Credit purchases (seed 000), on the order's events:
//! - `order.completed` for a credit pack: the credits go to the wallet
//!   (`credits.purchased`), the paid invoice is issued under the workspace's next number,
//!   and the receipt is mailed to the workspace's billing address;
//! - `order.refunded`: the refunded share of the credits is clawed back, never below zero
//!   (`credits.clawed_back` records any shortfall). A refund handled before its
//!   `order.completed` applies the purchase first, so either order of arrival leaves the
//!   wallet as purchase then refund.
//!
//! Each step is idempotent on its own (the wallet applies an order once, the invoice id
//! derives from the order, the mail id from the invoice), so a redelivery that finds some
//! steps done completes the rest.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use kassa_commerce::invoicing::{self, Invoicing};
use kassa_commerce::wallet;
use kassa_commerce::Clock;
use kassa_domain::credits::CreditCommand;
use kassa_domain::invoice::Draft;
use kassa_domain::order::{Order, OrderEvent, Purpose};
use kassa_domain::workspace::Workspace;
use kassa_runtime::access::{order_stream, workspace_stream};
use kassa_runtime::effect::EffectError;
use kassa_runtime::function::StartError;
use kassa_runtime::inbox::Inbox;
use kassa_runtime::mail::{ConfiguredMailer, Mail, Mailer};
use kassa_runtime::{Config, Function, SdkConfig, SqsFunction};
use kassa_store::{EventStore, Metadata, RecordedEvent};
use rust_decimal::prelude::ToPrimitive;
use std::sync::Arc;

pub const NAME: &str = "credit-purchases";

pub struct CreditPurchases {
    store: EventStore,
    invoicing: Invoicing,
    inbox: Inbox,
    mailer: ConfiguredMailer,
    mail_from: String,
    clock: Arc<dyn Clock>,
}

impl Function for CreditPurchases {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        let store = EventStore::new(client.clone(), &config.events_table);
        Ok(Self {
            invoicing: Invoicing::new(store.clone(), &config.state_table),
            store,
            inbox: Inbox::from_config(config, aws, NAME, clock.clone()),
            mailer: ConfiguredMailer::from_config(config, aws),
            mail_from: config.mail_from.clone(),
            clock,
        })
    }
}

impl SqsFunction for CreditPurchases {
    async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        self.inbox
            .each_once(batch, |event| async move { self.react(&event).await })
            .await
    }
}

impl CreditPurchases {
    async fn react(&self, event: &RecordedEvent) -> Result<serde_json::Value, EffectError> {
        match event.decode::<OrderEvent>()? {
            OrderEvent::Completed {
                order_id,
                purpose:
                    Purpose::CreditPack {
                        workspace_id,
                        pack,
                        credits,
                        ..
                    },
                payment_id,
                ..
            } => {
                let metadata = Metadata::caused_by(event, format!("system:{NAME}"));
                let added = wallet::allocate(
                    &self.store,
                    self.clock.clone(),
                    workspace_id,
                    CreditCommand::Purchase {
                        order_id,
                        pack,
                        credits,
                    },
                    metadata.clone(),
                    |_| Ok(()),
                )
                .await?;
                let order: Order = self
                    .store
                    .load(&order_stream(order_id))
                    .await?
                    .ok_or_else(|| EffectError::retry(format!("order {order_id} not found yet")))?
                    .state()?;
                let ws: Workspace = self
                    .store
                    .load(&workspace_stream(workspace_id))
                    .await?
                    .ok_or_else(|| {
                        EffectError::retry(format!("workspace {workspace_id} not found yet"))
                    })?
                    .state()?;
                let today = event.time.date();
                let draft = Draft {
                    invoice_id: invoicing::invoice_id(&format!("order:{order_id}")),
                    series: invoicing::series(Some(workspace_id), &ws.owner),
                    user_id: order.user_id.clone(),
                    workspace_id: Some(workspace_id),
                    order_id: Some(order_id),
                    provider_invoice_id: None,
                    lines: order.invoice_lines(),
                    tax_rate: Some(order.tax_rate),
                    tax: order.tax,
                    issued_on: today,
                    due_date: today,
                };
                let issued = self
                    .invoicing
                    .issue(
                        draft,
                        Some((payment_id, today)),
                        None,
                        metadata,
                        self.clock.now(),
                    )
                    .await?;
                let invoice = issued.invoice;
                if let Some(to) = &ws.billing_email {
                    let lines: Vec<String> = invoice
                        .lines
                        .iter()
                        .map(|l| format!("  {} × {}  {}", l.quantity, l.description, l.amount))
                        .collect();
                    let mail = Mail {
                        id: format!("receipt-{}", invoice.invoice_id),
                        from: self.mail_from.clone(),
                        to: to.clone(),
                        subject: format!("kassa receipt {} for {}", invoice.number, ws.name),
                        body: format!(
                            "Thank you for your purchase.\n\nInvoice {} (paid {})\n{}\n\n  Subtotal {}\n  Tax {}\n  Total {}\n\n{} credits were added to workspace \"{}\".",
                            invoice.number,
                            invoicing::day(invoice.issued_on),
                            lines.join("\n"),
                            invoice.subtotal,
                            invoice.tax,
                            invoice.total,
                            credits,
                            ws.name,
                        ),
                    };
                    self.mailer.send(&mail).await?;
                }
                Ok(serde_json::json!({
                    "credited": !added.is_empty(),
                    "invoice": invoice.number,
                }))
            }
            OrderEvent::Refunded {
                order_id,
                purpose:
                    Purpose::CreditPack {
                        workspace_id,
                        pack,
                        credits,
                        ..
                    },
                refund_id,
                amount,
                total_amount,
                ..
            } => {
                // The refunded share of the credits, rounded down: a partial refund never
                // takes more than it paid back.
                let share = if total_amount.amount.is_zero() {
                    0
                } else {
                    (rust_decimal::Decimal::from(credits) * amount.amount / total_amount.amount)
                        .floor()
                        .to_u64()
                        .unwrap_or(0)
                        .min(credits)
                };
                // The refund proves the order was paid, and its `order.completed` may not
                // have arrived yet: the purchase is applied first (once per order, so the
                // later `order.completed` adds nothing and only invoices), then the
                // clawback, in one commit. The wallet ends as if purchase then refund.
                let recorded = wallet::apply(
                    &self.store,
                    self.clock.clone(),
                    workspace_id,
                    &[
                        CreditCommand::Purchase {
                            order_id,
                            pack,
                            credits,
                        },
                        CreditCommand::ClawBack {
                            order_id,
                            refund_id,
                            credits: share,
                        },
                    ],
                    Metadata::caused_by(event, format!("system:{NAME}")),
                    |_| Ok(()),
                )
                .await?;
                Ok(serde_json::json!({ "clawed_back": share, "recorded": recorded.len() }))
            }
            _ => Ok(serde_json::json!({ "skipped": event.event_type })),
        }
    }
}
