use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::domain::Scope;
use crate::domain::evidence::{Channel, Evidence, Strictness};
use crate::http::auth::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{IdempotencyKey, Json};
use crate::http::handlers::{
    caller, evidence_errors, evidence_limits, idempotency, parse_categories, parse_phone, written,
};
use crate::ledger::Ledger;
use crate::ledger::record::{RecordRevocation, RevocationResponse};

/// Consent withdrawn, for some categories or all.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordRevocationRequest {
    pub phone: String,
    pub default_region: Option<String>,
    /// The categories withdrawn; absent or `null` withdraws every category.
    pub categories: Option<Vec<String>>,
    /// Where the person withdrew.
    pub channel: Channel,
    /// Optional proof (withdrawing must be as easy as giving, GDPR Art. 7(3)):
    /// `collected_at` (default: now) and the channel's fields, validated when
    /// present.
    #[schema(value_type = Object)]
    pub evidence: Option<serde_json::Value>,
}

/// Records a revocation, effective at once. Accepts `Idempotency-Key`.
#[utoipa::path(
    tag = "consents",
    security(("api_key" = ["consents:write"])),
    request_body = RecordRevocationRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "retry-safe key")),
    responses(
        (status = 201, body = RevocationResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/revocations")]
#[tracing::instrument(skip_all, fields(business_id = %principal.business_id))]
pub async fn record_revocation(
    principal: Principal,
    req: HttpRequest,
    ledger: web::Data<Ledger>,
    key: IdempotencyKey,
    body: Json<RecordRevocationRequest>,
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
    let categories = match &request.categories {
        None => Some(None),
        Some(names) => parse_categories(&caller.policy, "categories", names, &mut errors).map(Some),
    };
    let limits = evidence_limits(&caller.policy);
    let evidence = Evidence::parse(
        request.channel,
        request.evidence.as_ref(),
        Strictness::Withdrawal,
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
    let command = RecordRevocation {
        phone,
        categories,
        channel: request.channel,
        evidence,
    };
    let result = ledger
        .record_revocation(&caller, command, idempotency)
        .await?;
    Ok(written(result, StatusCode::CREATED))
}
