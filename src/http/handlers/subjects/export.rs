use actix_web::{HttpResponse, post, web};

use super::SubjectRequest;
use crate::domain::Scope;
use crate::http::auth::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::Json;
use crate::http::handlers::{caller, optional_text, parse_phone};
use crate::http::responses::{ApiKeyErrors, JsonBodyErrors};
use crate::ledger::Ledger;
use crate::ledger::subjects::SubjectExport;

/// Exports everything held about a number (GDPR Art. 15 and 20) as one
/// machine-readable document, `format: consentgate.export/v1` (JSON Schema in
/// `schemas/consentgate.export.v1.json`). Exporting is itself audited. A number
/// nothing is held about answers 404, revealing nothing.
#[utoipa::path(
    tag = "subjects",
    security(("api_key" = ["subjects:manage"])),
    request_body = SubjectRequest,
    responses(
        ApiKeyErrors, JsonBodyErrors,
        (status = 200, body = SubjectExport),
        (status = 404, description = "nothing is held about this number", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/subjects/export")]
#[tracing::instrument(skip_all)]
pub async fn export_subject(
    principal: Principal,
    ledger: web::Data<Ledger>,
    body: Json<SubjectRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::SubjectsManage)?;
    let caller = caller(&principal, &ledger)?;
    let request = body.0;
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
    let export = ledger.export_subject(&caller, phone, reference).await?;
    Ok(HttpResponse::Ok().json(export))
}
