//! Promotions and free trials (seed 000): an operator's promo code grants a free workspace
//! a trial of a paid tier, once per workspace, within the code's window and uses. The
//! daily end-trials run reminds the owner three days before the end and ends the trial:
//! back to free with the trial's credits taken back, or on to paid for a workspace that
//! subscribed meanwhile.

mod common;

use common::{eventually, Api};
use kassa_commerce::Clock;
use kassa_runtime::mail::MailSink;
use serde_json::{json, Value};
use time::{Date, Month};

const OPS: (&str, &str) = ("ops", "admin");

async fn create_promotion(api: &Api, body: Value) -> common::Answer {
    api.call_as("POST", "/promotions", Some(OPS), Some(&body.to_string()))
        .await
}

async fn apply(api: &Api, ws: &str, user: &str, code: &str) -> common::Answer {
    api.post(
        format!("/workspaces/{ws}/promotions"),
        user,
        json!({ "code": code }),
    )
    .await
}

async fn balance(api: &Api, ws: &str) -> Value {
    api.get(format!("/workspaces/{ws}/credits/balance"), "alice")
        .await
        .body
}

#[tokio::test]
async fn a_promo_code_grants_a_trial_once_reminds_before_its_end_and_reverts_or_goes_on_to_paid() {
    let api = Api::start().await;
    api.stack.create_stripe_prices().await.unwrap();
    let year = api.stack.clock.now().year() + 1;
    let day = |m: Month, d: u8| Date::from_calendar_date(year, m, d).unwrap();
    // Workspaces signed up on 1 March: a 31-day period.
    common::advance_to(&api, day(Month::March, 1), time::macros::time!(00:01));
    let promotion = json!({
        "code": "try-pro", "tier": "pro", "days": 10,
        "valid_until": format!("{year}-04-01T00:00:00Z"), "max_uses": 2,
    });
    // Only operators make promotions, and only sensible ones.
    let by_user = api.post("/promotions", "alice", promotion.clone()).await;
    assert_eq!(by_user.status, 403, "{:?}", by_user.body);
    for (field, bad, code) in [
        ("days", json!(0), "invalid_trial"),
        ("tier", json!("free"), "invalid_trial"),
        ("max_uses", json!(0), "invalid_limits"),
        ("code", json!("x"), "invalid_code"),
        (
            "valid_until",
            json!(format!("{year}-01-01T00:00:00Z")),
            "invalid_window",
        ),
    ] {
        let mut body = promotion.clone();
        body[field] = bad;
        let answer = create_promotion(&api, body).await;
        assert_eq!(
            (answer.status, answer.body["code"].as_str()),
            (422, Some(code)),
            "{field}: {:?}",
            answer.body
        );
    }
    let created = create_promotion(&api, promotion.clone()).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["code"], "TRY-PRO");
    let again = create_promotion(&api, promotion).await;
    assert_eq!(again.status, 409, "{:?}", again.body);

    let (ws, signup) = api.workspace("alice", "free").await;
    assert_eq!(signup, 1_100);
    // Unknown codes and strangers learn nothing.
    let unknown = apply(&api, &ws, "alice", "NO-SUCH-CODE").await;
    assert_eq!(
        (unknown.status, unknown.body["code"].as_str()),
        (422, Some("promotion_not_applicable"))
    );
    let stranger = apply(&api, &ws, "mallory", "try-pro").await;
    assert_eq!(stranger.status, 404, "{:?}", stranger.body);

    // 10 of March's 31 days on pro (less the minute past midnight): 9,000 × 10/31 =
    // 2,903.2… → 2,903 credits.
    common::advance_to(&api, day(Month::March, 5), time::macros::time!(00:01));
    let started = apply(&api, &ws, "alice", " Try-Pro ").await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    assert_eq!(started.body["tier"], "pro");
    assert_eq!(started.body["trial"]["ends_on"], format!("{year}-03-15"));
    assert_eq!(started.body["trial"]["credits"], 2_903);
    let wallet = balance(&api, &ws).await;
    assert_eq!(
        (wallet["tier"].as_str(), wallet["balance"].as_i64()),
        (Some("pro"), Some(1_100 + 2_903))
    );
    let twice = apply(&api, &ws, "alice", "try-pro").await;
    assert_eq!(
        (twice.status, twice.body["code"].as_str()),
        (409, Some("trial_used"))
    );
    // The workspace's refusal comes before any code is looked at: a code that does not
    // exist gets the same answer, so an owner cannot tell live codes from dead ones.
    let guessed = apply(&api, &ws, "alice", "NO-SUCH-CODE").await;
    assert_eq!(
        (guessed.status, guessed.body["code"].as_str()),
        (409, Some("trial_used"))
    );
    let up = api
        .call(
            "PUT",
            format!("/workspaces/{ws}/tier"),
            Some("alice"),
            Some(&json!({ "tier": "enterprise" }).to_string()),
        )
        .await;
    assert_eq!(
        (up.status, up.body["code"].as_str()),
        (409, Some("trial_running"))
    );
    // Nor by subscribing to another tier: refused before Stripe is asked, so no
    // subscription is left billing there for a workspace that never recorded it.
    let other = api
        .post(
            format!("/workspaces/{ws}/subscription"),
            "alice",
            json!({
                "payment_method": common::card("4242424242424242").await,
                "tier": "enterprise",
            }),
        )
        .await;
    assert_eq!(
        (other.status, other.body["code"].as_str()),
        (409, Some("trial_running")),
        "{:?}",
        other.body
    );
    let at_stripe = common::stripe_get("/v1/subscriptions?limit=100").await;
    let billed: Vec<&Value> = at_stripe["data"]
        .as_array()
        .expect("a list of subscriptions")
        .iter()
        .filter(|s| s["metadata"]["workspace_id"] == json!(ws) && s["status"] != "canceled")
        .collect();
    assert!(billed.is_empty(), "{billed:?}");

    // A second workspace takes the last use and subscribes during its trial.
    let (paid, _) = api.workspace("bob", "free").await;
    let taken = apply(&api, &paid, "bob", "try-pro").await;
    assert_eq!(taken.status, 200, "{:?}", taken.body);
    let (late, _) = api.workspace("carol", "free").await;
    let used_up = apply(&api, &late, "carol", "try-pro").await;
    assert_eq!(
        (used_up.status, used_up.body["code"].as_str()),
        (422, Some("promotion_not_applicable"))
    );
    let subscribed = api
        .post(
            format!("/workspaces/{paid}/subscription"),
            "bob",
            json!({ "payment_method": common::card("4242424242424242").await }),
        )
        .await;
    assert_eq!(subscribed.status, 201, "{:?}", subscribed.body);

    // The daily run: the reminders three days before the end, once each.
    let mut acted = Vec::new();
    for d in 6..=16 {
        common::advance_to(&api, day(Month::March, d), time::macros::time!(05:30));
        let run = api.stack.fire("EndTrialsFunction").await.unwrap();
        assert_eq!(run["failed"], 0, "March {d}: {run}");
        if run["done"].as_u64().unwrap_or(0) > 0 {
            acted.push((d, run["done"].as_u64().unwrap()));
        }
    }
    assert_eq!(acted, [(12, 2), (15, 2)]);
    let reminders = eventually("two reminders", || async {
        let mails: Vec<_> = MailSink::new(&api.mail_dir)
            .read_all()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.id.starts_with("free_trial.ending"))
            .collect();
        (mails.len() >= 2).then_some(mails)
    })
    .await;
    assert_eq!(reminders.len(), 2);

    // Back to free, the trial's credits taken back; the subscriber stays on pro.
    let w = api.get(format!("/workspaces/{ws}"), "alice").await.body;
    assert_eq!(
        (w["tier"].as_str(), &w["trial"]),
        (Some("free"), &Value::Null)
    );
    let wallet = balance(&api, &ws).await;
    assert_eq!(
        (wallet["tier"].as_str(), wallet["balance"].as_i64()),
        (Some("free"), Some(1_100))
    );
    let b = api.get(format!("/workspaces/{paid}"), "bob").await.body;
    assert_eq!(
        (b["tier"].as_str(), &b["trial"]),
        (Some("pro"), &Value::Null)
    );
    // The history trails the wallet by the relay's lag.
    let moves: Vec<i64> = eventually("both credit moves in the history", || async {
        let transactions = api
            .get(format!("/workspaces/{paid}/credits/transactions"), "bob")
            .await
            .body;
        let moves: Vec<i64> = transactions["items"]
            .as_array()?
            .iter()
            .filter(|t| t["kind"] == "tier_change")
            .filter_map(|t| t["credits"].as_i64())
            .collect();
        (moves.len() >= 2).then_some(moves)
    })
    .await;
    // Bob signed up on 5 March: the trial's 2,903, then at its end the rest of his period
    // (15 March to 5 April) on pro, 9,000 × 21/31 = 6,096.7… → 6,096.
    assert_eq!(moves, [2_903, 6_096]);
}

#[tokio::test]
async fn a_trial_still_running_at_the_renewal_ends_there_before_the_period_closes() {
    let api = Api::start().await;
    let year = api.stack.clock.now().year() + 1;
    let day = |m: Month, d: u8| Date::from_calendar_date(year, m, d).unwrap();
    common::advance_to(&api, day(Month::April, 1), time::macros::time!(00:01));
    let created = create_promotion(
        &api,
        json!({
            "code": "late-end", "tier": "enterprise", "days": 30,
            "valid_until": format!("{year}-05-01T00:00:00Z"), "max_uses": 1,
        }),
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let (ws, signup) = api.workspace("alice", "free").await;
    let started = apply(&api, &ws, "alice", "late-end").await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    // 30 days asked in a 30-day period: cut to the day before its end.
    assert_eq!(started.body["trial"]["ends_on"], format!("{year}-04-30"));

    // end-trials never ran; the renewal on 1 May ends the trial first, so the period closes
    // on free (whose rollover cap is 0) and the next one is free's.
    common::advance_to(&api, day(Month::May, 1), time::macros::time!(06:00));
    let run = api.stack.fire("RenewCreditsFunction").await.unwrap();
    assert_eq!(
        (run["done"].as_u64(), run["failed"].as_u64()),
        (Some(1), Some(0)),
        "{run}"
    );
    let w = api.get(format!("/workspaces/{ws}"), "alice").await.body;
    assert_eq!(
        (w["tier"].as_str(), &w["trial"]),
        (Some("free"), &Value::Null)
    );
    let wallet = balance(&api, &ws).await;
    assert_eq!(
        (wallet["tier"].as_str(), wallet["balance"].as_i64()),
        (Some("free"), Some(1_000))
    );
    assert!(signup > 0);
    // The schedule's own end, later, finds nothing left to do.
    let run = api.stack.fire("EndTrialsFunction").await.unwrap();
    assert_eq!(
        (run["done"].as_u64(), run["failed"].as_u64()),
        (Some(0), Some(0)),
        "{run}"
    );
}
