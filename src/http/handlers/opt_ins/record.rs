use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::domain::Scope;
use crate::domain::evidence::{Channel, Evidence, Strictness};
use crate::http::auth::Principal;
use crate::http::error::{ApiError, FieldError, Problem};
use crate::http::extract::{IdempotencyKey, Json};
use crate::http::handlers::{
    caller, evidence_errors, evidence_limits, idempotency, parse_categories, parse_phone, written,
};
use crate::http::responses::{ApiKeyErrors, JsonBodyErrors};
use crate::ledger::Ledger;
use crate::ledger::record::{OptInResponse, RecordOptIn};

/// Consent given by a person for one or more categories, with its proof.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordOptInRequest {
    /// The phone number in any common written form (`+31 6 1234 5678`,
    /// `0031612345678`); a national form needs `default_region`.
    pub phone: String,
    /// Two-letter region for national forms, e.g. `NL`.
    pub default_region: Option<String>,
    /// Categories of the business's policy, e.g. `["marketing", "utility"]`.
    pub categories: Vec<String>,
    /// Where it was collected: web, app, in_store, click_to_chat, import, support,
    /// api (keyword opt-ins come from `POST /v1/inbound-messages`).
    pub channel: Channel,
    /// The proof (GDPR Art. 7(1)): always `collected_at` (RFC 3339) and
    /// `consent_text_version`; web: `source_url` or `form_id` (+ `ip`,
    /// `user_agent`); app: `app_id` (+ `app_version`); in_store: `store_id`
    /// (+ `staff_id`, `form_reference`); click_to_chat: `message_reference`;
    /// import: `source_system`, `original_channel` and that channel's fields;
    /// support: `staff_id` (+ `ticket_reference`); api: `source_system`. Stored
    /// encrypted.
    #[schema(value_type = Object)]
    pub evidence: Option<serde_json::Value>,
}

/// Records an opt-in. Under a policy with double opt-in for a category, the opt-in
/// is `pending_confirmation` until confirmed. Accepts `Idempotency-Key`.
#[utoipa::path(
    tag = "consents",
    security(("api_key" = ["consents:write"])),
    request_body = RecordOptInRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "retry-safe key: the same key and body return the first response")),
    responses(
        ApiKeyErrors, JsonBodyErrors,
        (status = 201, body = OptInResponse),
        (status = 409, description = "Idempotency-Key reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "every invalid field is listed", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/opt-ins")]
#[tracing::instrument(skip_all)]
pub async fn record_opt_in(
    principal: Principal,
    req: HttpRequest,
    ledger: web::Data<Ledger>,
    key: IdempotencyKey,
    body: Json<RecordOptInRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::ConsentsWrite)?;
    let caller = caller(&principal, &ledger)?;
    let Json(request, raw) = body;
    let mut errors = Vec::new();
    let phone = parse_phone(
        "phone",
        &request.phone,
        request.default_region.as_deref(),
        &mut errors,
    );
    let categories = parse_categories(
        &caller.policy,
        "categories",
        &request.categories,
        &mut errors,
    );
    if request.channel == Channel::Keyword {
        errors.push(FieldError::new(
            "channel",
            "keyword opt-ins are recorded from POST /v1/inbound-messages",
        ));
    }
    let limits = evidence_limits(&ledger, &caller.policy);
    let evidence = Evidence::parse(
        request.channel,
        request.evidence.as_ref(),
        Strictness::OptIn,
        &limits,
    )
    .map_err(|problems| errors.extend(evidence_errors(problems)))
    .ok();
    let (Some(phone), Some(categories), Some(evidence), true) =
        (phone, categories, evidence, errors.is_empty())
    else {
        return Err(ApiError::Validation(errors));
    };
    let idempotency = idempotency(&req, key, &ledger, &caller, &raw, StatusCode::CREATED);
    let command = RecordOptIn {
        phone,
        categories,
        channel: request.channel,
        evidence,
    };
    let result = ledger.record_opt_in(&caller, command, idempotency).await?;
    Ok(written(result, StatusCode::CREATED))
}
