//! Channel connections and the platforms' webhooks (SPEC section 10), on both
//! backends. Payloads follow the shapes of Meta's WhatsApp Cloud API webhook
//! reference and Twilio's Messaging webhook; signatures are computed here,
//! independently of the service's code.

use base64::Engine;
use chrono::Utc;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{BusinessFixture, Resp, TestApp, captured_logs};

backend_tests!(
    channels_are_created_listed_and_deleted_without_ever_showing_a_secret,
    channel_requests_name_every_invalid_field,
    whatsapp_handshake_echoes_the_challenge_only_for_the_verify_token,
    whatsapp_webhook_records_a_multi_entry_payload_once,
    whatsapp_webhook_refuses_a_missing_or_wrong_signature_and_records_nothing,
    whatsapp_button_reply_stop_revokes_every_category,
    whatsapp_status_131050_revokes_marketing,
    twilio_webhook_checks_its_signature_and_honours_opt_out_type,
    webhooks_of_unknown_deleted_or_other_kind_channels_are_not_found,
);

const APP_SECRET: &str = "wa-app-secret-7f3c9e1d2b";
const VERIFY_TOKEN: &str = "wa-verify-token-51ab";
const AUTH_TOKEN: &str = "tw-auth-token-9c0e77aa";
const PHONE_NUMBER_ID: &str = "106540352242922";
const TWILIO_URL: &str = "https://consent.example.com/hooks/twilio?tenant=acme";

async fn whatsapp_channel(app: &TestApp, biz: &BusinessFixture) -> String {
    let res = app
        .post(
            "/v1/channels",
            Some(&biz.key),
            &json!({"kind": "whatsapp", "name": "Main WABA", "app_secret": APP_SECRET,
                    "verify_token": VERIFY_TOKEN, "phone_number_ids": [PHONE_NUMBER_ID]}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    res.body["id"].as_str().unwrap().to_owned()
}

async fn twilio_channel(app: &TestApp, biz: &BusinessFixture) -> String {
    let res = app
        .post(
            "/v1/channels",
            Some(&biz.key),
            &json!({"kind": "twilio", "auth_token": AUTH_TOKEN,
                    "account_sid": "AC0123456789abcdef0123456789abcdef", "webhook_url": TWILIO_URL}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    res.body["id"].as_str().unwrap().to_owned()
}

fn meta_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Twilio's scheme: the URL, then each parameter sorted by name, name and value
/// concatenated; HMAC-SHA1 under the auth token; base64.
fn twilio_signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

async fn post_raw(
    app: &TestApp,
    path: &str,
    content_type: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Resp {
    let mut req = app
        .client()
        .post(format!("{}{path}", app.address))
        .insert_header(("content-type", content_type));
    for (name, value) in headers {
        req = req.insert_header((*name, value.as_str()));
    }
    let mut res = req.send_body(body).await.unwrap();
    let bytes = res.body().await.unwrap();
    Resp {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body: serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())),
    }
}

async fn post_whatsapp(
    app: &TestApp,
    channel: &str,
    payload: &Value,
    secret: Option<&str>,
) -> Resp {
    let body = serde_json::to_vec(payload).unwrap();
    let headers: Vec<(&str, String)> = secret
        .map(|s| ("x-hub-signature-256", meta_signature(s, &body)))
        .into_iter()
        .collect();
    post_raw(
        app,
        &format!("/v1/webhooks/whatsapp/{channel}"),
        "application/json",
        &headers,
        body,
    )
    .await
}

async fn post_twilio(app: &TestApp, channel: &str, params: &[(&str, &str)], token: &str) -> Resp {
    let body = serde_urlencoded::to_string(params).unwrap().into_bytes();
    let signature = twilio_signature(token, TWILIO_URL, params);
    post_raw(
        app,
        &format!("/v1/webhooks/twilio/{channel}"),
        "application/x-www-form-urlencoded",
        &[("x-twilio-signature", signature)],
        body,
    )
    .await
}

/// Consent given a minute ago (the platforms' timestamps have whole seconds: a
/// signal in the same second as the opt-in would not be its later word).
async fn opt_in(app: &TestApp, biz: &BusinessFixture, phone: &str, categories: &[&str]) {
    let res = app
        .post(
            "/v1/opt-ins",
            Some(&biz.key),
            &json!({"phone": phone, "categories": categories, "channel": "web",
                    "evidence": {"collected_at": (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339(),
                                 "consent_text_version": "v1", "form_id": "signup"}}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
}

async fn check(
    app: &TestApp,
    biz: &BusinessFixture,
    phone: &str,
    category: &str,
) -> (bool, String) {
    let res = app
        .post(
            "/v1/checks",
            Some(&biz.key),
            &json!({"phone": phone, "category": category}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    (
        res.body["allowed"].as_bool().unwrap(),
        res.body["reason"].as_str().unwrap().to_owned(),
    )
}

fn value(phone_number_id: &str) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
    })
}

fn text_message(from: &str, id: &str, text: &str) -> Value {
    json!({"from": from, "id": id, "timestamp": Utc::now().timestamp().to_string(),
           "type": "text", "text": {"body": text}})
}

fn payload(entries: Vec<Value>) -> Value {
    json!({"object": "whatsapp_business_account", "entry": entries})
}

fn change(field: &str, mut value: Value, key: &str, items: Value) -> Value {
    value[key] = items;
    json!({"value": value, "field": field})
}

async fn channels_are_created_listed_and_deleted_without_ever_showing_a_secret(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let other = app.create_business("Other", "whatsapp-global").await;
    let wa = whatsapp_channel(&app, &biz).await;
    let tw = twilio_channel(&app, &biz).await;

    let list = app.get("/v1/channels", Some(&biz.key)).await;
    assert_eq!(list.status, 200, "{}", list.body);
    let channels = list.body["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 2);
    assert_eq!(channels[0]["id"], wa.as_str());
    assert_eq!(channels[0]["kind"], "whatsapp");
    assert_eq!(channels[1]["kind"], "twilio");
    assert_eq!(
        channels[0]["webhook_path"],
        format!("/v1/webhooks/whatsapp/{wa}")
    );
    assert!(
        channels[0]["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("fp_")
    );
    assert_ne!(channels[0]["fingerprint"], channels[1]["fingerprint"]);
    let shown = list.body.to_string();
    for secret in [APP_SECRET, VERIFY_TOKEN, AUTH_TOKEN] {
        assert!(!shown.contains(secret), "the list shows no secret");
    }

    // Tenants never see each other's connections.
    let theirs = app.get("/v1/channels", Some(&other.key)).await;
    assert_eq!(theirs.body["channels"], json!([]));
    app.delete(&format!("/v1/channels/{wa}"), Some(&other.key))
        .await
        .assert_problem(404, "not_found");

    assert_eq!(
        app.delete(&format!("/v1/channels/{wa}"), Some(&biz.key))
            .await
            .status,
        204
    );
    assert_eq!(
        app.delete(&format!("/v1/channels/{wa}"), Some(&biz.key))
            .await
            .status,
        204,
        "deleting again changes nothing"
    );
    let list = app.get("/v1/channels", Some(&biz.key)).await;
    assert_eq!(list.body["channels"].as_array().unwrap().len(), 1);

    let events = app.audit_events(&biz.id).await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types.iter().filter(|t| **t == "channel.created").count(), 2);
    assert_eq!(types.iter().filter(|t| **t == "channel.revoked").count(), 1);
    for event in &events {
        for secret in [APP_SECRET, VERIFY_TOKEN, AUTH_TOKEN] {
            assert!(!event.data.contains(secret), "no secret in the audit log");
        }
    }
    // Nor in the database in plaintext, nor in any log line.
    let rows = app.store.conn().unwrap();
    drop(rows);
    let logs = captured_logs();
    for secret in [APP_SECRET, VERIFY_TOKEN, AUTH_TOKEN] {
        assert!(!logs.contains(secret), "no secret in the logs");
    }
    let _ = tw;
}

async fn channel_requests_name_every_invalid_field(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let res = app
        .post(
            "/v1/channels",
            Some(&biz.key),
            &json!({"kind": "whatsapp", "verify_token": "", "phone_number_ids": ["+1 555"],
                    "auth_token": "x"}),
        )
        .await;
    res.assert_problem(422, "validation_failed");
    let fields: Vec<&str> = res.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for field in [
        "auth_token",
        "app_secret",
        "verify_token",
        "phone_number_ids[0]",
    ] {
        assert!(fields.contains(&field), "{field} in {fields:?}");
    }
    let res = app
        .post(
            "/v1/channels",
            Some(&biz.key),
            &json!({"kind": "twilio", "auth_token": "t", "account_sid": "nope",
                    "webhook_url": "ftp://x"}),
        )
        .await;
    res.assert_problem(422, "validation_failed");
    let text = res.body.to_string();
    assert!(
        text.contains("account_sid") && text.contains("webhook_url"),
        "{text}"
    );
    let res = app
        .post("/v1/channels", Some(&biz.key), &json!({"kind": "telegram"}))
        .await;
    res.assert_problem(422, "validation_failed");
    assert!(
        app.get("/v1/channels", Some(&biz.key)).await.body["channels"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

async fn whatsapp_handshake_echoes_the_challenge_only_for_the_verify_token(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let wa = whatsapp_channel(&app, &biz).await;
    let path = |mode: &str, token: &str| {
        format!(
            "/v1/webhooks/whatsapp/{wa}?hub.mode={mode}&hub.verify_token={token}&hub.challenge=1158201444"
        )
    };
    let ok = app.page(&path("subscribe", VERIFY_TOKEN), &[]).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body, "1158201444");
    assert!(ok.header("content-type").unwrap().starts_with("text/plain"));

    for (mode, token) in [
        ("subscribe", "wrong-token"),
        ("subscribe", ""),
        ("unsubscribe", VERIFY_TOKEN),
    ] {
        let res = app.get(&path(mode, token), None).await;
        res.assert_problem(403, "verification_refused");
        assert!(!res.body.to_string().contains("1158201444"));
    }
    let res = app
        .get(
            &format!("/v1/webhooks/whatsapp/{wa}?hub.mode=subscribe"),
            None,
        )
        .await;
    res.assert_problem(403, "verification_refused");
}

async fn whatsapp_webhook_records_a_multi_entry_payload_once(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let wa = whatsapp_channel(&app, &biz).await;
    // B and C opted in to marketing through the API before.
    opt_in(&app, &biz, "+31612340002", &["marketing", "utility"]).await;
    opt_in(&app, &biz, "+31612340003", &["marketing"]).await;
    let ts = Utc::now().timestamp().to_string();

    let mut from_ad = text_message(
        "31612340001",
        "wamid.HBgLMzE2MTIzNDAwMDEVAgASGBQzQUFBQUFBQUFBQUFBQUFBQUFBAA==",
        "Hi, is this still available?",
    );
    from_ad["referral"] = json!({"source_url": "https://fb.me/abc", "source_id": "120211",
                                 "source_type": "ad", "headline": "Sale", "body": "50% off",
                                 "media_type": "image", "ctwa_clid": "ARAkLkA8rmlF"});
    from_ad["unknown_future_field"] = json!({"nested": [1, 2, 3]});
    let payload = payload(vec![
        json!({"id": "102290129340398", "changes": [
            change("messages", value(PHONE_NUMBER_ID), "messages", json!([from_ad])),
            {"field": "account_alerts", "value": {"entity_type": "WABA", "alert_info": {}}},
        ]}),
        json!({"id": "102290129340398", "changes": [
            change("user_preferences", value(PHONE_NUMBER_ID), "user_preferences", json!([
                {"wa_id": "31612340002", "detail": "User requested to stop marketing messages",
                 "category": "marketing_messages", "value": "stop", "timestamp": ts}
            ])),
        ]}),
        json!({"id": "102290129340398", "changes": [
            change("messages", value("999999999999999"), "messages",
                   json!([text_message("31612340009", "wamid.unserved", "STOP")])),
            change("messages", value(PHONE_NUMBER_ID), "messages", json!([
                text_message("12", "wamid.badnumber", "STOP"),
                {"id": "wamid.nofrom"},
                text_message("31612340003", "wamid.plain", "Where is my order?"),
            ])),
        ]}),
    ]);
    let first = post_whatsapp(&app, &wa, &payload, Some(APP_SECRET)).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["recorded"], 3, "{}", first.body);
    // account_alerts, the unserved number, the unparsable number, the item without `from`.
    assert_eq!(first.body["skipped"], 4, "{}", first.body);

    // A: a window from the ad (72 h); C: an ordinary window; B: marketing stopped.
    let events = app.audit_events(&biz.id).await;
    let windows: Vec<Value> = events
        .iter()
        .filter(|e| e.event_type == "window.opened")
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    assert_eq!(windows.len(), 2);
    assert_eq!(windows[0]["entry_point"], "click_to_chat_ad");
    assert!(windows[1]["entry_point"].is_null());
    assert!(
        events
            .iter()
            .all(|e| e.actor == format!("channel:{wa}") || !e.event_type.starts_with("window"))
    );
    assert_eq!(
        check(&app, &biz, "+31612340001", "service").await,
        (true, "service_window".into())
    );
    assert_eq!(
        check(&app, &biz, "+31612340002", "marketing").await.1,
        "revoked"
    );
    assert_eq!(
        check(&app, &biz, "+31612340002", "utility").await,
        (true, "consent".into())
    );
    assert_eq!(
        check(&app, &biz, "+31612340003", "marketing").await,
        (true, "consent".into())
    );
    assert_eq!(
        check(&app, &biz, "+31612340009", "service").await.1,
        "window_closed"
    );

    // Redelivered as is: nothing recorded twice.
    let count = app.audit_events(&biz.id).await.len();
    let again = post_whatsapp(&app, &wa, &payload, Some(APP_SECRET)).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["recorded"], 0);
    assert_eq!(again.body["replayed"], 3);
    assert_eq!(app.audit_events(&biz.id).await.len(), count);

    // The person resumes marketing: what the stop revoked is in force again.
    let resume = payload_of_preference("31612340002", "resume");
    let res = post_whatsapp(&app, &wa, &resume, Some(APP_SECRET)).await;
    assert_eq!(res.body["recorded"], 1, "{}", res.body);
    assert_eq!(
        check(&app, &biz, "+31612340002", "marketing").await,
        (true, "consent".into())
    );
    // A resume for someone who never stopped grants nothing.
    let res = post_whatsapp(
        &app,
        &wa,
        &payload_of_preference("31612340001", "resume"),
        Some(APP_SECRET),
    )
    .await;
    assert_eq!(res.body["unchanged"], 1, "{}", res.body);
    assert_eq!(
        check(&app, &biz, "+31612340001", "marketing").await.1,
        "no_consent"
    );

    // Metrics count what was skipped, under closed labels only.
    let metrics = app.get("/metrics", None).await;
    let text = metrics.body.as_str().unwrap();
    assert!(text.contains("consentgate_channel_webhook_items_total{platform=\"whatsapp\",outcome=\"unserved_number\"}"), "{text}");
    assert!(text.contains("outcome=\"unparsable_phone\""), "{text}");
    assert!(
        !text.contains("wamid") && !text.contains("31612340"),
        "no ids or numbers in metrics"
    );
    let logs = captured_logs();
    assert!(
        !logs.contains("31612340001") && !logs.contains("Where is my order"),
        "no number or text logged"
    );
}

fn payload_of_preference(wa_id: &str, value_: &str) -> Value {
    payload(vec![json!({"id": "102290129340398", "changes": [
        change("user_preferences", value(PHONE_NUMBER_ID), "user_preferences", json!([
            {"wa_id": wa_id, "detail": "", "category": "marketing_messages", "value": value_,
             "timestamp": (Utc::now().timestamp() + 1).to_string()}
        ])),
    ]})])
}

async fn whatsapp_webhook_refuses_a_missing_or_wrong_signature_and_records_nothing(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let wa = whatsapp_channel(&app, &biz).await;
    let payload = payload(vec![json!({"id": "1", "changes": [
        change("messages", value(PHONE_NUMBER_ID), "messages",
               json!([text_message("31612340001", "wamid.sig", "STOP")])),
    ]})]);
    let before = app.audit_events(&biz.id).await.len();
    post_whatsapp(&app, &wa, &payload, None)
        .await
        .assert_problem(401, "invalid_signature");
    post_whatsapp(&app, &wa, &payload, Some("not-the-app-secret"))
        .await
        .assert_problem(401, "invalid_signature");
    // A signature of other bytes (the same JSON, re-serialised differently).
    let body = serde_json::to_vec_pretty(&payload).unwrap();
    let signed_compact = meta_signature(APP_SECRET, &serde_json::to_vec(&payload).unwrap());
    post_raw(
        &app,
        &format!("/v1/webhooks/whatsapp/{wa}"),
        "application/json",
        &[("x-hub-signature-256", signed_compact)],
        body,
    )
    .await
    .assert_problem(401, "invalid_signature");
    // Garbage that is not JSON is refused by its signature before any parsing.
    post_raw(
        &app,
        &format!("/v1/webhooks/whatsapp/{wa}"),
        "application/json",
        &[("x-hub-signature-256", "sha256=00".into())],
        b"{not json".to_vec(),
    )
    .await
    .assert_problem(401, "invalid_signature");
    assert_eq!(
        app.audit_events(&biz.id).await.len(),
        before,
        "nothing recorded"
    );
    assert_eq!(
        check(&app, &biz, "+31612340001", "service").await.1,
        "window_closed"
    );
    // An API key is no substitute for the signature.
    let res = app
        .post(
            &format!("/v1/webhooks/whatsapp/{wa}"),
            Some(&biz.key),
            &payload,
        )
        .await;
    res.assert_problem(401, "invalid_signature");
}

async fn whatsapp_button_reply_stop_revokes_every_category(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let wa = whatsapp_channel(&app, &biz).await;
    opt_in(&app, &biz, "+31612340004", &["marketing", "utility"]).await;
    let reply = json!({"from": "31612340004", "id": "wamid.button", "timestamp": Utc::now().timestamp().to_string(),
                       "type": "interactive", "context": {"from": "15550783881", "id": "wamid.ctx"},
                       "interactive": {"type": "button_reply", "button_reply": {"id": "opt-out-btn", "title": "Stop!"}}});
    let res = post_whatsapp(
        &app,
        &wa,
        &payload(vec![json!({"id": "1", "changes": [change("messages", value(PHONE_NUMBER_ID), "messages", json!([reply]))]})]),
        Some(APP_SECRET),
    )
    .await;
    assert_eq!(res.body["recorded"], 1, "{}", res.body);
    assert_eq!(
        check(&app, &biz, "+31612340004", "marketing").await.1,
        "revoked"
    );
    assert_eq!(
        check(&app, &biz, "+31612340004", "utility").await.1,
        "revoked"
    );
    let revoked: Vec<Value> = app
        .audit_events(&biz.id)
        .await
        .iter()
        .filter(|e| e.event_type == "consent.revoked")
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["channel"], "keyword");
    assert_eq!(revoked[0]["by_keyword"], true);
}

async fn whatsapp_status_131050_revokes_marketing(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let wa = whatsapp_channel(&app, &biz).await;
    opt_in(&app, &biz, "+31612340005", &["marketing", "utility"]).await;
    let ts = Utc::now().timestamp().to_string();
    let statuses = json!([
        {"id": "wamid.out1", "status": "delivered", "timestamp": ts, "recipient_id": "31612340005",
         "conversation": {"id": "c1", "origin": {"type": "marketing"}},
         "pricing": {"billable": true, "pricing_model": "CBP", "category": "marketing"}},
        {"id": "wamid.out2", "status": "failed", "timestamp": ts, "recipient_id": "31612340005",
         "errors": [{"code": 131026, "title": "Message undeliverable"}]},
        {"id": "wamid.out3", "status": "failed", "timestamp": ts, "recipient_id": "31612340005",
         "errors": [{"code": 131050, "title": "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business.",
                     "message": "Unable to deliver the message.", "error_data": {"details": "..."}}]},
    ]);
    let body = payload(vec![
        json!({"id": "1", "changes": [change("messages", value(PHONE_NUMBER_ID), "statuses", statuses)]}),
    ]);
    let res = post_whatsapp(&app, &wa, &body, Some(APP_SECRET)).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["recorded"], 1, "{}", res.body);
    assert_eq!(res.body["skipped"], 2, "{}", res.body);
    assert_eq!(
        check(&app, &biz, "+31612340005", "marketing").await.1,
        "revoked"
    );
    assert_eq!(
        check(&app, &biz, "+31612340005", "utility").await,
        (true, "consent".into())
    );
    let again = post_whatsapp(&app, &wa, &body, Some(APP_SECRET)).await;
    assert_eq!(again.body["replayed"], 1, "{}", again.body);
    let metrics = app.get("/metrics", None).await;
    let text = metrics.body.as_str().unwrap();
    assert!(
        text.contains("consentgate_whatsapp_statuses_ignored_total{code=\"131026\"}"),
        "{text}"
    );
    assert!(
        text.contains("consentgate_whatsapp_statuses_ignored_total{code=\"none\"}"),
        "{text}"
    );
}

async fn twilio_webhook_checks_its_signature_and_honours_opt_out_type(app: TestApp) {
    let biz = app.create_business("Acme", "sms-us").await;
    let tw = twilio_channel(&app, &biz).await;
    let phone = "+14155550123";
    let res = app
        .post(
            "/v1/opt-ins",
            Some(&biz.key),
            &json!({"phone": phone, "categories": ["marketing"], "channel": "web",
                    "evidence": {"collected_at": (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339(),
                                 "consent_text_version": "v1", "form_id": "signup"}}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    // Advanced Opt-Out classified "please no more" as STOP: that wins over our keywords.
    let stop = [
        ("ToCountry", "US"),
        ("SmsMessageSid", "SM1f0e8ae6ade43cb3c0ce4525424e404f"),
        ("NumMedia", "0"),
        ("From", phone),
        ("To", "+15005550006"),
        ("Body", "please no more"),
        ("MessageSid", "SM1f0e8ae6ade43cb3c0ce4525424e404f"),
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("OptOutType", "STOP"),
        ("ApiVersion", "2010-04-01"),
    ];
    let before = app.audit_events(&biz.id).await.len();
    let bad = post_raw(
        &app,
        &format!("/v1/webhooks/twilio/{tw}"),
        "application/x-www-form-urlencoded",
        &[(
            "x-twilio-signature",
            twilio_signature("wrong", TWILIO_URL, &stop),
        )],
        serde_urlencoded::to_string(stop).unwrap().into_bytes(),
    )
    .await;
    bad.assert_problem(401, "invalid_signature");
    assert_eq!(app.audit_events(&biz.id).await.len(), before);

    let res = post_twilio(&app, &tw, &stop, AUTH_TOKEN).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(
        res.header("content-type").as_deref(),
        Some("application/xml")
    );
    assert_eq!(
        res.body,
        Value::String("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>".into())
    );
    assert_eq!(check(&app, &biz, phone, "marketing").await.1, "revoked");
    let after = app.audit_events(&biz.id).await.len();
    assert!(after > before);
    // Redelivered: nothing twice.
    assert_eq!(post_twilio(&app, &tw, &stop, AUTH_TOKEN).await.status, 200);
    assert_eq!(app.audit_events(&biz.id).await.len(), after);

    // START (Twilio's classification) undoes the STOP.
    let start = [
        ("From", phone),
        ("To", "+15005550006"),
        ("Body", "unstop"),
        ("MessageSid", "SM2a0e8ae6ade43cb3c0ce4525424e4050"),
        ("OptOutType", "START"),
    ];
    assert_eq!(post_twilio(&app, &tw, &start, AUTH_TOKEN).await.status, 200);
    assert_eq!(
        check(&app, &biz, phone, "marketing").await,
        (true, "consent".into())
    );
    // Without OptOutType our own keyword matching applies.
    let stop_word = [
        ("From", phone),
        ("Body", " STOP "),
        ("MessageSid", "SM3b0e8ae6ade43cb3c0ce4525424e4051"),
    ];
    assert_eq!(
        post_twilio(&app, &tw, &stop_word, AUTH_TOKEN).await.status,
        200
    );
    assert_eq!(check(&app, &biz, phone, "marketing").await.1, "revoked");
    // A number we cannot parse is skipped and counted, never a 5xx.
    let odd = [("From", "+1"), ("Body", "STOP"), ("MessageSid", "SM4")];
    assert_eq!(post_twilio(&app, &tw, &odd, AUTH_TOKEN).await.status, 200);
}

async fn webhooks_of_unknown_deleted_or_other_kind_channels_are_not_found(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-global").await;
    let wa = whatsapp_channel(&app, &biz).await;
    let tw = twilio_channel(&app, &biz).await;
    let body = payload(vec![]);
    let unknown = uuid::Uuid::now_v7();
    post_whatsapp(&app, &unknown.to_string(), &body, Some(APP_SECRET))
        .await
        .assert_problem(404, "not_found");
    post_whatsapp(&app, &tw, &body, Some(APP_SECRET))
        .await
        .assert_problem(404, "not_found");
    post_twilio(&app, &wa, &[("From", "+14155550123")], AUTH_TOKEN)
        .await
        .assert_problem(404, "not_found");
    app.get("/v1/webhooks/whatsapp/not-a-uuid", None)
        .await
        .assert_problem(404, "not_found");
    assert_eq!(
        post_whatsapp(&app, &wa, &body, Some(APP_SECRET))
            .await
            .status,
        200
    );
    app.delete(&format!("/v1/channels/{wa}"), Some(&biz.key))
        .await;
    post_whatsapp(&app, &wa, &body, Some(APP_SECRET))
        .await
        .assert_problem(404, "not_found");
    let res = app
        .get(
            &format!("/v1/webhooks/whatsapp/{wa}?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1"),
            None,
        )
        .await;
    res.assert_problem(404, "not_found");
}

/// Webhooks are unauthenticated until their signature is checked: wrong
/// signatures from one address are charged like failed authentications (401 while
/// the small quota lasts, then 429 with `Retry-After`, even with a good signature),
/// while other addresses are unaffected.
#[actix_web::test]
async fn bad_webhook_signatures_are_throttled_per_address() {
    use crate::helpers::{Backend, spawn_app_with};
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(app) = spawn_app_with(backend, |s| {
            s.rate_limits.auth_failures.rate = 1;
            s.rate_limits.auth_failures.burst = 3;
            s.rate_limits.trusted_proxies =
                consentgate::config::TrustedProxies::parse("127.0.0.1").unwrap();
        })
        .await
        else {
            continue;
        };
        let biz = app.create_business("Acme", "whatsapp-eu").await;
        let channel = whatsapp_channel(&app, &biz).await;
        let path = format!("/v1/webhooks/whatsapp/{channel}");
        let body = serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": []}))
            .unwrap();
        let from = |address: &str, signature: String| {
            vec![
                ("x-forwarded-for", address.to_owned()),
                ("x-hub-signature-256", signature),
            ]
        };
        let forged = meta_signature("not-the-app-secret", &body);
        for _ in 0..3 {
            let res = post_raw(
                &app,
                &path,
                "application/json",
                &from("203.0.113.9", forged.clone()),
                body.clone(),
            )
            .await;
            assert_eq!(res.status, 401, "{backend:?}: {}", res.body);
        }
        let res = post_raw(
            &app,
            &path,
            "application/json",
            &from("203.0.113.9", forged.clone()),
            body.clone(),
        )
        .await;
        res.assert_problem(429, "rate_limited");
        let good = meta_signature(APP_SECRET, &body);
        let res = post_raw(
            &app,
            &path,
            "application/json",
            &from("203.0.113.9", good.clone()),
            body.clone(),
        )
        .await;
        res.assert_problem(429, "rate_limited");
        assert!(
            res.header("retry-after").is_some(),
            "429 carries Retry-After"
        );
        let res = post_raw(
            &app,
            &path,
            "application/json",
            &from("198.51.100.4", good),
            body.clone(),
        )
        .await;
        assert_eq!(
            res.status, 200,
            "{backend:?}: another address is unaffected: {}",
            res.body
        );
    }
}
