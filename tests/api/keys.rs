//! API keys: create (secret once), list (no secrets), revoke; tenant isolation.

use serde_json::json;

use crate::backend_tests;
use crate::helpers::TestApp;

backend_tests!(
    a_key_secret_is_shown_once_and_never_stored,
    keys_list_without_secrets_oldest_first,
    a_key_cannot_grant_scopes_it_lacks,
    key_requests_are_validated_field_by_field,
    another_business_key_id_answers_404_like_a_missing_one,
    revoking_twice_changes_nothing_more,
);

async fn a_key_secret_is_shown_once_and_never_stored(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let res = app
        .post(
            "/v1/keys",
            Some(&biz.key),
            &json!({"name": "sender", "scopes": ["checks:read"]}),
        )
        .await;
    assert_eq!(res.status, 201);
    let secret = res.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("cg_"));
    let listed = app.get("/v1/keys", Some(&biz.key)).await;
    let text = listed.body.to_string();
    assert!(
        !text.contains("secret"),
        "listing shows no secret field: {text}"
    );
    assert!(
        !text.contains(&secret[36..]),
        "listing never repeats a secret"
    );
    // Nothing in the database holds the secret: only its keyed hash.
    let stored = stored_text(&app).await;
    assert!(!stored.contains(&secret[36..]), "the secret is not stored");
    assert!(
        !stored.contains(&biz.key[36..]),
        "the first key's secret is not stored"
    );
    assert!(stored.contains("hmac-sha256$"));
    assert!(!stored.contains("$argon2"), "new keys need no argon2");
}

/// All text columns of the key table, concatenated.
async fn stored_text(app: &TestApp) -> String {
    use consentgate::store::schema::api_keys;
    use diesel::prelude::*;
    app.store
        .run(|conn| {
            let rows: Vec<(String, String, String)> = api_keys::table
                .select((api_keys::id, api_keys::name, api_keys::secret_hash))
                .load(conn)?;
            Ok(rows
                .into_iter()
                .map(|(a, b, c)| format!("{a} {b} {c}\n"))
                .collect())
        })
        .await
        .unwrap()
}

async fn keys_list_without_secrets_oldest_first(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let (a, _) = app.create_key(&biz.key, "a", &["checks:read"]).await;
    let (b, _) = app
        .create_key(&biz.key, "b", &["audit:read", "checks:read"])
        .await;
    let res = app.get("/v1/keys", Some(&biz.key)).await;
    assert_eq!(res.status, 200);
    let ids: Vec<&str> = res.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![biz.key_id.as_str(), a.as_str(), b.as_str()]);
    assert_eq!(
        res.body["keys"][2]["scopes"],
        json!(["checks:read", "audit:read"])
    );
    assert_eq!(
        res.body["keys"][0]["scopes"].as_array().unwrap().len(),
        5,
        "first key has every scope"
    );
}

async fn a_key_cannot_grant_scopes_it_lacks(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let (_, manager) = app
        .create_key(&biz.key, "manager", &["keys:manage", "checks:read"])
        .await;
    let res = app
        .post(
            "/v1/keys",
            Some(&manager),
            &json!({"name": "x", "scopes": ["audit:read"]}),
        )
        .await;
    res.assert_problem(422, "validation_failed");
    assert_eq!(res.body["errors"][0]["field"], "scopes");
    app.create_key(&manager, "ok", &["checks:read"]).await;
}

async fn key_requests_are_validated_field_by_field(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let cases = [
        (json!({"name": "", "scopes": []}), vec!["name", "scopes"]),
        (json!({"name": "x", "scopes": ["root"]}), vec!["scopes[0]"]),
        (
            json!({"name": "x", "scopes": ["checks:read", 5]}),
            vec!["scopes[1]"],
        ),
        (json!({"scopes": ["checks:read"]}), vec!["name"]),
        (
            json!({"name": "x", "scopes": ["checks:read"], "admin": true}),
            vec!["admin"],
        ),
        (
            json!({"name": "x".repeat(101), "scopes": ["checks:read"]}),
            vec!["name"],
        ),
    ];
    for (body, fields) in cases {
        let res = app.post("/v1/keys", Some(&biz.key), &body).await;
        res.assert_problem(422, "validation_failed");
        let got: Vec<&str> = res.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(got, fields, "{body}");
    }
    let listed = app.get("/v1/keys", Some(&biz.key)).await;
    assert_eq!(
        listed.body["keys"].as_array().unwrap().len(),
        1,
        "nothing was created by bad input"
    );
}

async fn another_business_key_id_answers_404_like_a_missing_one(app: TestApp) {
    let a = app.create_business("A", "whatsapp-eu").await;
    let b = app.create_business("B", "whatsapp-global").await;
    let theirs = app
        .delete(&format!("/v1/keys/{}", b.key_id), Some(&a.key))
        .await;
    let missing = app
        .delete(&format!("/v1/keys/{}", uuid::Uuid::now_v7()), Some(&a.key))
        .await;
    let not_uuid = app.delete("/v1/keys/not-a-uuid", Some(&a.key)).await;
    for res in [&theirs, &missing, &not_uuid] {
        res.assert_problem(404, "not_found");
    }
    assert_eq!(
        theirs.body, missing.body,
        "no hint that the id exists elsewhere"
    );
    assert_eq!(
        app.get("/v1/keys", Some(&b.key)).await.status,
        200,
        "B's key was not revoked"
    );
    let listed = app.get("/v1/keys", Some(&a.key)).await;
    assert!(
        !listed.body.to_string().contains(&b.key_id),
        "A never sees B's keys"
    );
}

async fn revoking_twice_changes_nothing_more(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let (id, _) = app.create_key(&biz.key, "k", &["checks:read"]).await;
    let first = app.delete(&format!("/v1/keys/{id}"), Some(&biz.key)).await;
    let second = app.delete(&format!("/v1/keys/{id}"), Some(&biz.key)).await;
    assert_eq!(first.status, 200);
    assert_eq!(second.status, 200);
    assert_eq!(first.body["revoked_at"], second.body["revoked_at"]);
    let events = app.audit_events(&biz.id).await;
    let revoked = events
        .iter()
        .filter(|e| e.event_type == "key.revoked")
        .count();
    assert_eq!(revoked, 1, "one revocation, one event");
}
