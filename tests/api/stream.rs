//! `POST /v1/checks/stream`: a campaign as NDJSON in and out (SPEC sections 5, 9).

use chrono::Utc;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::TestApp;

backend_tests!(
    a_stream_answers_every_line_in_order_then_a_summary,
    a_stream_needs_ndjson_a_known_category_and_its_scope,
    a_long_stream_answers_in_bounded_chunks,
);

async fn opted_in(app: &TestApp, key: &str, phone: &str) {
    let res = app
        .post(
            "/v1/opt-ins",
            Some(key),
            &json!({"phone": phone, "categories": ["utility"], "channel": "web",
                    "evidence": {"collected_at": Utc::now().to_rfc3339(),
                                 "consent_text_version": "v1", "form_id": "f"}}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
}

/// Posts `body` as NDJSON; returns the status and the answer lines.
async fn stream(app: &TestApp, key: &str, query: &str, body: String) -> (u16, Vec<Value>) {
    let mut res = app
        .client()
        .post(format!("{}/v1/checks/stream?{query}", app.address))
        .insert_header(("authorization", format!("Bearer {key}")))
        .insert_header(("content-type", "application/x-ndjson"))
        .send_body(body)
        .await
        .unwrap();
    let status = res.status().as_u16();
    let bytes = res.body().limit(256 * 1024 * 1024).await.unwrap();
    let lines = String::from_utf8(bytes.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| Value::String(l.to_owned())))
        .collect();
    (status, lines)
}

async fn a_stream_answers_every_line_in_order_then_a_summary(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    opted_in(&app, &biz.key, "+31612340001").await;
    opted_in(&app, &biz.key, "+31612340002").await;
    let body = [
        r#"{"phone":"+31612340001"}"#,
        r#""+31 6 1234 0002""#,
        "",
        r#"{"phone":"+31612340003"}"#,
        r#"{"phone":"12"}"#,
        "not json",
        r#"{"phone":"0612340001"}"#,
    ]
    .join("\n");
    let (status, lines) = stream(&app, &biz.key, "category=utility&default_region=NL", body).await;
    assert_eq!(status, 200);
    let reasons: Vec<&str> = lines[..6]
        .iter()
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "consent",
            "consent",
            "no_consent",
            "invalid_phone",
            "invalid_line",
            "consent"
        ],
        "{lines:?}"
    );
    assert_eq!(
        lines[1]["phone"], "+31 6 1234 0002",
        "numbers echoed as sent"
    );
    assert_eq!(lines[0]["allowed"], true);
    assert_eq!(lines[2]["allowed"], false);
    let summary = &lines[6]["summary"];
    assert_eq!(summary["total"], 6, "{summary}");
    assert_eq!(summary["allowed"], 3);
    assert_eq!(summary["counts"]["invalid_line"], 1);
    assert_eq!(lines.len(), 7, "nothing after the summary");
}

async fn a_stream_needs_ndjson_a_known_category_and_its_scope(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let mut res = app
        .client()
        .post(format!("{}/v1/checks/stream?category=utility", app.address))
        .insert_header(("authorization", format!("Bearer {}", biz.key)))
        .send_json(&json!({"phone": "+31612340001"}))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 415, "{:?}", res.body().await);
    let (status, lines) = stream(&app, &biz.key, "category=spam", "\"+31612340001\"".into()).await;
    assert_eq!(status, 422);
    assert_eq!(lines.concat_errors(), ["category"]);
    let (_, writer) = app
        .create_key(&biz.key, "writer", &["consents:write"])
        .await;
    let (status, _) = stream(&app, &writer, "category=utility", "\"+31612340001\"".into()).await;
    assert_eq!(status, 403);
}

trait Errors {
    fn concat_errors(&self) -> Vec<String>;
}

impl Errors for Vec<Value> {
    fn concat_errors(&self) -> Vec<String> {
        self.iter()
            .flat_map(|v| v["errors"].as_array().cloned().unwrap_or_default())
            .map(|e| e["field"].as_str().unwrap().to_owned())
            .collect()
    }
}

async fn a_long_stream_answers_in_bounded_chunks(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    opted_in(&app, &biz.key, "+31612359999").await;
    let n = 20_000;
    let body: String = (0..n)
        .map(|i| format!("{{\"phone\":\"+3161235{i:04}\"}}\n"))
        .collect();
    let (status, lines) = stream(&app, &biz.key, "category=utility", body).await;
    assert_eq!(status, 200);
    assert_eq!(lines.len(), n + 1);
    assert_eq!(lines[n]["summary"]["total"], n);
    assert_eq!(lines[9999]["reason"], "consent", "+31612359999 is opted in");
    assert_eq!(lines[n]["summary"]["allowed"], 1);
}
