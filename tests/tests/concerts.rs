//! Concerts through the HTTP API: organizers create, change and cancel them; anyone reads
//! what is on sale with live availability; a level's capacity never drops below the seats
//! held on it, even while holds race the resize.

mod common;

use common::Api;
use kassa_commerce::seats::{self, Held};
use kassa_domain::reservation::Hold;
use kassa_store::{EventStore, Metadata};
use serde_json::{json, Value};
use uuid::Uuid;

fn in_days(days: i64) -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::days(days))
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn concert(artist: &str, floor: u32, balcony: u32) -> Value {
    json!({
        "artist": artist,
        "venue": "Stadion Narodowy, Warsaw",
        "starts_at": in_days(30),
        "currency": "EUR",
        "levels": [
            { "level_id": "floor", "name": "Floor", "capacity": floor,
              "price": { "amount": "89.00", "currency": "EUR" } },
            { "level_id": "balcony", "name": "Balcony", "capacity": balcony,
              "price": { "amount": "49.50", "currency": "EUR" } },
        ],
    })
}

async fn create(api: &Api, organizer: &str, body: &Value) -> common::Answer {
    api.call_as(
        "POST",
        "/concerts",
        Some((organizer, "organizer")),
        Some(&body.to_string()),
    )
    .await
}

async fn store(api: &Api) -> EventStore {
    EventStore::new(common::dynamodb().await, api.stack.table("EventsTable"))
}

fn level(view: &Value, id: &str) -> Value {
    view["levels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["level_id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no level {id} in {view}"))
}

async fn hold(store: &EventStore, concert: Uuid, level: &str, seats: u32) -> Held {
    let hold = Hold {
        concert_id: concert,
        level_id: level.into(),
        seats,
        hold_id: Uuid::now_v7(),
    };
    seats::hold(
        store,
        Uuid::now_v7(),
        &hold,
        None,
        &Metadata::origin(Uuid::now_v7(), "test"),
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn an_organizer_puts_a_concert_on_sale_and_anyone_reads_its_availability() {
    let api = Api::start().await;
    let created = create(&api, "olga", &concert("Beyoncé", 500, 200)).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["concert_id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["status"], "on_sale");
    assert_eq!(created.body["organizer"], "olga");
    assert_eq!(level(&created.body, "floor")["held"], 0);
    assert_eq!(created.body["door_staff"], json!([]));

    // Public: no token needed, and insiders' figures are not shown.
    let public = api.call("GET", format!("/concerts/{id}"), None, None).await;
    assert_eq!(public.status, 200, "{:?}", public.body);
    let floor = level(&public.body, "floor");
    assert_eq!(floor["available"], 500);
    assert_eq!(
        floor["price"],
        json!({ "amount": "89.00", "currency": "EUR" })
    );
    assert!(floor.get("held").is_none(), "{floor}");
    assert!(public.body.get("door_staff").is_none());

    let listed = api.call("GET", "/concerts", None, None).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    let ids: Vec<&str> = listed.body["concerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["concert_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&id.as_str()), "{ids:?}");

    // Seats held elsewhere show at once.
    let store = store(&api).await;
    let concert_id: Uuid = id.parse().unwrap();
    assert_eq!(
        hold(&store, concert_id, "floor", 3).await,
        Held::Taken { free_after: 497 }
    );
    let after = api.call("GET", format!("/concerts/{id}"), None, None).await;
    assert_eq!(level(&after.body, "floor")["available"], 497);

    // Details move the listing; the artist is kept when not given.
    let moved = api
        .call_as(
            "PATCH",
            format!("/concerts/{id}"),
            Some(("olga", "organizer")),
            Some(&json!({ "venue": "PGE Arena, Gdańsk" }).to_string()),
        )
        .await;
    assert_eq!(moved.status, 200, "{:?}", moved.body);
    assert_eq!(moved.body["artist"], "Beyoncé");
    assert_eq!(moved.body["venue"], "PGE Arena, Gdańsk");

    // Cancellation: nothing on sale, holds refused, gone from the list.
    let canceled = api
        .call_as(
            "POST",
            format!("/concerts/{id}/cancel"),
            Some(("olga", "organizer")),
            Some(&json!({ "reason": "the artist is ill" }).to_string()),
        )
        .await;
    assert_eq!(canceled.status, 200, "{:?}", canceled.body);
    assert_eq!(canceled.body["status"], "canceled");
    assert_eq!(level(&canceled.body, "floor")["available"], 0);
    assert_eq!(
        hold(&store, concert_id, "floor", 1).await,
        Held::Refused { free: 0 }
    );
    let listed = api.call("GET", "/concerts", None, None).await;
    assert!(!listed.body.to_string().contains(&id), "{}", listed.body);
    let again = api
        .call_as(
            "POST",
            format!("/concerts/{id}/cancel"),
            Some(("olga", "organizer")),
            Some(&json!({ "reason": "twice" }).to_string()),
        )
        .await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    assert_eq!(again.body["code"], "already_canceled");
}

#[tokio::test]
async fn only_organizers_manage_concerts_and_only_their_own() {
    let api = Api::start().await;
    let by_user = api
        .post("/concerts", "ulla", concert("Nobody", 10, 10))
        .await;
    assert_eq!(by_user.status, 403, "{:?}", by_user.body);
    assert_eq!(by_user.body["code"], "organizers_only");

    let created = create(&api, "olga", &concert("Dua Lipa", 100, 50)).await;
    let id = created.body["concert_id"].as_str().unwrap().to_owned();
    for (method, path, body) in [
        (
            "PATCH",
            format!("/concerts/{id}"),
            json!({ "artist": "Impostor" }),
        ),
        (
            "POST",
            format!("/concerts/{id}/cancel"),
            json!({ "reason": "not mine" }),
        ),
        (
            "PUT",
            format!("/concerts/{id}/levels"),
            json!({ "levels": concert("x", 1, 1)["levels"] }),
        ),
        ("PUT", format!("/concerts/{id}/door-staff/dora"), json!({})),
    ] {
        let other = api
            .call_as(
                method,
                path.clone(),
                Some(("otto", "organizer")),
                Some(&body.to_string()),
            )
            .await;
        assert_eq!(other.status, 403, "{method} {path}: {:?}", other.body);
    }
    // Nor may an organizer create a concert in another's name; an operator may.
    let mut for_olga = concert("Someone", 10, 10);
    for_olga["organizer"] = json!("olga");
    assert_eq!(create(&api, "otto", &for_olga).await.status, 403);
    let by_admin = api
        .call_as(
            "POST",
            "/concerts",
            Some(("ada", "admin")),
            Some(&for_olga.to_string()),
        )
        .await;
    assert_eq!(by_admin.status, 201, "{:?}", by_admin.body);
    assert_eq!(by_admin.body["organizer"], "olga");

    let staff = api
        .call_as(
            "PUT",
            format!("/concerts/{id}/door-staff/dora"),
            Some(("olga", "organizer")),
            None,
        )
        .await;
    assert_eq!(staff.status, 200, "{:?}", staff.body);
    assert_eq!(staff.body["door_staff"], json!(["dora"]));
    let twice = api
        .call_as(
            "PUT",
            format!("/concerts/{id}/door-staff/dora"),
            Some(("olga", "organizer")),
            None,
        )
        .await;
    assert_eq!(twice.status, 409, "{:?}", twice.body);
}

#[tokio::test]
async fn bad_input_is_refused_and_writes_nothing() {
    let api = Api::start().await;
    let mut past = concert("Past", 10, 10);
    past["starts_at"] = json!(in_days(-1));
    let mut no_levels = concert("None", 10, 10);
    no_levels["levels"] = json!([]);
    let mut zero = concert("Zero", 0, 10);
    zero["artist"] = json!("Zero");
    let mut dollars = concert("Dollars", 10, 10);
    dollars["levels"][0]["price"] = json!({ "amount": "10.00", "currency": "USD" });
    let mut fractions = concert("Fractions", 10, 10);
    fractions["levels"][0]["price"] = json!({ "amount": "10.001", "currency": "EUR" });
    // So dear that its cart's total would overflow the decimal arithmetic.
    let mut dear = concert("Dear", 10, 10);
    dear["levels"][0]["price"] =
        json!({ "amount": "79228162514264337593543950335", "currency": "EUR" });
    let mut over_max = concert("Over", 10, 10);
    over_max["levels"][0]["price"] = json!({ "amount": "1000000.00", "currency": "EUR" });
    let mut twice = concert("Twice", 10, 10);
    twice["levels"][1]["level_id"] = json!("floor");
    let mut unknown_field = concert("Field", 10, 10);
    unknown_field["colour"] = json!("red");
    let mut bad_currency = concert("Currency", 10, 10);
    bad_currency["currency"] = json!("XXX");
    let mut bad_id = concert("Id", 10, 10);
    bad_id["levels"][0]["level_id"] = json!("Floor Seats!");
    for (body, status, code) in [
        (past, 422, "starts_in_past"),
        (no_levels, 422, "invalid_level_count"),
        (zero, 422, "invalid_capacity"),
        (dollars, 422, "currency_mismatch"),
        (fractions, 422, "invalid_price"),
        (dear, 422, "invalid_price"),
        (over_max, 422, "invalid_price"),
        (twice, 422, "duplicate_level_id"),
        (unknown_field, 400, "invalid_body"),
        (bad_currency, 400, "invalid_body"),
        (bad_id, 422, "invalid_level_id"),
        (json!("not an object"), 400, "invalid_body"),
    ] {
        let answer = create(&api, "olga", &body).await;
        assert_eq!(answer.status, status, "{body}: {:?}", answer.body);
        assert_eq!(answer.body["code"], code, "{body}");
        assert_eq!(answer.content_type, "application/problem+json");
    }
    let mut nobodys = concert("Nobody's", 10, 10);
    nobodys["organizer"] = json!("  ");
    let answer = api
        .call_as(
            "POST",
            "/concerts",
            Some(("root", "admin")),
            Some(&nobodys.to_string()),
        )
        .await;
    assert_eq!(
        (answer.status, answer.body["code"].as_str()),
        (422, Some("invalid_organizer")),
        "{:?}",
        answer.body
    );
    let malformed = api
        .call_as("POST", "/concerts", Some(("olga", "organizer")), Some("{"))
        .await;
    assert_eq!(malformed.status, 400);
    let listed = api.call("GET", "/concerts", None, None).await;
    assert_eq!(listed.body["concerts"], json!([]), "nothing was written");

    for path in [
        "/concerts/not-a-uuid",
        &format!("/concerts/{}", Uuid::now_v7()),
    ] {
        let missing = api.call("GET", path, None, None).await;
        assert_eq!(missing.status, 404, "{path}: {:?}", missing.body);
        assert_eq!(missing.body["code"], "concert_not_found");
    }
    let page = api.call("GET", "/concerts?limit=0", None, None).await;
    assert_eq!(page.status, 400, "{:?}", page.body);
    for cursor in ["", &"9".repeat(1_100)] {
        let page = api
            .call("GET", format!("/concerts?after={cursor}"), None, None)
            .await;
        assert_eq!(
            (page.status, page.body["code"].as_str()),
            (400, Some("invalid_cursor")),
            "{:?}",
            page.body
        );
    }
    let anonymous = api
        .call(
            "POST",
            "/concerts",
            None,
            Some(&concert("A", 1, 1).to_string()),
        )
        .await;
    assert_eq!(anonymous.status, 401);
}

#[tokio::test]
async fn capacity_never_drops_below_the_seats_held_even_while_holds_race_the_resize() {
    let api = Api::start().await;
    let created = create(&api, "olga", &concert("Coldplay", 60, 10)).await;
    let id = created.body["concert_id"].as_str().unwrap().to_owned();
    let concert_id: Uuid = id.parse().unwrap();
    let store = store(&api).await;

    // 40 held: shrinking the floor to 39 is refused by the decider, to 40 allowed.
    for _ in 0..4 {
        assert!(matches!(
            hold(&store, concert_id, "floor", 10).await,
            Held::Taken { .. }
        ));
    }
    let levels = |floor: u32| {
        let mut body = concert("Coldplay", floor, 10);
        json!({ "levels": body["levels"].take() })
    };
    let resize = |floor: u32| {
        let body = levels(floor).to_string();
        let api = &api;
        let id = id.clone();
        async move {
            api.call_as(
                "PUT",
                format!("/concerts/{id}/levels"),
                Some(("olga", "organizer")),
                Some(&body),
            )
            .await
        }
    };
    let below = resize(39).await;
    assert_eq!(below.status, 409, "{:?}", below.body);
    assert_eq!(below.body["code"], "capacity_below_held");
    let grown = resize(80).await;
    assert_eq!(grown.status, 200, "{:?}", grown.body);
    assert_eq!(level(&grown.body, "floor")["available"], 40);
    assert_eq!(level(&grown.body, "floor")["held"], 40);

    // 40 free now. Twenty holds of 2 race a shrink to 50 (which takes 30 of the free 40):
    // whatever the interleaving, held never exceeds the capacity that stands.
    let holds = async {
        let mut racing = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let store = store.clone();
            racing.spawn(async move { hold(&store, concert_id, "floor", 2).await });
        }
        racing.join_all().await
    };
    let (shrunk, held) = tokio::join!(resize(50), holds);
    let taken = held
        .iter()
        .filter(|h| matches!(h, Held::Taken { .. }))
        .count() as u32;
    let view = api
        .call_as(
            "GET",
            format!("/concerts/{id}"),
            Some(("olga", "organizer")),
            None,
        )
        .await;
    let public = level(&view.body, "floor");
    let capacity = match shrunk.status {
        200 => 50,
        409 => 80,
        other => panic!("resize answered {other}: {:?}", shrunk.body),
    };
    assert_eq!(public["capacity"], capacity, "{view:?}", view = view.body);
    let held_seats = 40 + 2 * taken;
    assert!(held_seats <= capacity, "{held_seats} held of {capacity}");
    assert_eq!(public["available"], capacity - held_seats);
    if shrunk.status == 200 {
        assert!(taken <= 5, "{taken} holds of 2 fit in 10 free seats");
    } else {
        assert!(
            taken > 5,
            "the shrink was refused though {taken} holds left room"
        );
    }

    // Removing a level with seats held is refused; without, its counter drops to zero.
    let only_floor = json!({ "levels": [levels(capacity)["levels"][0].clone()] });
    let removed = api
        .call_as(
            "PUT",
            format!("/concerts/{id}/levels"),
            Some(("olga", "organizer")),
            Some(&only_floor.to_string()),
        )
        .await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    assert_eq!(removed.body["levels"].as_array().unwrap().len(), 1);
    assert_eq!(
        hold(&store, concert_id, "balcony", 1).await,
        Held::Refused { free: 0 }
    );
    let back = resize(capacity).await;
    assert_eq!(back.status, 200, "{:?}", back.body);
    assert_eq!(level(&back.body, "balcony")["available"], 10);
}
