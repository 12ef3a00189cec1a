//! `openapi.yaml` at the repository root is generated from the code; it must not
//! drift.

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
