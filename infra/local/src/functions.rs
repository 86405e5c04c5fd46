//! Which Rust handler serves which function of the template. This is the one list the
//! runner keeps by hand: it links code, while routes, rules and schedules come from the
//! template.

use anyhow::{anyhow, bail, Result};
use aws_lambda_events::event::dynamodb::Event as StreamBatch;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use kassa_commerce::Clock;
use kassa_runtime::mail::ConfiguredMailer;
use kassa_runtime::{
    Config, HttpFunction, ScheduledFunction, SdkConfig, SqsFunction, StreamFunction,
};
use lambda_http::{Body, Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;

#[derive(Clone)]
pub enum Lambda {
    Http(Arc<dyn Fn(Request) -> Boxed<Response<Body>> + Send + Sync>),
    Sqs(Arc<dyn Fn(SqsEvent) -> Boxed<SqsBatchResponse> + Send + Sync>),
    Stream(Arc<dyn Fn(StreamBatch) -> Boxed<DynamoDbEventResponse> + Send + Sync>),
    /// A scheduled function; its answer is logged, an error means Lambda would retry.
    Schedule(
        Arc<dyn Fn(EventBridgeEvent) -> Boxed<Result<serde_json::Value, String>> + Send + Sync>,
    ),
}

/// An HTTP function built from its configuration, as its `main.rs` builds it.
pub fn http<F: HttpFunction>(
    config: &Config,
    aws: &SdkConfig,
    clock: Arc<dyn Clock>,
) -> Result<Lambda> {
    let function = Arc::new(F::from_config(config, aws, clock).map_err(|e| anyhow!(e))?);
    Ok(Lambda::Http(Arc::new(move |request| {
        let function = function.clone();
        Box::pin(async move { function.handle(request).await })
    })))
}

/// A side-effect function fed by an SQS queue.
pub fn sqs<F: SqsFunction>(
    config: &Config,
    aws: &SdkConfig,
    clock: Arc<dyn Clock>,
) -> Result<Lambda> {
    let function = Arc::new(F::from_config(config, aws, clock).map_err(|e| anyhow!(e))?);
    Ok(Lambda::Sqs(Arc::new(move |batch| {
        let function = function.clone();
        Box::pin(async move { function.handle(batch).await })
    })))
}

/// A scheduled function; its run summary is logged and answered.
pub fn scheduled<F: ScheduledFunction>(
    config: &Config,
    aws: &SdkConfig,
    clock: Arc<dyn Clock>,
) -> Result<Lambda> {
    let function = Arc::new(F::from_config(config, aws, clock).map_err(|e| anyhow!(e))?);
    Ok(Lambda::Schedule(Arc::new(move |event| {
        let function = function.clone();
        Box::pin(async move {
            match function.handle(event).await {
                Ok(run) => serde_json::to_value(run).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        })
    })))
}

/// A function reading the events table's stream.
pub fn stream<F: StreamFunction>(
    config: &Config,
    aws: &SdkConfig,
    clock: Arc<dyn Clock>,
) -> Result<Lambda> {
    let function = Arc::new(F::from_config(config, aws, clock).map_err(|e| anyhow!(e))?);
    Ok(Lambda::Stream(Arc::new(move |batch| {
        let function = function.clone();
        Box::pin(async move { function.handle(batch).await })
    })))
}

/// The handler for the template's function `id`, built as its `main.rs` builds it.
pub fn build(id: &str, config: &Config, aws: &SdkConfig, clock: Arc<dyn Clock>) -> Result<Lambda> {
    Ok(match id {
        "WorkspacesFunction" => http::<kassa_workspaces::Workspaces>(config, aws, clock)?,
        "ConsumeCreditsFunction" => {
            http::<kassa_consume_credits::ConsumeCredits>(config, aws, clock)?
        }
        "CreditsQueriesFunction" => {
            http::<kassa_credits_queries::CreditsQueries>(config, aws, clock)?
        }
        "EventRelayFunction" => stream::<kassa_event_relay::EventRelay>(config, aws, clock)?,
        "AllocateCreditsFunction" => {
            sqs::<kassa_allocate_credits::AllocateCredits>(config, aws, clock)?
        }
        "UsageAnalyticsFunction" => {
            sqs::<kassa_usage_analytics::UsageAnalytics>(config, aws, clock)?
        }
        "LowBalanceNotifierFunction" => sqs::<
            kassa_low_balance_notifier::LowBalanceNotifier<ConfiguredMailer>,
        >(config, aws, clock)?,
        "RenewCreditsFunction" => {
            scheduled::<kassa_renew_credits::RenewCredits>(config, aws, clock)?
        }
        "OrdersFunction" => http::<kassa_orders::Orders>(config, aws, clock)?,
        "StripeWebhookFunction" => http::<kassa_stripe_webhook::StripeWebhook>(config, aws, clock)?,
        "PaymentIntentsFunction" => {
            sqs::<kassa_payment_intents::PaymentIntents>(config, aws, clock)?
        }
        "OrderPaymentsFunction" => sqs::<kassa_order_payments::OrderPayments>(config, aws, clock)?,
        "CreditPurchasesFunction" => {
            sqs::<kassa_credit_purchases::CreditPurchases>(config, aws, clock)?
        }
        "ExpireOrdersFunction" => {
            scheduled::<kassa_expire_orders::ExpireOrders>(config, aws, clock)?
        }
        "OverdueInvoicesFunction" => {
            scheduled::<kassa_overdue_invoices::OverdueInvoices>(config, aws, clock)?
        }
        "EventCatalogFunction" => http::<kassa_event_catalog::EventCatalog>(config, aws, clock)?,
        "UsersFunction" => http::<kassa_users::Users>(config, aws, clock)?,
        "ConcertsFunction" => http::<kassa_concerts::Concerts>(config, aws, clock)?,
        "ReserveTicketsFunction" => {
            sqs::<kassa_reserve_tickets::ReserveTickets>(config, aws, clock)?
        }
        "TicketOrdersFunction" => sqs::<kassa_ticket_orders::TicketOrders>(config, aws, clock)?,
        "ExpireReservationsFunction" => {
            scheduled::<kassa_expire_reservations::ExpireReservations>(config, aws, clock)?
        }
        "CartsFunction" => http::<kassa_carts::Carts>(config, aws, clock)?,
        "ConfirmCartFunction" => http::<kassa_confirm_cart::ConfirmCart>(config, aws, clock)?,
        "ConcertSalesFunction" => sqs::<kassa_concert_sales::ConcertSales>(config, aws, clock)?,
        "TicketsFunction" => http::<kassa_tickets::Tickets>(config, aws, clock)?,
        "IssueTicketsFunction" => sqs::<kassa_issue_tickets::IssueTickets>(config, aws, clock)?,
        "ReclaimHoldsFunction" => sqs::<kassa_reclaim_holds::ReclaimHolds>(config, aws, clock)?,
        "CouponsFunction" => http::<kassa_coupons::Coupons>(config, aws, clock)?,
        "ApplyCouponFunction" => http::<kassa_apply_coupon::ApplyCoupon>(config, aws, clock)?,
        "CouponUsagesFunction" => sqs::<kassa_coupon_usages::CouponUsages>(config, aws, clock)?,
        "CouponViewsFunction" => sqs::<kassa_coupon_views::CouponViews>(config, aws, clock)?,
        "RecordReservationsFunction" => {
            sqs::<kassa_record_reservations::RecordReservations>(config, aws, clock)?
        }
        "WelcomeWorkspacesFunction" => sqs::<
            kassa_welcome_workspaces::WelcomeWorkspaces<ConfiguredMailer>,
        >(config, aws, clock)?,
        "CollectChargesFunction" => {
            sqs::<kassa_collect_charges::CollectCharges>(config, aws, clock)?
        }
        "RetryPaymentsFunction" => {
            scheduled::<kassa_retry_payments::RetryPayments>(config, aws, clock)?
        }
        "DunningNoticesFunction" => {
            sqs::<kassa_dunning_notices::DunningNotices<ConfiguredMailer>>(config, aws, clock)?
        }
        "RevenueAnalyticsFunction" => {
            sqs::<kassa_revenue_analytics::RevenueAnalytics>(config, aws, clock)?
        }
        "PurgeWorkspacesFunction" => {
            sqs::<kassa_purge_workspaces::PurgeWorkspaces>(config, aws, clock)?
        }
        "EndTrialsFunction" => scheduled::<kassa_end_trials::EndTrials>(config, aws, clock)?,
        "ReclaimCouponUsesFunction" => {
            sqs::<kassa_reclaim_coupon_uses::ReclaimCouponUses>(config, aws, clock)?
        }
        other => bail!("template function {other} has no handler in the local runner"),
    })
}
