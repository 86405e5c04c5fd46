//! What a concert's level offers a cart now: its price and the seats its counter has free.
//! A concert that is canceled or has started offers nothing more: its tickets are no longer
//! sold, whatever its counters say.

use kassa_commerce::seats;
use kassa_domain::concert::{Concert, ConcertError};
use kassa_domain::money::Money;
use kassa_runtime::problem::store_problem;
use kassa_runtime::Problem;
use kassa_store::EventStore;
use time::OffsetDateTime;
use uuid::Uuid;

pub(crate) struct Offer {
    pub price: Money,
    pub free: u32,
}

/// The offer of level `level_id` of concert `concert_id` at `now`: 404 for a concert or
/// level that does not exist, 409 for a concert no longer on sale.
pub(crate) async fn of(
    store: &EventStore,
    concert_id: Uuid,
    level_id: &str,
    now: OffsetDateTime,
) -> Result<Offer, Problem> {
    let concert = store
        .load_aggregate::<Concert>(&concert_id)
        .await
        .map_err(|e| store_problem(&e))?
        .state
        .ok_or_else(|| {
            Problem::not_found(
                ConcertError::NotFound.code(),
                format!("no concert {concert_id}"),
            )
        })?;
    let level = concert.level(level_id).ok_or_else(|| {
        Problem::not_found(
            "level_not_found",
            format!("concert {concert_id} has no ticket level `{level_id}`"),
        )
    })?;
    if concert.is_canceled() {
        return Err(no_longer_sold(ConcertError::Canceled));
    }
    if concert.has_started(now) {
        return Err(no_longer_sold(ConcertError::Started));
    }
    let free = seats::availability(store, &concert)
        .await
        .map_err(|e| store_problem(&e))?
        .get(level_id)
        .map_or(0, |figures| figures.free());
    Ok(Offer {
        price: level.price,
        free,
    })
}

fn no_longer_sold(e: ConcertError) -> Problem {
    Problem::conflict(e.code(), format!("{e}: its tickets are no longer sold"))
}
