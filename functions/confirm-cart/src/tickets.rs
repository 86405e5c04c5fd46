//! A confirmed cart's items as a ticket order: one line per item, priced as the cart holds
//! it and described as its concert names it now, and the seats the order's reservation is
//! to hold. Items their concert no longer sells (canceled, started, or the level removed)
//! make no order: they are named instead, for the buyer to remove.

use kassa_domain::cart::CartItem;
use kassa_domain::concert::Concert;
use kassa_domain::order::{OrderLine, Seats};
use std::collections::HashMap;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tickets {
    pub lines: Vec<OrderLine>,
    pub seats: Vec<Seats>,
}

/// The order `items` make with `concerts` as they are at `now`, or the items that can no
/// longer be bought, each named with why.
pub fn of(
    items: &[CartItem],
    concerts: &HashMap<Uuid, Concert>,
    now: OffsetDateTime,
) -> Result<Tickets, Vec<String>> {
    let mut tickets = Tickets {
        lines: Vec::with_capacity(items.len()),
        seats: Vec::with_capacity(items.len()),
    };
    let mut unavailable = Vec::new();
    for item in items {
        let Some(concert) = concerts.get(&item.concert_id) else {
            unavailable.push(format!("concert {} (no such concert)", item.concert_id));
            continue;
        };
        let Some(level) = concert.level(&item.level_id) else {
            unavailable.push(format!(
                "{} — level `{}` (no longer sold)",
                concert.artist, item.level_id
            ));
            continue;
        };
        let description = format!("{} — {}", concert.artist, level.name);
        if concert.is_canceled() {
            unavailable.push(format!("{description} (the concert is canceled)"));
            continue;
        }
        if concert.has_started(now) {
            unavailable.push(format!("{description} (the concert has started)"));
            continue;
        }
        tickets.lines.push(OrderLine {
            description,
            quantity: u64::from(item.quantity),
            unit_price: item.unit_price,
            amount: item.amount(),
        });
        tickets.seats.push(Seats {
            concert_id: item.concert_id,
            level_id: item.level_id.clone(),
            seats: item.quantity,
        });
    }
    if unavailable.is_empty() {
        Ok(tickets)
    } else {
        Err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kassa_domain::concert::TicketLevel;
    use kassa_domain::identity::UserId;
    use kassa_domain::money::{Currency, Money};
    use rust_decimal::Decimal;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-22 10:00 UTC);
    const BEYONCE: Uuid = Uuid::from_u128(3);
    const COLDPLAY: Uuid = Uuid::from_u128(4);

    fn eur(minor: i64) -> Money {
        Money::new(Decimal::new(minor, 2), Currency::Eur)
    }

    fn concert(id: Uuid, artist: &str) -> Concert {
        Concert {
            concert_id: id,
            organizer: UserId::new("olga"),
            artist: artist.into(),
            venue: "Stadion".into(),
            starts_at: NOW + time::Duration::days(30),
            currency: Currency::Eur,
            levels: vec![TicketLevel {
                level_id: "floor".into(),
                name: "Floor".into(),
                capacity: 100,
                price: eur(9900),
            }],
            door_staff: Default::default(),
            cancel_reason: None,
        }
    }

    fn item(concert_id: Uuid, level: &str, quantity: u32, minor: i64) -> CartItem {
        CartItem {
            concert_id,
            level_id: level.into(),
            quantity,
            unit_price: eur(minor),
        }
    }

    fn concerts(list: Vec<Concert>) -> HashMap<Uuid, Concert> {
        list.into_iter().map(|c| (c.concert_id, c)).collect()
    }

    #[test]
    fn each_item_is_a_line_at_the_cart_price_and_seats_to_hold() {
        // The level costs 99.00 now; the cart holds it at 89.00, the price it was added at.
        let items = [
            item(BEYONCE, "floor", 2, 8900),
            item(COLDPLAY, "floor", 1, 4950),
        ];
        let all = concerts(vec![
            concert(BEYONCE, "Beyoncé"),
            concert(COLDPLAY, "Coldplay"),
        ]);
        let tickets = of(&items, &all, NOW).unwrap();
        assert_eq!(
            tickets.lines[0],
            OrderLine {
                description: "Beyoncé — Floor".into(),
                quantity: 2,
                unit_price: eur(8900),
                amount: eur(17800),
            }
        );
        assert_eq!(tickets.lines[1].description, "Coldplay — Floor");
        assert_eq!(
            tickets.seats,
            [
                Seats {
                    concert_id: BEYONCE,
                    level_id: "floor".into(),
                    seats: 2
                },
                Seats {
                    concert_id: COLDPLAY,
                    level_id: "floor".into(),
                    seats: 1
                },
            ]
        );
    }

    #[test]
    fn items_no_longer_sold_are_all_named() {
        let mut canceled = concert(BEYONCE, "Beyoncé");
        canceled.cancel_reason = Some("ill".into());
        let mut started = concert(COLDPLAY, "Coldplay");
        started.starts_at = NOW;
        let items = [
            item(BEYONCE, "floor", 2, 8900),
            item(COLDPLAY, "floor", 1, 4950),
            item(COLDPLAY, "vip", 1, 4950),
            item(Uuid::from_u128(9), "floor", 1, 100),
        ];
        let refused = of(&items, &concerts(vec![canceled, started]), NOW).unwrap_err();
        assert_eq!(
            refused,
            [
                "Beyoncé — Floor (the concert is canceled)".to_owned(),
                "Coldplay — Floor (the concert has started)".to_owned(),
                "Coldplay — level `vip` (no longer sold)".to_owned(),
                format!("concert {} (no such concert)", Uuid::from_u128(9)),
            ]
        );
    }
}
