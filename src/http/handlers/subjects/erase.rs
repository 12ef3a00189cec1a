use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};

use super::SubjectRequest;
use crate::domain::Scope;
use crate::http::auth::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{IdempotencyKey, Json};
use crate::http::handlers::{caller, idempotency, optional_text, parse_phone, written};
use crate::http::responses::{ApiKeyErrors, JsonBodyErrors};
use crate::ledger::Ledger;
use crate::ledger::subjects::ErasureReceipt;

/// Erases a number (GDPR Art. 17) in one transaction: its data key is destroyed
/// (crypto-shredding), its number, history and evidence deleted; the audit events
/// stay and still verify, their personal fields now `[erased]`. Where the policy
/// keeps one, a suppression marker (a keyed hash only) makes checks answer
/// `suppressed` and refuses consent collected before the erasure. The receipt's
/// `residue` says what may still hold a copy of the destroyed data key in the
/// database's files (`none`, `write_ahead_log`, `deleted_row_versions`). Erasing
/// again answers the same receipt, with the file cleanup retried and `residue`
/// as of then.
#[utoipa::path(
    tag = "subjects",
    security(("api_key" = ["subjects:manage"])),
    request_body = SubjectRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "retry-safe key")),
    responses(
        ApiKeyErrors, JsonBodyErrors,
        (status = 200, body = ErasureReceipt),
        (status = 404, description = "nothing is or was held about this number", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/subjects/erase")]
#[tracing::instrument(skip_all)]
pub async fn erase_subject(
    principal: Principal,
    req: HttpRequest,
    ledger: web::Data<Ledger>,
    key: IdempotencyKey,
    body: Json<SubjectRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::SubjectsManage)?;
    let caller = caller(&principal, &ledger)?;
    let Json(request, raw) = body;
    let mut errors = Vec::new();
    let phone = parse_phone(
        "phone",
        &request.phone,
        request.default_region.as_deref(),
        &mut errors,
    );
    let reference = optional_text(
        "request_reference",
        request.request_reference.as_deref(),
        200,
        &mut errors,
    );
    let (Some(phone), true) = (phone, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let idempotency = idempotency(&req, key, &ledger, &caller, &raw, StatusCode::OK);
    let receipt = ledger
        .erase_subject(&caller, phone, reference, idempotency)
        .await?;
    Ok(written(receipt, StatusCode::OK))
}
