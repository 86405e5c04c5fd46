//! A hot coupon, as deployed: many apply-coupon sandboxes, each its own `ApplyCoupon`
//! with its own connections, applying ONE coupon to as many buyers' open orders at once,
//! every apply locking one use under the coupon's limit. Against it, as many bare clients
//! doing the lock's conditional increment (`ADD uses 1` if `uses < limit`) on one item, in
//! the same run. There are a tenth more orders than uses, so both sides run out and meet
//! refusals, and each side's figures are checked afterwards: never a use beyond the
//! limit, and the answers agree with the counter.
//!
//! Two more comparisons place the gap: the same applies with a coupon per sandbox (no
//! item shared: what sharing the count costs), and bare clients doing the least an
//! exactly answered apply must send (a read, the buyer's own count, the coupon's count).
//!
//! An apply takes the use with one conditional step on the coupon's use counter (the
//! only item every apply writes), then locks it in one transaction on the order's and the
//! buyer's items: the buyer's use count, the order's new total and the usage, each with
//! its event, the take's settlement marker and the audit entry.

use crate::api;
use crate::flash_sale::{oversold_orders, OrderId, Run, Sale};
use crate::hot_wallet::{race, Outcome, Spender, Throughput};
use anyhow::{bail, ensure, Context, Result};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use kassa_apply_coupon::ApplyCoupon;
use kassa_commerce::coupon_ledger;
use kassa_commerce::SystemClock;
use kassa_coupons::Coupons;
use kassa_runtime::{Config, Function, HttpFunction, SdkConfig};
use kassa_store::{EventStore, RecordedEvent};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::task::JoinSet;
use uuid::Uuid;

const LEVEL: &str = "coupon-floor";
const ADMIN: &str = "bench-admin";

pub struct HotCoupon<'s> {
    sale: &'s Sale,
    aws: SdkConfig,
    /// The sale's tables, and a Stripe key apply-coupon asks for at start (the bench's
    /// orders have no PaymentIntent, so Stripe is never called).
    config: Config,
    /// Where the coupon's use counter is.
    store: EventStore,
}

impl<'s> HotCoupon<'s> {
    pub fn new(sale: &'s Sale, aws: &SdkConfig) -> Result<Self> {
        let tables = sale.config();
        let config = Config::from_map(&HashMap::from([
            ("KASSA_EVENTS_TABLE".to_owned(), tables.events_table.clone()),
            ("KASSA_STATE_TABLE".to_owned(), tables.state_table.clone()),
            (
                "KASSA_STRIPE_SECRET_KEY".to_owned(),
                "sk_test_bench".to_owned(),
            ),
            (
                "KASSA_STRIPE_API_BASE".to_owned(),
                "http://127.0.0.1:9".to_owned(),
            ),
        ]))
        .context("apply-coupon's configuration")?;
        Ok(Self {
            sale,
            aws: aws.clone(),
            store: EventStore::new(Client::new(aws), &config.events_table),
            config,
        })
    }

    /// A coupon of `limit` uses (one per buyer) on `concert`, created through the
    /// coupons handler; answers its id and code.
    async fn coupon(&self, concert: Uuid, limit: usize) -> Result<(Uuid, String)> {
        let coupons = Coupons::from_config(&self.config, &self.aws, Arc::new(SystemClock))
            .map_err(|e| anyhow::anyhow!("building the coupons handler: {e:?}"))?;
        let now = OffsetDateTime::now_utc();
        let body = json!({
            "discount": { "type": "percent", "percent": "10" },
            "valid_from": (now - time::Duration::hours(1)).format(&Rfc3339)?,
            "valid_until": (now + time::Duration::days(1)).format(&Rfc3339)?,
            "max_uses": limit, "max_uses_per_user": 1,
            "scope": { "kind": "concert", "concert_id": concert },
            "active": true,
        });
        let created = coupons.handle(api::create_coupon(ADMIN, &body)?).await;
        if created.status() != 201 {
            bail!("creating the bench coupon: {}", api::describe(&created));
        }
        let answer: serde_json::Value = serde_json::from_str(&api::body(&created))?;
        let id = answer["coupon_id"]
            .as_str()
            .and_then(|id| Uuid::parse_str(id).ok())
            .context("the created coupon has no id")?;
        let code = answer["code"].as_str().context("no code")?.to_owned();
        Ok((id, code))
    }

    /// `sandboxes` apply-coupon sandboxes applying a coupon of `uses` uses to
    /// `uses + uses / 10` orders of as many buyers, each sandbox taking the next order as
    /// soon as it is done.
    pub async fn apply(&self, sandboxes: usize, uses: u32) -> Result<Run> {
        let orders_n = oversold_orders(uses) + sandboxes;
        let concert = self.sale.concert(&[(LEVEL, orders_n as u32)]).await?;
        let orders = self.sale.orders(concert, LEVEL, orders_n).await?;
        let limit = uses as usize + sandboxes;
        let (coupon, code) = self.coupon(concert, limit).await?;
        let handlers = self.handlers(sandboxes)?;
        let (warm_up, sale) = orders.split_at(sandboxes);
        // One apply each, untimed, so every sandbox starts warm; their uses were added to
        // the limit, so the timed applies meet exactly `uses` left.
        for (handler, order) in handlers.iter().zip(warm_up) {
            let response = handler.handle(request(order, &code)?).await;
            ensure!(
                response.status() == 200,
                "a warm-up apply failed: {}",
                api::describe(&response)
            );
        }
        ensure!(
            coupon_ledger::uses(&self.store, coupon).await? == sandboxes as u64,
            "the warm-up did not leave {uses} uses"
        );

        let requests: Vec<(Uuid, String)> = sale
            .iter()
            .map(|e| Ok((e.stream_id_uuid()?, buyer(e)?)))
            .collect::<Result<_>>()?;
        let codes = vec![code; handlers.len()];
        let throughput = timed(&handlers, &codes, requests).await?;
        let counted = coupon_ledger::uses(&self.store, coupon).await? as i64 - sandboxes as i64;
        Ok(Run {
            held: throughput.successes as i64,
            throughput,
            capacity: i64::from(uses),
            free: i64::from(uses) - counted,
            recording: None,
        })
    }

    /// `clients` bare clients doing, per order, the least an exactly answered apply sends
    /// ([`BareExact`]), on one coupon count of `uses` uses.
    pub async fn increment_exact(&self, clients: usize, uses: u32) -> Result<Run> {
        let (buyers, run) = (Arc::new(AtomicUsize::new(0)), Uuid::now_v7());
        self.bare_race(clients, uses, |uses| BareExact {
            uses,
            buyers: buyers.clone(),
            run,
        })
        .await
    }

    /// `clients` bare clients sending, per order, the requests one warm apply sends
    /// ([`BareApply`]), with no handler in between, on one coupon count of `uses` uses;
    /// without the lock's transaction when `lock` is false (what an apply answered once
    /// its use is taken would send before answering).
    pub async fn replay(&self, clients: usize, uses: u32, lock: bool) -> Result<Run> {
        let (buyers, run) = (Arc::new(AtomicUsize::new(0)), Uuid::now_v7());
        self.bare_race(clients, uses, |uses| BareApply {
            uses,
            buyers: buyers.clone(),
            run,
            lock,
        })
        .await
    }

    /// The same applies, but each sandbox applies a coupon of its own (64 coupons with
    /// uses to spare): every apply does the same work as on the hot coupon, and no item
    /// is shared. What the hot run loses against this one is what sharing the coupon's
    /// count costs; the rest of its gap to the bare write is the apply's own work.
    pub async fn apply_spread(&self, sandboxes: usize, uses: u32) -> Result<Throughput> {
        let orders_n = oversold_orders(uses) + sandboxes;
        let concert = self.sale.concert(&[(LEVEL, orders_n as u32)]).await?;
        let orders = self.sale.orders(concert, LEVEL, orders_n).await?;
        let each = orders_n / sandboxes + 2;
        let mut codes = Vec::with_capacity(sandboxes);
        for _ in 0..sandboxes {
            codes.push(self.coupon(concert, each).await?.1);
        }
        let handlers = self.handlers(sandboxes)?;
        let (warm_up, sale) = orders.split_at(sandboxes);
        for ((handler, order), code) in handlers.iter().zip(warm_up).zip(&codes) {
            let response = handler.handle(request(order, code)?).await;
            ensure!(
                response.status() == 200,
                "a warm-up apply failed: {}",
                api::describe(&response)
            );
        }
        let requests: Vec<(Uuid, String)> = sale
            .iter()
            .map(|e| Ok((e.stream_id_uuid()?, buyer(e)?)))
            .collect::<Result<_>>()?;
        let throughput = timed(&handlers, &codes, requests).await?;
        ensure!(
            throughput.conflicts == 0 && throughput.others == 0,
            "applies on coupons with uses to spare were refused: {:?}",
            throughput.first_other
        );
        Ok(throughput)
    }

    fn handlers(&self, sandboxes: usize) -> Result<Vec<Arc<ApplyCoupon>>> {
        (0..sandboxes)
            .map(|_| {
                ApplyCoupon::from_config(&self.config, &self.aws, Arc::new(SystemClock))
                    .map(Arc::new)
                    .map_err(|e| anyhow::anyhow!("building apply-coupon: {e:?}"))
            })
            .collect()
    }

    /// `clients` bare clients making as many lock increments as the sandboxes get orders,
    /// on one item of `uses` uses.
    pub async fn increment(&self, clients: usize, uses: u32) -> Result<Run> {
        self.bare_race(clients, uses, |uses| uses).await
    }

    /// `clients` bare clients, each made by `client` around its own connection to one
    /// new use count of `uses` uses (and one more per client, spent warming it up),
    /// racing for as many orders as the sandboxes get; the uses counted afterwards.
    async fn bare_race<S: Spender>(
        &self,
        clients: usize,
        uses: u32,
        client: impl Fn(BareUses) -> S,
    ) -> Result<Run> {
        let bare = BareUses {
            client: Client::new(&self.aws),
            table: self.config.state_table.clone(),
            pk: format!("bench-coupon-uses#{}", Uuid::now_v7()),
            limit: i64::from(uses) + clients as i64,
        };
        let spenders: Vec<Arc<S>> = (0..clients)
            .map(|_| {
                Arc::new(client(BareUses {
                    client: Client::new(&self.aws),
                    ..bare.clone()
                }))
            })
            .collect();
        for spender in &spenders {
            ensure!(
                matches!(spender.spend().await, Outcome::Success),
                "a warm-up spend was refused"
            );
        }
        let throughput = race(&spenders, oversold_orders(uses)).await?;
        let counted = bare.uses().await? - clients as i64;
        Ok(Run {
            held: throughput.successes as i64,
            throughput,
            capacity: i64::from(uses),
            free: i64::from(uses) - counted,
            recording: None,
        })
    }
}

/// The sandboxes applying, each its own code, to the next of `requests` as soon as it is
/// done, timed from the first apply to the last answer.
async fn timed(
    handlers: &[Arc<ApplyCoupon>],
    codes: &[String],
    requests: Vec<(Uuid, String)>,
) -> Result<Throughput> {
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut runs = JoinSet::new();
    for (handler, code) in handlers.iter().zip(codes) {
        let (handler, requests, next, code) = (
            handler.clone(),
            requests.clone(),
            next.clone(),
            code.clone(),
        );
        runs.spawn(async move {
            let mut mine = Throughput::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((order, buyer)) = requests.get(i) else {
                    break anyhow::Ok(mine);
                };
                let response = handler
                    .handle(api::apply_coupon(*order, buyer, &code)?)
                    .await;
                mine.tally(match response.status().as_u16() {
                    200 => Outcome::Success,
                    422 => Outcome::Conflict,
                    _ => Outcome::Other(api::describe(&response)),
                });
            }
        });
    }
    let mut throughput = Throughput::default();
    while let Some(mine) = runs.join_next().await {
        throughput.add(mine??);
    }
    throughput.elapsed = started.elapsed();
    Ok(throughput)
}

fn buyer(order: &RecordedEvent) -> Result<String> {
    order.payload["user_id"]
        .as_str()
        .map(str::to_owned)
        .context("an order.created without its buyer")
}

fn request(order: &RecordedEvent, code: &str) -> Result<lambda_http::Request> {
    api::apply_coupon(order.stream_id_uuid()?, &buyer(order)?, code)
}

/// The least an apply that answers exactly must send, bare: one read of what the decision
/// needs, the buyer's own count advanced under its limit (an item of the buyer's), then
/// the coupon's count. No decision, no events, no transaction.
struct BareExact {
    uses: BareUses,
    buyers: Arc<AtomicUsize>,
    run: Uuid,
}

impl Spender for BareExact {
    async fn spend(&self) -> Outcome {
        let buyer = self.buyers.fetch_add(1, Ordering::Relaxed);
        let key = format!("bench-coupon-buyer#{}#{buyer}", self.run);
        let (client, table) = (&self.uses.client, &self.uses.table);
        let read = client
            .get_item()
            .table_name(table)
            .key("pk", AttributeValue::S(key.clone()))
            .key("sk", AttributeValue::S("-".into()))
            .consistent_read(true)
            .send()
            .await;
        if let Err(e) = read {
            return Outcome::Other(format!("{e:#}"));
        }
        let own = client
            .update_item()
            .table_name(table)
            .key("pk", AttributeValue::S(key))
            .key("sk", AttributeValue::S("-".into()))
            .update_expression("ADD #u :one")
            .condition_expression("attribute_not_exists(#u) OR #u < :limit")
            .expression_attribute_names("#u", "uses")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":limit", AttributeValue::N("1".into()))
            .send()
            .await;
        if let Err(e) = own {
            return Outcome::Other(format!("{e:#}"));
        }
        self.uses.spend().await
    }
}

/// The requests one warm apply sends, bare, in its order and of about its sizes: a
/// consistent BatchGetItem of five items, the take (a conditional ADD on the ONE count,
/// carrying its event), and a transaction of seven items of the buyer's (the buyer's
/// count advanced under its limit, six conditional puts: the order's and the usages'
/// events and heads, the take's marker, the audit line). No decision, no handler: what
/// DynamoDB Local charges for the apply's requests alone.
struct BareApply {
    uses: BareUses,
    buyers: Arc<AtomicUsize>,
    run: Uuid,
    /// Whether the lock's transaction follows the take.
    lock: bool,
}

/// About what an event or a head of the lock's commit weighs.
const RECORD: usize = 600;

impl BareApply {
    async fn lock(&self, buyer: &str) -> Result<()> {
        let key = |sk: &str| {
            HashMap::from([
                ("pk".to_owned(), AttributeValue::S(buyer.to_owned())),
                ("sk".to_owned(), AttributeValue::S(sk.to_owned())),
            ])
        };
        let body = AttributeValue::S("x".repeat(RECORD));
        let mut commit = self.uses.client.transact_write_items().transact_items(
            TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(&self.uses.table)
                        .set_key(Some(key("uses")))
                        .update_expression("ADD #u :one")
                        .condition_expression("attribute_not_exists(#u) OR #u < :limit")
                        .expression_attribute_names("#u", "uses")
                        .expression_attribute_values(":one", AttributeValue::N("1".into()))
                        .expression_attribute_values(":limit", AttributeValue::N("1".into()))
                        .build()?,
                )
                .build(),
        );
        for record in [
            "order-event",
            "order",
            "usage-event",
            "usages",
            "marker",
            "audit",
        ] {
            let mut item = key(record);
            item.insert("body".to_owned(), body.clone());
            commit = commit.transact_items(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.uses.table)
                            .set_item(Some(item))
                            .condition_expression("attribute_not_exists(pk)")
                            .build()?,
                    )
                    .build(),
            );
        }
        commit.send().await?;
        Ok(())
    }
}

impl Spender for BareApply {
    async fn spend(&self) -> Outcome {
        let buyer = format!(
            "bench-coupon-apply#{}#{}",
            self.run,
            self.buyers.fetch_add(1, Ordering::Relaxed)
        );
        let (client, table) = (&self.uses.client, &self.uses.table);
        let mut keys = KeysAndAttributes::builder().consistent_read(true);
        for sk in ["user", "attempts", "order", "usages", "coupon"] {
            keys = keys.keys(HashMap::from([
                ("pk".to_owned(), AttributeValue::S(buyer.clone())),
                ("sk".to_owned(), AttributeValue::S(sk.to_owned())),
            ]));
        }
        let read = match keys.build() {
            Ok(keys) => {
                client
                    .batch_get_item()
                    .request_items(table, keys)
                    .send()
                    .await
            }
            Err(e) => return Outcome::Other(format!("{e:#}")),
        };
        if let Err(e) = read {
            return Outcome::Other(format!("{e:#}"));
        }
        let event = AttributeValue::S("x".repeat(2 * RECORD));
        match self.uses.take_carrying(Some(event)).await {
            Ok(true) if !self.lock => Outcome::Success,
            Ok(true) => match self.lock(&buyer).await {
                Ok(()) => Outcome::Success,
                Err(e) => Outcome::Other(format!("{e:#}")),
            },
            Ok(false) => Outcome::Conflict,
            Err(e) => Outcome::Other(format!("{e:#}")),
        }
    }
}

/// One use count item, taken the way the coupon ledger takes a use.
#[derive(Clone)]
struct BareUses {
    client: Client,
    table: String,
    pk: String,
    limit: i64,
}

impl Spender for BareUses {
    async fn spend(&self) -> Outcome {
        match self.take().await {
            Ok(true) => Outcome::Success,
            Ok(false) => Outcome::Conflict,
            Err(e) => Outcome::Other(format!("{e:#}")),
        }
    }
}

impl BareUses {
    async fn take(&self) -> Result<bool> {
        self.take_carrying(None).await
    }

    /// The take, with `event` written on the count as a step carries its event.
    async fn take_carrying(&self, event: Option<AttributeValue>) -> Result<bool> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(self.pk.clone()))
            .key("sk", AttributeValue::S("-".into()))
            .update_expression(if event.is_some() {
                "ADD #u :one SET carried = :e"
            } else {
                "ADD #u :one"
            })
            .condition_expression("attribute_not_exists(#u) OR #u < :limit")
            .expression_attribute_names("#u", "uses")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":limit", AttributeValue::N(self.limit.to_string()));
        if let Some(event) = event {
            request = request.expression_attribute_values(":e", event);
        }
        let result = request.send().await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn uses(&self) -> Result<i64> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(self.pk.clone()))
            .key("sk", AttributeValue::S("-".into()))
            .consistent_read(true)
            .send()
            .await?
            .item
            .context("the bare use count is gone")?;
        match item.get("uses") {
            Some(AttributeValue::N(n)) => Ok(n.parse()?),
            _ => bail!("the bare use count has no number"),
        }
    }
}
