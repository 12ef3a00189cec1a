//! Authentication and authorisation: keys, scopes, revocation, operator token,
//! and the cost of garbage tokens.

use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::TestApp;
use crate::{backend_test_with, backend_tests};

backend_tests!(
    a_request_without_a_key_is_401,
    a_malformed_or_unknown_key_is_401,
    a_wrong_secret_for_a_real_key_id_is_401,
    a_key_without_the_scope_is_403,
    a_revoked_key_is_401_on_its_very_next_request,
    operator_calls_need_the_operator_token,
    secrets_never_reach_a_log_line,
);
// The flood comes from other (forwarded) addresses than the real key's request.
backend_test_with!(
    a_flood_of_garbage_keys_is_refused_cheaply_while_real_keys_work,
    |s| s.rate_limits.trusted_proxies =
        consentgate::config::TrustedProxies::parse("127.0.0.1").unwrap()
);

async fn a_request_without_a_key_is_401(app: TestApp) {
    let res = app.get("/v1/keys", None).await;
    res.assert_problem(401, "unauthorized");
    assert_eq!(res.header("www-authenticate").as_deref(), Some("Bearer"));
    let res = app
        .request(awc::http::Method::GET, "/v1/keys", None, None)
        .await;
    assert_eq!(res.status, 401);
}

async fn a_malformed_or_unknown_key_is_401(app: TestApp) {
    let unknown = format!("cg_{}_{}", uuid::Uuid::now_v7().simple(), "A".repeat(43));
    for token in ["garbage", "cg_", &unknown, &"x".repeat(5000)] {
        app.get("/v1/keys", Some(token))
            .await
            .assert_problem(401, "unauthorized");
    }
}

async fn a_wrong_secret_for_a_real_key_id_is_401(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let id_part = &biz.key[..36];
    let forged = format!("{id_part}{}", "B".repeat(43));
    assert_eq!(forged.len(), biz.key.len());
    app.get("/v1/keys", Some(&forged))
        .await
        .assert_problem(401, "unauthorized");
    // Twice: a repeated wrong secret gets the same answer.
    app.get("/v1/keys", Some(&forged))
        .await
        .assert_problem(401, "unauthorized");
    assert_eq!(
        app.get("/v1/keys", Some(&biz.key)).await.status,
        200,
        "the real key still works"
    );
}

async fn a_key_without_the_scope_is_403(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let (_, checks_only) = app.create_key(&biz.key, "sender", &["checks:read"]).await;
    let res = app.get("/v1/keys", Some(&checks_only)).await;
    res.assert_problem(403, "forbidden");
    assert!(res.body["detail"].as_str().unwrap().contains("keys:manage"));
}

async fn a_revoked_key_is_401_on_its_very_next_request(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let (id, token) = app.create_key(&biz.key, "ops", &["keys:manage"]).await;
    // Warm the verified-key cache first: revocation must beat the cache.
    assert_eq!(app.get("/v1/keys", Some(&token)).await.status, 200);
    assert_eq!(app.get("/v1/keys", Some(&token)).await.status, 200);
    let res = app.delete(&format!("/v1/keys/{id}"), Some(&biz.key)).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(res.body["revoked_at"].is_string());
    app.get("/v1/keys", Some(&token))
        .await
        .assert_problem(401, "unauthorized");
}

async fn operator_calls_need_the_operator_token(app: TestApp) {
    let body = json!({"name": "Acme", "policy": "whatsapp-eu"});
    app.post("/v1/businesses", None, &body)
        .await
        .assert_problem(401, "unauthorized");
    app.post("/v1/businesses", Some("not-the-token"), &body)
        .await
        .assert_problem(401, "unauthorized");
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    // A business's key, even with every scope, is not the operator.
    app.post("/v1/businesses", Some(&biz.key), &body)
        .await
        .assert_problem(401, "unauthorized");
}

async fn secrets_never_reach_a_log_line(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let (_, token) = app.create_key(&biz.key, "k", &["checks:read"]).await;
    app.get("/v1/keys", Some(&token)).await;
    let forged = format!("{}{}", &biz.key[..36], "C".repeat(43));
    app.get("/v1/keys", Some(&forged)).await;
    let logs = crate::helpers::captured_logs();
    assert!(logs.contains("request answered"), "logging is on in tests");
    for secret in [&biz.key, &token, &forged, &app.operator_token] {
        let secret_part = &secret[secret.len() - 20..];
        assert!(!logs.contains(secret_part), "a secret reached the logs");
    }
}

/// A flood of well-formed garbage tokens never reaches 5xx, is refused with 401
/// and, once the address's failure quota is spent, 429 with Retry-After; a real
/// key from another address keeps working throughout.
async fn a_flood_of_garbage_keys_is_refused_cheaply_while_real_keys_work(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let garbage: Vec<String> = (0..60)
        .map(|i| format!("cg_{}_{i:0>43}", uuid::Uuid::now_v7().simple()))
        .collect();
    let flood = join_all(garbage.iter().map(|t| app.get("/v1/keys", Some(t))));
    let real = async {
        // Give the flood a head start so the real request competes with it.
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
        app.client()
            .get(format!("{}/v1/keys", app.address))
            .insert_header(("authorization", format!("Bearer {}", biz.key)))
            .insert_header(("x-forwarded-for", "198.51.100.20"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let (flooded, real) = futures_util::join!(flood, real);
    assert_eq!(
        real, 200,
        "a real key from another address works during a flood"
    );
    let mut limited = 0;
    for res in &flooded {
        match res.status {
            401 => res.assert_problem(401, "unauthorized"),
            429 => {
                res.assert_problem(429, "rate_limited");
                assert!(res.header("retry-after").is_some());
                limited += 1;
            }
            other => panic!("garbage got {other}: {}", res.body),
        }
    }
    assert!(
        limited >= 50,
        "60 failures from one address overrun its failure quota (burst 10): {limited}"
    );
}
