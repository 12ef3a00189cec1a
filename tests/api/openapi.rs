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
        for op in [&item.get, &item.post, &item.delete].into_iter().flatten() {
            let id = op.operation_id.as_deref().unwrap_or_default();
            assert!(!id.is_empty(), "{path} has an operation id");
            if path.starts_with("/v1/") {
                assert!(
                    op.responses.responses.contains_key("401"),
                    "{path} {id} documents 401"
                );
            }
        }
    }
}
