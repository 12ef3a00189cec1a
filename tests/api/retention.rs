//! Retention: expired data goes, audited; nothing a check or the chain needs does.

use chrono::{Duration, Utc};
use consentgate::ledger::Ledger;
use serde_json::json;

use crate::backend_tests;
use crate::helpers::TestApp;

backend_tests!(retention_purges_expired_data_and_keeps_what_checks_need);

fn ago(days: i64) -> String {
    (Utc::now() - Duration::days(days)).to_rfc3339()
}

fn ledger(app: &TestApp) -> Ledger {
    app.ledger_on(app.writer.clone())
}

async fn retention_purges_expired_data_and_keeps_what_checks_need(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let post = |path: &'static str, body: serde_json::Value| {
        let app = &app;
        let key = biz.key.clone();
        async move {
            let res = app.post(path, Some(&key), &body).await;
            assert!(
                res.status == 201 || res.status == 200,
                "{path}: {}",
                res.body
            );
            res.body
        }
    };
    // A: a window that closed 60 days ago, and one open now.
    post(
        "/v1/inbound-messages",
        json!({"phone": "+31611110001", "received_at": ago(60)}),
    )
    .await;
    post(
        "/v1/inbound-messages",
        json!({"phone": "+31611110001", "received_at": ago(0)}),
    )
    .await;
    // B: consent given five years ago and revoked four years ago (> 1,095 days).
    post(
        "/v1/opt-ins",
        json!({"phone": "+31611110002", "categories": ["utility"], "channel": "web",
               "evidence": {"collected_at": ago(5 * 365), "consent_text_version": "v1", "source_url": "https://shoes.example/old"}}),
    )
    .await;
    post(
        "/v1/revocations",
        json!({"phone": "+31611110002", "channel": "web", "evidence": {"collected_at": ago(4 * 365)}}),
    )
    .await;
    // C: consent in force.
    post(
        "/v1/opt-ins",
        json!({"phone": "+31611110003", "categories": ["utility"], "channel": "web",
               "evidence": {"collected_at": ago(1), "consent_text_version": "v1", "source_url": "https://shoes.example/new"}}),
    )
    .await;

    let ledger = ledger(&app);
    let purged = ledger.run_retention().await.unwrap();
    assert_eq!(
        purged.len(),
        1,
        "one business had something to purge: {purged:?}"
    );
    let counts = purged[0].1;
    assert_eq!(counts.closed_windows, 1, "the window closed 60 days ago");
    assert_eq!(
        counts.evidence_purged, 1,
        "the evidence of consent revoked 4 years ago"
    );
    let again = ledger.run_retention().await.unwrap();
    assert!(
        again.is_empty(),
        "a second run finds nothing, and records nothing"
    );

    let events = app.audit_events(&biz.id).await;
    let purges: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "retention.purge")
        .collect();
    assert_eq!(purges.len(), 1, "the purge is audited once");
    assert_eq!(purges[0].actor, "system");
    assert!(
        purges[0].data.contains("\"closed_windows\":1"),
        "{}",
        purges[0].data
    );

    // What checks need is untouched.
    let check = |phone: &'static str, category: &'static str| {
        let app = &app;
        let key = biz.key.clone();
        async move {
            app.post(
                "/v1/checks",
                Some(&key),
                &json!({"phone": phone, "category": category}),
            )
            .await
            .body["reason"]
                .clone()
        }
    };
    assert_eq!(
        check("+31611110001", "service").await,
        "service_window",
        "the open window stays"
    );
    assert_eq!(
        check("+31611110002", "utility").await,
        "revoked",
        "the revocation stays"
    );
    assert_eq!(
        check("+31611110003", "utility").await,
        "consent",
        "consent in force stays"
    );

    let export = |phone: &'static str| {
        let app = &app;
        let key = biz.key.clone();
        async move {
            app.post("/v1/subjects/export", Some(&key), &json!({"phone": phone}))
                .await
                .body
        }
    };
    let b = export("+31611110002").await;
    assert_eq!(
        b["opt_ins"][0]["evidence"],
        serde_json::Value::Null,
        "B's evidence was purged"
    );
    let c = export("+31611110003").await;
    assert_eq!(
        c["opt_ins"][0]["evidence"]["source_url"], "https://shoes.example/new",
        "C's evidence stays"
    );
    let a = export("+31611110001").await;
    assert_eq!(
        a["windows"].as_array().unwrap().len(),
        1,
        "only the recent window is held"
    );

    // Every export, the purged one included, is what the committed JSON Schema
    // and the OpenAPI document say it is (issue 9: `evidence: null` after a purge).
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schemas/consentgate.export.v1.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let openapi = serde_json::to_value(consentgate::http::openapi::document()).unwrap();
    let in_openapi = &openapi["paths"]["/v1/subjects/export"]["post"]["responses"]["200"]["content"]
        ["application/json"]["schema"];
    for (name, export) in [("A", &a), ("B", &b), ("C", &c)] {
        let errors = crate::schema::validate(&schema, &schema, export);
        assert!(
            errors.is_empty(),
            "{name}'s export against the JSON Schema: {errors:?}"
        );
        let errors = crate::schema::validate(&openapi, in_openapi, export);
        assert!(
            errors.is_empty(),
            "{name}'s export against openapi: {errors:?}"
        );
    }

    let verify = app.get("/v1/audit/verify", Some(&biz.key)).await;
    assert_eq!(
        verify.body["valid"], true,
        "the chain is untouched: {}",
        verify.body
    );
}
