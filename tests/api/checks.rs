//! may_contact over HTTP: fail closed, batches, validation, isolation.

use chrono::Utc;
use diesel::{Connection, RunQueryDsl};
use serde_json::json;

use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::{backend_test_with, backend_tests};

backend_tests!(
    a_check_fails_closed_when_no_connection_can_be_had,
    a_batch_answers_in_input_order_with_counts,
    a_batch_is_bounded_and_validated,
    a_check_is_validated_field_by_field,
    a_check_needs_the_checks_scope,
);
// The production default body limit, so that the batch cap is what refuses.
backend_test_with!(a_batch_holds_at_most_10000_numbers, |s| s.max_body_bytes =
    2 * 1024 * 1024);

async fn opt_in(app: &TestApp, key: &str, phone: &str, categories: &[&str]) {
    let res = app
        .post(
            "/v1/opt-ins",
            Some(key),
            &json!({"phone": phone, "categories": categories, "channel": "api",
                    "evidence": {"collected_at": Utc::now().to_rfc3339(), "consent_text_version": "v1", "source_system": "crm"}}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
}

/// With every pooled connection taken (the store cannot be reached in time), a
/// check that needs the store answers 503 with `allowed: false`: never an allow.
/// A live check whose in-memory state the fence (on its own connection) proves
/// fresh needs no pooled connection and answers.
async fn a_check_fails_closed_when_no_connection_can_be_had(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    opt_in(&app, &biz.key, "+14155552671", &["utility"]).await;
    let body = json!({"phone": "+14155552671", "category": "utility"});
    assert_eq!(
        app.post("/v1/checks", Some(&biz.key), &body).await.body["allowed"],
        true
    );
    let store = app.store.clone();
    let held = actix_web::rt::task::spawn_blocking(move || {
        (0..4).map(|_| store.conn().unwrap()).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let from_memory = app.post("/v1/checks", Some(&biz.key), &body).await;
    let mut as_of = body.clone();
    as_of["as_of"] = json!((chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339());
    let res = app.post("/v1/checks", Some(&biz.key), &as_of).await;
    res.assert_problem(503, "unavailable");
    assert_eq!(res.body["allowed"], false, "a 503 says allowed: false");
    assert!(res.header("retry-after").is_some());
    assert_eq!(from_memory.body["allowed"], true, "{}", from_memory.body);
    drop(held);
    assert_eq!(
        app.post("/v1/checks", Some(&biz.key), &body).await.body["allowed"],
        true,
        "recovers"
    );
}

/// PostgreSQL going away mid-run (connections killed, new ones refused): checks
/// answer 503 with `allowed: false`, for single and batch checks alike.
///
/// PostgreSQL only, on purpose: an embedded SQLite file cannot go away under open
/// connections (they keep the file open). On SQLite the store fails under a
/// running service in the ways `a_check_fails_closed_when_no_connection_can_be_had`
/// and the `fail_closed` tests cover, which run on both backends.
#[actix_web::test]
async fn a_check_fails_closed_when_postgresql_goes_away() {
    let Some(app) = spawn_app_with(Backend::Postgres, |s| s.pool_size = 2).await else {
        return;
    };
    let biz = app.create_business("Acme", "whatsapp-global").await;
    opt_in(&app, &biz.key, "+14155552671", &["utility"]).await;
    let body = json!({"phone": "+14155552671", "category": "utility"});
    assert_eq!(
        app.post("/v1/checks", Some(&biz.key), &body).await.body["allowed"],
        true
    );

    let consentgate::store::DatabaseUrl::Postgres(url) = &app.settings.database else {
        unreachable!()
    };
    let name = url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let admin_url = std::env::var("TEST_POSTGRES_URL").unwrap();
    let mut admin = diesel::PgConnection::establish(&admin_url).unwrap();
    diesel::sql_query(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .execute(&mut admin)
        .unwrap();
    diesel::sql_query(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .execute(&mut admin)
    .unwrap();

    // Under its lease the node's memory stays provably fresh while PostgreSQL is
    // gone (no other node can acknowledge a withdrawal without its answer or its
    // lease running out), until its listener notices the lost connection: the
    // next poll or renewal, 20 to 200 ms; and never past the lease's trusted
    // time. From then on every check fails closed.
    let deadline = std::time::Instant::now() + consentgate::store::lease::TRUSTED;
    loop {
        let res = app.post("/v1/checks", Some(&biz.key), &body).await;
        if res.status == 503 {
            break;
        }
        assert_eq!(res.body["allowed"], true, "{}", res.body);
        assert!(
            std::time::Instant::now() < deadline,
            "still answering from memory after the lease's trusted time"
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    for _ in 0..3 {
        let res = app.post("/v1/checks", Some(&biz.key), &body).await;
        res.assert_problem(503, "unavailable");
        assert_eq!(res.body["allowed"], false);
    }
    let res = app
        .post(
            "/v1/checks/batch",
            Some(&biz.key),
            &json!({"category": "utility", "phones": ["+14155552671"]}),
        )
        .await;
    assert_eq!(res.status, 503, "{}", res.body);
    assert_eq!(res.body["allowed"], false);

    diesel::sql_query(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .execute(&mut admin)
        .unwrap();
    let mut recovered = false;
    for _ in 0..20 {
        if app.post("/v1/checks", Some(&biz.key), &body).await.body["allowed"] == true {
            recovered = true;
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(recovered, "the service recovers when PostgreSQL is back");
}

async fn a_batch_answers_in_input_order_with_counts(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    opt_in(&app, &biz.key, "+14155552671", &["utility"]).await;
    opt_in(&app, &biz.key, "+14155552672", &["utility"]).await;
    let res = app
        .post(
            "/v1/revocations",
            Some(&biz.key),
            &json!({"phone": "+14155552672", "channel": "api"}),
        )
        .await;
    assert_eq!(res.status, 201);
    let phones = json!([
        "+1 415 555 2671",
        "+14155552672",
        "not a number",
        "+14155552673",
        "(415) 555-2671"
    ]);
    let res = app
        .post(
            "/v1/checks/batch",
            Some(&biz.key),
            &json!({"category": "utility", "phones": phones, "default_region": "US"}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let reasons: Vec<&str> = res.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "consent",
            "revoked",
            "invalid_phone",
            "no_consent",
            "consent"
        ],
        "input order"
    );
    assert_eq!(
        res.body["results"][0]["phone"], "+1 415 555 2671",
        "the number as sent"
    );
    assert!(res.body["results"][2]["error"].is_string());
    assert_eq!(res.body["total"], 5);
    assert_eq!(res.body["allowed"], 2);
    assert_eq!(
        res.body["counts"],
        json!({"consent": 2, "revoked": 1, "invalid_phone": 1, "no_consent": 1})
    );
}

async fn a_batch_is_bounded_and_validated(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let res = app
        .post(
            "/v1/checks/batch",
            Some(&biz.key),
            &json!({"category": "utility", "phones": []}),
        )
        .await;
    res.assert_problem(422, "validation_failed");
    assert_eq!(res.body["errors"][0]["field"], "phones", "{}", res.body);
    let res = app
        .post(
            "/v1/checks/batch",
            Some(&biz.key),
            &json!({"category": "nope", "phones": ["+14155552671"]}),
        )
        .await;
    res.assert_problem(422, "validation_failed");
    assert_eq!(res.body["errors"][0]["field"], "category", "{}", res.body);
}

/// `count` distinct valid US numbers.
fn us_numbers(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("+1415{:03}{:04}", 555 + i / 10_000, i % 10_000))
        .collect()
}

/// The cap is 10,000 numbers, enforced by the service, not by the body limit: with
/// the production default body limit (2 MiB, which 10,001 numbers fit in) one
/// number too many is a 422 naming `phones`, and exactly 10,000 are answered.
async fn a_batch_holds_at_most_10000_numbers(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let too_many = json!({"category": "utility", "phones": us_numbers(10_001)});
    assert!(
        too_many.to_string().len() > 64 * 1024,
        "the body is larger than the default test limit, so only a larger limit reaches the cap"
    );
    let res = app
        .post("/v1/checks/batch", Some(&biz.key), &too_many)
        .await;
    res.assert_problem(422, "validation_failed");
    let fields: Vec<&str> = res.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["phones"], "{}", res.body);

    let res = app
        .post(
            "/v1/checks/batch",
            Some(&biz.key),
            &json!({"category": "utility", "phones": us_numbers(10_000)}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["total"], 10_000);
    assert_eq!(res.body["results"].as_array().unwrap().len(), 10_000);
    assert_eq!(
        res.body["counts"],
        json!({"no_consent": 10_000}),
        "every number valid and answered"
    );
}

async fn a_check_is_validated_field_by_field(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let future = (Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let res = app
        .post(
            "/v1/checks",
            Some(&biz.key),
            &json!({"phone": "12", "category": "spam", "as_of": future}),
        )
        .await;
    res.assert_problem(422, "validation_failed");
    let fields: Vec<&str> = res.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["phone", "category", "as_of"]);
    assert!(
        !res.body.to_string().contains("\"12\""),
        "the number is not echoed"
    );
    let res = app
        .post(
            "/v1/checks",
            Some(&biz.key),
            &json!({"phone": "0612345678", "default_region": "XX", "category": "utility"}),
        )
        .await;
    assert_eq!(res.body["errors"][0]["field"], "default_region");
}

async fn a_check_needs_the_checks_scope(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let (_, writer) = app
        .create_key(&biz.key, "collector", &["consents:write"])
        .await;
    app.post(
        "/v1/checks",
        Some(&writer),
        &json!({"phone": "+31612345678", "category": "utility"}),
    )
    .await
    .assert_problem(403, "forbidden");
    let (_, checker) = app.create_key(&biz.key, "sender", &["checks:read"]).await;
    app.post(
        "/v1/opt-ins",
        Some(&checker),
        &json!({"phone": "+31612345678", "categories": ["utility"], "channel": "api", "evidence": {}}),
    )
    .await
    .assert_problem(403, "forbidden");
}
