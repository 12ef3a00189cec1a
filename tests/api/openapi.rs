//! `openapi.yaml` at the repository root is generated from the code; it must not
//! drift, and it declares what the server answers.

use crate::backend_tests;
use crate::helpers::TestApp;

#[test]
fn committed_openapi_yaml_matches_the_code() {
    let generated = consentgate::http::openapi::yaml();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi.yaml is out of date with the code: run `cargo run -- openapi --write` and commit it"
    );
}

#[test]
fn every_operation_documents_its_error_responses_and_an_operation_id() {
    let api = consentgate::http::openapi::document();
    for (path, item) in &api.paths.paths {
        for (op, is_get) in [
            (&item.get, true),
            (&item.post, false),
            (&item.delete, false),
        ] {
            let Some(op) = op else { continue };
            let id = op.operation_id.as_deref().unwrap_or_default();
            assert!(!id.is_empty(), "{path} has an operation id");
            // The webhook handshake authenticates by the verify token: a 403.
            let refusal = if is_get && path.starts_with("/v1/webhooks/") {
                "403"
            } else {
                "401"
            };
            if path.starts_with("/v1/") {
                assert!(
                    op.responses.responses.contains_key(refusal),
                    "{path} {id} documents {refusal}"
                );
            }
        }
    }
}

#[test]
fn committed_export_json_schema_matches_the_code() {
    let generated = consentgate::http::openapi::export_json_schema();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/consentgate.export.v1.json"
    );
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "schemas/consentgate.export.v1.json is out of date: run `cargo run -- openapi --write` and commit it"
    );
    let schema: serde_json::Value = serde_json::from_str(&committed).unwrap();
    let export = &schema["$defs"]["SubjectExport"];
    for field in [
        "format",
        "subject",
        "current_state",
        "opt_ins",
        "revocations",
        "blocks",
        "windows",
        "audit_events",
    ] {
        assert!(
            export["properties"][field].is_object(),
            "the schema documents `{field}`"
        );
    }
}

/// The responses an operation declares, with `$ref`s to response components
/// resolved.
fn declared(
    api: &serde_json::Value,
    path: &str,
    method: &str,
) -> serde_json::Map<String, serde_json::Value> {
    let responses = api["paths"][path][method]["responses"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path} is in the document"))
        .clone();
    responses
        .into_iter()
        .map(|(status, response)| {
            let response = match response["$ref"].as_str() {
                Some(reference) => api
                    .pointer(reference.trim_start_matches('#'))
                    .unwrap_or_else(|| panic!("{reference} resolves"))
                    .clone(),
                None => response,
            };
            (status, response)
        })
        .collect()
}

fn document_json() -> serde_json::Value {
    serde_json::to_value(consentgate::http::openapi::document()).unwrap()
}

#[test]
fn every_operation_declares_the_errors_it_can_answer() {
    let api = document_json();
    let mut json_bodies = 0;
    for (path, item) in api["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = declared(&api, path, method);
            let has = |status: &str| responses.contains_key(status);
            let problem = |status: &str| {
                responses[status]["content"]["application/problem+json"]["schema"]["$ref"]
                    == "#/components/schemas/Problem"
            };
            let takes_json = op["requestBody"]["content"]["application/json"].is_object();
            if path.starts_with("/v1/webhooks/") {
                // Platform webhooks: the signature is the authentication and the
                // raw body is read whatever its media type (checked in channels.rs).
                let statuses: &[&str] = if method == "get" {
                    &["403", "404", "429", "503"]
                } else if path.contains("whatsapp") {
                    // A signed body that is not JSON.
                    &["400", "401", "404", "413", "429", "503"]
                } else {
                    // Twilio's form is read leniently: a malformed one is counted.
                    &["401", "404", "413", "429", "503"]
                };
                for status in statuses {
                    assert!(has(status), "{method} {path} declares {status}");
                    assert!(problem(status), "{method} {path}: {status} is problem+json");
                }
                continue;
            }
            if takes_json {
                json_bodies += 1;
                for status in ["400", "413", "415", "422"] {
                    assert!(has(status), "{method} {path} declares {status}");
                    assert!(problem(status), "{method} {path}: {status} is problem+json");
                }
            }
            if path.starts_with("/v1/") {
                for status in ["401", "429"] {
                    assert!(has(status), "{method} {path} declares {status}");
                    assert!(problem(status), "{method} {path}: {status} is problem+json");
                }
                assert!(
                    responses["429"]["headers"]["Retry-After"].is_object(),
                    "{method} {path}: 429 declares Retry-After"
                );
                if path != "/v1/businesses" {
                    for status in ["403", "503"] {
                        assert!(has(status), "{method} {path} declares {status}");
                    }
                }
            }
            if path.contains('{') {
                assert!(has("404"), "{method} {path} declares 404 for an unknown id");
            }
        }
    }
    assert!(json_bodies >= 12, "{json_bodies} operations take JSON");
    // The NDJSON stream takes its own media type.
    let stream = declared(&api, "/v1/checks/stream", "post");
    assert!(stream.contains_key("415"));
}

#[test]
fn export_evidence_is_declared_nullable_with_purged_semantics() {
    let api = document_json();
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schemas/consentgate.export.v1.json"
        ))
        .unwrap(),
    )
    .unwrap();
    for evidence in [
        &api["components"]["schemas"]["ExportOptIn"]["properties"]["evidence"],
        &schema["$defs"]["ExportOptIn"]["properties"]["evidence"],
        &schema["$defs"]["ExportConfirmation"]["properties"]["evidence"],
    ] {
        let alternatives = evidence["oneOf"].as_array().expect("evidence is a oneOf");
        let types: Vec<&str> = alternatives
            .iter()
            .map(|a| a["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, vec!["object", "null", "string"], "{evidence}");
        assert!(
            alternatives[1]["description"]
                .as_str()
                .unwrap()
                .contains("[purged]")
        );
    }
}

backend_tests!(truncated_and_mistyped_bodies_answer_what_the_document_declares,);

/// Every operation with a JSON body, sent a truncated body and a wrong content
/// type by a key with every scope: 400 and 415 problems, both declared.
async fn truncated_and_mistyped_bodies_answer_what_the_document_declares(app: TestApp) {
    let api = document_json();
    let biz = app.create_business("Acme", "whatsapp-eu").await;
    let client = app.client();
    let mut checked = 0;
    for (path, item) in api["paths"].as_object().unwrap() {
        let Some(op) = item.get("post") else { continue };
        if path.starts_with("/v1/webhooks/") {
            continue; // signed by the platform, not keyed: see channels.rs
        }
        if !op["requestBody"]["content"]["application/json"].is_object() {
            continue;
        }
        let concrete = path.replace("{id}", &uuid::Uuid::now_v7().to_string());
        let token = if path == "/v1/businesses" {
            app.operator_token.clone()
        } else {
            biz.key.clone()
        };
        let template = op["operationId"].as_str().unwrap();
        for (content_type, body, status, code) in [
            (
                "application/json",
                r#"{"phone":"+3161234"#,
                400,
                "malformed_body",
            ),
            ("application/json", "", 400, "malformed_body"),
            ("text/plain", "{}", 415, "unsupported_media_type"),
        ] {
            let mut res = client
                .post(format!("{}{concrete}", app.address))
                .insert_header(("authorization", format!("Bearer {token}")))
                .insert_header(("content-type", content_type))
                .send_body(body)
                .await
                .unwrap();
            let bytes = res.body().await.unwrap();
            let resp = crate::helpers::Resp {
                status: res.status().as_u16(),
                headers: res.headers().clone(),
                body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            };
            resp.assert_problem(status, code);
            let declared = declared(&api, path, "post");
            let schema =
                &declared[&status.to_string()]["content"]["application/problem+json"]["schema"];
            assert!(schema.is_object(), "{template} declares {status}");
            let errors = crate::schema::validate(&api, schema, &resp.body);
            assert!(errors.is_empty(), "{template} {status}: {errors:?}");
        }
        checked += 1;
    }
    assert!(checked >= 12, "{checked} operations checked");
}
