//! The credits queries Lambda: balance, transaction history, usage summary, notifications.
//! Every route first checks that the caller may see the workspace.

use kassa_domain::credits::{CreditEvent, Wallet};
use kassa_runtime::access::{self, wallet_stream, workspace_stream};
use kassa_runtime::http::{json, limit_param, query_param, respond, route_key, uuid_param};
use kassa_runtime::{caller, Clock, Config, Problem, SdkConfig};
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

impl CreditsQueries {
    pub fn new(store: EventStore, read_models: ReadModels, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            read_models,
            clock,
        }
    }

    pub fn from_config(config: &Config, aws: &SdkConfig, clock: Arc<dyn Clock>) -> Self {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Self::new(
            EventStore::new(client.clone(), &config.events_table),
            ReadModels::new(client, &config.state_table),
            clock,
        )
    }

    pub async fn handle(&self, request: Request) -> Response<Body> {
        respond(self.route(&request).await)
    }

    async fn route(&self, request: &Request) -> Result<Response<Body>, Problem> {
        let actor = caller(request)?;
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
                    .map_err(|e| access::store_problem(&e))?;
                access::admitted(heads.get(&ws_stream), id, &actor)?;
                let head = heads
                    .get(&wallet_stream)
                    .ok_or_else(|| access::not_found(id))?;
                let wallet: Wallet = head.state().map_err(|e| Problem::internal(&e))?;
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
                let after = match query_param(request, "after") {
                    None => 0,
                    Some(raw) => raw.parse::<u64>().map_err(|_| {
                        Problem::bad_request(
                            "invalid_cursor",
                            "`after` must be a cursor this API returned",
                        )
                    })?,
                };
                access::load_admitted(&self.store, id, &actor).await?;
                let page = self
                    .store
                    .read_page(&wallet_stream(id), after, limit)
                    .await
                    .map_err(|e| access::store_problem(&e))?;
                let next = page.next_after.map(|v| v.to_string());
                let items = page.events.iter().filter_map(transaction).collect();
                Ok(json(200, &History { items, next }))
            }
            "GET /workspaces/{workspaceId}/usage" => {
                let today = self.clock.now().date();
                let to = day_param(request, "to")?.unwrap_or(today);
                let from = day_param(request, "from")?.unwrap_or(to - time::Duration::days(29));
                if from > to || (to - from).whole_days() >= MAX_USAGE_DAYS {
                    return Err(Problem::bad_request(
                        "invalid_range",
                        format!("`from` must not be after `to`, and the range at most {MAX_USAGE_DAYS} days"),
                    ));
                }
                access::load_admitted(&self.store, id, &actor).await?;
                let (from, to) = (fmt_day(from), fmt_day(to));
                let days = self
                    .read_models
                    .usage(id, &from, &to)
                    .await
                    .map_err(|e| access::store_problem(&e))?;
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
                    .map_err(|e| access::store_problem(&e))?;
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

fn day_param(request: &Request, name: &str) -> Result<Option<Date>, Problem> {
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
        // Alerts, overage notes and the opening are facts about the wallet, not movements
        // of credits.
        CreditEvent::WalletOpened { .. }
        | CreditEvent::BalanceLow { .. }
        | CreditEvent::Overage { .. } => None,
    }
}
