//! Hostile traffic (issue 9): legacy argon2 key hashes upgraded to the HMAC form,
//! rate limits (per key, per address, failed authentications), metrics series
//! bounded whatever methods clients invent, and authentication failing closed
//! (503, never 500) when the store breaks.

use awc::http::Method;
use consentgate::config::TrustedProxies;
use consentgate::store::schema::api_keys;
use diesel::prelude::*;
use serde_json::Value;

use crate::backend_tests;
use crate::helpers::{Backend, Resp, TestApp, spawn_app_with};

backend_tests!(
    a_legacy_argon2_key_authenticates_and_is_then_stored_as_hmac,
    a_wrong_secret_against_a_legacy_hash_is_401_and_upgrades_nothing,
    metrics_series_stay_bounded_whatever_methods_clients_send,
    a_store_error_during_authentication_is_503_with_allowed_false,
    corrupt_key_rows_fail_closed_with_503,
);

/// The stored hash of a key.
async fn stored_hash(app: &TestApp, key_id: &str) -> String {
    let key_id = key_id.to_owned();
    app.store
        .run(move |conn| {
            Ok(api_keys::table
                .filter(api_keys::id.eq(key_id))
                .select(api_keys::secret_hash)
                .first::<String>(conn)?)
        })
        .await
        .unwrap()
}

/// Writes a stored hash directly, as a row from before the HMAC form would hold.
async fn set_stored_hash(app: &TestApp, key_id: &str, hash: String) {
    let key_id = key_id.to_owned();
    app.store
        .run(move |conn| {
            diesel::update(api_keys::table.filter(api_keys::id.eq(key_id)))
                .set(api_keys::secret_hash.eq(hash))
                .execute(conn)?;
            Ok(())
        })
        .await
        .unwrap();
}

/// The argon2id PHC string the service used to store (OWASP defaults).
fn legacy_argon2(secret: &str) -> String {
    use argon2::PasswordHasher;
    let salt = password_hash::SaltString::generate(&mut password_hash::rand_core::OsRng);
    argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

/// The secret part of a bearer token (`cg_<id>_<secret>`).
fn secret_of(token: &str) -> &str {
    &token[36..]
}

async fn a_legacy_argon2_key_authenticates_and_is_then_stored_as_hmac(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let (key_id, token) = app.create_key(&biz.key, "old", &["keys:manage"]).await;
    let hmac_form = stored_hash(&app, &key_id).await;
    assert!(hmac_form.starts_with("hmac-sha256$"), "{hmac_form}");
    set_stored_hash(&app, &key_id, legacy_argon2(secret_of(&token))).await;
    let events_before = app.audit_events(&biz.id).await.len();

    assert_eq!(app.get("/v1/keys", Some(&token)).await.status, 200);

    let upgraded = stored_hash(&app, &key_id).await;
    assert!(
        upgraded.starts_with("hmac-sha256$"),
        "replaced on its first successful use: {upgraded}"
    );
    assert_eq!(
        upgraded, hmac_form,
        "the same secret gives the same keyed hash"
    );
    assert_eq!(
        app.get("/v1/keys", Some(&token)).await.status,
        200,
        "and works in the new form"
    );
    assert_eq!(
        app.audit_events(&biz.id).await.len(),
        events_before,
        "the rehash is no state change of the key: no audit event"
    );
}

async fn a_wrong_secret_against_a_legacy_hash_is_401_and_upgrades_nothing(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let (key_id, token) = app.create_key(&biz.key, "old", &["keys:manage"]).await;
    let legacy = legacy_argon2(secret_of(&token));
    set_stored_hash(&app, &key_id, legacy.clone()).await;
    let forged = format!("{}{}", &token[..36], "Z".repeat(43));
    app.get("/v1/keys", Some(&forged))
        .await
        .assert_problem(401, "unauthorized");
    assert_eq!(stored_hash(&app, &key_id).await, legacy, "untouched");
    // A wrong secret for a current (HMAC) key is a 401 too.
    let forged = format!("{}{}", &biz.key[..36], "Z".repeat(43));
    app.get("/v1/keys", Some(&forged))
        .await
        .assert_problem(401, "unauthorized");
}

/// `(label set, value)` lines of the request counter.
fn request_series(metrics: &str) -> Vec<&str> {
    metrics
        .lines()
        .filter(|l| l.starts_with("consentgate_http_requests_total{"))
        .collect()
}

async fn metrics(app: &TestApp) -> String {
    let res = app.get("/metrics", None).await;
    assert_eq!(res.status, 200);
    res.body.as_str().unwrap().to_owned()
}

async fn metrics_series_stay_bounded_whatever_methods_clients_send(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    assert_eq!(app.get("/v1/keys", Some(&biz.key)).await.status, 200);
    let before = metrics(&app).await;
    let series_before = request_series(&before).len();

    let client = app.client();
    for i in 0..300 {
        // Short junk, and every tenth one 2,000 characters long.
        let method = if i % 10 == 0 {
            format!("J{}", "X".repeat(1999))
        } else {
            format!("JUNK{i}")
        };
        let path = if i % 2 == 0 {
            "/v1/keys".to_owned()
        } else {
            format!("/nowhere/{i}")
        };
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let res = client
            .request(method, format!("{}{path}", app.address))
            .insert_header(("authorization", format!("Bearer {}", biz.key)))
            .send()
            .await
            .unwrap();
        assert!(
            res.status().is_client_error(),
            "a junk method is a 4xx: {}",
            res.status()
        );
    }

    let after = metrics(&app).await;
    let series = request_series(&after);
    // At most: other x {/v1/keys, unmatched} x 4xx, plus /metrics itself.
    assert!(
        series.len() <= series_before + 3,
        "300 junk methods grew the series from {series_before} to {}:\n{}",
        series.len(),
        series.join("\n")
    );
    // Three new series with their histograms (~2 KB each), not 300 (or 600 KB of
    // 2,000-character labels).
    assert!(
        after.len() < before.len() + 16 * 1024,
        "the exposition stays small: {} -> {} bytes",
        before.len(),
        after.len()
    );
    assert!(
        !after.contains("JUNK") && !after.contains("XXXX"),
        "{after}"
    );
    assert!(
        series
            .iter()
            .any(|s| s.contains(r#"method="other""#) && s.contains(r#"status="4xx""#)),
        "{}",
        series.join("\n")
    );
    for line in &series {
        let status = line
            .split("status=\"")
            .nth(1)
            .and_then(|s| s.get(..3))
            .unwrap();
        assert!(
            ["1xx", "2xx", "3xx", "4xx", "5xx"].contains(&status),
            "{line}"
        );
    }
    let logs = crate::helpers::captured_logs();
    assert!(
        !logs.contains(&"X".repeat(100)),
        "long methods do not reach the logs either"
    );
}

/// Runs one statement on the service's own database, from the side.
async fn side_sql(app: &TestApp, sql: &'static str) {
    app.store
        .run(move |conn| {
            diesel::sql_query(sql).execute(conn)?;
            Ok(())
        })
        .await
        .unwrap();
}

fn assert_fails_closed(res: &Resp) {
    res.assert_problem(503, "unavailable");
    assert_eq!(res.body["allowed"], Value::Bool(false), "{}", res.body);
    assert!(res.header("retry-after").is_some());
    let body = res.body.to_string();
    assert!(!body.contains("api_keys"), "no cause in the body: {body}");
}

async fn a_store_error_during_authentication_is_503_with_allowed_false(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    assert_eq!(app.get("/v1/keys", Some(&biz.key)).await.status, 200);
    // A key this node has not loaded yet: authenticating it reads its row.
    let (_, sender) = app.create_key(&biz.key, "sender", &["checks:read"]).await;
    side_sql(&app, "ALTER TABLE api_keys RENAME TO api_keys_away").await;
    let check = serde_json::json!({"phone": "+31612345678", "category": "marketing"});
    assert_fails_closed(&app.post("/v1/checks", Some(&sender), &check).await);
    side_sql(&app, "ALTER TABLE api_keys_away RENAME TO api_keys").await;
    assert_eq!(
        app.post("/v1/checks", Some(&sender), &check).await.status,
        200,
        "works again once the table is back"
    );
}

async fn corrupt_key_rows_fail_closed_with_503(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    side_sql(&app, "UPDATE api_keys SET scopes = 'not a scope list'").await;
    assert_fails_closed(&app.get("/v1/keys", Some(&biz.key)).await);
}

/// GET /v1/keys as if from `client` (through a trusted proxy on 127.0.0.1).
async fn get_keys_from(app: &TestApp, client: &str, token: &str) -> Resp {
    let mut res = app
        .client()
        .get(format!("{}/v1/keys", app.address))
        .insert_header(("authorization", format!("Bearer {token}")))
        .insert_header(("x-forwarded-for", client))
        .send()
        .await
        .unwrap();
    let body = res.body().await.unwrap();
    Resp {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    }
}

fn assert_limited(res: &Resp) {
    res.assert_problem(429, "rate_limited");
    let retry: u64 = res
        .header("retry-after")
        .expect("429 carries Retry-After")
        .parse()
        .unwrap();
    assert!(retry >= 1, "{retry}");
}

#[actix_web::test]
async fn a_key_past_its_quota_is_429_with_retry_after_on_both_backends() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(app) = spawn_app_with(backend, |s| {
            s.rate_limits.per_key.rate = 1;
            s.rate_limits.per_key.burst = 3;
        })
        .await
        else {
            continue;
        };
        let biz = app.create_business("Acme", "whatsapp-eu").await;
        let (_, other) = app.create_key(&biz.key, "other", &["keys:manage"]).await;
        // create_key used one of the first key's three.
        for _ in 0..2 {
            assert_eq!(app.get("/v1/keys", Some(&biz.key)).await.status, 200);
        }
        assert_limited(&app.get("/v1/keys", Some(&biz.key)).await);
        assert_eq!(
            app.get("/v1/keys", Some(&other)).await.status,
            200,
            "{backend:?}: each key has its own quota"
        );
    }
}

#[actix_web::test]
async fn failed_authentications_are_throttled_harder_than_successes() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(app) = spawn_app_with(backend, |s| {
            s.rate_limits.auth_failures.rate = 1;
            s.rate_limits.auth_failures.burst = 3;
            s.rate_limits.trusted_proxies = TrustedProxies::parse("127.0.0.1").unwrap();
        })
        .await
        else {
            continue;
        };
        let biz = app.create_business("Acme", "whatsapp-eu").await;
        let attacker = "203.0.113.77";
        let forged = format!("{}{}", &biz.key[..36], "Q".repeat(43));
        for _ in 0..3 {
            get_keys_from(&app, attacker, &forged)
                .await
                .assert_problem(401, "unauthorized");
        }
        assert_limited(&get_keys_from(&app, attacker, &forged).await);
        assert_limited(&get_keys_from(&app, attacker, &biz.key).await);
        for _ in 0..20 {
            assert_eq!(
                get_keys_from(&app, "198.51.100.1", &biz.key).await.status,
                200,
                "{backend:?}: successes from another address are far from any limit"
            );
        }
        let logs = crate::helpers::captured_logs();
        assert!(
            !logs.contains(attacker),
            "a client address never reaches a log line"
        );
    }
}

#[actix_web::test]
async fn the_address_quota_applies_before_authentication() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.rate_limits.per_address.rate = 1;
        s.rate_limits.per_address.burst = 4;
        s.rate_limits.auth_failures.burst = 100;
    })
    .await
    .unwrap();
    for _ in 0..4 {
        app.get("/v1/keys", Some("garbage"))
            .await
            .assert_problem(401, "unauthorized");
    }
    assert_limited(&app.get("/v1/keys", Some("garbage")).await);
    assert_eq!(
        app.get("/healthz", None).await.status,
        200,
        "unauthenticated operations endpoints are not limited"
    );
    // The operator endpoint counts against the same address quota.
    assert_limited(
        &app.post(
            "/v1/businesses",
            Some(&app.operator_token.clone()),
            &serde_json::json!({"name": "Acme", "policy": "whatsapp-eu"}),
        )
        .await,
    );
}
