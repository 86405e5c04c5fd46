//! The coupons context's read models, each row a function of one stream (see
//! `kassa_store::view`):
//! - active coupons: every coupon active now, for admins (`view#coupons-active`);
//! - coupons per seller: every coupon an organizer or admin created, in any state
//!   (`view#coupons-by-seller#<owner>`);
//! - coupon usages per user: each coupon a buyer put on each order, locked, redeemed or
//!   released (`view#coupon-usages#<user>`).
//!
//! The coupon-views function follows the streams as their events arrive;
//! [`CouponViews::rebuild`] writes the same rows from the event log alone.

use kassa_domain::aggregate::Aggregate;
use kassa_domain::coupon::{Coupon, CouponStatus, Terms};
use kassa_domain::coupon_usage::{OrderCoupons, UsageStatus};
use kassa_domain::identity::UserId;
use kassa_domain::money::Money;
use kassa_store::{EventStore, Over, RecordedEvent, StoreError, StreamId, ViewRow, Views};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use time::OffsetDateTime;
use uuid::Uuid;

const ACTIVE: &str = "view#coupons-active";
const SELLER: &str = "view#coupons-by-seller#";
const USAGES: &str = "view#coupon-usages#";

/// One of the read models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    ActiveCoupons,
    SellerCoupons,
    UserUsages,
}

impl View {
    pub const ALL: [View; 3] = [View::ActiveCoupons, View::SellerCoupons, View::UserUsages];

    /// The name `cargo xtask rebuild` takes.
    pub fn name(self) -> &'static str {
        match self {
            View::ActiveCoupons => "active-coupons",
            View::SellerCoupons => "seller-coupons",
            View::UserUsages => "user-coupon-usages",
        }
    }

    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == name)
    }

    /// The partition key prefix of its rows.
    fn prefix(self) -> &'static str {
        match self {
            View::ActiveCoupons => ACTIVE,
            View::SellerCoupons => SELLER,
            View::UserUsages => USAGES,
        }
    }

    /// The aggregate whose streams it is derived from.
    fn source(self) -> &'static str {
        match self {
            View::ActiveCoupons | View::SellerCoupons => Coupon::NAME,
            View::UserUsages => OrderCoupons::NAME,
        }
    }
}

/// A coupon as the lists show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CouponSummary {
    pub coupon_id: Uuid,
    pub code: String,
    pub owner: String,
    pub status: CouponStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    pub terms: Terms,
}

impl CouponSummary {
    pub fn of(coupon: &Coupon) -> Self {
        Self {
            coupon_id: coupon.coupon_id,
            code: coupon.code.to_string(),
            owner: coupon.owner.as_str().to_owned(),
            status: coupon.status,
            disabled_reason: coupon.disabled_reason.clone(),
            terms: coupon.terms.clone(),
        }
    }

    /// Active and inside its validity window at `now`.
    pub fn usable_at(&self, now: OffsetDateTime) -> bool {
        self.status == CouponStatus::Active
            && self.terms.valid_from <= now
            && now < self.terms.valid_until
    }
}

/// One coupon on one order of a buyer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserUsage {
    pub coupon_id: Uuid,
    pub code: String,
    pub order_id: Uuid,
    pub status: UsageStatus,
    pub discount: Money,
}

/// What a rebuild did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Rebuilt {
    /// Source streams folded from the log.
    pub streams: usize,
    /// Rows written (the rest were already as the log says).
    pub written: usize,
    /// Rows removed because no stream yields them any more.
    pub removed: usize,
}

/// One page of a coupon list, and the cursor of the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub coupons: Vec<CouponSummary>,
    pub next: Option<String>,
}

#[derive(Clone)]
pub struct CouponViews {
    store: EventStore,
    views: Views,
}

fn body<T: Serialize>(value: &T) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The rows of `view` a coupon yields as of `version`.
fn coupon_rows(view: View, version: u64, coupon: &Coupon) -> Result<Vec<ViewRow>, StoreError> {
    let summary = CouponSummary::of(coupon);
    let sk = coupon.coupon_id.to_string();
    Ok(match view {
        View::ActiveCoupons => vec![ViewRow {
            pk: ACTIVE.to_owned(),
            sk,
            version,
            body: (coupon.status == CouponStatus::Active)
                .then(|| body(&summary))
                .transpose()?,
        }],
        View::SellerCoupons => vec![ViewRow {
            pk: format!("{SELLER}{}", coupon.owner),
            sk,
            version,
            body: Some(body(&summary)?),
        }],
        View::UserUsages => Vec::new(),
    })
}

/// The rows of `view` an order's coupon usages yield as of `version`.
fn usage_rows(view: View, version: u64, usages: &OrderCoupons) -> Result<Vec<ViewRow>, StoreError> {
    if view != View::UserUsages {
        return Ok(Vec::new());
    }
    usages
        .usages
        .iter()
        .map(|(coupon_id, usage)| {
            Ok(ViewRow {
                pk: format!("{USAGES}{}", usages.user_id),
                sk: format!("{coupon_id}#{}", usages.order_id),
                version,
                body: Some(body(&UserUsage {
                    coupon_id: *coupon_id,
                    code: usage.code.clone(),
                    order_id: usages.order_id,
                    status: usage.status,
                    discount: usage.discount,
                })?),
            })
        })
        .collect()
}

/// The state a stream's events fold into, and the version of the last.
fn fold<A: Aggregate>(events: &[RecordedEvent]) -> Result<(u64, Option<A>), StoreError> {
    let mut state = None;
    let mut version = 0;
    for recorded in events {
        let event: A::Event = recorded.decode().map_err(|e| {
            StoreError::Corrupt(format!("{}@{}: {e}", recorded.stream, recorded.version))
        })?;
        state = A::evolve(state, &event);
        version = recorded.version;
    }
    Ok((version, state))
}

impl CouponViews {
    pub fn new(store: EventStore, views: Views) -> Self {
        Self { store, views }
    }

    /// Rewrites every row `stream` yields from its latest state; any other stream is not
    /// followed here. Returns the rows written.
    pub async fn follow(&self, stream: &StreamId, now_unix: i64) -> Result<usize, StoreError> {
        let Some(head) = self.store.load(stream).await? else {
            return Ok(0);
        };
        let aggregate = stream.as_str().split('#').next().unwrap_or_default();
        let mut rows = Vec::new();
        if aggregate == Coupon::NAME {
            let loaded = self.store.state_of::<Coupon>(head).await?;
            if let Some(coupon) = &loaded.state {
                for view in View::ALL {
                    rows.extend(coupon_rows(view, loaded.version, coupon)?);
                }
            }
        } else if aggregate == OrderCoupons::NAME {
            let loaded = self.store.state_of::<OrderCoupons>(head).await?;
            if let Some(usages) = &loaded.state {
                rows.extend(usage_rows(View::UserUsages, loaded.version, usages)?);
            }
        }
        let mut written = 0;
        for row in &rows {
            written += usize::from(self.views.write(row, Over::Older, now_unix).await?);
        }
        Ok(written)
    }

    /// Rebuilds `view` from the event log: every source stream folded from its events,
    /// its rows written over any of the same or an older version, and rows no stream
    /// yields any more removed. Live writes may go on meanwhile: a row a newer event
    /// rewrote is left as it is.
    pub async fn rebuild(&self, view: View, now_unix: i64) -> Result<Rebuilt, StoreError> {
        let streams = self.store.scan_events(view.source()).await?;
        let mut rows = Vec::new();
        for events in streams.values() {
            if view.source() == Coupon::NAME {
                if let (version, Some(coupon)) = fold::<Coupon>(events)? {
                    rows.extend(coupon_rows(view, version, &coupon)?);
                }
            } else if let (version, Some(usages)) = fold::<OrderCoupons>(events)? {
                rows.extend(usage_rows(view, version, &usages)?);
            }
        }
        let mut report = Rebuilt {
            streams: streams.len(),
            ..Rebuilt::default()
        };
        let keys: BTreeSet<(&str, &str)> = rows
            .iter()
            .map(|r| (r.pk.as_str(), r.sk.as_str()))
            .collect();
        let existing = self.views.scan(&[view.prefix()]).await?;
        let by_key: BTreeMap<(&str, &str), &ViewRow> = existing
            .iter()
            .map(|r| ((r.pk.as_str(), r.sk.as_str()), r))
            .collect();
        for row in &rows {
            if by_key.get(&(row.pk.as_str(), row.sk.as_str())) == Some(&row) {
                continue;
            }
            report.written += usize::from(self.views.write(row, Over::NotNewer, now_unix).await?);
        }
        for stale in existing
            .iter()
            .filter(|r| !keys.contains(&(r.pk.as_str(), r.sk.as_str())))
        {
            report.removed += usize::from(
                self.views
                    .remove(&stale.pk, &stale.sk, stale.version)
                    .await?,
            );
        }
        Ok(report)
    }

    /// Every row of `view`, tombstones included, by key: what a rebuild is compared by.
    pub async fn rows(&self, view: View) -> Result<Vec<ViewRow>, StoreError> {
        self.views.scan(&[view.prefix()]).await
    }

    /// Coupons active and inside their window at `now`, of every seller: up to `limit`
    /// after the cursor `after`, and the cursor of the next page.
    pub async fn active(
        &self,
        now: OffsetDateTime,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.page(ACTIVE, after, limit, |c| c.usable_at(now)).await
    }

    /// The coupons `owner` created that `keep` keeps, oldest first: a page, as
    /// [`CouponViews::active`].
    pub async fn of_seller(
        &self,
        owner: &UserId,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&CouponSummary) -> bool,
    ) -> Result<Page, StoreError> {
        self.page(&format!("{SELLER}{owner}"), after, limit, keep)
            .await
    }

    async fn page(
        &self,
        pk: &str,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&CouponSummary) -> bool,
    ) -> Result<Page, StoreError> {
        let summary = |row: &ViewRow| {
            row.body
                .clone()
                .and_then(|b| serde_json::from_value::<CouponSummary>(b).ok())
        };
        let (rows, next) = self
            .views
            .page(pk, after, limit, |row| {
                summary(row).is_some_and(|c| keep(&c))
            })
            .await?;
        Ok(Page {
            coupons: rows.iter().filter_map(summary).collect(),
            next,
        })
    }

    /// Every coupon `user` put on an order, by coupon then order.
    pub async fn usages_of(&self, user: &UserId) -> Result<Vec<UserUsage>, StoreError> {
        self.decoded(&format!("{USAGES}{user}")).await
    }

    async fn decoded<T: serde::de::DeserializeOwned>(
        &self,
        pk: &str,
    ) -> Result<Vec<T>, StoreError> {
        self.views
            .rows(pk)
            .await?
            .into_iter()
            .filter_map(|r| r.body)
            .map(|b| serde_json::from_value(b).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }
}
