//! No wrong yes (issue 8): an acknowledged withdrawal denies the very next check,
//! whatever the clocks (SPEC 3), whatever the spelling of the keyword (SPEC 2), and
//! whatever else was wrong with the request (SPEC 5).

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use consentgate::domain::time::Clock;
use consentgate::startup::Application;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Resp, TestApp, spawn_app_with};

backend_tests!(
    a_revocation_dated_ahead_denies_the_very_next_check,
    a_block_dated_ahead_blocks_the_very_next_check,
    a_stop_received_ahead_revokes_at_once,
    every_spelling_of_stop_opts_out,
    start_after_stop_keeps_the_original_age_of_consent,
    a_bad_optional_field_never_loses_a_revocation,
    an_unknown_category_widens_a_revocation_to_everything,
    a_bad_optional_field_never_loses_an_inbound_stop,
    as_of_in_the_future_is_422_naming_as_of,
    a_truncated_body_is_400_on_every_json_endpoint,
);

/// Several nodes on one database: PostgreSQL only (SPEC 8). SQLite serves one
/// node per file, and refuses a second (see the SQLite tests at the end).
mod several_nodes {
    macro_rules! postgres_tests {
        ($($name:ident),* $(,)?) => {
            mod postgres {
                $(
                    #[actix_web::test]
                    async fn $name() {
                        if let Some(app) = $crate::helpers::spawn_app(
                            $crate::helpers::Backend::Postgres,
                        ).await {
                            super::super::$name(app).await;
                        }
                    }
                )*
            }
        };
    }
    postgres_tests!(
        a_node_behind_honours_a_revocation_through_a_node_ahead,
        a_revocation_through_a_node_behind_beats_an_opt_in_through_a_node_ahead,
        a_key_revoked_through_one_node_is_refused_by_the_next_request_on_another,
        an_opt_in_and_an_erasure_through_one_node_are_answered_by_another,
    );
}

/// Like `backend_tests!`, with a 1 MiB body limit.
macro_rules! backend_tests_with_big_bodies {
    ($($name:ident),* $(,)?) => {
        mod big_bodies {
            mod sqlite {
                $(
                    #[actix_web::test]
                    async fn $name() {
                        let app = $crate::helpers::spawn_app_with(
                            $crate::helpers::Backend::Sqlite,
                            |s| s.max_body_bytes = 1024 * 1024,
                        ).await.unwrap();
                        super::super::$name(app).await;
                    }
                )*
            }
            mod postgres {
                $(
                    #[actix_web::test]
                    async fn $name() {
                        if let Some(app) = $crate::helpers::spawn_app_with(
                            $crate::helpers::Backend::Postgres,
                            |s| s.max_body_bytes = 1024 * 1024,
                        ).await {
                            super::super::$name(app).await;
                        }
                    }
                )*
            }
        }
    };
}

backend_tests_with_big_bodies!(a_huge_user_agent_never_loses_a_block);

// ---- helpers ------------------------------------------------------------------

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn nl_phone(n: u32) -> String {
    format!("+3162{n:07}")
}

/// An opt-in collected on the web at `collected_at`.
async fn opt_in_at(
    app: &TestApp,
    key: &str,
    phone: &str,
    categories: &[&str],
    collected_at: DateTime<Utc>,
) -> Value {
    let res = app
        .post(
            "/v1/opt-ins",
            Some(key),
            &json!({
                "phone": phone,
                "categories": categories,
                "channel": "web",
                "evidence": {
                    "collected_at": rfc3339(collected_at),
                    "consent_text_version": "v1",
                    "source_url": "https://shop.example/signup",
                },
            }),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    res.body
}

async fn check_on(address: &str, key: &str, phone: &str, category: &str) -> Value {
    let mut res = awc::Client::default()
        .post(format!("{address}/v1/checks"))
        .insert_header(("authorization", format!("Bearer {key}")))
        .send_json(&json!({"phone": phone, "category": category}))
        .await
        .expect("the node answers");
    assert_eq!(res.status().as_u16(), 200);
    res.json::<Value>().limit(1 << 20).await.unwrap()
}

async fn post_on(address: &str, path: &str, key: &str, body: &Value) -> Value {
    let mut res = awc::Client::default()
        .post(format!("{address}{path}"))
        .insert_header(("authorization", format!("Bearer {key}")))
        .send_json(body)
        .await
        .expect("the node answers");
    let body = res.json::<Value>().limit(1 << 20).await.unwrap();
    assert_eq!(res.status().as_u16(), 201, "{body}");
    body
}

#[track_caller]
fn assert_denied(answer: &Value, reason: &str, what: &str) {
    assert_eq!(
        (answer["allowed"].as_bool(), answer["reason"].as_str()),
        (Some(false), Some(reason)),
        "{what}: {answer}"
    );
}

#[track_caller]
fn warned_fields(res: &Resp) -> Vec<String> {
    assert_eq!(res.status, 201, "{}", res.body);
    res.body["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("warnings[] is always present: {}", res.body))
        .iter()
        .map(|w| w["field"].as_str().unwrap().to_owned())
        .collect()
}

/// Another node of the same deployment (same database and keys) whose clock is
/// shifted by `offset`. Returns its base URL; it runs until the test ends.
async fn another_node(app: &TestApp, offset: Duration) -> String {
    let mut settings = app.settings.clone();
    settings.bind = "127.0.0.1:0".parse().unwrap();
    let node = Application::build_with_clock(settings, Clock::offset_by(offset))
        .await
        .expect("a second node builds on the same database");
    let address = format!("http://127.0.0.1:{}", node.port());
    actix_web::rt::spawn(node.run_until_stopped());
    address
}

// ---- SPEC 3: the time model -----------------------------------------------------

async fn a_revocation_dated_ahead_denies_the_very_next_check(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let phone = nl_phone(1);
    opt_in_at(
        &app,
        &biz.key,
        &phone,
        &["utility", "marketing"],
        Utc::now() - Duration::minutes(1),
    )
    .await;

    let revocation = app
        .post(
            "/v1/revocations",
            Some(&biz.key),
            &json!({
                "phone": phone,
                "channel": "web",
                "evidence": {"collected_at": rfc3339(Utc::now() + Duration::seconds(120))},
            }),
        )
        .await;

    assert_eq!(revocation.status, 201, "{}", revocation.body);
    assert_eq!(
        revocation.body["revoked_at"], revocation.body["recorded_at"],
        "effective when recorded, not at the client's clock time"
    );
    for category in ["utility", "marketing"] {
        let answer = app
            .post(
                "/v1/checks",
                Some(&biz.key),
                &json!({"phone": phone, "category": category}),
            )
            .await;
        assert_denied(&answer.body, "revoked", category);
    }
}

async fn a_block_dated_ahead_blocks_the_very_next_check(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let phone = nl_phone(2);
    opt_in_at(
        &app,
        &biz.key,
        &phone,
        &["utility"],
        Utc::now() - Duration::minutes(1),
    )
    .await;

    let block = app
        .post(
            "/v1/blocks",
            Some(&biz.key),
            &json!({
                "phone": phone,
                "evidence": {"collected_at": rfc3339(Utc::now() + Duration::seconds(120))},
            }),
        )
        .await;

    assert_eq!(block.status, 201, "{}", block.body);
    assert_eq!(block.body["at"], block.body["recorded_at"]);
    let answer = app
        .post(
            "/v1/checks",
            Some(&biz.key),
            &json!({"phone": phone, "category": "utility"}),
        )
        .await;
    assert_denied(&answer.body, "blocked", "utility after a block dated ahead");
}

async fn a_stop_received_ahead_revokes_at_once(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let phone = nl_phone(3);
    opt_in_at(
        &app,
        &biz.key,
        &phone,
        &["marketing"],
        Utc::now() - Duration::minutes(1),
    )
    .await;

    let stop = app
        .post(
            "/v1/inbound-messages",
            Some(&biz.key),
            &json!({
                "phone": phone,
                "received_at": rfc3339(Utc::now() + Duration::seconds(120)),
                "text": "STOP",
            }),
        )
        .await;

    assert_eq!(stop.status, 201, "{}", stop.body);
    assert_eq!(stop.body["keyword_action"], "opt_out");
    let answer = app
        .post(
            "/v1/checks",
            Some(&biz.key),
            &json!({"phone": phone, "category": "marketing"}),
        )
        .await;
    assert_denied(
        &answer.body,
        "revoked",
        "marketing after a STOP received ahead",
    );
}

// ---- SPEC 2: keywords --------------------------------------------------------------

async fn every_spelling_of_stop_opts_out(app: TestApp) {
    let biz = app.create_business("Acme EU", "whatsapp-eu").await;
    let spellings = [
        "ＳＴＯＰ",
        "Stop!",
        "stop.",
        "STOP\u{200B}",
        "ARRE\u{0302}T",
        "  arret ! ",
        "Désabonner",
    ];
    for (i, text) in spellings.into_iter().enumerate() {
        let phone = nl_phone(100 + i as u32);
        opt_in_at(
            &app,
            &biz.key,
            &phone,
            &["utility"],
            Utc::now() - Duration::minutes(1),
        )
        .await;
        let res = app
            .post(
                "/v1/inbound-messages",
                Some(&biz.key),
                &json!({"phone": phone, "received_at": rfc3339(Utc::now()), "text": text}),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
        assert_eq!(
            res.body["keyword_action"], "opt_out",
            "{text:?}: {}",
            res.body
        );
        let answer = app
            .post(
                "/v1/checks",
                Some(&biz.key),
                &json!({"phone": phone, "category": "utility"}),
            )
            .await;
        assert_denied(&answer.body, "revoked", text);
    }
    let phone = nl_phone(199);
    let not = app
        .post(
            "/v1/inbound-messages",
            Some(&biz.key),
            &json!({"phone": phone, "received_at": rfc3339(Utc::now()), "text": "please stop?"}),
        )
        .await;
    assert_eq!(
        not.body["keyword_action"], "none",
        "a sentence is not a keyword"
    );
}

async fn start_after_stop_keeps_the_original_age_of_consent(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let phone = nl_phone(4);
    let now = Utc::now();
    opt_in_at(
        &app,
        &biz.key,
        &phone,
        &["marketing"],
        now - Duration::days(740),
    )
    .await;
    let young = nl_phone(5);
    let original = opt_in_at(
        &app,
        &biz.key,
        &young,
        &["marketing"],
        now - Duration::days(700),
    )
    .await;
    for number in [&phone, &young] {
        let stop = app
            .post(
                "/v1/inbound-messages",
                Some(&biz.key),
                &json!({"phone": number, "received_at": rfc3339(now - Duration::days(20)), "text": "STOP"}),
            )
            .await;
        assert_eq!(stop.body["keyword_action"], "opt_out", "{}", stop.body);
    }

    let start = app
        .post(
            "/v1/inbound-messages",
            Some(&biz.key),
            &json!({"phone": phone, "received_at": rfc3339(Utc::now()), "text": "START"}),
        )
        .await;
    let young_start = app
        .post(
            "/v1/inbound-messages",
            Some(&biz.key),
            &json!({"phone": young, "received_at": rfc3339(Utc::now()), "text": "START"}),
        )
        .await;

    assert_eq!(start.body["keyword_action"], "opt_in", "{}", start.body);
    assert_eq!(
        start.body["restored_categories"],
        json!([]),
        "nothing comes back into force: the consent expired meanwhile"
    );
    let answer = app
        .post(
            "/v1/checks",
            Some(&biz.key),
            &json!({"phone": phone, "category": "marketing"}),
        )
        .await;
    assert_denied(
        &answer.body,
        "consent_expired",
        "740-day-old consent after START",
    );

    assert_eq!(
        young_start.body["restored_categories"],
        json!(["marketing"])
    );
    let answer = app
        .post(
            "/v1/checks",
            Some(&biz.key),
            &json!({"phone": young, "category": "marketing"}),
        )
        .await;
    assert_eq!(answer.body["allowed"], true, "{}", answer.body);
    assert_eq!(
        answer.body["basis"]["opt_in_id"], original["id"],
        "the original opt-in is the basis again"
    );
}

// ---- SPEC 5: a withdrawal is never lost to a bad optional field --------------------

async fn a_bad_optional_field_never_loses_a_revocation(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let phone = nl_phone(6);
    opt_in_at(
        &app,
        &biz.key,
        &phone,
        &["utility"],
        Utc::now() - Duration::minutes(1),
    )
    .await;

    let res = app
        .post(
            "/v1/revocations",
            Some(&biz.key),
            &json!({
                "phone": phone,
                "channel": "web",
                "evidence": {
                    "ip": "not-an-ip-address",
                    "source_url": "https://shop.example/prefs",
                    "favourite_colour": "blue",
                },
                "reason": "unknown top-level field",
            }),
        )
        .await;

    assert_eq!(
        warned_fields(&res),
        ["evidence.ip", "evidence.favourite_colour", "reason"]
    );
    assert!(
        !res.body.to_string().contains("not-an-ip-address"),
        "a warning never echoes the value: {}",
        res.body
    );
    let answer = app
        .post(
            "/v1/checks",
            Some(&biz.key),
            &json!({"phone": phone, "category": "utility"}),
        )
        .await;
    assert_denied(&answer.body, "revoked", "after a revocation with a bad ip");
    let events = app.audit_events(&biz.id).await;
    let revoked = events
        .iter()
        .rfind(|e| e.event_type == "consent.revoked")
        .expect("the revocation is in the audit log");
    let data: Value = serde_json::from_str(&revoked.data).unwrap();
    assert_eq!(
        data["dropped_fields"],
        json!(["evidence.ip", "evidence.favourite_colour", "reason"]),
        "the audit event names the dropped fields"
    );
    assert!(!revoked.data.contains("not-an-ip-address"));

    // The export shows the evidence that was kept, without the dropped field.
    let export = app
        .post(
            "/v1/subjects/export",
            Some(&biz.key),
            &json!({"phone": phone}),
        )
        .await;
    let evidence = &export.body["revocations"][0]["evidence"];
    assert_eq!(
        evidence["source_url"], "https://shop.example/prefs",
        "{export:?}"
    );
    assert!(evidence.get("ip").is_none(), "{evidence}");

    // Without a phone there is nothing to record: still a 422.
    let no_phone = app
        .post(
            "/v1/revocations",
            Some(&biz.key),
            &json!({"channel": "web"}),
        )
        .await;
    no_phone.assert_problem(422, "validation_failed");
    assert_eq!(no_phone.body["errors"][0]["field"], "phone");
}

async fn an_unknown_category_widens_a_revocation_to_everything(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let phone = nl_phone(7);
    opt_in_at(
        &app,
        &biz.key,
        &phone,
        &["utility", "marketing"],
        Utc::now() - Duration::minutes(1),
    )
    .await;

    let res = app
        .post(
            "/v1/revocations",
            Some(&biz.key),
            &json!({"phone": phone, "channel": "carrier-pigeon", "categories": ["marketting"]}),
        )
        .await;

    assert_eq!(warned_fields(&res), ["categories", "channel"]);
    assert!(
        res.body["categories"].is_null(),
        "every category: {}",
        res.body
    );
    assert_eq!(res.body["channel"], "api");
    for category in ["utility", "marketing"] {
        let answer = app
            .post(
                "/v1/checks",
                Some(&biz.key),
                &json!({"phone": phone, "category": category}),
            )
            .await;
        assert_denied(&answer.body, "revoked", category);
    }
}

async fn a_huge_user_agent_never_loses_a_block(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let phone = nl_phone(8);
    opt_in_at(
        &app,
        &biz.key,
        &phone,
        &["utility"],
        Utc::now() - Duration::minutes(1),
    )
    .await;

    let res = app
        .post(
            "/v1/blocks",
            Some(&biz.key),
            &json!({
                "phone": phone,
                "channel": "web",
                "evidence": {"user_agent": "M".repeat(100_000), "source_url": "https://x.example/"},
            }),
        )
        .await;

    assert_eq!(warned_fields(&res), ["evidence.user_agent"]);
    let answer = app
        .post(
            "/v1/checks",
            Some(&biz.key),
            &json!({"phone": phone, "category": "utility"}),
        )
        .await;
    assert_denied(
        &answer.body,
        "blocked",
        "after a block with a 100,000-character user agent",
    );

    // The documented block evidence is accepted as it is (issue 9, 4).
    let documented = app
        .post(
            "/v1/blocks",
            Some(&biz.key),
            &json!({"phone": phone, "evidence": {"message_reference": "wamid.HBgL", "source_system": "wa-relay"}}),
        )
        .await;
    assert_eq!(warned_fields(&documented), Vec::<String>::new());
}

async fn a_bad_optional_field_never_loses_an_inbound_stop(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let phone = nl_phone(9);
    opt_in_at(
        &app,
        &biz.key,
        &phone,
        &["marketing"],
        Utc::now() - Duration::minutes(1),
    )
    .await;

    let res = app
        .post(
            "/v1/inbound-messages",
            Some(&biz.key),
            &json!({
                "phone": phone,
                "received_at": rfc3339(Utc::now()),
                "text": "STOP",
                "entry_point": "Not A Valid Entry Point!",
                "message_reference": "x".repeat(2_000),
                "platform": "whatsapp",
            }),
        )
        .await;

    assert_eq!(
        warned_fields(&res),
        ["entry_point", "message_reference", "platform"]
    );
    assert_eq!(res.body["keyword_action"], "opt_out");
    let answer = app
        .post(
            "/v1/checks",
            Some(&biz.key),
            &json!({"phone": phone, "category": "marketing"}),
        )
        .await;
    assert_denied(
        &answer.body,
        "revoked",
        "after a STOP with bad optional fields",
    );

    // received_at stays required: without it the message cannot be placed in time.
    let missing = app
        .post(
            "/v1/inbound-messages",
            Some(&biz.key),
            &json!({"phone": phone, "text": "STOP"}),
        )
        .await;
    missing.assert_problem(422, "validation_failed");
    assert_eq!(missing.body["errors"][0]["field"], "received_at");
}

async fn as_of_in_the_future_is_422_naming_as_of(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let phone = nl_phone(10);
    for path in ["/v1/checks", "/v1/checks/batch"] {
        let body = |as_of: DateTime<Utc>| json!({"phone": phone, "phones": [phone], "category": "utility", "as_of": rfc3339(as_of)});
        let body = |as_of| {
            let mut b = body(as_of);
            let o = b.as_object_mut().unwrap();
            if path.ends_with("batch") {
                o.remove("phone");
            } else {
                o.remove("phones");
            }
            b
        };
        let future = app
            .post(
                path,
                Some(&biz.key),
                &body(Utc::now() + Duration::seconds(200)),
            )
            .await;
        future.assert_problem(422, "validation_failed");
        assert_eq!(future.body["errors"][0]["field"], "as_of", "{path}");
        let now = app.post(path, Some(&biz.key), &body(Utc::now())).await;
        assert_eq!(now.status, 200, "{path}: {}", now.body);
    }
}

async fn a_truncated_body_is_400_on_every_json_endpoint(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    for path in [
        "/v1/checks",
        "/v1/checks/batch",
        "/v1/opt-ins",
        "/v1/revocations",
        "/v1/blocks",
        "/v1/unblocks",
        "/v1/inbound-messages",
        "/v1/subjects/export",
        "/v1/subjects/erase",
        "/v1/keys",
    ] {
        // An unknown field before the truncation: serde meets it first.
        let mut res = app
            .client()
            .post(format!("{}{path}", app.address))
            .insert_header(("authorization", format!("Bearer {}", biz.key)))
            .insert_header(("content-type", "application/json"))
            .send_body(r#"{"unknown_field": 1, "category": "utility", "phones": ["+316"#)
            .await
            .unwrap();
        let body: Value = res.json().await.unwrap();
        assert_eq!(res.status().as_u16(), 400, "{path}: {body}");
        assert_eq!(body["code"], "malformed_body", "{path}");
    }
}

// ---- several nodes, clocks apart (SPEC 3, 8) -----------------------------------------

async fn a_node_behind_honours_a_revocation_through_a_node_ahead(app: TestApp) {
    // `app` is the node behind (the system clock); `ahead` runs 5 s ahead.
    let ahead = another_node(&app, Duration::seconds(5)).await;
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let phone = nl_phone(11);
    opt_in_at(
        &app,
        &biz.key,
        &phone,
        &["utility"],
        Utc::now() - Duration::minutes(1),
    )
    .await;
    assert_eq!(
        check_on(&app.address, &biz.key, &phone, "utility").await["allowed"],
        true
    );

    let revocation = post_on(
        &ahead,
        "/v1/revocations",
        &biz.key,
        &json!({"phone": phone, "channel": "app"}),
    )
    .await;
    let recorded =
        DateTime::parse_from_rfc3339(revocation["recorded_at"].as_str().unwrap()).unwrap();
    assert!(
        recorded > Utc::now() + Duration::seconds(3),
        "the node ahead dates it by its own clock: {revocation}"
    );

    assert_denied(
        &check_on(&app.address, &biz.key, &phone, "utility").await,
        "revoked",
        "the node behind, at once",
    );
    assert_denied(
        &check_on(&ahead, &biz.key, &phone, "utility").await,
        "revoked",
        "the node ahead",
    );
}

async fn a_revocation_through_a_node_behind_beats_an_opt_in_through_a_node_ahead(app: TestApp) {
    // Opt-in through the node ahead, then at once a revocation through the node
    // behind: the revocation was acknowledged last, so it is the latest word even
    // though the node behind's clock says it happened 5 s before the opt-in.
    let ahead = another_node(&app, Duration::seconds(5)).await;
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let phone = nl_phone(12);
    post_on(
        &ahead,
        "/v1/opt-ins",
        &biz.key,
        &json!({
            "phone": phone,
            "categories": ["utility"],
            "channel": "web",
            "evidence": {
                "collected_at": rfc3339(Utc::now() + Duration::seconds(5)),
                "consent_text_version": "v1",
                "form_id": "signup",
            },
        }),
    )
    .await;
    let revocation = app
        .post(
            "/v1/revocations",
            Some(&biz.key),
            &json!({"phone": phone, "channel": "app"}),
        )
        .await;
    assert_eq!(revocation.status, 201, "{}", revocation.body);

    for node in [app.address.as_str(), ahead.as_str()] {
        assert_denied(
            &check_on(node, &biz.key, &phone, "utility").await,
            "revoked",
            node,
        );
    }
}

async fn a_key_revoked_through_one_node_is_refused_by_the_next_request_on_another(app: TestApp) {
    let other = another_node(&app, Duration::zero()).await;
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let (sender_id, sender) = app.create_key(&biz.key, "sender", &["checks:read"]).await;
    let phone = nl_phone(14);
    // The other node has used (and so keeps) the key.
    assert_eq!(
        check_on(&other, &sender, &phone, "utility").await["reason"],
        "no_consent"
    );

    let revoked = app
        .delete(&format!("/v1/keys/{sender_id}"), Some(&biz.key))
        .await;
    assert!(revoked.status < 300, "{}", revoked.body);

    let mut res = awc::Client::default()
        .post(format!("{other}/v1/checks"))
        .insert_header(("authorization", format!("Bearer {sender}")))
        .send_json(&json!({"phone": phone, "category": "utility"}))
        .await
        .unwrap();
    assert_eq!(
        res.status().as_u16(),
        401,
        "refused on the other node's very next request: {:?}",
        res.body().await
    );
}

async fn an_opt_in_and_an_erasure_through_one_node_are_answered_by_another(app: TestApp) {
    let other = another_node(&app, Duration::zero()).await;
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let phone = nl_phone(15);
    assert_eq!(
        check_on(&other, &biz.key, &phone, "utility").await["reason"],
        "no_consent"
    );

    opt_in_at(&app, &biz.key, &phone, &["utility"], Utc::now()).await;
    assert_eq!(
        check_on(&other, &biz.key, &phone, "utility").await["allowed"],
        true,
        "the other node caught up before answering"
    );

    let erased = app
        .post(
            "/v1/subjects/erase",
            Some(&biz.key),
            &json!({"phone": phone}),
        )
        .await;
    assert_eq!(erased.status, 200, "{}", erased.body);
    assert_denied(
        &check_on(&other, &biz.key, &phone, "utility").await,
        "suppressed",
        "after an erasure through the first node",
    );
}

#[actix_web::test]
async fn a_second_server_on_one_sqlite_file_refuses_to_start() {
    let app = spawn_app_with(crate::helpers::Backend::Sqlite, |_| {})
        .await
        .unwrap();
    let mut settings = app.settings.clone();
    settings.bind = "127.0.0.1:0".parse().unwrap();
    let refused = Application::build(settings)
        .await
        .err()
        .expect("a second server on the same SQLite file does not start");
    assert!(
        matches!(refused, consentgate::startup::StartupError::SqliteInUse(_)),
        "{refused}"
    );
    let message = refused.to_string();
    assert!(
        message.contains("one server per SQLite file") && message.contains("PostgreSQL"),
        "says why and what to do instead: {message}"
    );
    // The first server is untouched.
    let biz = app.create_business("Acme", "whatsapp-global").await;
    assert!(!biz.key.is_empty());
}

#[actix_web::test]
async fn on_sqlite_another_process_s_opt_ins_show_within_the_poll_interval() {
    use consentgate::store::{Store, StoreSettings};

    let app = spawn_app_with(crate::helpers::Backend::Sqlite, |_| {})
        .await
        .unwrap();
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let phone = nl_phone(21);
    // Known to the server: its fence is now this process's own number.
    let before = app
        .post(
            "/v1/checks",
            Some(&biz.key),
            &json!({"phone": phone, "category": "utility"}),
        )
        .await;
    assert_denied(&before.body, "no_consent", "before the import");

    // Another process on the same file (what `consentgate import` is): a store
    // and a ledger of their own, sharing nothing in memory with the server.
    let other = Store::connect(&StoreSettings {
        url: app.settings.database.clone(),
        pool_size: 2,
        acquire_timeout: std::time::Duration::from_secs(5),
    })
    .unwrap();
    let ledger = app.ledger_on(consentgate::writer::Writer::new(other));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("legacy.csv");
    std::fs::write(
        &file,
        format!(
            "phone,categories,channel,collected_at,consent_text_version,source_system,form_id,store_id,default_region\n\
             {phone},utility,web,{},v1,crm,f-1,,\n",
            rfc3339(Utc::now() - Duration::days(1))
        ),
    )
    .unwrap();
    let summary = tokio::task::spawn_blocking(move || {
        consentgate::import::run(
            &ledger,
            &consentgate::import::ImportOptions {
                business_id: biz.id.parse().unwrap(),
                file,
                rejects: None,
                resume: false,
                dry_run: false,
                batch_size: 10,
                stop_after_batches: None,
            },
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(summary.imported, 1, "{summary:?}");

    // A late yes is allowed (SPEC 8); it must come within a few poll intervals.
    let started = std::time::Instant::now();
    let deadline = consentgate::store::fence::POLL_EVERY * 10;
    loop {
        let answer = app
            .post(
                "/v1/checks",
                Some(&biz.key),
                &json!({"phone": phone, "category": "utility"}),
            )
            .await;
        if answer.body["allowed"] == true {
            break;
        }
        assert!(
            started.elapsed() < deadline,
            "the imported opt-in never showed: {}",
            answer.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
