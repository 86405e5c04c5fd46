//! The credits queries Lambda: balance, transaction history, usage summary, notifications.
//! Every route first checks that the caller may see the workspace.

use kassa_commerce::Clock;
use kassa_domain::credits::{CreditEvent, Wallet};
use kassa_domain::identity::{Actor, Role};
use kassa_domain::revenue::{
    self, ChargeRow, RefundRow, SubscriptionRow, CHARGES_VIEW, REFUNDS_VIEW, SUBSCRIPTIONS_VIEW,
};
use kassa_runtime::access::{self, wallet_stream, workspace_stream};
use kassa_runtime::function::StartError;
use kassa_runtime::http::{json, limit_param, query_param, respond, route_key, uuid_param};
use kassa_runtime::{caller, problem, Config, Function, HttpFunction, Problem, SdkConfig};
use kassa_store::view::Views;
use kassa_store::{EventStore, ReadModels, RecordedEvent, UsageRow};
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use time::macros::format_description;
use time::Date;
use uuid::Uuid;

pub struct CreditsQueries {
    store: EventStore,
    read_models: ReadModels,
    views: Views,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Serialize)]
struct Balance {
    workspace_id: Uuid,
    tier: &'static str,
    balance: i64,
    low_balance_threshold: u64,
    overage_allowance: u64,
    version: u64,
}

#[derive(Debug, Serialize)]
struct Transaction {
    version: u64,
    event_id: Uuid,
    kind: &'static str,
    /// Positive for credits in, negative for credits out.
    credits: i64,
    balance_after: i64,
    feature: Option<String>,
    quantity: Option<u64>,
    reason: Option<String>,
    /// The order a purchase or clawback belongs to.
    order_id: Option<Uuid>,
    pack: Option<String>,
    refund_id: Option<String>,
    /// Refunded credits a clawback could not take because they were already spent.
    shortfall: Option<u64>,
    #[serde(with = "time::serde::rfc3339")]
    at: time::OffsetDateTime,
}

#[derive(Debug, Serialize)]
struct History {
    items: Vec<Transaction>,
    /// Pass as `after` to read the next page; absent on the last page.
    next: Option<String>,
}

#[derive(Debug, Serialize)]
struct Usage {
    workspace_id: Uuid,
    from: String,
    to: String,
    days: Vec<UsageRow>,
    by_feature: BTreeMap<String, FeatureTotal>,
    total_credits: u64,
}

#[derive(Debug, Default, Serialize)]
struct FeatureTotal {
    quantity: u64,
    credits: u64,
    uses: u64,
}

const DAY: &[time::format_description::FormatItem<'static>] =
    format_description!("[year]-[month]-[day]");

/// Longest usage window one request may ask for.
const MAX_USAGE_DAYS: i64 = 366;

impl Function for CreditsQueries {
    fn from_config(
        config: &Config,
        aws: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self::new(
            EventStore::new(client.clone(), &config.events_table),
            ReadModels::new(client.clone(), &config.state_table),
            Views::new(client, &config.state_table),
            clock,
        ))
    }
}

impl HttpFunction for CreditsQueries {
    async fn handle(&self, request: Request) -> Response<Body> {
        respond(self.route(&request).await)
    }
}

impl CreditsQueries {
    pub fn new(
        store: EventStore,
        read_models: ReadModels,
        views: Views,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            read_models,
            views,
            clock,
        }
    }

    /// `GET /analytics/revenue?from=&to=`: operators only. The period is `[from, to)`,
    /// by default the 30 days up to and including today.
    async fn revenue(&self, request: &Request, actor: &Actor) -> Result<Response<Body>, Problem> {
        if actor.role != Role::Admin {
            return Err(Problem::new(
                403,
                "admin_only",
                "revenue analytics are for operators",
            ));
        }
        let today = self.clock.now().date();
        let invalid_range = || {
            Problem::bad_request(
                "invalid_range",
                "`from` must be before `to`, and the range at most 366 days",
            )
        };
        let to = day_param(request, "to")?.unwrap_or(today + time::Duration::days(1));
        // `to` may be the first day there is (`-9999-01-01`): no 30 days before it.
        let from = match day_param(request, "from")? {
            Some(from) => from,
            None => to
                .checked_sub(time::Duration::days(30))
                .ok_or_else(invalid_range)?,
        };
        if from >= to || (to - from).whole_days() > 366 {
            return Err(invalid_range());
        }
        let subscriptions: Vec<SubscriptionRow> = self.view_rows(SUBSCRIPTIONS_VIEW).await?;
        let charges: Vec<ChargeRow> = self.view_rows(CHARGES_VIEW).await?;
        let refunds: Vec<RefundRow> = self.view_rows(REFUNDS_VIEW).await?;
        Ok(json(
            200,
            &revenue::figures(
                &subscriptions,
                &charges,
                &refunds,
                &fmt_day(from),
                &fmt_day(to),
            ),
        ))
    }

    async fn view_rows<T: serde::de::DeserializeOwned>(&self, pk: &str) -> Result<Vec<T>, Problem> {
        self.views
            .rows(pk)
            .await
            .map_err(|e| problem::store_problem(&e))?
            .into_iter()
            .filter_map(|r| r.body)
            .map(serde_json::from_value)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Problem::internal(&e))
    }

    async fn route(&self, request: &Request) -> Result<Response<Body>, Problem> {
        let actor = access::recorded(&self.store, caller(request)?).await?;
        if route_key(request) == "GET /analytics/revenue" {
            return self.revenue(request, &actor).await;
        }
        let id = uuid_param(request, "workspaceId", "workspace_not_found")?;
        let route = route_key(request);
        // Validate parameters before any read, so bad input costs nothing.
        match route.as_str() {
            "GET /workspaces/{workspaceId}/credits/balance" => {
                let (ws_stream, wallet_stream) = (workspace_stream(id), wallet_stream(id));
                let heads = self
                    .store
                    .load_many(&[&ws_stream, &wallet_stream])
                    .await
                    .map_err(|e| problem::store_problem(&e))?;
                access::admitted(heads.get(&ws_stream), id, &actor)?;
                let head = heads
                    .get(&wallet_stream)
                    .ok_or_else(|| access::not_found(id))?;
                let wallet: Wallet = self
                    .store
                    .state_of::<Wallet>(head.clone())
                    .await
                    .map_err(|e| problem::store_problem(&e))?
                    .state
                    .ok_or_else(|| access::not_found(id))?;
                let policy = wallet.policy();
                Ok(json(
                    200,
                    &Balance {
                        workspace_id: id,
                        tier: wallet.tier.as_str(),
                        balance: wallet.balance,
                        low_balance_threshold: policy.low_balance_threshold,
                        overage_allowance: policy.overage_allowance,
                        version: head.version,
                    },
                ))
            }
            "GET /workspaces/{workspaceId}/credits/transactions" => {
                let limit = limit_param(request, 50, 200)?;
                let after = after_param(request)?;
                access::load_admitted(&self.store, id, &actor).await?;
                let page = self
                    .store
                    .read_page(&wallet_stream(id), after, limit)
                    .await
                    .map_err(|e| problem::store_problem(&e))?;
                let next = page.next_after.map(|v| v.to_string());
                let items = page.events.iter().filter_map(transaction).collect();
                Ok(json(200, &History { items, next }))
            }
            "GET /workspaces/{workspaceId}/usage" => {
                let (from, to) = usage_window(request, self.clock.now().date())?;
                access::load_admitted(&self.store, id, &actor).await?;
                let (from, to) = (fmt_day(from), fmt_day(to));
                let days = self
                    .read_models
                    .usage(id, &from, &to)
                    .await
                    .map_err(|e| problem::store_problem(&e))?;
                let mut by_feature: BTreeMap<String, FeatureTotal> = BTreeMap::new();
                for row in &days {
                    let total = by_feature.entry(row.feature.clone()).or_default();
                    total.quantity += row.quantity;
                    total.credits += row.credits;
                    total.uses += row.uses;
                }
                let total_credits = days.iter().map(|r| r.credits).sum();
                Ok(json(
                    200,
                    &Usage {
                        workspace_id: id,
                        from,
                        to,
                        days,
                        by_feature,
                        total_credits,
                    },
                ))
            }
            "GET /workspaces/{workspaceId}/notifications" => {
                let limit = limit_param(request, 20, 100)?;
                access::load_admitted(&self.store, id, &actor).await?;
                let items = self
                    .read_models
                    .notifications(id, limit)
                    .await
                    .map_err(|e| problem::store_problem(&e))?;
                Ok(json(200, &serde_json::json!({ "items": items })))
            }
            other => Err(Problem::not_found(
                "no_route",
                format!("no route `{other}`"),
            )),
        }
    }
}

fn fmt_day(d: Date) -> String {
    d.format(DAY).unwrap_or_default()
}

/// The `after` cursor of the transaction history: 0 (the start) when absent.
pub fn after_param(request: &Request) -> Result<u64, Problem> {
    match query_param(request, "after") {
        None => Ok(0),
        Some(raw) => raw.parse::<u64>().map_err(|_| {
            Problem::bad_request(
                "invalid_cursor",
                "`after` must be a cursor this API returned",
            )
        }),
    }
}

/// The days a usage summary covers: `from` and `to` as given, `to` today and `from` 29
/// days before `to` when absent.
pub fn usage_window(request: &Request, today: Date) -> Result<(Date, Date), Problem> {
    let invalid_range = || {
        Problem::bad_request(
            "invalid_range",
            format!("`from` must not be after `to`, and the range at most {MAX_USAGE_DAYS} days"),
        )
    };
    let to = day_param(request, "to")?.unwrap_or(today);
    // `to` may be the first day `time` can represent: no default before it.
    let from = match day_param(request, "from")? {
        Some(from) => from,
        None => to
            .checked_sub(time::Duration::days(29))
            .ok_or_else(invalid_range)?,
    };
    if from > to || (to - from).whole_days() >= MAX_USAGE_DAYS {
        return Err(invalid_range());
    }
    Ok((from, to))
}

pub fn day_param(request: &Request, name: &str) -> Result<Option<Date>, Problem> {
    query_param(request, name)
        .map(|raw| {
            Date::parse(&raw, DAY).map_err(|_| {
                Problem::bad_request(
                    "invalid_date",
                    format!("`{name}` must be a date like 2026-11-21"),
                )
            })
        })
        .transpose()
}

fn transaction(event: &RecordedEvent) -> Option<Transaction> {
    let decoded: CreditEvent = event.decode().ok()?;
    let base = |kind, credits, balance_after| Transaction {
        version: event.version,
        event_id: event.event_id,
        kind,
        credits,
        balance_after,
        feature: None,
        quantity: None,
        reason: None,
        order_id: None,
        pack: None,
        refund_id: None,
        shortfall: None,
        at: event.time,
    };
    match decoded {
        CreditEvent::Allocated {
            total,
            balance_after,
            reason,
            ..
        } => {
            let mut t = base("allocation", total as i64, balance_after);
            t.reason = serde_json::to_value(reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned));
            Some(t)
        }
        CreditEvent::Consumed {
            feature,
            quantity,
            credits,
            balance_after,
            ..
        } => {
            let mut t = base("consumption", -(credits as i64), balance_after);
            t.feature = Some(feature);
            t.quantity = Some(quantity);
            Some(t)
        }
        CreditEvent::Purchased {
            order_id,
            pack,
            credits,
            balance_after,
            ..
        } => {
            let mut t = base("purchase", credits as i64, balance_after);
            t.order_id = Some(order_id);
            t.pack = Some(pack);
            Some(t)
        }
        CreditEvent::ClawedBack {
            order_id,
            refund_id,
            clawed_back,
            shortfall,
            balance_after,
            ..
        } => {
            let mut t = base("clawback", -(clawed_back as i64), balance_after);
            t.order_id = Some(order_id);
            t.refund_id = Some(refund_id);
            t.shortfall = Some(shortfall);
            Some(t)
        }
        // A tier change is listed even without credits: the prices changed with it.
        CreditEvent::Reallocated {
            from,
            to,
            top_up,
            taken_back,
            balance_after,
            ..
        } => {
            let mut t = base(
                "tier_change",
                top_up as i64 - taken_back as i64,
                balance_after,
            );
            t.reason = Some(format!("{from}->{to}"));
            Some(t)
        }
        CreditEvent::Expired {
            credits,
            balance_after,
            due,
            ..
        } => {
            let mut t = base("expiry", -(credits as i64), balance_after);
            t.reason = Some(format!("period closed {due}"));
            Some(t)
        }
        // The overage billed is settled in money: the balance is back at zero.
        CreditEvent::OverageCharged {
            credits,
            balance_after,
            amount,
            ..
        } => {
            let mut t = base("overage_charge", credits as i64, balance_after);
            t.reason = Some(format!("billed {amount}"));
            Some(t)
        }
        // Alerts, overage notes, what rolled over, the opening and the cycle's summaries are
        // facts about the wallet, not movements of credits.
        CreditEvent::WalletOpened { .. }
        | CreditEvent::BalanceLow { .. }
        | CreditEvent::RolledOver { .. }
        | CreditEvent::WalletSuspended { .. }
        | CreditEvent::WalletReactivated { .. }
        | CreditEvent::WalletClosed { .. }
        | CreditEvent::CycleCompleted { .. }
        | CreditEvent::CycleStarted { .. }
        | CreditEvent::Overage { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::RequestExt;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use time::macros::date;

    fn with_query(pairs: &[(&str, &str)]) -> Request {
        let query: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Request::default().with_query_string_parameters(query)
    }

    const TODAY: Date = date!(2026 - 11 - 21);

    #[test]
    fn a_window_at_the_first_representable_day_is_refused_not_a_panic() {
        let refused = usage_window(&with_query(&[("to", "-9999-01-01")]), TODAY);
        assert_eq!(refused.map_err(|p| p.code), Err("invalid_range".into()));
        let ok = usage_window(
            &with_query(&[("from", "-9999-01-01"), ("to", "-9999-01-01")]),
            TODAY,
        );
        assert_eq!(ok, Ok((Date::MIN, Date::MIN)));
    }

    #[test]
    fn the_default_window_is_the_last_thirty_days() {
        assert_eq!(
            usage_window(&with_query(&[]), TODAY),
            Ok((date!(2026 - 10 - 23), TODAY))
        );
    }

    /// A day, a near-day or noise: what a caller might put in `from` and `to`.
    fn day_like() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("-9999-01-01".to_owned()),
            Just("9999-12-31".to_owned()),
            // The ends of `time`'s range are where arithmetic on days overflows.
            (
                prop_oneof![-9999i32..=-9998, -9999i32..=9999, 9998i32..=9999],
                0u8..=13,
                0u8..=32
            )
                .prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
            "[-+]?[0-9]{1,6}-[0-9]{1,2}-[0-9]{1,2}",
            "\\PC{0,16}",
        ]
    }

    proptest! {
        #[test]
        fn any_from_and_to_are_a_window_or_a_400(
            from in proptest::option::of(day_like()),
            to in proptest::option::of(day_like()),
            today in (-9999i32..=9999, 1u16..=366)
                .prop_filter_map("a day", |(y, d)| Date::from_ordinal_date(y, d).ok()),
        ) {
            let mut pairs = Vec::new();
            if let Some(from) = &from { pairs.push(("from", from.as_str())); }
            if let Some(to) = &to { pairs.push(("to", to.as_str())); }
            match usage_window(&with_query(&pairs), today) {
                Ok((from, to)) => {
                    prop_assert!(from <= to);
                    prop_assert!((to - from).whole_days() < MAX_USAGE_DAYS);
                }
                Err(problem) => {
                    prop_assert_eq!(problem.status, 400);
                    prop_assert!(["invalid_date", "invalid_range"].contains(&problem.code.as_str()));
                }
            }
        }

        #[test]
        fn any_after_is_a_cursor_or_a_400(after in prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            "\\PC{0,24}",
        ]) {
            match after_param(&with_query(&[("after", &after)])) {
                Ok(n) => prop_assert_eq!(n.to_string(), after),
                Err(problem) => {
                    prop_assert_eq!(problem.status, 400);
                    prop_assert_eq!(problem.code, "invalid_cursor");
                }
            }
        }
    }
}
