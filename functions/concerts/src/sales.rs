//! `GET /concerts/{id}/sales`: the organizer's figures per level (capacity, free,
//! reserved, sold, checked in, revenue, refunds) from the sales read model the
//! concert-sales function keeps. Only the concert's organizer and operators see them.

use crate::{failed, refused, Concerts};
use kassa_commerce::{seats, Fail};
use kassa_domain::concert::{Concert, ConcertError};
use kassa_domain::money::Money;
use kassa_runtime::{access, caller, Problem};
use kassa_store::LevelSales;
use lambda_http::Request;
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Serialize)]
pub struct SalesView {
    pub concert_id: Uuid,
    pub levels: Vec<LevelSalesView>,
    pub revenue: Money,
    pub refunds: Money,
}

#[derive(Debug, Serialize)]
pub struct LevelSalesView {
    pub level_id: String,
    pub name: String,
    pub capacity: u32,
    pub available: u32,
    pub reserved: i64,
    pub sold: i64,
    pub checked_in: i64,
    pub revenue: Money,
    pub refunds: Money,
}

impl Concerts {
    pub(crate) async fn sales(&self, request: &Request) -> Result<SalesView, Problem> {
        let actor = access::recorded(self.kernel.store(), caller(request)?).await?;
        let id = crate::commands::concert_id(request)?;
        let store = self.kernel.store();
        let concert = store
            .load_aggregate::<Concert>(&id)
            .await
            .map_err(|e| failed(Fail::Store(e)))?
            .state
            .ok_or_else(|| refused(ConcertError::NotFound))?;
        if !concert.admits(&actor) {
            return Err(refused(ConcertError::Forbidden));
        }
        let rows = self
            .sales
            .of(id)
            .await
            .map_err(|e| failed(Fail::Store(e)))?;
        let free = seats::availability(store, &concert)
            .await
            .map_err(|e| failed(Fail::Store(e)))?;
        let money = |amount| Money::new(amount, concert.currency);
        // Levels since removed keep the figures they had, after the current ones.
        let mut names: Vec<(String, String, u32)> = concert
            .levels
            .iter()
            .map(|l| (l.level_id.clone(), l.name.clone(), l.capacity))
            .collect();
        for row in &rows {
            if concert.level(&row.level_id).is_none() {
                names.push((row.level_id.clone(), row.level_id.clone(), 0));
            }
        }
        let levels: Vec<LevelSalesView> = names
            .into_iter()
            .map(|(level_id, name, capacity)| {
                let row = rows
                    .iter()
                    .find(|r| r.level_id == level_id)
                    .cloned()
                    .unwrap_or_default();
                let LevelSales {
                    reserved,
                    sold,
                    checked_in,
                    revenue,
                    refunds,
                    ..
                } = row;
                LevelSalesView {
                    available: free.get(&level_id).map_or(0, |a| a.free()),
                    level_id,
                    name,
                    capacity,
                    reserved,
                    sold,
                    checked_in,
                    revenue: money(revenue),
                    refunds: money(refunds),
                }
            })
            .collect();
        Ok(SalesView {
            concert_id: id,
            revenue: money(levels.iter().map(|l| l.revenue.amount).sum()),
            refunds: money(levels.iter().map(|l| l.refunds.amount).sum()),
            levels,
        })
    }
}
