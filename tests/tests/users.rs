//! Users through the local runner: registering, reading one's record, roles changed by
//! admins, and the rule that kassa's record of a role counts over a token's claim.

mod common;

use common::{Answer, Api};
use kassa_domain::identity::{Actor, Role};
use kassa_runtime::access;
use kassa_store::{EventStore, StreamId};
use serde_json::{json, Value};

async fn store(api: &Api) -> EventStore {
    EventStore::new(common::dynamodb().await, api.stack.table("EventsTable"))
}

/// The event types of `user`'s stream, oldest first.
async fn types_of(api: &Api, user: &str) -> Vec<String> {
    store(api)
        .await
        .read_stream(&StreamId::new("User", user), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

/// `user` registers, their token claiming `role`.
async fn register(api: &Api, user: &str, role: &str, body: Value) -> Answer {
    api.call_as(
        "POST",
        "/users",
        Some((user, role)),
        Some(&body.to_string()),
    )
    .await
}

fn profile(name: &str) -> Value {
    json!({ "email": format!("{name}@example.test"), "name": name })
}

/// `by` (token claiming `role`) gives `user` the role `to`.
async fn set_role(api: &Api, by: (&str, &str), user: &str, to: &str) -> Answer {
    api.call_as(
        "PUT",
        format!("/users/{user}/role"),
        Some(by),
        Some(&json!({ "role": to }).to_string()),
    )
    .await
}

fn assert_problem(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{:?}", answer.body);
    assert_eq!(answer.content_type, "application/problem+json");
    assert_eq!(answer.body["code"], code, "{:?}", answer.body);
}

#[tokio::test]
async fn a_caller_registers_and_reads_their_record() {
    let api = Api::start().await;
    let created = register(
        &api,
        "ann",
        "user",
        json!({ "email": " ann@example.test ", "name": "Ann" }),
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["id"], "ann");
    assert_eq!(created.body["email"], "ann@example.test");
    assert_eq!(created.body["name"], "Ann");
    assert_eq!(created.body["role"], "user");
    let registered_at = created.body["registered_at"].as_str().unwrap().to_owned();
    assert!(
        time::OffsetDateTime::parse(
            &registered_at,
            &time::format_description::well_known::Rfc3339
        )
        .is_ok(),
        "{registered_at}"
    );

    let me = api.get("/users/me", "ann").await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.body, created.body);
    assert_eq!(types_of(&api, "ann").await, ["user.registered"]);

    let stranger = api.get("/users/me", "bob").await;
    assert_problem(&stranger, 404, "user_not_found");
}

#[tokio::test]
async fn bad_input_is_refused_and_writes_nothing() {
    let api = Api::start().await;
    let long_name = "x".repeat(101);
    let cases = [
        (
            "no @",
            json!({ "email": "ann.example.test", "name": "Ann" }),
            422,
            "invalid_email",
        ),
        (
            "no domain dot",
            json!({ "email": "ann@example", "name": "Ann" }),
            422,
            "invalid_email",
        ),
        (
            "empty name",
            json!({ "email": "ann@example.test", "name": "  " }),
            422,
            "invalid_name",
        ),
        (
            "long name",
            json!({ "email": "ann@example.test", "name": long_name }),
            422,
            "invalid_name",
        ),
        (
            "no name",
            json!({ "email": "ann@example.test" }),
            400,
            "invalid_body",
        ),
        (
            "a role in the body",
            json!({ "email": "ann@example.test", "name": "Ann", "role": "admin" }),
            400,
            "invalid_body",
        ),
        (
            "not an object",
            json!(["ann@example.test"]),
            400,
            "invalid_body",
        ),
    ];
    for (case, body, status, code) in cases {
        let answer = register(&api, "ann", "user", body).await;
        assert_eq!(answer.status, status, "{case}: {:?}", answer.body);
        assert_eq!(answer.body["code"], code, "{case}: {:?}", answer.body);
        assert_eq!(answer.content_type, "application/problem+json", "{case}");
    }
    let malformed = api
        .call_as("POST", "/users", Some(("ann", "user")), Some("{\"email\":"))
        .await;
    assert_problem(&malformed, 400, "malformed_json");
    let anonymous = api
        .call("POST", "/users", None, Some(&profile("ann").to_string()))
        .await;
    assert_eq!(anonymous.status, 401);
    assert!(types_of(&api, "ann").await.is_empty(), "nothing written");
    // Still free to register properly afterwards.
    assert_eq!(
        register(&api, "ann", "user", profile("ann")).await.status,
        201
    );
}

#[tokio::test]
async fn registering_twice_or_after_deletion_is_a_409() {
    let api = Api::start().await;
    assert_eq!(
        register(&api, "ann", "user", profile("ann")).await.status,
        201
    );
    let again = register(&api, "ann", "user", profile("ann")).await;
    assert_problem(&again, 409, "already_registered");
    // A token now claiming admin does not make a second registration either.
    let as_admin = register(&api, "ann", "admin", profile("ann")).await;
    assert_problem(&as_admin, 409, "already_registered");
    assert_eq!(types_of(&api, "ann").await, ["user.registered"]);

    let deleted = api.call("DELETE", "/users/ann", Some("ann"), None).await;
    assert_eq!(deleted.status, 200, "{:?}", deleted.body);
    assert_problem(
        &register(&api, "ann", "user", profile("ann")).await,
        409,
        "user_deleted",
    );
    assert_problem(&api.get("/users/me", "ann").await, 404, "user_not_found");
    // Deleting oneself stays idempotent.
    let twice = api.call("DELETE", "/users/ann", Some("ann"), None).await;
    assert_eq!(twice.status, 200, "{:?}", twice.body);
    assert_eq!(twice.body["already_deleted"], true);
    assert_eq!(
        types_of(&api, "ann").await,
        ["user.registered", "user.deleted"]
    );

    // Deleted before ever registering: the id is spent all the same.
    let gone = api.call("DELETE", "/users/carl", Some("carl"), None).await;
    assert_eq!(gone.status, 200, "{:?}", gone.body);
    assert_problem(
        &register(&api, "carl", "user", profile("carl")).await,
        409,
        "user_deleted",
    );
}

#[tokio::test]
async fn an_admin_promotes_a_user_to_organizer() {
    let api = Api::start().await;
    // The first operator: registered with a token claiming admin.
    let root = register(&api, "root", "admin", profile("root")).await;
    assert_eq!(root.body["role"], "admin", "{:?}", root.body);
    register(&api, "olga", "user", profile("olga")).await;

    let promoted = set_role(&api, ("root", "admin"), "olga", "organizer").await;
    assert_eq!(promoted.status, 200, "{:?}", promoted.body);
    assert_eq!(promoted.body["role"], "organizer");
    assert_eq!(promoted.body["changed"], true);
    let read = api
        .call_as("GET", "/users/olga", Some(("root", "admin")), None)
        .await;
    assert_eq!(read.status, 200, "{:?}", read.body);
    assert_eq!(read.body["role"], "organizer");
    assert_eq!(api.get("/users/me", "olga").await.body["role"], "organizer");

    let events = store(&api)
        .await
        .read_stream(&StreamId::new("User", "olga"), 100)
        .await
        .unwrap();
    let updated = events.last().unwrap();
    assert_eq!(updated.event_type, "user.role_updated");
    assert_eq!(
        updated.payload,
        json!({ "user_id": "olga", "role": "organizer", "previous": "user", "by": "root" })
    );

    // The same role again records nothing.
    let same = set_role(&api, ("root", "admin"), "olga", "organizer").await;
    assert_eq!(same.status, 200, "{:?}", same.body);
    assert_eq!(same.body["changed"], false);
    assert_eq!(types_of(&api, "olga").await.len(), 2);

    // What the role route refuses before anything is written.
    assert_problem(
        &set_role(&api, ("root", "admin"), "nobody", "organizer").await,
        404,
        "user_not_found",
    );
    assert_problem(
        &set_role(&api, ("root", "admin"), "olga", "system").await,
        422,
        "invalid_role",
    );
    assert_problem(
        &set_role(&api, ("root", "admin"), "olga", "owner").await,
        422,
        "invalid_role",
    );
    assert_eq!(types_of(&api, "olga").await.len(), 2);
}

#[tokio::test]
async fn only_admins_change_roles_or_read_others() {
    let api = Api::start().await;
    register(&api, "ann", "user", profile("ann")).await;
    register(&api, "olga", "organizer", profile("olga")).await;
    for by in [("ann", "user"), ("olga", "organizer")] {
        assert_problem(&set_role(&api, by, "ann", "admin").await, 403, "forbidden");
        assert_problem(&set_role(&api, by, by.0, "admin").await, 403, "forbidden");
        let read = api.call_as("GET", "/users/ann", Some(by), None).await;
        if by.0 == "ann" {
            assert_eq!(read.status, 200, "one's own record: {:?}", read.body);
        } else {
            assert_problem(&read, 403, "forbidden");
        }
    }
    // A registered user whose token now claims admin is still what kassa recorded.
    assert_problem(
        &set_role(&api, ("ann", "admin"), "ann", "admin").await,
        403,
        "forbidden",
    );
    assert_problem(
        &set_role(&api, ("ann", "admin"), "olga", "user").await,
        403,
        "forbidden",
    );
    assert_eq!(types_of(&api, "ann").await, ["user.registered"]);
    assert_eq!(types_of(&api, "olga").await, ["user.registered"]);
}

#[tokio::test]
async fn a_demotion_takes_effect_at_once() {
    let api = Api::start().await;
    register(&api, "root", "admin", profile("root")).await;
    register(&api, "deputy", "user", profile("deputy")).await;
    register(&api, "olga", "user", profile("olga")).await;
    assert_eq!(
        set_role(&api, ("root", "admin"), "deputy", "admin")
            .await
            .status,
        200
    );
    assert_eq!(
        set_role(&api, ("deputy", "user"), "olga", "organizer")
            .await
            .status,
        200,
        "the deputy acts as the admin kassa recorded, whatever their token claims"
    );

    // The organizer's rights, as any route sees them.
    let store = store(&api).await;
    let olga = access::recorded(&store, Actor::organizer("olga"))
        .await
        .unwrap();
    assert_eq!(olga.role, Role::Organizer);

    assert_eq!(
        set_role(&api, ("root", "admin"), "olga", "user")
            .await
            .status,
        200
    );
    assert_eq!(
        set_role(&api, ("root", "admin"), "deputy", "user")
            .await
            .status,
        200
    );
    // Their tokens still claim the old roles; kassa's record wins on the next request.
    let olga = access::recorded(&store, Actor::organizer("olga"))
        .await
        .unwrap();
    assert_eq!(olga.role, Role::User);
    let demoted = set_role(&api, ("deputy", "admin"), "olga", "admin").await;
    assert_problem(&demoted, 403, "forbidden");
    let read = api
        .call_as("GET", "/users/olga", Some(("deputy", "admin")), None)
        .await;
    assert_problem(&read, 403, "forbidden");
    // Nor anywhere else an operator may reach: someone's workspace, its wallet and
    // invoices, the revenue figures. A recorded admin still may.
    let (ws, _) = api.workspace("carol", "free").await;
    let as_deputy = |method: &'static str, path: String, body: Option<Value>| {
        let api = &api;
        async move {
            let body = body.map(|b| b.to_string());
            api.call_as(method, path, Some(("deputy", "admin")), body.as_deref())
                .await
        }
    };
    let consume = json!({ "feature": "api.call", "quantity": 1 });
    assert_problem(
        &as_deputy("GET", format!("/workspaces/{ws}"), None).await,
        404,
        "workspace_not_found",
    );
    assert_problem(
        &as_deputy(
            "POST",
            format!("/workspaces/{ws}/credits/consume"),
            Some(consume),
        )
        .await,
        404,
        "workspace_not_found",
    );
    assert_problem(
        &as_deputy("GET", format!("/workspaces/{ws}/invoices"), None).await,
        404,
        "workspace_not_found",
    );
    assert_problem(
        &as_deputy("GET", "/analytics/revenue".into(), None).await,
        403,
        "admin_only",
    );
    let by_root = api
        .call_as(
            "GET",
            format!("/workspaces/{ws}"),
            Some(("root", "admin")),
            None,
        )
        .await;
    assert_eq!(by_root.status, 200, "{:?}", by_root.body);

    // An admin may step down; after that they cannot step back up.
    assert_eq!(
        set_role(&api, ("root", "admin"), "root", "organizer")
            .await
            .status,
        200
    );
    assert_problem(
        &set_role(&api, ("root", "admin"), "root", "admin").await,
        403,
        "forbidden",
    );

    // A deleted user keeps no rights, and one who never registered has their token's.
    api.call("DELETE", "/users/olga", Some("olga"), None).await;
    let gone = access::recorded(&store, Actor::admin("olga"))
        .await
        .unwrap_err();
    assert_eq!((gone.status, gone.code.as_str()), (403, "user_deleted"));
    let newcomer = access::recorded(&store, Actor::organizer("nina"))
        .await
        .unwrap();
    assert_eq!(newcomer.role, Role::Organizer);
}

#[tokio::test]
async fn only_the_user_or_a_recorded_admin_deletes_an_account() {
    let api = Api::start().await;
    register(&api, "root", "admin", profile("root")).await;
    register(&api, "ann", "user", profile("ann")).await;
    register(&api, "bob", "user", profile("bob")).await;
    let other = api.call("DELETE", "/users/bob", Some("ann"), None).await;
    assert_problem(&other, 403, "forbidden");
    // A registered user whose token claims admin is not one.
    let claimed = api
        .call_as("DELETE", "/users/bob", Some(("ann", "admin")), None)
        .await;
    assert_problem(&claimed, 403, "forbidden");
    let by_admin = api
        .call_as("DELETE", "/users/bob", Some(("root", "admin")), None)
        .await;
    assert_eq!(by_admin.status, 200, "{:?}", by_admin.body);
    assert_eq!(
        types_of(&api, "bob").await,
        ["user.registered", "user.deleted"]
    );
    // An admin who was deleted acts as no one.
    api.call("DELETE", "/users/root", Some("root"), None).await;
    let after = api
        .call_as("DELETE", "/users/ann", Some(("root", "admin")), None)
        .await;
    assert_problem(&after, 403, "user_deleted");
}
