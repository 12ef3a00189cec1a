use actix_web::{HttpResponse, post, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;

use super::check_as_of;
use crate::domain::Scope;
use crate::http::auth::Principal;
use crate::http::error::{ApiError, FieldError, Problem};
use crate::http::extract::Json;
use crate::http::handlers::{caller, unknown_category};
use crate::http::responses::{ApiKeyErrors, JsonBodyErrors};
use crate::ledger::Ledger;
use crate::ledger::check::BatchResponse;

/// The most numbers one batch may hold.
pub const MAX_BATCH: usize = 10_000;

/// A campaign's recipients, for one category.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckContactsBatchRequest {
    pub category: String,
    /// Up to 10,000 numbers.
    pub phones: Vec<String>,
    /// Region for numbers in national form.
    pub default_region: Option<String>,
    pub as_of: Option<DateTime<Utc>>,
}

/// may_contact for up to 10,000 numbers: results in input order (an invalid number
/// is an item with its error, not a failed batch) and counts by reason, so a
/// campaign can be dry-run before anything is sent. Fails closed like a single
/// check.
#[utoipa::path(
    tag = "checks",
    security(("api_key" = ["checks:read"])),
    request_body = CheckContactsBatchRequest,
    responses(
        ApiKeyErrors, JsonBodyErrors,
        (status = 200, body = BatchResponse),
        (status = 422, description = "unknown category, no phones or more than 10,000", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/checks/batch")]
#[tracing::instrument(skip_all)]
pub async fn check_contacts_batch(
    principal: Principal,
    ledger: web::Data<Ledger>,
    body: Json<CheckContactsBatchRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::ChecksRead)?;
    let caller = caller(&principal, &ledger).map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let request = body.0;
    let mut errors = Vec::new();
    let category = caller.policy.category(&request.category);
    if category.is_none() {
        errors.push(FieldError::new(
            "category",
            unknown_category(&caller.policy),
        ));
    }
    if request.phones.is_empty() || request.phones.len() > MAX_BATCH {
        errors.push(FieldError::new(
            "phones",
            format!("must hold 1 to {MAX_BATCH} numbers"),
        ));
    }
    let as_of = check_as_of(request.as_of, ledger.clock(), &mut errors);
    let (Some(category), true) = (category, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let answer = ledger
        .check_batch(
            &caller,
            category,
            request.phones,
            request.default_region,
            as_of,
        )
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(HttpResponse::Ok().json(answer))
}
