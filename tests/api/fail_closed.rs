//! Fail closed, really (SPEC section 3): when the consent state cannot be read, a
//! check answers 503 problem+json with `allowed: false`, never a 200 and never a
//! 500. These tests break the store *after* authentication succeeded: the `facts`
//! and `audit_heads` tables are renamed from a side connection, so the API key
//! still verifies (proved on an endpoint that reads neither) and only the check's
//! own reads fail: the freshness fence of a live check (answered from memory only
//! once the node proved it has applied every committed change), the history read
//! of an `as_of` check.
//! (`checks::a_check_fails_closed_when_no_connection_can_be_had` covers a store
//! that cannot be reached at all, which fails before or during authentication.)
//! A server failure of any other kind on a check route (here: authentication
//! reading a key row it cannot decode) is a 503 with `allowed: false` too.

use chrono::Utc;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::backends::side_sql;
use crate::helpers::{Resp, TestApp};

backend_tests!(
    a_check_answers_503_not_allowed_when_its_own_store_read_fails_after_authentication,
    a_batch_answers_503_not_allowed_when_its_own_store_read_fails_after_authentication,
    a_check_whose_key_row_cannot_be_read_back_answers_503_not_allowed,
);

const PHONE: &str = "+14155550142";

async fn opted_in_business(app: &TestApp) -> String {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let res = app
        .post(
            "/v1/opt-ins",
            Some(&biz.key),
            &json!({"phone": PHONE, "categories": ["utility"], "channel": "api",
                    "evidence": {"collected_at": Utc::now().to_rfc3339(), "consent_text_version": "v1", "source_system": "crm"}}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    biz.key
}

/// Breaks the recorded history: what `as_of` checks and catch-ups read.
fn break_facts(app: &TestApp) {
    side_sql(app, "ALTER TABLE facts RENAME TO facts_broken");
}

fn restore_facts(app: &TestApp) {
    side_sql(app, "ALTER TABLE facts_broken RENAME TO facts");
}

/// Breaks the chain heads: what every request's freshness fence reads. Without it
/// a node cannot prove its in-memory state is fresh.
fn break_heads(app: &TestApp) {
    side_sql(app, "ALTER TABLE audit_heads RENAME TO audit_heads_broken");
}

fn restore_heads(app: &TestApp) {
    side_sql(app, "ALTER TABLE audit_heads_broken RENAME TO audit_heads");
}

/// The same key still authenticates: `GET /v1/keys` reads keys and businesses,
/// never facts, and the first key has `keys:manage`.
async fn assert_authentication_still_works(app: &TestApp, key: &str) {
    let res = app.get("/v1/keys", Some(key)).await;
    assert_eq!(
        res.status, 200,
        "the key authenticates while facts are unreadable: {}",
        res.body
    );
}

/// 503, problem+json, `allowed: false`, Retry-After, and no cause in the body.
#[track_caller]
fn assert_fails_closed(res: &Resp, what: &str) {
    res.assert_problem(503, "unavailable");
    assert_eq!(
        res.body["allowed"], false,
        "{what}: a 503 says allowed: false"
    );
    assert!(
        res.header("retry-after").is_some(),
        "{what}: Retry-After is set"
    );
    let text = res.body.to_string();
    assert!(
        !text.contains("facts") && !text.contains(PHONE),
        "{what}: the body carries neither the cause nor the number: {text}"
    );
}

/// Long enough for SQLite's head poller to have run (`store::fence`).
async fn wait_for_a_poll() {
    tokio::time::sleep(consentgate::store::fence::POLL_EVERY * 3).await;
}

async fn a_check_answers_503_not_allowed_when_its_own_store_read_fails_after_authentication(
    app: TestApp,
) {
    let key = opted_in_business(&app).await;
    let body = json!({"phone": PHONE, "category": "utility"});
    let before = app.post("/v1/checks", Some(&key), &body).await;
    assert_eq!(
        (before.status, before.body["allowed"].clone()),
        (200, Value::Bool(true)),
        "precondition: the check allows: {}",
        before.body
    );

    break_facts(&app);
    assert_authentication_still_works(&app, &key).await;
    // A live check is answered from memory, which the fence just proved fresh:
    // the history is not needed, so its loss changes nothing.
    let from_memory = app.post("/v1/checks", Some(&key), &body).await;
    let as_of = app
        .post(
            "/v1/checks",
            Some(&key),
            &json!({"phone": PHONE, "category": "utility",
                    "as_of": (Utc::now() - chrono::Duration::seconds(1)).to_rfc3339()}),
        )
        .await;
    // Without the chain heads nothing can prove the memory fresh: fail closed.
    // (SQLite: the server's own commits are the fence; the store found
    // unreadable by the next poll makes checks read it themselves.)
    break_heads(&app);
    wait_for_a_poll().await;
    let live = app.post("/v1/checks", Some(&key), &body).await;
    restore_heads(&app);
    restore_facts(&app);

    assert_eq!(
        from_memory.body["allowed"], true,
        "provably fresh memory answers: {}",
        from_memory.body
    );
    assert_fails_closed(&as_of, "a check with as_of");
    assert_fails_closed(&live, "a live check that cannot prove freshness");
    let after = app.post("/v1/checks", Some(&key), &body).await;
    assert_eq!(
        after.body["allowed"], true,
        "the check recovers once facts are readable: {}",
        after.body
    );
    assert!(
        !crate::helpers::captured_logs().contains(PHONE),
        "the failure was logged without the number"
    );
}

async fn a_batch_answers_503_not_allowed_when_its_own_store_read_fails_after_authentication(
    app: TestApp,
) {
    let key = opted_in_business(&app).await;
    let body = json!({"category": "utility", "phones": [PHONE, "+14155550143", "not a number"]});
    let before = app.post("/v1/checks/batch", Some(&key), &body).await;
    assert_eq!(before.status, 200, "{}", before.body);
    assert_eq!(
        before.body["allowed"], 1,
        "precondition: one number allowed"
    );

    break_facts(&app);
    assert_authentication_still_works(&app, &key).await;
    let mut as_of_body = body.clone();
    as_of_body["as_of"] = json!((Utc::now() - chrono::Duration::seconds(1)).to_rfc3339());
    let as_of = app.post("/v1/checks/batch", Some(&key), &as_of_body).await;
    break_heads(&app);
    wait_for_a_poll().await;
    let broken = app.post("/v1/checks/batch", Some(&key), &body).await;
    restore_heads(&app);
    restore_facts(&app);

    assert_fails_closed(&as_of, "a batch with as_of");
    assert_fails_closed(&broken, "a batch that cannot prove freshness");
    assert!(
        broken.body.get("results").is_none(),
        "no partial answers: {}",
        broken.body
    );
    let after = app.post("/v1/checks/batch", Some(&key), &body).await;
    assert_eq!(
        (after.status, after.body["allowed"].clone()),
        (200, json!(1)),
        "the batch recovers: {}",
        after.body
    );
}

/// Authentication itself fails on the server side: the key's stored scopes do not
/// decode (corruption, or a bug). Whatever the other endpoints answer for that, a
/// check answers the one safe thing: 503, `allowed: false`.
async fn a_check_whose_key_row_cannot_be_read_back_answers_503_not_allowed(app: TestApp) {
    let key = opted_in_business(&app).await;
    // Not used before, so this node reads its row when it is first presented.
    let (sender_id, sender) = app.create_key(&key, "sender", &["checks:read"]).await;
    let body = json!({"phone": PHONE, "category": "utility"});
    assert_eq!(
        app.post("/v1/checks", Some(&key), &body).await.body["allowed"],
        true,
        "precondition: the business's checks allow"
    );

    side_sql(
        &app,
        &format!("UPDATE api_keys SET scopes = 'no such scope' WHERE id = '{sender_id}'"),
    );
    let single = app.post("/v1/checks", Some(&sender), &body).await;
    let batch = app
        .post(
            "/v1/checks/batch",
            Some(&sender),
            &json!({"category": "utility", "phones": [PHONE]}),
        )
        .await;

    assert_fails_closed(&single, "a check");
    assert_fails_closed(&batch, "a batch");
}
