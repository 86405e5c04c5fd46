//! Tickets through the local stack: a paid ticket order becomes one ticket per seat, its
//! codes mailed (or shipped by courier), verifiable with the published key, checked in
//! once at its own concert's door, and refused when forged, foreign or voided.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{eventually, Answer, Api};
use kassa_commerce::Clock;
use kassa_domain::ticket_code::CodeVerifier;
use kassa_runtime::mail::MailSink;
use kassa_store::{EventStore, StreamId};
use serde_json::{json, Value};
use uuid::Uuid;

use common::ORGANIZER;

/// The buyer adds `seats` of the floor to their cart and confirms it with `confirmation`
/// as the body; the order's id.
async fn confirm(api: &Api, buyer: &str, concert: Uuid, seats: u32, confirmation: &str) -> Answer {
    let added = api
        .post(
            "/cart/items",
            buyer,
            json!({ "concert_id": concert, "level_id": "floor", "quantity": seats }),
        )
        .await;
    assert!(matches!(added.status, 200 | 201), "{:?}", added.body);
    api.call("POST", "/cart/confirm", Some(buyer), Some(confirmation))
        .await
}

/// Buys and pays `seats` of the floor; the order's id once its tickets are all issued.
async fn buy(api: &Api, buyer: &str, concert: Uuid, seats: u32, confirmation: &str) -> Uuid {
    let confirmed = confirm(api, buyer, concert, seats, confirmation).await;
    assert_eq!(confirmed.status, 201, "{:?}", confirmed.body);
    let order: Uuid = confirmed.body["order_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let intent = eventually("the payment intent", || async {
        let o = api.get(format!("/orders/{order}"), buyer).await;
        o.body["payment_intent_id"].as_str().map(str::to_owned)
    })
    .await;
    let paid = common::pay_at_localstripe(&intent).await;
    assert_eq!(paid["status"], "succeeded", "{paid}");
    eventually("the tickets", || async {
        let mine = tickets_of(api, buyer).await;
        let of_order = mine
            .iter()
            .filter(|t| t["order_id"] == json!(order))
            .count();
        (of_order == seats as usize).then_some(())
    })
    .await;
    order
}

/// The organizer's sales figures of `concert`.
async fn sales_of(api: &Api, concert: Uuid) -> Answer {
    api.call_as(
        "GET",
        format!("/concerts/{concert}/sales"),
        Some(ORGANIZER),
        None,
    )
    .await
}

async fn tickets_of(api: &Api, user: &str) -> Vec<Value> {
    let answer = api.get("/tickets", user).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body["tickets"].as_array().unwrap().clone()
}

async fn check_in(api: &Api, concert: Uuid, caller: (&str, &str), code: &str) -> Answer {
    api.call_as(
        "POST",
        format!("/concerts/{concert}/check-ins"),
        Some(caller),
        Some(&json!({ "code": code }).to_string()),
    )
    .await
}

fn problem(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{:?}", answer.body);
    assert_eq!(answer.content_type, "application/problem+json");
    assert_eq!(answer.body["code"], code, "{:?}", answer.body);
}

async fn store(api: &Api) -> EventStore {
    EventStore::new(common::dynamodb().await, api.stack.table("EventsTable"))
}

async fn events_of_ticket(api: &Api, ticket: &str) -> Vec<String> {
    store(api)
        .await
        .read_stream(&StreamId::new("Ticket", ticket), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

async fn start() -> Api {
    let api = Api::start().await;
    api.stack.register_stripe_webhook().await.unwrap();
    api
}

#[tokio::test]
async fn a_paid_order_gets_its_codes_by_mail_and_each_checks_in_once() {
    let api = start().await;
    let concert =
        common::put_on_sale(&api, &common::concert_body("Beyoncé", &[("floor", 10)])).await;
    api.register("ana").await;
    let order = buy(&api, "ana", concert, 3, "").await;

    let tickets = tickets_of(&api, "ana").await;
    assert_eq!(tickets.len(), 3, "{tickets:?}");
    let mail = eventually("the mail with the codes", || async {
        let mails = MailSink::new(&api.mail_dir).read_all().unwrap();
        mails
            .into_iter()
            .find(|m| m.id == format!("tickets-{order}"))
    })
    .await;
    assert_eq!(mail.to, "ana@example.com");
    let key = api.call("GET", "/tickets/signing-key", None, None).await;
    assert_eq!(key.status, 200, "{:?}", key.body);
    let door = CodeVerifier::from_base64(key.body["public_key"].as_str().unwrap()).unwrap();
    for ticket in &tickets {
        let code = ticket["code"].as_str().unwrap();
        assert!(mail.body.contains(code), "{}", mail.body);
        let claims = door.verify(code).unwrap();
        assert_eq!(claims.ticket_id.to_string(), ticket["ticket_id"]);
        assert_eq!(claims.concert_id, concert);
        assert!(!code.contains("ana"), "the code says nothing of the buyer");
    }
    // Delivered once each.
    let first = tickets[0]["ticket_id"].as_str().unwrap().to_owned();
    eventually("the tickets delivered", || async {
        let events = events_of_ticket(&api, &first).await;
        events
            .contains(&"ticket.delivered".to_owned())
            .then_some(())
    })
    .await;

    let code = tickets[0]["code"].as_str().unwrap();
    let admitted = check_in(&api, concert, ORGANIZER, code).await;
    assert_eq!(admitted.status, 200, "{:?}", admitted.body);
    assert_eq!(admitted.body["status"], "checked_in");
    let again = check_in(&api, concert, ORGANIZER, code).await;
    problem(&again, 409, "already_checked_in");
    assert_eq!(again.body["checked_in_at"], admitted.body["checked_in_at"]);

    // A redelivered reservation.confirmed issues nothing twice and mails the same mail.
    let confirmed = store(&api)
        .await
        .read_stream(&StreamId::new("Reservation", order), 100)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event_type == "reservation.confirmed")
        .unwrap();
    let failed = common::redeliver(&api, "IssueTicketsFunction", "issue-tickets", &confirmed).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(tickets_of(&api, "ana").await.len(), 3);
    let events = events_of_ticket(&api, &first).await;
    assert_eq!(
        events,
        ["ticket.created", "ticket.delivered", "ticket.validated"],
        "issued and delivered once"
    );
    let mails = MailSink::new(&api.mail_dir).read_all().unwrap();
    assert_eq!(
        mails
            .iter()
            .filter(|m| m.id == format!("tickets-{order}"))
            .count(),
        1
    );
}

#[tokio::test]
async fn twenty_concurrent_scans_of_one_ticket_admit_it_once() {
    let api = start().await;
    let concert =
        common::put_on_sale(&api, &common::concert_body("Beyoncé", &[("floor", 10)])).await;
    api.register("ana").await;
    buy(&api, "ana", concert, 1, "").await;
    let code = tickets_of(&api, "ana").await[0]["code"]
        .as_str()
        .unwrap()
        .to_owned();
    // Polled together, so the scans race at the store.
    let answers = join_all(
        (0..20)
            .map(|_| Box::pin(check_in(&api, concert, ORGANIZER, &code)))
            .collect(),
    )
    .await;
    let admitted = answers.iter().filter(|a| a.status == 200).count();
    let refused: Vec<&Answer> = answers.iter().filter(|a| a.status != 200).collect();
    assert_eq!(
        admitted,
        1,
        "{:?}",
        answers.iter().map(|a| &a.body).collect::<Vec<_>>()
    );
    assert_eq!(refused.len(), 19);
    for answer in refused {
        problem(answer, 409, "already_checked_in");
    }
    // The organizer's figures count the one admission.
    common::eventually("the check-in counted", || async {
        let sales = sales_of(&api, concert).await;
        let floor = &sales.body["levels"][0];
        (floor["checked_in"] == 1 && floor["sold"] == 1).then_some(())
    })
    .await;
}

/// `futures::join_all` without the dependency: each future polled in turn until all end.
async fn join_all<F: std::future::Future + Unpin>(mut futures: Vec<F>) -> Vec<F::Output> {
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match std::pin::Pin::new(future).poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

#[tokio::test]
async fn forged_foreign_and_voided_codes_are_refused_and_voided_ones_revoked() {
    let api = start().await;
    let concert =
        common::put_on_sale(&api, &common::concert_body("Beyoncé", &[("floor", 10)])).await;
    let other = common::put_on_sale(&api, &common::concert_body("Rosalía", &[("floor", 10)])).await;
    api.register("ana").await;
    buy(&api, "ana", concert, 2, "").await;
    let tickets = tickets_of(&api, "ana").await;
    let (kept, voided) = (&tickets[0], &tickets[1]);
    let code = kept["code"].as_str().unwrap();
    let kept_id = kept["ticket_id"].as_str().unwrap();

    // One bit flipped in the signature.
    let mut bytes = URL_SAFE_NO_PAD.decode(code).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let forged = URL_SAFE_NO_PAD.encode(&bytes);
    problem(
        &check_in(&api, concert, ORGANIZER, &forged).await,
        422,
        "invalid_code",
    );
    // A valid code at another concert's door.
    problem(
        &check_in(&api, other, ORGANIZER, code).await,
        422,
        "wrong_concert",
    );
    assert_eq!(
        events_of_ticket(&api, kept_id).await.last().unwrap(),
        "ticket.validation_failed"
    );
    // Its own door still admits it.
    assert_eq!(check_in(&api, concert, ORGANIZER, code).await.status, 200);

    // Voided by the organizer: refused at the door and on the revocation list.
    let voided_id = voided["ticket_id"].as_str().unwrap();
    let void = api
        .call_as(
            "POST",
            format!("/tickets/{voided_id}/void"),
            Some(ORGANIZER),
            Some(&json!({ "reason": "refunded at the box office" }).to_string()),
        )
        .await;
    assert_eq!(void.status, 200, "{:?}", void.body);
    assert_eq!(void.body["status"], "voided");
    let refused = check_in(&api, concert, ORGANIZER, voided["code"].as_str().unwrap()).await;
    problem(&refused, 409, "ticket_voided");
    let list = api
        .call_as(
            "GET",
            format!("/concerts/{concert}/revocations"),
            Some(ORGANIZER),
            None,
        )
        .await;
    assert_eq!(list.status, 200, "{:?}", list.body);
    let revoked = list.body["revocations"].as_array().unwrap();
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["ticket_id"], voided["ticket_id"]);
    assert_eq!(revoked[0]["code"], voided["code"]);
    let next = list.body["next"].as_str().unwrap();
    let later = api
        .call_as(
            "GET",
            format!("/concerts/{concert}/revocations?since={next}"),
            Some(ORGANIZER),
            None,
        )
        .await;
    assert_eq!(later.status, 200, "{:?}", later.body);
    assert_eq!(later.body["revocations"], json!([]));
    assert_eq!(later.body["next"], next);
}

#[tokio::test]
async fn only_the_organizer_and_door_staff_check_in_and_a_ticket_is_its_owners() {
    let api = start().await;
    let concert =
        common::put_on_sale(&api, &common::concert_body("Beyoncé", &[("floor", 10)])).await;
    api.register("ana").await;
    buy(&api, "ana", concert, 2, "").await;
    let tickets = tickets_of(&api, "ana").await;
    let code = tickets[0]["code"].as_str().unwrap();
    let id = tickets[0]["ticket_id"].as_str().unwrap();

    problem(
        &check_in(&api, concert, ("mallory", "user"), code).await,
        403,
        "forbidden",
    );
    problem(
        &check_in(&api, concert, ("ana", "user"), code).await,
        403,
        "forbidden",
    );
    assert_eq!(
        events_of_ticket(&api, id).await.len(),
        2,
        "nothing recorded"
    );
    let staff = api
        .call_as(
            "PUT",
            format!("/concerts/{concert}/door-staff/dora"),
            Some(ORGANIZER),
            Some("{}"),
        )
        .await;
    assert_eq!(staff.status, 200, "{:?}", staff.body);
    assert_eq!(
        check_in(&api, concert, ("dora", "user"), code).await.status,
        200
    );

    problem(
        &api.get(format!("/tickets/{id}"), "mallory").await,
        404,
        "ticket_not_found",
    );
    assert_eq!(tickets_of(&api, "mallory").await, Vec::<Value>::new());
    let own = api.get(format!("/tickets/{id}"), "ana").await;
    assert_eq!(own.status, 200, "{:?}", own.body);
    assert_eq!(own.body["code"], code);
    assert_eq!(own.body["status"], "checked_in");
    let organizer = api
        .call_as("GET", format!("/tickets/{id}"), Some(ORGANIZER), None)
        .await;
    assert_eq!(organizer.status, 200, "{:?}", organizer.body);
    assert!(
        organizer.body.get("code").is_none(),
        "the code is the owner's"
    );
    // The buyer cannot void their own ticket, nor read another concert's revocations.
    problem(
        &api.call(
            "POST",
            format!("/tickets/{id}/void"),
            Some("ana"),
            Some(r#"{"reason":"mine"}"#),
        )
        .await,
        403,
        "forbidden",
    );
    problem(
        &api.get(format!("/concerts/{concert}/revocations"), "ana")
            .await,
        403,
        "forbidden",
    );
}

#[tokio::test]
async fn bad_input_is_a_problem_and_writes_nothing() {
    let api = start().await;
    let concert =
        common::put_on_sale(&api, &common::concert_body("Beyoncé", &[("floor", 10)])).await;
    api.register("ana").await;
    buy(&api, "ana", concert, 1, "").await;
    let id = tickets_of(&api, "ana").await[0]["ticket_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = events_of_ticket(&api, &id).await;

    let scan = |body: &str| {
        let body = body.to_owned();
        let api = &api;
        async move {
            api.call_as(
                "POST",
                format!("/concerts/{concert}/check-ins"),
                Some(ORGANIZER),
                Some(&body),
            )
            .await
        }
    };
    problem(&scan("{}").await, 400, "invalid_body");
    problem(&scan(r#"{"code":""}"#).await, 422, "invalid_code");
    problem(&scan(r#"{"code":"   "}"#).await, 422, "invalid_code");
    problem(&scan(r#"{"code":"not a code"}"#).await, 422, "invalid_code");
    problem(&scan(r#"{"code":42}"#).await, 400, "invalid_body");
    problem(&scan("not json").await, 400, "malformed_json");
    problem(&scan("").await, 400, "missing_body");
    problem(
        &api.call_as(
            "POST",
            "/concerts/not-a-concert/check-ins",
            Some(ORGANIZER),
            Some(r#"{"code":"x"}"#),
        )
        .await,
        404,
        "concert_not_found",
    );
    problem(
        &api.call_as(
            "POST",
            format!("/concerts/{}/check-ins", Uuid::now_v7()),
            Some(ORGANIZER),
            Some(r#"{"code":"x"}"#),
        )
        .await,
        404,
        "concert_not_found",
    );
    problem(
        &api.get("/tickets/not-a-ticket", "ana").await,
        404,
        "ticket_not_found",
    );
    problem(
        &api.get(format!("/tickets/{}", Uuid::now_v7()), "ana").await,
        404,
        "ticket_not_found",
    );
    problem(
        &api.call_as(
            "GET",
            format!("/concerts/{concert}/revocations?since=yesterday"),
            Some(ORGANIZER),
            None,
        )
        .await,
        400,
        "invalid_cursor",
    );
    problem(
        &api.call_as(
            "POST",
            format!("/tickets/{id}/shipments"),
            Some(ORGANIZER),
            Some(r#"{"courier":"DHL"}"#),
        )
        .await,
        400,
        "invalid_body",
    );
    problem(
        &api.call_as(
            "POST",
            format!("/tickets/{id}/void"),
            Some(ORGANIZER),
            Some(r#"{"reason":""}"#),
        )
        .await,
        422,
        "invalid_reason",
    );
    assert_eq!(events_of_ticket(&api, &id).await, before, "nothing written");

    // The delivery choice is judged before anything is written.
    for (body, status, code) in [
        (r#"{"delivery":"courier"}"#, 422, "invalid_address"),
        (r#"{"delivery":"pigeon"}"#, 400, "invalid_body"),
        (
            r#"{"delivery":"email","address":{"name":"A","line1":"B","postal_code":"1","city":"C","country":"DE"}}"#,
            422,
            "invalid_delivery",
        ),
        (
            r#"{"delivery":"courier","address":{"name":"A","line1":"B","postal_code":"1","city":"C","country":"Germany"}}"#,
            422,
            "invalid_address",
        ),
    ] {
        problem(&confirm(&api, "ana", concert, 1, body).await, status, code);
        let cart = api.get("/cart", "ana").await;
        assert_eq!(
            cart.body["items"].as_array().map(Vec::len),
            Some(1),
            "{:?}",
            cart.body
        );
        let cleared = api.call("POST", "/cart/clear", Some("ana"), None).await;
        assert!(cleared.status < 300, "{:?}", cleared.body);
    }
}

#[tokio::test]
async fn courier_tickets_are_not_mailed_and_are_shipped_once() {
    let api = start().await;
    let concert =
        common::put_on_sale(&api, &common::concert_body("Beyoncé", &[("floor", 10)])).await;
    api.register("ana").await;
    let address = json!({
        "delivery": "courier",
        "address": { "name": "Ana Lima", "line1": "Hauptstraße 1", "postal_code": "10115",
                     "city": "Berlin", "country": "DE" },
    });
    let order = buy(&api, "ana", concert, 1, &address.to_string()).await;
    // The courier fee (`CourierFee`, 4.90 by default) is on the order and its invoice,
    // and none of it is the concert's sales.
    let paid = api.get(format!("/orders/{order}"), "ana").await;
    assert_eq!(
        paid.body["delivery_fee"]["amount"], "4.90",
        "{:?}",
        paid.body
    );
    assert_eq!(paid.body["total"]["amount"], "84.90", "{:?}", paid.body);
    let invoice_id = paid.body["invoice_id"].as_str().unwrap().to_owned();
    let invoice = eventually("the invoice", || async {
        let i = api.get(format!("/invoices/{invoice_id}"), "ana").await;
        (i.status == 200).then_some(i.body)
    })
    .await;
    let lines = common::invoice_lines(&invoice);
    assert_eq!(
        lines,
        ["Beyoncé — FLOOR 80.00", "Courier delivery 4.90"],
        "{invoice}"
    );
    assert_eq!(invoice["total"]["amount"], "84.90", "{invoice}");
    let revenue = common::eventually("the payment counted", || async {
        let sales = sales_of(&api, concert).await;
        let revenue = sales.body["levels"][0]["revenue"]["amount"].as_str()?;
        (revenue != "0.00").then(|| revenue.to_owned())
    })
    .await;
    assert_eq!(revenue, "80.00");
    let ticket = tickets_of(&api, "ana").await.remove(0);
    assert_eq!(ticket["delivery"], "courier");
    let id = ticket["ticket_id"].as_str().unwrap();
    // The issuing commit is done once the ticket is listed; no mail follows it.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let mails = MailSink::new(&api.mail_dir).read_all().unwrap();
    assert!(
        mails.iter().all(|m| m.id != format!("tickets-{order}")),
        "{mails:?}"
    );

    let shipment = json!({ "courier": "DHL", "tracking_number": "JD014600006281" }).to_string();
    problem(
        &api.call(
            "POST",
            format!("/tickets/{id}/shipments"),
            Some("ana"),
            Some(&shipment),
        )
        .await,
        403,
        "forbidden",
    );
    let shipped = api
        .call_as(
            "POST",
            format!("/tickets/{id}/shipments"),
            Some(ORGANIZER),
            Some(&shipment),
        )
        .await;
    assert_eq!(shipped.status, 200, "{:?}", shipped.body);
    assert_eq!(
        shipped.body["shipment"]["tracking_number"],
        "JD014600006281"
    );
    assert_eq!(shipped.body["delivered"], true);
    problem(
        &api.call_as(
            "POST",
            format!("/tickets/{id}/shipments"),
            Some(ORGANIZER),
            Some(&shipment),
        )
        .await,
        409,
        "already_shipped",
    );
    assert_eq!(
        events_of_ticket(&api, id).await,
        ["ticket.created", "ticket.shipped"]
    );
}

/// Stripe reports the refund of a ticket order's payment before the payment's success
/// (its events are not ordered; an operator refunded at once). The order ends refunded,
/// its held seats go back, and no ticket is issued: the money and the seats agree.
#[tokio::test]
async fn a_payment_refunded_before_its_success_arrives_sells_no_seats() {
    let api = start().await;
    let concert = common::put_on_sale(&api, &common::concert_body("Muse", &[("floor", 4)])).await;
    api.register("rui").await;
    let confirmed = confirm(&api, "rui", concert, 2, "").await;
    assert_eq!(confirmed.status, 201, "{:?}", confirmed.body);
    let order = confirmed.body["order_id"].as_str().unwrap().to_owned();
    let intent = eventually("the payment intent", || async {
        let o = api.get(format!("/orders/{order}"), "rui").await;
        o.body["payment_intent_id"].as_str().map(str::to_owned)
    })
    .await;
    let total = api.get(format!("/orders/{order}"), "rui").await.body["total"].clone();
    let minor: i64 = total["amount"]
        .as_str()
        .unwrap()
        .replace('.', "")
        .parse()
        .unwrap();
    let now = api.stack.clock.now().unix_timestamp();
    let charge = format!("ch_{}", &intent[3..]);
    let refunded = common::stripe_event(
        "charge.refunded",
        now,
        json!({
            "id": charge, "object": "charge", "payment_intent": intent, "currency": "eur",
            "amount": minor, "amount_refunded": minor, "refunded": true,
            "refunds": { "object": "list", "data": [
                { "id": "re_at_once", "object": "refund", "amount": minor,
                  "reason": "requested_by_customer", "status": "succeeded" }
            ]},
        }),
    );
    let succeeded = common::stripe_event(
        "payment_intent.succeeded",
        now - 5,
        json!({
            "id": intent, "object": "payment_intent", "amount": minor,
            "amount_received": minor, "currency": "eur", "status": "succeeded",
            "customer": null, "latest_charge": charge,
            "metadata": { "kassa_order_id": order, "kassa_user_id": "rui" },
            "last_payment_error": null, "cancellation_reason": null,
        }),
    );
    for event in [&refunded, &succeeded] {
        let answer = common::deliver(&api, event).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    }
    let canceled = eventually("the reservation canceled", || async {
        let events = store(&api)
            .await
            .read_stream(&StreamId::new("Reservation", &order), 100)
            .await
            .unwrap();
        let types: Vec<String> = events.into_iter().map(|e| e.event_type).collect();
        types
            .contains(&"reservation.canceled".to_owned())
            .then_some(types)
    })
    .await;
    assert!(
        !canceled.contains(&"reservation.confirmed".to_owned()),
        "{canceled:?}"
    );
    let o = api.get(format!("/orders/{order}"), "rui").await.body;
    assert_eq!(
        (o["status"].as_str(), &o["refunded"]),
        (Some("refunded"), &total)
    );
    let view = api
        .call("GET", format!("/concerts/{concert}"), None, None)
        .await;
    assert_eq!(view.body["levels"][0]["available"], 4, "{:?}", view.body);
    // A canceled reservation is never confirmed, and only a confirmation issues tickets.
    assert!(tickets_of(&api, "rui").await.is_empty());
}
