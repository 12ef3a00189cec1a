//! The consent ledger over HTTP: opt-ins with their evidence, double opt-in,
//! revocations, blocks, inbound messages (windows and keywords), idempotent
//! retries, `as_of` checks, tenant isolation and the audit events of every write.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Resp, TestApp};

backend_tests!(
    every_channel_records_an_opt_in_with_its_evidence,
    every_channel_rejects_missing_evidence_naming_the_fields,
    future_collected_at_beyond_clock_skew_is_422,
    double_opt_in_is_pending_until_confirmed,
    revocation_of_some_categories_and_of_all,
    block_beats_consent_and_window_until_unblocked,
    inbound_message_opens_the_service_window,
    opt_out_keyword_in_every_listed_language_revokes_everything,
    start_restores_only_what_stop_revoked,
    idempotent_retries_record_nothing_twice,
    as_of_answers_from_the_recorded_history,
    another_business_never_sees_a_subject,
    every_write_appends_its_audit_event,
    invalid_evidence_values_are_all_listed_with_the_other_problems,
    an_idempotency_key_reused_for_another_opt_in_is_409,
);

// ---- helpers ------------------------------------------------------------------

/// A valid Dutch mobile number, distinct per `n`.
fn nl_phone(n: u32) -> String {
    format!("+3161{n:07}")
}

/// RFC 3339 with microseconds, as the service stores instants.
fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A response field that must be an RFC 3339 instant.
#[track_caller]
fn instant(value: &Value) -> DateTime<Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("expected an RFC 3339 string, got {value}"));
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

/// Valid opt-in evidence for `channel`, collected at `collected_at`.
fn evidence_at(channel: &str, collected_at: DateTime<Utc>) -> Value {
    let mut evidence = match channel {
        "web" => json!({
            "source_url": "https://shop.example/signup",
            "ip": "203.0.113.7",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        }),
        "app" => json!({"app_id": "com.example.shop", "app_version": "4.2.0"}),
        "in_store" => json!({"store_id": "store-012", "staff_id": "staff-7"}),
        "click_to_chat" => json!({"message_reference": "wamid.HBgLMzE2MTIzNDU2Nzg"}),
        "import" => json!({
            "source_system": "legacy-crm",
            "original_channel": "web",
            "form_id": "newsletter-2024",
        }),
        "support" => json!({"staff_id": "agent-3", "ticket_reference": "T-1042"}),
        "api" => json!({"source_system": "partner-portal"}),
        other => panic!("no evidence fixture for channel {other}"),
    };
    evidence["collected_at"] = json!(rfc3339(collected_at));
    evidence["consent_text_version"] = json!("consent-v3");
    evidence
}

/// Valid opt-in evidence for `channel`, collected a minute ago.
fn evidence(channel: &str) -> Value {
    evidence_at(channel, Utc::now() - Duration::minutes(1))
}

fn opt_in_body(phone: &str, categories: &[&str], channel: &str) -> Value {
    json!({
        "phone": phone,
        "categories": categories,
        "channel": channel,
        "evidence": evidence(channel),
    })
}

/// POST /v1/opt-ins (web evidence); panics unless 201.
async fn opt_in(app: &TestApp, token: &str, phone: &str, categories: &[&str]) -> Value {
    let res = app
        .post(
            "/v1/opt-ins",
            Some(token),
            &opt_in_body(phone, categories, "web"),
        )
        .await;
    assert_eq!(res.status, 201, "the opt-in is recorded: {}", res.body);
    res.body
}

/// POST /v1/revocations without evidence; `None` revokes every category. Panics
/// unless 201.
async fn revoke(app: &TestApp, token: &str, phone: &str, categories: Option<&[&str]>) -> Value {
    let mut body = json!({"phone": phone, "channel": "web"});
    if let Some(categories) = categories {
        body["categories"] = json!(categories);
    }
    let res = app.post("/v1/revocations", Some(token), &body).await;
    assert_eq!(res.status, 201, "the revocation is recorded: {}", res.body);
    res.body
}

/// POST /v1/inbound-messages received now; panics unless 201.
async fn inbound(app: &TestApp, token: &str, phone: &str, text: Option<&str>) -> Value {
    let mut body = json!({"phone": phone, "received_at": rfc3339(Utc::now())});
    if let Some(text) = text {
        body["text"] = json!(text);
    }
    let res = app.post("/v1/inbound-messages", Some(token), &body).await;
    assert_eq!(
        res.status, 201,
        "the inbound message is recorded: {}",
        res.body
    );
    res.body
}

/// POST /v1/checks (now, or as of an instant); panics unless 200.
async fn check_as_of(
    app: &TestApp,
    token: &str,
    phone: &str,
    category: &str,
    as_of: Option<DateTime<Utc>>,
) -> Value {
    let mut body = json!({"phone": phone, "category": category});
    if let Some(as_of) = as_of {
        body["as_of"] = json!(rfc3339(as_of));
    }
    let res = app.post("/v1/checks", Some(token), &body).await;
    assert_eq!(res.status, 200, "a check answers 200: {}", res.body);
    res.body
}

async fn check(app: &TestApp, token: &str, phone: &str, category: &str) -> Value {
    check_as_of(app, token, phone, category, None).await
}

/// Asserts a check's `allowed` and `reason` together, saying which case it was.
#[track_caller]
fn assert_decision(answer: &Value, allowed: bool, reason: &str, what: &str) {
    assert_eq!(
        (answer["allowed"].as_bool(), answer["reason"].as_str()),
        (Some(allowed), Some(reason)),
        "{what}: {answer}"
    );
}

/// A write with an `Idempotency-Key` header.
async fn post_with_key(
    app: &TestApp,
    path: &str,
    token: &str,
    idempotency_key: &str,
    body: &Value,
) -> Resp {
    let mut res = app
        .client()
        .post(format!("{}{path}", app.address))
        .insert_header(("authorization", format!("Bearer {token}")))
        .insert_header(("idempotency-key", idempotency_key))
        .send_json(body)
        .await
        .expect("the request reaches the server");
    let bytes = res.body().await.expect("the response body is readable");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Resp {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body,
    }
}

/// The `field` of every entry of a 422's `errors[]`, sorted.
#[track_caller]
fn error_fields(res: &Resp) -> Vec<String> {
    res.assert_problem(422, "validation_failed");
    let mut fields: Vec<String> = res.body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("a 422 lists its errors: {}", res.body))
        .iter()
        .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
        .collect();
    fields.sort();
    fields
}

/// How many facts (opt-ins, revocations, windows, ...) a business has stored.
async fn fact_count(app: &TestApp, business_id: &str) -> i64 {
    use consentgate::store::schema::facts;
    use diesel::prelude::*;
    let business_id = business_id.to_owned();
    app.store
        .run(move |conn| {
            Ok(facts::table
                .filter(facts::business_id.eq(business_id))
                .count()
                .get_result::<i64>(conn)?)
        })
        .await
        .expect("facts can be counted")
}

// ---- opt-ins and their evidence -------------------------------------------------

async fn every_channel_records_an_opt_in_with_its_evidence(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let channels = [
        "web",
        "app",
        "in_store",
        "click_to_chat",
        "import",
        "support",
        "api",
    ];
    for (n, channel) in (1..).zip(channels) {
        let phone = nl_phone(n);
        let body = opt_in_body(&phone, &["utility"], channel);
        let sent_collected_at = instant(&body["evidence"]["collected_at"]);

        let res = app.post("/v1/opt-ins", Some(&biz.key), &body).await;

        assert_eq!(
            res.status, 201,
            "{channel}: a valid opt-in is recorded: {}",
            res.body
        );
        assert_eq!(
            res.body["channel"], channel,
            "{channel}: the channel is echoed"
        );
        assert_eq!(
            res.body["status"], "active",
            "{channel}: utility needs no double opt-in"
        );
        assert_eq!(res.body["categories"], json!(["utility"]), "{channel}");
        assert_eq!(
            instant(&res.body["collected_at"]),
            sent_collected_at,
            "{channel}: collected_at comes from the evidence"
        );
        assert_eq!(
            instant(&res.body["expires_at"]),
            sent_collected_at + Duration::days(730),
            "{channel}: consent expires after the policy's 730 days"
        );
        assert!(
            res.body["confirmed_at"].is_null(),
            "{channel}: nothing was confirmed: {}",
            res.body
        );
        let answer = check(&app, &biz.key, &phone, "utility").await;
        assert_decision(&answer, true, "consent", channel);
        assert_eq!(
            answer["basis"],
            json!({"type": "opt_in", "opt_in_id": res.body["id"]}),
            "{channel}: the basis is this opt-in"
        );
    }
}

async fn every_channel_rejects_missing_evidence_naming_the_fields(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let events_before = app.audit_events(&biz.id).await.len();
    let phone = nl_phone(1);
    let without = |channel: &str, keys: &[&str]| {
        let mut evidence = evidence(channel);
        for key in keys {
            evidence.as_object_mut().unwrap().remove(*key);
        }
        evidence
    };
    // (channel, evidence, the fields named, why)
    let cases = [
        (
            "web",
            without("web", &["source_url"]),
            vec!["evidence.source_url"],
            "web needs source_url or form_id",
        ),
        (
            "app",
            without("app", &["app_id"]),
            vec!["evidence.app_id"],
            "app needs app_id",
        ),
        (
            "in_store",
            without("in_store", &["store_id"]),
            vec!["evidence.store_id"],
            "in_store needs store_id",
        ),
        (
            "click_to_chat",
            without("click_to_chat", &["message_reference"]),
            vec!["evidence.message_reference"],
            "click_to_chat needs message_reference",
        ),
        (
            "import",
            without("import", &["source_system"]),
            vec!["evidence.source_system"],
            "import needs source_system",
        ),
        (
            "import",
            without("import", &["original_channel"]),
            vec!["evidence.original_channel"],
            "import needs original_channel",
        ),
        (
            "import",
            {
                let mut e = without("import", &["form_id"]);
                e["original_channel"] = json!("app");
                e
            },
            vec!["evidence.app_id"],
            "import needs the original channel's own fields",
        ),
        (
            "support",
            without("support", &["staff_id"]),
            vec!["evidence.staff_id"],
            "support needs staff_id",
        ),
        (
            "api",
            without("api", &["source_system"]),
            vec!["evidence.source_system"],
            "api needs source_system",
        ),
        (
            "app",
            without("app", &["collected_at"]),
            vec!["evidence.collected_at"],
            "every channel needs collected_at",
        ),
        (
            "support",
            without("support", &["consent_text_version"]),
            vec!["evidence.consent_text_version"],
            "every channel needs consent_text_version",
        ),
        (
            "keyword",
            json!({
                "collected_at": rfc3339(Utc::now()),
                "consent_text_version": "consent-v3",
                "message_reference": "wamid.1",
            }),
            vec!["channel"],
            "keyword opt-ins come from inbound messages only",
        ),
    ];
    for (channel, evidence, fields, why) in cases {
        let body = json!({
            "phone": phone,
            "categories": ["utility"],
            "channel": channel,
            "evidence": evidence,
        });

        let res = app.post("/v1/opt-ins", Some(&biz.key), &body).await;

        assert_eq!(error_fields(&res), fields, "{why}: {}", res.body);
    }

    // Several problems at once: all of them in one answer.
    let res = app
        .post(
            "/v1/opt-ins",
            Some(&biz.key),
            &json!({
                "phone": "+31 6 1",
                "categories": ["utility", "newsletter"],
                "channel": "web",
                "evidence": {"consent_text_version": "consent-v3"},
            }),
        )
        .await;
    assert_eq!(
        error_fields(&res),
        [
            "categories[1]",
            "evidence.collected_at",
            "evidence.source_url",
            "phone"
        ],
        "every bad field is listed in one answer: {}",
        res.body
    );

    assert_eq!(
        app.audit_events(&biz.id).await.len(),
        events_before,
        "a refused opt-in appends no audit event"
    );
    assert_eq!(
        fact_count(&app, &biz.id).await,
        0,
        "a refused opt-in stores no fact"
    );
}

async fn invalid_evidence_values_are_all_listed_with_the_other_problems(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let events_before = app.audit_events(&biz.id).await.len();

    let res = app
        .post(
            "/v1/opt-ins",
            Some(&biz.key),
            &json!({
                "phone": "+31 6 1",
                "categories": ["utility", "newsletter"],
                "channel": "web",
                "evidence": {
                    "consent_text_version": "consent-v3",
                    "source_url": "shop.example/signup",
                    "ip": "not-an-ip",
                },
            }),
        )
        .await;

    assert_eq!(
        error_fields(&res),
        [
            "categories[1]",
            "evidence.collected_at",
            "evidence.ip",
            "evidence.source_url",
            "phone"
        ],
        "one answer names every bad field, invalid values as well as missing ones: {}",
        res.body
    );
    assert_eq!(
        app.audit_events(&biz.id).await.len(),
        events_before,
        "a refused opt-in appends no audit event"
    );
}

async fn future_collected_at_beyond_clock_skew_is_422(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let phone = nl_phone(1);
    let events_before = app.audit_events(&biz.id).await.len();
    let with_collected_at = |at: DateTime<Utc>| {
        json!({
            "phone": phone,
            "categories": ["utility"],
            "channel": "app",
            "evidence": evidence_at("app", at),
        })
    };

    let too_far = app
        .post(
            "/v1/opt-ins",
            Some(&biz.key),
            &with_collected_at(Utc::now() + Duration::minutes(10)),
        )
        .await;

    assert_eq!(
        error_fields(&too_far),
        ["evidence.collected_at"],
        "10 minutes ahead is beyond the 300 s clock skew: {}",
        too_far.body
    );
    assert_eq!(
        app.audit_events(&biz.id).await.len(),
        events_before,
        "nothing was recorded for the refused opt-in"
    );
    let within = app
        .post(
            "/v1/opt-ins",
            Some(&biz.key),
            &with_collected_at(Utc::now() + Duration::minutes(2)),
        )
        .await;
    assert_eq!(
        within.status, 201,
        "2 minutes ahead is within the clock skew: {}",
        within.body
    );
    assert_eq!(
        instant(&within.body["expires_at"]),
        instant(&within.body["recorded_at"]) + Duration::days(730),
        "consent stated ahead takes effect (and ages) from when it was recorded"
    );

    // A withdrawal is never refused for its collected_at: the field is dropped and
    // named, and the revocation takes effect when recorded (SPEC 5).
    let revocation = app
        .post(
            "/v1/revocations",
            Some(&biz.key),
            &json!({
                "phone": phone,
                "channel": "web",
                "evidence": {"collected_at": rfc3339(Utc::now() + Duration::minutes(10))},
            }),
        )
        .await;
    assert_eq!(revocation.status, 201, "{}", revocation.body);
    assert_eq!(
        revocation.body["warnings"][0]["field"], "evidence.collected_at",
        "{}",
        revocation.body
    );
    assert_eq!(
        revocation.body["revoked_at"], revocation.body["recorded_at"],
        "without a usable collected_at it happened when recorded"
    );
    assert_decision(
        &check(&app, &biz.key, &phone, "utility").await,
        false,
        "revoked",
        "the very next check",
    );
}

// ---- double opt-in ----------------------------------------------------------------

async fn double_opt_in_is_pending_until_confirmed(app: TestApp) {
    let eu = app.create_business("Acme EU", "whatsapp-eu").await;
    let phone = nl_phone(1);
    let recorded = opt_in(&app, &eu.key, &phone, &["marketing", "utility"]).await;
    let id = recorded["id"].clone();
    assert_eq!(
        recorded["status"], "pending_confirmation",
        "marketing needs double opt-in under whatsapp-eu: {recorded}"
    );
    assert_decision(
        &check(&app, &eu.key, &phone, "marketing").await,
        false,
        "pending_confirmation",
        "marketing before confirmation",
    );
    let utility = check(&app, &eu.key, &phone, "utility").await;
    assert_decision(&utility, true, "consent", "utility needs no confirmation");
    assert_eq!(
        utility["basis"],
        json!({"type": "opt_in", "opt_in_id": id}),
        "utility is allowed by the same opt-in"
    );

    let confirm_path = format!("/v1/opt-ins/{}/confirm", id.as_str().unwrap());
    let confirmation = json!({"channel": "web", "evidence": evidence_at("web", Utc::now())});
    let confirmed = app.post(&confirm_path, Some(&eu.key), &confirmation).await;

    assert_eq!(
        confirmed.status, 200,
        "the confirmation is recorded: {}",
        confirmed.body
    );
    assert_eq!(confirmed.body["status"], "active", "{}", confirmed.body);
    assert_eq!(
        confirmed.body["id"], id,
        "the confirmation answers the opt-in"
    );
    assert!(
        confirmed.body["confirmed_at"].is_string(),
        "confirmed_at is set: {}",
        confirmed.body
    );
    let marketing = check(&app, &eu.key, &phone, "marketing").await;
    assert_decision(&marketing, true, "consent", "marketing after confirmation");
    assert_eq!(
        marketing["basis"],
        json!({"type": "opt_in", "opt_in_id": id}),
        "the basis is the confirmed opt-in"
    );
    app.post(&confirm_path, Some(&eu.key), &confirmation)
        .await
        .assert_problem(409, "already_confirmed");

    let global = app.create_business("Acme Global", "whatsapp-global").await;
    let single = opt_in(&app, &global.key, &phone, &["marketing"]).await;
    assert_eq!(
        single["status"], "active",
        "whatsapp-global has single opt-in: {single}"
    );
    let path = format!("/v1/opt-ins/{}/confirm", single["id"].as_str().unwrap());
    app.post(&path, Some(&global.key), &confirmation)
        .await
        .assert_problem(409, "confirmation_not_required");

    // Withdrawn before it was confirmed: a confirmation cannot revive it.
    let withdrawn_phone = nl_phone(2);
    let withdrawn = opt_in(&app, &eu.key, &withdrawn_phone, &["marketing"]).await;
    revoke(&app, &eu.key, &withdrawn_phone, Some(&["marketing"])).await;
    let path = format!("/v1/opt-ins/{}/confirm", withdrawn["id"].as_str().unwrap());
    let late = json!({"channel": "web", "evidence": evidence_at("web", Utc::now())});
    app.post(&path, Some(&eu.key), &late)
        .await
        .assert_problem(409, "opt_in_revoked");
    assert_decision(
        &check(&app, &eu.key, &withdrawn_phone, "marketing").await,
        false,
        "revoked",
        "marketing stays revoked after the refused confirmation",
    );
}

// ---- revocations, blocks, windows ------------------------------------------------

async fn revocation_of_some_categories_and_of_all(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let phone = nl_phone(1);
    opt_in(&app, &biz.key, &phone, &["marketing", "utility"]).await;

    let some = revoke(&app, &biz.key, &phone, Some(&["marketing"])).await;

    assert_eq!(some["categories"], json!(["marketing"]), "{some}");
    assert_decision(
        &check(&app, &biz.key, &phone, "marketing").await,
        false,
        "revoked",
        "marketing was revoked",
    );
    assert_decision(
        &check(&app, &biz.key, &phone, "utility").await,
        true,
        "consent",
        "revoking marketing leaves utility",
    );

    let all = revoke(&app, &biz.key, &phone, None).await;

    assert!(
        all["categories"].is_null(),
        "no categories means all: {all}"
    );
    assert_decision(
        &check(&app, &biz.key, &phone, "utility").await,
        false,
        "revoked",
        "revoking all takes utility too",
    );

    // Collected after the revocation: an opt-in collected before it stays withdrawn.
    let fresh = app
        .post(
            "/v1/opt-ins",
            Some(&biz.key),
            &json!({
                "phone": phone,
                "categories": ["utility"],
                "channel": "web",
                "evidence": evidence_at("web", Utc::now()),
            }),
        )
        .await;
    assert_eq!(fresh.status, 201, "{}", fresh.body);
    let fresh = fresh.body;
    let answer = check(&app, &biz.key, &phone, "utility").await;
    assert_decision(&answer, true, "consent", "a fresh opt-in after revocation");
    assert_eq!(
        answer["basis"]["opt_in_id"], fresh["id"],
        "the fresh opt-in is the basis"
    );
}

async fn block_beats_consent_and_window_until_unblocked(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let phone = nl_phone(1);
    opt_in(&app, &biz.key, &phone, &["utility"]).await;
    inbound(&app, &biz.key, &phone, Some("Where is my order?")).await;
    assert_decision(
        &check(&app, &biz.key, &phone, "service").await,
        true,
        "service_window",
        "precondition: the window is open",
    );

    let blocked = app
        .post("/v1/blocks", Some(&biz.key), &json!({"phone": phone}))
        .await;

    assert_eq!(
        blocked.status, 201,
        "the block is recorded: {}",
        blocked.body
    );
    assert_eq!(blocked.body["blocked"], true, "{}", blocked.body);
    for category in ["utility", "service", "marketing"] {
        assert_decision(
            &check(&app, &biz.key, &phone, category).await,
            false,
            "blocked",
            &format!("{category} while blocked, despite consent and window"),
        );
    }

    let unblocked = app
        .post("/v1/unblocks", Some(&biz.key), &json!({"phone": phone}))
        .await;

    assert_eq!(
        unblocked.status, 201,
        "the unblock is recorded: {}",
        unblocked.body
    );
    assert_eq!(unblocked.body["blocked"], false, "{}", unblocked.body);
    assert_decision(
        &check(&app, &biz.key, &phone, "utility").await,
        true,
        "consent",
        "utility after unblock",
    );
    assert_decision(
        &check(&app, &biz.key, &phone, "service").await,
        true,
        "service_window",
        "service after unblock",
    );
}

async fn inbound_message_opens_the_service_window(app: TestApp) {
    let eu = app.create_business("Acme EU", "whatsapp-eu").await;
    let received_at = DateTime::from_timestamp(Utc::now().timestamp() - 60, 0).unwrap();
    let message = |phone: &str, entry_point: Option<&str>| {
        json!({
            "phone": phone,
            "received_at": rfc3339(received_at),
            "text": "Hi, a question about my order",
            "entry_point": entry_point,
        })
    };
    let plain_phone = nl_phone(1);
    let ad_phone = nl_phone(2);

    let plain = app
        .post(
            "/v1/inbound-messages",
            Some(&eu.key),
            &message(&plain_phone, None),
        )
        .await;
    let from_ad = app
        .post(
            "/v1/inbound-messages",
            Some(&eu.key),
            &message(&ad_phone, Some("click_to_chat_ad")),
        )
        .await;

    assert_eq!(plain.status, 201, "{}", plain.body);
    assert_eq!(from_ad.status, 201, "{}", from_ad.body);
    assert_eq!(plain.body["keyword_action"], "none", "{}", plain.body);
    assert_eq!(
        instant(&plain.body["window_expires_at"]),
        received_at + Duration::hours(24),
        "a plain message opens 24 h"
    );
    assert_eq!(
        instant(&from_ad.body["window_expires_at"]),
        received_at + Duration::hours(72),
        "a click-to-chat ad opens 72 h in whatsapp-eu"
    );
    let service = check(&app, &eu.key, &plain_phone, "service").await;
    assert_decision(
        &service,
        true,
        "service_window",
        "service inside the window",
    );
    assert_eq!(service["billable"], false, "service is free in the window");
    assert!(service["price"].is_null(), "no price when free: {service}");
    assert_eq!(
        service["basis"],
        json!({"type": "window", "expires_at": plain.body["window_expires_at"]}),
        "the basis is the window"
    );
    assert_decision(
        &check(&app, &eu.key, &plain_phone, "marketing").await,
        false,
        "no_consent",
        "a window never allows marketing",
    );

    let us = app.create_business("Acme US", "sms-us").await;
    let us_phone = "+14155552671";
    let sms = app
        .post(
            "/v1/inbound-messages",
            Some(&us.key),
            &message(us_phone, None),
        )
        .await;
    assert_eq!(sms.status, 201, "{}", sms.body);
    assert!(
        sms.body["window_expires_at"].is_null(),
        "sms-us has no window: {}",
        sms.body
    );
    assert_decision(
        &check(&app, &us.key, us_phone, "service").await,
        false,
        "no_consent",
        "over SMS even a reply needs consent",
    );
}

// ---- keywords ----------------------------------------------------------------------

/// whatsapp-eu's opt-out keywords (EN, DE, NL, IT, FR with and without accents, ES).
const EU_OPT_OUT_KEYWORDS: [&str; 24] = [
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
    "STOPP",
    "ABMELDEN",
    "ABBESTELLEN",
    "ENDE",
    "AFMELDEN",
    "UITSCHRIJVEN",
    "ANNULLA",
    "DISISCRIVI",
    "BASTA",
    "ARRET",
    "ARRÊT",
    "DESABONNER",
    "DÉSABONNER",
    "BAJA",
    "CANCELAR",
    "PARAR",
];

/// `sToP`-style mixed case with spaces and a newline around it.
fn oddly_written(keyword: &str) -> String {
    let mixed: String = keyword
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 1 {
                c.to_lowercase().collect::<String>()
            } else {
                c.to_string()
            }
        })
        .collect();
    format!("  {mixed} \n")
}

async fn opt_out_keyword_in_every_listed_language_revokes_everything(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    for (n, keyword) in (1..).zip(EU_OPT_OUT_KEYWORDS) {
        let phone = nl_phone(n);
        opt_in(&app, &biz.key, &phone, &["utility"]).await;

        let message = inbound(&app, &biz.key, &phone, Some(&oddly_written(keyword))).await;

        assert_eq!(
            message["keyword_action"], "opt_out",
            "{keyword} is an opt-out keyword: {message}"
        );
        assert!(
            message["revocation_id"].is_string(),
            "{keyword} records a revocation: {message}"
        );
        assert_decision(
            &check(&app, &biz.key, &phone, "utility").await,
            false,
            "revoked",
            &format!("utility after {keyword}"),
        );
    }

    let phone = nl_phone(999);
    opt_in(&app, &biz.key, &phone, &["utility"]).await;
    let message = inbound(&app, &biz.key, &phone, Some("please stop")).await;
    assert_eq!(
        message["keyword_action"], "none",
        "a keyword inside a sentence is not a keyword: {message}"
    );
    assert!(message["revocation_id"].is_null(), "{message}");
    assert_decision(
        &check(&app, &biz.key, &phone, "utility").await,
        true,
        "consent",
        "consent stays after 'please stop'",
    );
}

async fn start_restores_only_what_stop_revoked(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let phone = nl_phone(1);
    let original = opt_in(&app, &biz.key, &phone, &["utility"]).await;
    let stop = inbound(&app, &biz.key, &phone, Some("STOP")).await;
    assert_eq!(stop["keyword_action"], "opt_out", "{stop}");

    let start = inbound(&app, &biz.key, &phone, Some("Start")).await;

    assert_eq!(start["keyword_action"], "opt_in", "{start}");
    assert_eq!(
        start["restored_categories"],
        json!(["utility"]),
        "START restores what STOP revoked: {start}"
    );
    assert!(start["restoration_id"].is_string(), "{start}");
    let utility = check(&app, &biz.key, &phone, "utility").await;
    assert_decision(&utility, true, "consent", "utility after START");
    assert_eq!(
        utility["basis"]["opt_in_id"], original["id"],
        "START undoes STOP: the basis is the original opt-in, with its original age"
    );
    let authentication = check(&app, &biz.key, &phone, "authentication").await;
    assert_eq!(
        authentication["allowed"], false,
        "START never grants a category that was never given: {authentication}"
    );
    // START undid the STOP, and authentication was never given: no consent (SPEC 2:
    // a START undoes a STOP, it never grants).
    assert_eq!(authentication["reason"], "no_consent", "{authentication}");

    let stranger = nl_phone(2);
    let never = inbound(&app, &biz.key, &stranger, Some("START")).await;
    assert_eq!(never["keyword_action"], "opt_in", "{never}");
    assert_eq!(
        never["restored_categories"],
        json!([]),
        "START on a number that never opted in restores nothing: {never}"
    );
    assert!(
        never["restoration_id"].is_null(),
        "nothing to undo, nothing recorded: {never}"
    );
    assert_decision(
        &check(&app, &biz.key, &stranger, "authentication").await,
        false,
        "no_consent",
        "START gave the stranger nothing",
    );

    let events_before = app.audit_events(&biz.id).await.len();
    let help = inbound(&app, &biz.key, &phone, Some(" help ")).await;
    assert_eq!(help["keyword_action"], "help", "{help}");
    assert!(
        help["revocation_id"].is_null() && help["restoration_id"].is_null(),
        "HELP records no consent change: {help}"
    );
    let types: Vec<String> = app.audit_events(&biz.id).await[events_before..]
        .iter()
        .map(|e| e.event_type.clone())
        .collect();
    assert_eq!(types, ["window.opened"], "HELP only opens the window");
    let after_help = check(&app, &biz.key, &phone, "utility").await;
    assert_decision(&after_help, true, "consent", "utility after HELP");
    assert_eq!(
        after_help["basis"], utility["basis"],
        "HELP changed nothing"
    );
}

// ---- idempotency --------------------------------------------------------------------

async fn idempotent_retries_record_nothing_twice(app: TestApp) {
    let a = app.create_business("A", "whatsapp-eu").await;
    let b = app.create_business("B", "whatsapp-eu").await;
    let phone = nl_phone(1);
    // (path, key, body, another body)
    let writes = [
        (
            "/v1/opt-ins",
            "retry-opt-in",
            opt_in_body(&phone, &["utility"], "app"),
            opt_in_body(&phone, &["authentication"], "app"),
        ),
        (
            "/v1/revocations",
            "retry-revocation",
            json!({"phone": phone, "categories": ["utility"], "channel": "web"}),
            json!({"phone": phone, "channel": "web"}),
        ),
        (
            "/v1/inbound-messages",
            "retry-inbound",
            json!({"phone": phone, "received_at": rfc3339(Utc::now()), "text": "STOP"}),
            json!({"phone": phone, "received_at": rfc3339(Utc::now()), "text": "HELP"}),
        ),
    ];
    for (path, key, body, other) in &writes {
        let first = post_with_key(&app, path, &a.key, key, body).await;
        let events = app.audit_events(&a.id).await.len();
        let facts = fact_count(&app, &a.id).await;

        let retry = post_with_key(&app, path, &a.key, key, body).await;

        assert_eq!(first.status, 201, "{path}: first attempt: {}", first.body);
        assert_eq!(
            first.header("idempotency-replayed"),
            None,
            "{path}: the first attempt is not a replay"
        );
        assert_eq!(retry.status, first.status, "{path}: same status again");
        assert_eq!(retry.body, first.body, "{path}: same body again");
        assert_eq!(
            retry.header("idempotency-replayed").as_deref(),
            Some("true"),
            "{path}: the retry says it is a replay"
        );
        assert_eq!(
            app.audit_events(&a.id).await.len(),
            events,
            "{path}: a retry appends no audit event"
        );
        assert_eq!(
            fact_count(&app, &a.id).await,
            facts,
            "{path}: a retry stores no fact"
        );
        post_with_key(&app, path, &a.key, key, other)
            .await
            .assert_problem(409, "idempotency_key_reused");

        let elsewhere = post_with_key(&app, path, &b.key, key, body).await;
        assert_eq!(
            elsewhere.status, 201,
            "{path}: another business's key space is its own: {}",
            elsewhere.body
        );
        assert_eq!(
            elsewhere.header("idempotency-replayed"),
            None,
            "{path}: not a replay of A's write"
        );
        assert_ne!(
            elsewhere.body["id"], first.body["id"],
            "{path}: B got its own record"
        );
    }
    assert_eq!(
        app.audit_events(&a.id).await.len(),
        app.audit_events(&b.id).await.len(),
        "A (with retries) and B (without) recorded the same number of events"
    );
}

async fn an_idempotency_key_reused_for_another_opt_in_is_409(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let first = opt_in(&app, &biz.key, &nl_phone(1), &["marketing"]).await;
    let second = opt_in(&app, &biz.key, &nl_phone(2), &["marketing"]).await;
    let confirmation = json!({"channel": "web", "evidence": evidence_at("web", Utc::now())});
    let path = |opt_in: &Value| format!("/v1/opt-ins/{}/confirm", opt_in["id"].as_str().unwrap());
    let confirmed = post_with_key(&app, &path(&first), &biz.key, "confirm-1", &confirmation).await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);

    // The same key and body, but another opt-in in the path: another request.
    let other = post_with_key(&app, &path(&second), &biz.key, "confirm-1", &confirmation).await;

    assert_decision(
        &check(&app, &biz.key, &nl_phone(2), "marketing").await,
        false,
        "pending_confirmation",
        "the second opt-in was not confirmed by the reused key",
    );
    assert_ne!(
        other.body["id"], first["id"],
        "confirming the second opt-in must not answer with the first one's confirmation: {}",
        other.body
    );
    other.assert_problem(409, "idempotency_key_reused");
}

// ---- as_of ----------------------------------------------------------------------------

async fn as_of_answers_from_the_recorded_history(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let phone = nl_phone(1);
    let before_opt_in = Utc::now() - Duration::minutes(5);
    let recorded = opt_in(&app, &biz.key, &phone, &["utility"]).await;
    let t1 = instant(&recorded["recorded_at"]);
    let revocation = revoke(&app, &biz.key, &phone, None).await;
    assert!(
        instant(&revocation["revoked_at"]) > t1,
        "precondition: the revocation came after T1: {revocation}"
    );

    let then = check_as_of(&app, &biz.key, &phone, "utility", Some(t1)).await;
    let now = check(&app, &biz.key, &phone, "utility").await;
    let earlier = check_as_of(&app, &biz.key, &phone, "utility", Some(before_opt_in)).await;

    assert_decision(&then, true, "consent", "as of T1, before the revocation");
    assert_eq!(
        then["basis"]["opt_in_id"], recorded["id"],
        "as of T1 the opt-in is the basis"
    );
    assert_eq!(instant(&then["as_of"]), t1, "the answer says which instant");
    assert_decision(&now, false, "revoked", "now, after the revocation");
    assert_decision(
        &earlier,
        false,
        "no_consent",
        "before the opt-in was collected",
    );
}

// ---- tenants ---------------------------------------------------------------------------

async fn another_business_never_sees_a_subject(app: TestApp) {
    let a = app.create_business("A", "whatsapp-eu").await;
    let b = app.create_business("B", "whatsapp-eu").await;
    let phone = nl_phone(1);
    let theirs = opt_in(&app, &a.key, &phone, &["marketing", "utility"]).await;
    let b_events = app.audit_events(&b.id).await.len();

    let b_check = check(&app, &b.key, &phone, "utility").await;
    let confirmation = json!({"channel": "web", "evidence": evidence_at("web", Utc::now())});
    let confirm_theirs = app
        .post(
            &format!("/v1/opt-ins/{}/confirm", theirs["id"].as_str().unwrap()),
            Some(&b.key),
            &confirmation,
        )
        .await;
    let confirm_missing = app
        .post(
            &format!("/v1/opt-ins/{}/confirm", uuid::Uuid::now_v7()),
            Some(&b.key),
            &confirmation,
        )
        .await;

    assert_decision(&b_check, false, "no_consent", "B checking A's subject");
    confirm_theirs.assert_problem(404, "not_found");
    confirm_missing.assert_problem(404, "not_found");
    assert_eq!(
        confirm_theirs.body, confirm_missing.body,
        "no hint that the opt-in exists in another business"
    );
    assert_eq!(
        app.audit_events(&b.id).await.len(),
        b_events,
        "B's failed confirmation recorded nothing"
    );
    assert_decision(
        &check(&app, &a.key, &phone, "marketing").await,
        false,
        "pending_confirmation",
        "B could not confirm A's opt-in",
    );
    let own = opt_in(&app, &b.key, &phone, &["utility"]).await;
    assert_ne!(
        own["subject_id"], theirs["subject_id"],
        "the same number is another subject in another business"
    );
}

// ---- audit ------------------------------------------------------------------------------

async fn every_write_appends_its_audit_event(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let phone = "+31 6 4839 2751";
    let ip = "198.51.100.203";
    let user_agent = "ConsentgateAuditProbe/9.7";
    let mut web = evidence("web");
    web["ip"] = json!(ip);
    web["user_agent"] = json!(user_agent);
    let opt_in_body = json!({
        "phone": phone,
        "categories": ["marketing", "utility"],
        "channel": "web",
        "evidence": web,
    });
    let recorded = app.post("/v1/opt-ins", Some(&biz.key), &opt_in_body).await;
    assert_eq!(recorded.status, 201, "{}", recorded.body);
    let subject_id = recorded.body["subject_id"].clone();
    let confirm_path = format!(
        "/v1/opt-ins/{}/confirm",
        recorded.body["id"].as_str().unwrap()
    );
    let mut confirm_evidence = evidence_at("web", Utc::now());
    confirm_evidence["ip"] = json!(ip);
    let now = || rfc3339(Utc::now());
    // (path, body, the events it appends)
    let writes: Vec<(String, Value, Vec<&str>)> = vec![
        (
            confirm_path,
            json!({"channel": "web", "evidence": confirm_evidence}),
            vec!["opt_in.confirmed"],
        ),
        (
            "/v1/revocations".into(),
            json!({"phone": phone, "categories": ["marketing"], "channel": "support"}),
            vec!["consent.revoked"],
        ),
        (
            "/v1/blocks".into(),
            json!({"phone": phone}),
            vec!["subject.blocked"],
        ),
        (
            "/v1/unblocks".into(),
            json!({"phone": phone}),
            vec!["subject.unblocked"],
        ),
        (
            "/v1/inbound-messages".into(),
            json!({"phone": phone, "received_at": now(), "text": "hello"}),
            vec!["window.opened"],
        ),
        (
            "/v1/inbound-messages".into(),
            json!({"phone": phone, "received_at": now(), "text": "STOP"}),
            vec!["window.opened", "consent.revoked"],
        ),
    ];
    let after_opt_in = app.audit_events(&biz.id).await;
    let last = after_opt_in.last().expect("the opt-in appended an event");
    assert_eq!(last.event_type, "opt_in.recorded", "{last:?}");
    assert_eq!(
        last.subject_id.map(|id| json!(id.to_string())),
        Some(subject_id.clone()),
        "the opt-in event names its subject"
    );

    for (path, body, expected) in &writes {
        let before = app.audit_events(&biz.id).await.len();

        let res = app.post(path, Some(&biz.key), body).await;

        assert!(
            res.status == 200 || res.status == 201,
            "{path} succeeds: {} {}",
            res.status,
            res.body
        );
        let events = app.audit_events(&biz.id).await;
        let appended: Vec<&str> = events[before..]
            .iter()
            .map(|e| e.event_type.as_str())
            .collect();
        assert_eq!(&appended, expected, "{path} appends its events");
        for event in &events[before..] {
            assert_eq!(
                event.subject_id.map(|id| json!(id.to_string())),
                Some(subject_id.clone()),
                "{path}: {} names the subject",
                event.event_type
            );
        }
    }

    let events = app.audit_events(&biz.id).await;
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    let contiguous: Vec<i64> = (1..=i64::try_from(events.len()).unwrap()).collect();
    assert_eq!(seqs, contiguous, "sequence numbers are contiguous from 1");
    for event in &events {
        for secret in [
            "+31648392751",
            "31648392751",
            "648392751",
            "6 4839 2751",
            ip,
            user_agent,
        ] {
            assert!(
                !event.data.contains(secret),
                "event {} ({}) leaks {secret:?}: {}",
                event.seq,
                event.event_type,
                event.data
            );
        }
    }
}
