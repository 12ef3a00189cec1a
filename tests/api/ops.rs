//! Operations: liveness, readiness, metrics, request ids, start-up checks.

use consentgate::config::MasterKeySource;
use consentgate::startup::{Application, StartupError};
use consentgate::store::Backend;
use secrecy::SecretString;

use crate::backend_tests;
use crate::helpers::{TestApp, test_settings};

backend_tests!(
    health_and_readiness_answer,
    metrics_count_requests_by_route_and_status,
    metrics_report_the_projections_footprint,
    every_response_carries_a_request_id,
    answered_checks_are_logged_at_debug_and_everything_else_at_info,
    a_different_master_key_is_refused_at_start_up,
);

async fn health_and_readiness_answer(app: TestApp) {
    let res = app.get("/healthz", None).await;
    assert_eq!((res.status, res.body["status"].as_str()), (200, Some("ok")));
    let res = app.get("/readyz", None).await;
    assert_eq!(
        (res.status, res.body["status"].as_str()),
        (200, Some("ready"))
    );
}

async fn metrics_count_requests_by_route_and_status(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    app.get("/v1/keys", Some(&biz.key)).await;
    app.get("/v1/keys", None).await;
    let res = app.get("/metrics", None).await;
    assert_eq!(res.status, 200);
    let text = res.body.as_str().unwrap();
    assert!(
        text.contains(
            r#"consentgate_http_requests_total{method="GET",route="/v1/keys",status="2xx"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(
        r#"consentgate_http_requests_total{method="GET",route="/v1/keys",status="4xx"} 1"#
    ));
    assert!(text.contains(r#"consentgate_http_request_duration_seconds_bucket{le="#));
}

/// The value of an unlabelled series (a gauge, or a counter's `_total`) in the
/// exposition.
fn gauge(text: &str, name: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} is exposed: {text}"))
        .trim()
        .parse()
        .expect("an integer")
}

async fn metrics_report_the_projections_footprint(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    for phone in ["+31612345678", "+31612345679", "+31612345670"] {
        let res = app
            .post(
                "/v1/opt-ins",
                Some(&biz.key),
                &serde_json::json!({"phone": phone, "categories": ["utility"], "channel": "api",
                    "evidence": {"collected_at": chrono::Utc::now().to_rfc3339(),
                                 "consent_text_version": "v1", "source_system": "crm"}}),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
    }
    let res = app.get("/metrics", None).await;
    let text = res.body.as_str().unwrap();
    assert_eq!(gauge(text, "consentgate_projection_subjects"), 3, "{text}");
    let bytes = gauge(text, "consentgate_projection_bytes");
    // Three 48-byte entries at least, and a small table: not megabytes.
    assert!((3 * 48..1 << 20).contains(&bytes), "{bytes}");
    // Each opt-in of a new number was installed from its batch, none read back.
    let counts = |text: &str| {
        (
            gauge(text, "consentgate_projection_batch_installs_total"),
            gauge(text, "consentgate_projection_catch_ups_total"),
        )
    };
    assert_eq!(counts(text), (3, 0), "{text}");
    // A revocation's batch hands nothing over: its write-through reads it back.
    let res = app
        .post(
            "/v1/revocations",
            Some(&biz.key),
            &serde_json::json!({"phone": "+31612345678", "channel": "web"}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    let res = app.get("/metrics", None).await;
    assert_eq!(counts(res.body.as_str().unwrap()), (3, 1));
}

async fn every_response_carries_a_request_id(app: TestApp) {
    let res = app.get("/healthz", None).await;
    let id = res.header("x-request-id").expect("a request id");
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    let res = app.get("/nope", None).await;
    assert!(res.header("x-request-id").is_some(), "errors too");
    let mut res = app
        .client()
        .get(format!("{}/healthz", app.address))
        .insert_header(("x-request-id", "trace-abc-123"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers().get("x-request-id").unwrap(),
        "trace-abc-123",
        "a sane client id is kept"
    );
    let _ = res.body().await;
}

async fn a_different_master_key_is_refused_at_start_up(app: TestApp) {
    let mut settings = app.settings.clone();
    settings.master_key = MasterKeySource::Inline(SecretString::from(
        consentgate::crypto::master_key::MasterKey::generate().to_base64(),
    ));
    match Application::build(settings).await {
        Err(StartupError::WrongMasterKey) => {}
        Err(other) => panic!("expected WrongMasterKey, got {other}"),
        Ok(_) => panic!("a service with another master key must not start"),
    }
    // The right key passes the check (on SQLite the running server's lock then
    // stops a second one: one server per file).
    let dir = tempfile::tempdir().unwrap();
    let mut same = test_settings(app.settings.database.clone(), dir.path());
    same.master_key = app.settings.master_key.clone();
    match Application::build(same).await {
        Ok(_) => {}
        Err(StartupError::SqliteInUse(_)) if app.store.backend() == Backend::Sqlite => {}
        Err(other) => panic!("the right key starts: {other}"),
    }
}

/// The request line logged for the request with this id: its JSON.
fn request_line(request_id: &str) -> serde_json::Value {
    let logs = crate::helpers::captured_logs();
    let line = logs
        .lines()
        .find(|l| l.contains(request_id) && l.contains("request answered"))
        .unwrap_or_else(|| panic!("no request line for {request_id}"));
    serde_json::from_str(line).unwrap()
}

async fn answered_checks_are_logged_at_debug_and_everything_else_at_info(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let send = |path: &'static str, key: Option<String>, body: serde_json::Value, id: String| {
        let mut req = app
            .client()
            .post(format!("{}{path}", app.address))
            .insert_header(("x-request-id", id));
        if let Some(key) = key {
            req = req.insert_header(("authorization", format!("Bearer {key}")));
        }
        async move {
            let mut res = req.send_json(&body).await.unwrap();
            let _ = res.body().await;
            res.status().as_u16()
        }
    };
    let check = serde_json::json!({"phone": "+31612345678", "category": "utility"});
    let answered = format!("answered-{run}");
    let refused = format!("refused-{run}");
    let batch = format!("batch-{run}");
    assert_eq!(
        send(
            "/v1/checks",
            Some(biz.key.clone()),
            check.clone(),
            answered.clone()
        )
        .await,
        200
    );
    assert_eq!(send("/v1/checks", None, check, refused.clone()).await, 401);
    let phones = serde_json::json!({"phones": ["+31612345678"], "category": "utility"});
    assert_eq!(
        send(
            "/v1/checks/batch",
            Some(biz.key.clone()),
            phones,
            batch.clone()
        )
        .await,
        200
    );

    let line = request_line(&answered);
    assert_eq!(line["level"], "DEBUG", "an answered check: {line}");
    assert_eq!(
        line["span"]["business_id"],
        biz.id.as_str(),
        "the request's span names the business: {line}"
    );
    assert_eq!(request_line(&refused)["level"], "INFO", "a refused check");
    assert_eq!(request_line(&batch)["level"], "INFO", "a batch");
}
