//! 403 for each scope on every endpoint (SPEC section 5): for every business
//! endpoint, a key holding every scope but the one it needs is refused with 403
//! `forbidden` naming that scope, and changes nothing; a key holding only that
//! scope is not refused. The table below is checked against the OpenAPI
//! document, so a new endpoint cannot be left out of it.

use std::collections::BTreeSet;

use chrono::Utc;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Resp, TestApp};

backend_tests!(every_endpoint_refuses_a_key_without_its_scope_and_accepts_one_with_only_it);

const SCOPES: [&str; 5] = [
    "consents:write",
    "checks:read",
    "subjects:manage",
    "audit:read",
    "keys:manage",
];

/// Every business endpoint and the scope it needs. `{id}` and `{opt_in}` are
/// filled in with real ids of the business.
const ENDPOINTS: &[(&str, &str, &str)] = &[
    ("POST", "/v1/keys", "keys:manage"),
    ("GET", "/v1/keys", "keys:manage"),
    ("DELETE", "/v1/keys/{id}", "keys:manage"),
    ("POST", "/v1/opt-ins", "consents:write"),
    ("POST", "/v1/opt-ins/{id}/confirm", "consents:write"),
    ("POST", "/v1/revocations", "consents:write"),
    ("POST", "/v1/blocks", "consents:write"),
    ("POST", "/v1/unblocks", "consents:write"),
    ("POST", "/v1/inbound-messages", "consents:write"),
    ("POST", "/v1/checks", "checks:read"),
    ("POST", "/v1/checks/batch", "checks:read"),
    ("POST", "/v1/checks/stream", "checks:read"),
    ("POST", "/v1/subjects/export", "subjects:manage"),
    ("POST", "/v1/subjects/erase", "subjects:manage"),
    ("GET", "/v1/audit/events", "audit:read"),
    ("GET", "/v1/audit/verify", "audit:read"),
    ("GET", "/v1/audit/export", "audit:read"),
    ("GET", "/v1/audit/checkpoints", "audit:read"),
    ("POST", "/v1/audit/checkpoints", "audit:read"),
    ("POST", "/v1/preference-links", "consents:write"),
    ("DELETE", "/v1/preference-links/{id}", "consents:write"),
    ("POST", "/v1/channels", "keys:manage"),
    ("GET", "/v1/channels", "keys:manage"),
    ("DELETE", "/v1/channels/{id}", "keys:manage"),
];

/// (method, path, scope) of every operation the OpenAPI document secures with an
/// API key.
fn documented_endpoints() -> BTreeSet<(String, String, String)> {
    let api = serde_json::to_value(consentgate::http::openapi::document()).unwrap();
    let mut out = BTreeSet::new();
    for (path, item) in api["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for requirement in op["security"].as_array().into_iter().flatten() {
                if let Some(scopes) = requirement["api_key"].as_array() {
                    assert_eq!(scopes.len(), 1, "{method} {path} needs one scope");
                    out.insert((
                        method.to_uppercase(),
                        path.clone(),
                        scopes[0].as_str().unwrap().to_owned(),
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn the_scope_table_lists_every_endpoint_the_openapi_document_secures_with_a_key() {
    let table: BTreeSet<(String, String, String)> = ENDPOINTS
        .iter()
        .map(|(m, p, s)| (m.to_string(), p.to_string(), s.to_string()))
        .collect();
    assert_eq!(table.len(), ENDPOINTS.len(), "no endpoint listed twice");
    assert_eq!(table, documented_endpoints());
}

/// A valid request for the endpoint (so that only the scope can refuse it).
fn body(path: &str) -> Option<Value> {
    let evidence = json!({"collected_at": Utc::now().to_rfc3339(), "consent_text_version": "v1",
                          "source_system": "crm"});
    Some(match path {
        "/v1/keys" => json!({"name": "extra", "scopes": ["keys:manage"]}),
        "/v1/opt-ins" => json!({"phone": "+31612349901", "categories": ["utility"],
                                "channel": "api", "evidence": evidence}),
        "/v1/opt-ins/{id}/confirm" => json!({"channel": "api", "evidence": evidence}),
        "/v1/revocations" => json!({"phone": "+31612349902", "channel": "api"}),
        "/v1/blocks" | "/v1/unblocks" => json!({"phone": "+31612349903"}),
        "/v1/inbound-messages" => {
            json!({"phone": "+31612349904", "received_at": Utc::now().to_rfc3339()})
        }
        "/v1/checks" => json!({"phone": "+31612349905", "category": "utility"}),
        "/v1/checks/batch" => json!({"phones": ["+31612349905"], "category": "utility"}),
        "/v1/subjects/export" | "/v1/subjects/erase" => json!({"phone": "+31612349906"}),
        "/v1/audit/checkpoints" => json!({}),
        "/v1/preference-links" => json!({"phone": "+31612349907"}),
        "/v1/channels" => json!({"kind": "whatsapp", "app_secret": "s", "verify_token": "t",
                                 "phone_number_ids": ["1065403522"]}),
        _ => return None,
    })
}

async fn call(app: &TestApp, method: &str, path: &str, concrete: &str, token: &str) -> Resp {
    if path == "/v1/checks/stream" {
        // NDJSON in and out.
        let mut res = app
            .client()
            .post(format!("{}/v1/checks/stream?category=utility", app.address))
            .insert_header(("authorization", format!("Bearer {token}")))
            .insert_header(("content-type", "application/x-ndjson"))
            .send_body("{\"phone\":\"+31612349905\"}\n")
            .await
            .unwrap();
        let bytes = res.body().await.unwrap();
        return Resp {
            status: res.status().as_u16(),
            headers: res.headers().clone(),
            body: serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())),
        };
    }
    let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
    let body = if method == awc::http::Method::POST {
        body(path)
    } else {
        None
    };
    app.request(method, concrete, Some(token), body.as_ref())
        .await
}

async fn every_endpoint_refuses_a_key_without_its_scope_and_accepts_one_with_only_it(app: TestApp) {
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    // A pending opt-in (marketing needs double opt-in) to confirm, and a key to revoke.
    let res = app
        .post(
            "/v1/opt-ins",
            Some(&biz.key),
            &json!({"phone": "+31612349900", "categories": ["marketing"], "channel": "api",
                    "evidence": {"collected_at": Utc::now().to_rfc3339(), "consent_text_version": "v1",
                                 "source_system": "crm"}}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    let opt_in_id = res.body["id"].as_str().unwrap().to_owned();
    let (spare_key_id, _) = app.create_key(&biz.key, "spare", &["checks:read"]).await;
    let link = app
        .post(
            "/v1/preference-links",
            Some(&biz.key),
            &json!({"phone": "+31612349908"}),
        )
        .await;
    assert_eq!(link.status, 201, "{}", link.body);
    let link_id = link.body["id"].as_str().unwrap().to_owned();
    let channel = app
        .post(
            "/v1/channels",
            Some(&biz.key),
            &json!({"kind": "twilio", "auth_token": "t", "account_sid": "AC1",
                    "webhook_url": "https://x.example/hook"}),
        )
        .await;
    assert_eq!(channel.status, 201, "{}", channel.body);
    let channel_id = channel.body["id"].as_str().unwrap().to_owned();
    let concrete = |path: &str| match path {
        "/v1/channels/{id}" => format!("/v1/channels/{channel_id}"),
        "/v1/keys/{id}" => format!("/v1/keys/{spare_key_id}"),
        "/v1/preference-links/{id}" => format!("/v1/preference-links/{link_id}"),
        "/v1/opt-ins/{id}/confirm" => format!("/v1/opt-ins/{opt_in_id}/confirm"),
        other => other.to_owned(),
    };
    let mut without = std::collections::BTreeMap::new();
    let mut only = std::collections::BTreeMap::new();
    for scope in SCOPES {
        let others: Vec<&str> = SCOPES.iter().copied().filter(|s| *s != scope).collect();
        without.insert(
            scope,
            app.create_key(&biz.key, &format!("all-but-{scope}"), &others)
                .await
                .1,
        );
        only.insert(
            scope,
            app.create_key(&biz.key, &format!("only-{scope}"), &[scope])
                .await
                .1,
        );
    }
    let events_before = app.audit_events(&biz.id).await.len();

    for (method, path, scope) in ENDPOINTS {
        let res = call(&app, method, path, &concrete(path), &without[scope]).await;
        res.assert_problem(403, "forbidden");
        assert!(
            res.body["detail"].as_str().unwrap().contains(scope),
            "{method} {path}: the 403 names {scope}: {}",
            res.body
        );
    }
    assert_eq!(
        app.audit_events(&biz.id).await.len(),
        events_before,
        "no refused request changed anything"
    );

    for (method, path, scope) in ENDPOINTS {
        let res = call(&app, method, path, &concrete(path), &only[scope]).await;
        // The number exported and erased is held by nobody: 404, past the scope.
        let nobodys_number = path.starts_with("/v1/subjects/") && res.status == 404;
        assert!(
            (200..300).contains(&res.status) || nobodys_number,
            "{method} {path} with only {scope}: {} {}",
            res.status,
            res.body
        );
    }
}
