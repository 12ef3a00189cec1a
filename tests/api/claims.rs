//! README claims, each held by a test: no bare YES opt-in keyword in
//! `whatsapp-eu`, and Idempotency-Key records forgotten after 24 h by the
//! retention job. (The migrations claim is in `migrations`, "every test body runs
//! on both backends" in each module and the README's "Tests" section.)

use std::time::Duration;

use chrono::Utc;
use consentgate::policy::{KeywordKind, PolicySet};
use serde_json::{Value, json};

use crate::backend_test_with;
use crate::backends::{post_idempotent, side_sql};
use crate::helpers::TestApp;

/// README, "The decision": in `whatsapp-eu` a bare YES is not an opt-in keyword,
/// in none of its six languages, however written: a "yes" that answers some other
/// question must not restore consent.
#[test]
fn whatsapp_eu_takes_no_bare_yes_as_an_opt_in_keyword_in_any_of_its_languages() {
    let shipped = PolicySet::shipped();
    let eu = shipped.get("whatsapp-eu").expect("whatsapp-eu is shipped");
    let yeses = [
        "YES", "yes", "Yes", " YES ", "Y", "JA", "ja", "Ja", "SI", "si", "SÌ", "SÍ", "sì", "sí",
        "OUI", "oui", "Oui",
    ];
    for yes in yeses {
        assert_ne!(
            eu.keyword(yes),
            Some(KeywordKind::OptIn),
            "{yes:?} is an opt-in keyword of whatsapp-eu"
        );
    }
    for listed in eu.keywords(KeywordKind::OptIn) {
        assert!(
            !yeses
                .iter()
                .any(|y| y.trim().to_lowercase() == listed.to_lowercase()),
            "the opt-in list names {listed:?}"
        );
    }
    // The lookup works (START is the EU opt-in keyword), and the carrier-style
    // policies do take YES: the assertions above can tell the difference.
    assert_eq!(eu.keyword("START"), Some(KeywordKind::OptIn));
    for name in ["whatsapp-global", "sms-us"] {
        let policy = shipped.get(name).unwrap();
        assert_eq!(
            policy.keyword("YES"),
            Some(KeywordKind::OptIn),
            "{name} takes YES"
        );
    }
}

// ---- Idempotency-Key records are purged after 24 h ---------------------------------------

// The retention job runs every second here, as it runs every hour in production.
backend_test_with!(
    an_idempotency_key_is_forgotten_by_retention_after_24_hours,
    |s| s.retention_interval_secs = 1
);

fn opt_in_body(phone: &str) -> Value {
    json!({"phone": phone, "categories": ["utility"], "channel": "api",
           "evidence": {"collected_at": Utc::now().to_rfc3339(), "consent_text_version": "v1", "source_system": "crm"}})
}

/// Sets an idempotency record's creation time `hours` back from now.
fn age_idempotency_record(app: &TestApp, key: &str, hours: i64) {
    let at = (Utc::now() - chrono::Duration::hours(hours))
        .naive_utc()
        .format("%Y-%m-%d %H:%M:%S%.6f");
    side_sql(
        app,
        &format!("UPDATE idempotency_keys SET created_at = '{at}' WHERE key = '{key}'"),
    );
}

/// The counts of the business's `retention.purge` events so far.
async fn purges(app: &TestApp, business_id: &str) -> Vec<Value> {
    app.audit_events(business_id)
        .await
        .into_iter()
        .filter(|e| e.event_type == "retention.purge")
        .map(|e| serde_json::from_str::<Value>(&e.data).unwrap()["counts"].clone())
        .collect()
}

async fn an_idempotency_key_is_forgotten_by_retention_after_24_hours(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let first = post_idempotent(
        &app,
        "/v1/opt-ins",
        &biz.key,
        "old-key",
        &opt_in_body("+14155550101"),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.body);
    let recent = post_idempotent(
        &app,
        "/v1/opt-ins",
        &biz.key,
        "recent-key",
        &opt_in_body("+14155550102"),
    )
    .await;
    assert_eq!(recent.status, 201, "{}", recent.body);
    let reused = post_idempotent(
        &app,
        "/v1/opt-ins",
        &biz.key,
        "old-key",
        &opt_in_body("+14155550103"),
    )
    .await;
    reused.assert_problem(409, "idempotency_key_reused");

    age_idempotency_record(&app, "old-key", 25);
    age_idempotency_record(&app, "recent-key", 23);
    let mut purged = Vec::new();
    for _ in 0..50 {
        purged = purges(&app, &biz.id).await;
        if !purged.is_empty() {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        purged.len(),
        1,
        "the retention job purged once, audited: {purged:?}"
    );
    assert_eq!(
        purged[0]["idempotency_records"], 1,
        "only the record older than 24 h: {}",
        purged[0]
    );

    let fresh = post_idempotent(
        &app,
        "/v1/opt-ins",
        &biz.key,
        "old-key",
        &opt_in_body("+14155550103"),
    )
    .await;
    assert_eq!(
        fresh.status, 201,
        "a forgotten key is accepted as new, for another request: {}",
        fresh.body
    );
    assert!(fresh.header("idempotency-replayed").is_none());
    assert_ne!(fresh.body["id"], first.body["id"]);
    let kept = post_idempotent(
        &app,
        "/v1/opt-ins",
        &biz.key,
        "recent-key",
        &opt_in_body("+14155550104"),
    )
    .await;
    kept.assert_problem(409, "idempotency_key_reused");
}
