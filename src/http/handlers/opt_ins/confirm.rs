use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::Scope;
use crate::domain::evidence::{Channel, Evidence, Strictness};
use crate::http::auth::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{IdempotencyKey, Json};
use crate::http::handlers::{caller, evidence_errors, evidence_limits, idempotency, written};
use crate::http::responses::{ApiKeyErrors, JsonBodyErrors, PathErrors};
use crate::ledger::Ledger;
use crate::ledger::record::{ConfirmOptIn, OptInResponse};

/// The double opt-in confirmation and its proof.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmOptInRequest {
    /// Where the person confirmed, e.g. `web` (a link in the confirmation message)
    /// or `click_to_chat` (a reply).
    pub channel: Channel,
    /// The proof, with the same rules as an opt-in's evidence for that channel;
    /// `collected_at` is when the person confirmed.
    #[schema(value_type = Object)]
    pub evidence: Option<serde_json::Value>,
}

/// Confirms a double opt-in: from now on its categories are in force. Accepts
/// `Idempotency-Key`.
#[utoipa::path(
    tag = "consents",
    security(("api_key" = ["consents:write"])),
    request_body = ConfirmOptInRequest,
    params(
        ("id" = Uuid, Path, description = "the opt-in id"),
        ("Idempotency-Key" = Option<String>, Header, description = "retry-safe key"),
    ),
    responses(
        ApiKeyErrors, PathErrors, JsonBodyErrors,
        (status = 200, body = OptInResponse),
        (status = 404, description = "no such opt-in in this business", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "already confirmed, needs no confirmation, withdrawn since, or confirmed before it was collected", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/opt-ins/{id}/confirm")]
#[tracing::instrument(skip_all)]
pub async fn confirm_opt_in(
    principal: Principal,
    req: HttpRequest,
    ledger: web::Data<Ledger>,
    path: web::Path<Uuid>,
    key: IdempotencyKey,
    body: Json<ConfirmOptInRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::ConsentsWrite)?;
    let caller = caller(&principal, &ledger)?;
    let Json(request, raw) = body;
    let limits = evidence_limits(&ledger, &caller.policy);
    let evidence = Evidence::parse(
        request.channel,
        request.evidence.as_ref(),
        Strictness::OptIn,
        &limits,
    )
    .map_err(|problems| ApiError::Validation(evidence_errors(problems).collect()))?;
    let idempotency = idempotency(&req, key, &ledger, &caller, &raw, StatusCode::OK);
    let command = ConfirmOptIn {
        opt_in_id: path.into_inner(),
        channel: request.channel,
        evidence,
    };
    let result = ledger.confirm_opt_in(&caller, command, idempotency).await?;
    Ok(written(result, StatusCode::OK))
}
