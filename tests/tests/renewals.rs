//! Monthly renewals keep the day of the month the workspace signed up on: a month too
//! short for it renews on its last day, and the next month is back on the day.

mod common;

use common::Api;
use kassa_commerce::Clock;
use time::{Date, Month};

#[tokio::test]
async fn renewals_anchored_on_the_31st_come_back_to_it_after_a_short_month() {
    let api = Api::start().await;
    let today = api.stack.clock.now().date();
    let year = today.year() + 1;
    let signup = Date::from_calendar_date(year, Month::January, 31).unwrap();
    common::advance_to(&api, signup, time::macros::time!(12:00));
    let (_ws, balance) = api.workspace("alice", "free").await;
    assert_eq!(balance, 1_100);

    // One scheduled run per day, as the daily rule runs it, up to the end of April.
    let mut renewed_on = Vec::new();
    let end = Date::from_calendar_date(year, Month::April, 30).unwrap();
    let mut day = signup;
    while day < end {
        day = day.next_day().unwrap();
        common::advance_to(&api, day, time::macros::time!(12:00));
        let run = api.stack.fire("RenewCreditsFunction").await.unwrap();
        assert_eq!(run["failed"], 0, "{day}: {run}");
        if run["done"] == 1 {
            renewed_on.push(day);
        }
    }
    let february_end = Date::from_calendar_date(year, Month::March, 1)
        .unwrap()
        .previous_day()
        .unwrap();
    assert_eq!(
        renewed_on,
        vec![
            february_end,
            Date::from_calendar_date(year, Month::March, 31).unwrap(),
            Date::from_calendar_date(year, Month::April, 30).unwrap(),
        ]
    );
}
