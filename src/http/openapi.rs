//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` attributes
//! as they are registered in [`super::routes`]. `openapi.yaml` at the repository
//! root is this document; a test fails when the two drift
//! (`cargo run -- openapi --write` regenerates it).

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

use super::error::{FieldError, Problem};
use super::responses::{
    Forbidden, MalformedBody, NotFound, PayloadTooLarge, RateLimited, Unauthorized, Unavailable,
    UnsupportedMediaType, ValidationFailed,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "consentgate",
        description = "Consent and opt-in compliance for business messaging: record opt-ins, \
                       honour opt-outs and blocks, and ask before every message whether it may be sent.\n\n\
                       Errors are RFC 9457 problem documents (`application/problem+json`) with a stable `code`.",
        license(name = "Apache-2.0"),
    ),
    modifiers(&Security),
    components(
        schemas(Problem, FieldError),
        responses(
            MalformedBody,
            Unauthorized,
            Forbidden,
            NotFound,
            PayloadTooLarge,
            UnsupportedMediaType,
            ValidationFailed,
            RateLimited,
            Unavailable
        )
    ),
    tags(
        (name = "operator", description = "Operator calls (operator token)"),
        (name = "keys", description = "API keys of a business (scope keys:manage)"),
        (name = "consents", description = "Recording opt-ins, confirmations, revocations, blocks and inbound messages (scope consents:write)"),
        (name = "checks", description = "may_contact, one number or a campaign (scope checks:read). Prices are estimates from the policy, not invoices."),
        (name = "subjects", description = "Data-subject rights: export and erasure (scope subjects:manage)"),
        (name = "audit", description = "The tamper-evident audit log for auditors (scope audit:read)"),
        (name = "channels", description = "Connections to messaging platforms whose webhooks come in here (scope keys:manage)"),
        (name = "webhooks", description = "The platforms' webhooks, authenticated by the platform's signature, not by an API key"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                utoipa::openapi::security::HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("cg_<key id>_<secret>")
                    .description(Some(
                        "An API key of one business. The scopes each operation needs are listed \
                         as this scheme's scopes.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "operator_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, mut api) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(super::routes)
        .split_for_parts();
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    api
}

/// The document as YAML, exactly as committed in `openapi.yaml`.
pub fn yaml() -> String {
    document()
        .to_yaml()
        .expect("the OpenAPI document serialises to YAML")
}

/// The JSON Schema (2020-12) of the subject export document
/// (`format: consentgate.export/v1`), built from the same types that serialise
/// it; committed as `schemas/consentgate.export.v1.json`.
pub fn export_json_schema() -> String {
    let api = document();
    let schemas = serde_json::to_value(
        api.components
            .as_ref()
            .map(|c| c.schemas.clone())
            .unwrap_or_default(),
    )
    .expect("schemas serialise");
    let text = serde_json::to_string(&schemas)
        .expect("schemas serialise")
        .replace("#/components/schemas/", "#/$defs/");
    let defs: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let schema = serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:consentgate:export:v1",
        "title": "consentgate.export/v1",
        "description": "Everything consentgate holds about one phone number for one business \
                        (GDPR Art. 15 and 20), as answered by POST /v1/subjects/export.",
        "$ref": "#/$defs/SubjectExport",
        "$defs": defs,
    });
    let mut out = serde_json::to_string_pretty(&schema).expect("schema serialises");
    out.push('\n');
    out
}
