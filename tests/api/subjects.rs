//! Data-subject rights: export (Art. 15, 20) and erasure by crypto-shredding
//! (Art. 17), with suppression, on both backends.

use chrono::{Duration, Utc};
use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::TestApp;

backend_tests!(
    an_export_holds_everything_recorded_field_by_field,
    an_export_of_an_unknown_or_foreign_number_is_404,
    erasure_shreds_the_subject_and_keeps_a_verifiable_log,
    without_a_suppression_marker_an_erased_number_is_no_consent,
    erasure_and_export_do_not_block_other_subjects,
);

const PHONE: &str = "+31 6 2222 3333";
const E164: &str = "+31622223333";

fn at(offset_secs: i64) -> String {
    (Utc::now() + Duration::seconds(offset_secs))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

async fn web_opt_in(
    app: &TestApp,
    key: &str,
    phone: &str,
    categories: &[&str],
    collected_at: &str,
) -> Value {
    let res = app
        .post(
            "/v1/opt-ins",
            Some(key),
            &json!({"phone": phone, "categories": categories, "channel": "web",
                    "evidence": {"collected_at": collected_at, "consent_text_version": "signup-v3",
                                 "source_url": "https://shoes.example/signup", "ip": "198.51.100.23",
                                 "user_agent": "ExportProbe/1.0"}}),
        )
        .await;
    assert_eq!(res.status, 201, "opt-in: {}", res.body);
    res.body
}

async fn an_export_holds_everything_recorded_field_by_field(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let collected = at(-600);
    let opt_in = web_opt_in(&app, &biz.key, PHONE, &["marketing", "utility"], &collected).await;
    let opt_in_id = opt_in["id"].as_str().unwrap();
    let confirmed = app
        .post(
            &format!("/v1/opt-ins/{opt_in_id}/confirm"),
            Some(&biz.key),
            &json!({"channel": "web", "evidence": {"collected_at": at(-500), "consent_text_version": "doi-1", "source_url": "https://shoes.example/confirm"}}),
        )
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    let revoked = app
        .post(
            "/v1/revocations",
            Some(&biz.key),
            &json!({"phone": E164, "categories": ["marketing"], "channel": "support", "evidence": {"staff_id": "agent-7"}}),
        )
        .await;
    assert_eq!(revoked.status, 201, "{}", revoked.body);
    let received = at(-60);
    let inbound = app
        .post(
            "/v1/inbound-messages",
            Some(&biz.key),
            &json!({"phone": E164, "received_at": received, "text": "where is my order?", "entry_point": "click_to_chat_ad"}),
        )
        .await;
    assert_eq!(inbound.status, 201, "{}", inbound.body);
    for path in ["/v1/blocks", "/v1/unblocks"] {
        let res = app
            .post(path, Some(&biz.key), &json!({"phone": E164}))
            .await;
        assert_eq!(res.status, 201, "{path}: {}", res.body);
    }

    let res = app
        .post(
            "/v1/subjects/export",
            Some(&biz.key),
            &json!({"phone": "0031622223333", "request_reference": "DSR-17"}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let export = &res.body;
    assert_eq!(export["format"], "consentgate.export/v1");
    assert_eq!(export["business"]["id"], biz.id.as_str());
    assert_eq!(
        export["subject"]["phone"], E164,
        "the number itself (Art. 15)"
    );
    assert_eq!(export["subject"]["id"], opt_in["subject_id"]);
    assert_eq!(export["policy"]["name"], "whatsapp-eu");

    let opt_ins = export["opt_ins"].as_array().unwrap();
    assert_eq!(opt_ins.len(), 1, "one opt-in recorded");
    let o = &opt_ins[0];
    assert_eq!(o["id"], opt_in_id);
    assert_eq!(o["categories"], json!(["marketing", "utility"]));
    assert_eq!(o["channel"], "web");
    assert_eq!(o["collected_at"], opt_in["collected_at"]);
    assert_eq!(o["recorded_at"], opt_in["recorded_at"]);
    assert_eq!(o["evidence"]["source_url"], "https://shoes.example/signup");
    assert_eq!(o["evidence"]["ip"], "198.51.100.23");
    assert_eq!(o["evidence"]["user_agent"], "ExportProbe/1.0");
    assert_eq!(o["evidence"]["consent_text_version"], "signup-v3");
    assert_eq!(o["confirmations"].as_array().unwrap().len(), 1);
    assert_eq!(
        o["confirmations"][0]["confirmed_at"],
        confirmed.body["confirmed_at"]
    );
    assert_eq!(
        o["confirmations"][0]["evidence"]["source_url"],
        "https://shoes.example/confirm"
    );

    let revocations = export["revocations"].as_array().unwrap();
    assert_eq!(revocations.len(), 1);
    assert_eq!(revocations[0]["id"], revoked.body["id"]);
    assert_eq!(revocations[0]["categories"], json!(["marketing"]));
    assert_eq!(revocations[0]["channel"], "support");
    assert_eq!(revocations[0]["evidence"]["staff_id"], "agent-7");
    assert_eq!(revocations[0]["revoked_at"], revoked.body["revoked_at"]);

    let blocks = export["blocks"].as_array().unwrap();
    let blocked: Vec<bool> = blocks
        .iter()
        .map(|b| b["blocked"].as_bool().unwrap())
        .collect();
    assert_eq!(blocked, [true, false], "block then unblock");

    let windows = export["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 1);
    assert_eq!(windows[0]["id"], inbound.body["id"]);
    assert_eq!(windows[0]["entry_point"], "click_to_chat_ad");
    assert_eq!(windows[0]["expires_at"], inbound.body["window_expires_at"]);
    assert!(
        !export.to_string().contains("where is my order"),
        "message texts are never held"
    );

    let state: std::collections::BTreeMap<String, (bool, String)> = export["current_state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["category"].as_str().unwrap().to_owned(),
                (
                    s["allowed"].as_bool().unwrap(),
                    s["reason"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect();
    assert_eq!(state["marketing"], (false, "revoked".to_owned()));
    assert_eq!(state["utility"], (true, "consent".to_owned()));
    assert_eq!(state["service"], (true, "service_window".to_owned()));
    assert_eq!(state["authentication"], (false, "no_consent".to_owned()));

    let types: Vec<&str> = export["audit_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "opt_in.recorded",
            "opt_in.confirmed",
            "consent.revoked",
            "window.opened",
            "subject.blocked",
            "subject.unblocked"
        ],
        "every audit event about the subject, in order"
    );
    assert_eq!(
        export["audit_events"][0]["data"]["evidence"]["ip"], "198.51.100.23",
        "decrypted for the subject"
    );

    // Exporting is itself audited (with the reference, without the number).
    let events = app.audit_events(&biz.id).await;
    let last = events.last().unwrap();
    assert_eq!(last.event_type, "subject.exported");
    assert_eq!(
        last.subject_id.map(|s| s.to_string()).as_deref(),
        opt_in["subject_id"].as_str()
    );
    assert!(last.data.contains("DSR-17") && !last.data.contains("622223333"));
}

async fn an_export_of_an_unknown_or_foreign_number_is_404(app: TestApp) {
    let a = app.create_business("A", "whatsapp-eu").await;
    let b = app.create_business("B", "whatsapp-eu").await;
    web_opt_in(&app, &b.key, PHONE, &["utility"], &at(-10)).await;
    let foreign = app
        .post(
            "/v1/subjects/export",
            Some(&a.key),
            &json!({"phone": PHONE}),
        )
        .await;
    let unknown = app
        .post(
            "/v1/subjects/export",
            Some(&a.key),
            &json!({"phone": "+31687654321"}),
        )
        .await;
    foreign.assert_problem(404, "not_found");
    unknown.assert_problem(404, "not_found");
    assert_eq!(
        foreign.body, unknown.body,
        "a number held by another business reveals nothing"
    );
    let (_, checker) = app.create_key(&a.key, "c", &["checks:read"]).await;
    app.post(
        "/v1/subjects/export",
        Some(&checker),
        &json!({"phone": PHONE}),
    )
    .await
    .assert_problem(403, "forbidden");
    app.post(
        "/v1/subjects/erase",
        Some(&checker),
        &json!({"phone": PHONE}),
    )
    .await
    .assert_problem(403, "forbidden");
}

async fn erasure_shreds_the_subject_and_keeps_a_verifiable_log(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let before = at(-3600);
    let opt_in = web_opt_in(&app, &biz.key, PHONE, &["utility"], &at(-60)).await;
    let res = app
        .post(
            "/v1/subjects/erase",
            Some(&biz.key),
            &json!({"phone": PHONE, "request_reference": "DSR-99"}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let receipt = res.body.clone();
    assert_eq!(receipt["subject_id"], opt_in["subject_id"]);
    assert_eq!(receipt["request_reference"], "DSR-99");
    assert_eq!(
        receipt["suppressed"], true,
        "whatsapp-eu keeps a suppression marker"
    );
    let again = app
        .post(
            "/v1/subjects/erase",
            Some(&biz.key),
            &json!({"phone": E164}),
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.body, receipt,
        "erasing again answers the same receipt"
    );

    let check = app
        .post(
            "/v1/checks",
            Some(&biz.key),
            &json!({"phone": PHONE, "category": "utility"}),
        )
        .await;
    assert_eq!(
        (
            check.body["allowed"].as_bool(),
            check.body["reason"].as_str()
        ),
        (Some(false), Some("suppressed"))
    );
    app.post(
        "/v1/subjects/export",
        Some(&biz.key),
        &json!({"phone": PHONE}),
    )
    .await
    .assert_problem(404, "not_found");

    let verify = app.get("/v1/audit/verify", Some(&biz.key)).await;
    assert_eq!(
        verify.body["valid"], true,
        "the log still verifies: {}",
        verify.body
    );
    let events = app.get("/v1/audit/events?limit=1000", Some(&biz.key)).await;
    let events = events.body["events"].as_array().unwrap().clone();
    let recorded = events
        .iter()
        .find(|e| e["type"] == "opt_in.recorded")
        .unwrap();
    assert_eq!(
        recorded["data"]["evidence"], "[erased]",
        "personal fields unreadable after erasure"
    );
    let erased = events
        .iter()
        .find(|e| e["type"] == "subject.erased")
        .unwrap();
    assert_eq!(erased["data"]["request_reference"], "DSR-99");
    assert_eq!(erased.to_string().matches("erasure_id").count(), 1);
    assert!(
        !serde_json::to_string(&events)
            .unwrap()
            .contains("622223333"),
        "no number in the log"
    );

    // A stale import of consent collected before the erasure is refused...
    let stale = app
        .post(
            "/v1/opt-ins",
            Some(&biz.key),
            &json!({"phone": PHONE, "categories": ["utility"], "channel": "import",
                    "evidence": {"collected_at": before, "consent_text_version": "v1", "source_system": "old-crm",
                                 "original_channel": "web", "form_id": "f1"}}),
        )
        .await;
    stale.assert_problem(409, "collected_before_erasure");
    let check = app
        .post(
            "/v1/checks",
            Some(&biz.key),
            &json!({"phone": PHONE, "category": "utility"}),
        )
        .await;
    assert_eq!(check.body["reason"], "suppressed", "still suppressed");
    // ...while fresh consent after it is accepted and lifts the suppression.
    web_opt_in(&app, &biz.key, PHONE, &["utility"], &at(0)).await;
    let check = app
        .post(
            "/v1/checks",
            Some(&biz.key),
            &json!({"phone": PHONE, "category": "utility"}),
        )
        .await;
    assert_eq!(check.body["reason"], "consent", "{}", check.body);
}

async fn without_a_suppression_marker_an_erased_number_is_no_consent(app: TestApp) {
    let biz = app.create_business("Acme", "sms-us").await;
    let res = app
        .post(
            "/v1/opt-ins",
            Some(&biz.key),
            &json!({"phone": "+14155550123", "categories": ["marketing"], "channel": "api",
                    "evidence": {"collected_at": at(-5), "consent_text_version": "v1", "source_system": "crm"}}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    let erased = app
        .post(
            "/v1/subjects/erase",
            Some(&biz.key),
            &json!({"phone": "+14155550123"}),
        )
        .await;
    assert_eq!(
        erased.body["suppressed"], false,
        "sms-us keeps no suppression marker"
    );
    let check = app
        .post(
            "/v1/checks",
            Some(&biz.key),
            &json!({"phone": "+14155550123", "category": "marketing"}),
        )
        .await;
    assert_eq!(check.body["reason"], "no_consent");
}

/// Erasure and export run while opt-ins and checks for other subjects of the same
/// business go on: nothing else is lost or fails.
async fn erasure_and_export_do_not_block_other_subjects(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    for i in 0..10 {
        web_opt_in(
            &app,
            &biz.key,
            &format!("+3162000{i:04}"),
            &["utility"],
            &at(-5),
        )
        .await;
    }
    let others = (0..30).map(|i| {
        let app = &app;
        let key = biz.key.clone();
        async move {
            let phone = format!("+3163000{i:04}");
            let rec = app
                .post(
                    "/v1/opt-ins",
                    Some(&key),
                    &json!({"phone": phone, "categories": ["utility"], "channel": "api",
                            "evidence": {"collected_at": at(-1), "consent_text_version": "v1", "source_system": "crm"}}),
                )
                .await;
            let check = app.post("/v1/checks", Some(&key), &json!({"phone": phone, "category": "utility"})).await;
            (rec.status, check.body["allowed"].clone())
        }
    });
    let rights = (0..10).map(|i| {
        let app = &app;
        let key = biz.key.clone();
        async move {
            let phone = format!("+3162000{i:04}");
            let export = app
                .post("/v1/subjects/export", Some(&key), &json!({"phone": phone}))
                .await;
            let erase = app
                .post("/v1/subjects/erase", Some(&key), &json!({"phone": phone}))
                .await;
            (export.status, erase.status)
        }
    });
    let (others, rights) = futures_util::join!(join_all(others), join_all(rights));
    for (status, allowed) in others {
        assert_eq!(
            (status, allowed),
            (201, json!(true)),
            "other subjects' writes and checks go through"
        );
    }
    for statuses in rights {
        assert_eq!(statuses, (200, 200), "export then erase");
    }
    let verify = app.get("/v1/audit/verify", Some(&biz.key)).await;
    assert_eq!(verify.body["valid"], true);
    let batch: Vec<String> = (0..30).map(|i| format!("+3163000{i:04}")).collect();
    let res = app
        .post(
            "/v1/checks/batch",
            Some(&biz.key),
            &json!({"category": "utility", "phones": batch}),
        )
        .await;
    assert_eq!(
        res.body["allowed"], 30,
        "no other subject's consent was lost"
    );
}
