use actix_web::{HttpResponse, post, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;

use super::check_as_of;
use crate::domain::Scope;
use crate::http::auth::Principal;
use crate::http::error::{ApiError, FieldError, Problem};
use crate::http::extract::Json;
use crate::http::handlers::{asker, parse_phone, unknown_category};
use crate::http::responses::{ApiKeyErrors, JsonBodyErrors};
use crate::ledger::Ledger;
use crate::ledger::check::{CheckError, CheckResponse};

/// May this business send a message of this category to this number?
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckContactRequest {
    pub phone: String,
    pub default_region: Option<String>,
    /// A category of the business's policy, e.g. `marketing`.
    pub category: String,
    /// Answer as of this past instant (auditors: "was this send allowed then?");
    /// default now.
    pub as_of: Option<DateTime<Utc>>,
}

/// may_contact for one number: allowed, why, on what basis, whether billed.
/// Fails closed: when the consent state cannot be read the answer is 503 with
/// `allowed: false`. Prices are estimates from the policy.
#[utoipa::path(
    tag = "checks",
    security(("api_key" = ["checks:read"])),
    request_body = CheckContactRequest,
    responses(
        ApiKeyErrors, JsonBodyErrors,
        (status = 200, body = CheckResponse),
        (status = 422, description = "invalid phone, unknown category or a future as_of", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/checks")]
pub async fn check_contact(
    principal: Principal,
    ledger: web::Data<Ledger>,
    body: Json<CheckContactRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::ChecksRead)?;
    let asker = asker(&principal, &ledger)?;
    let policy = asker.policy;
    let request = body.0;
    let mut errors = Vec::new();
    let category = policy.category(&request.category);
    if category.is_none() {
        errors.push(FieldError::new("category", unknown_category(policy)));
    }
    let as_of = check_as_of(request.as_of, ledger.clock(), &mut errors);
    let (Some(category), true) = (category, errors.is_empty()) else {
        // Every problem at once, in field order: the number too (error path only).
        let mut all = Vec::new();
        parse_phone(
            "phone",
            &request.phone,
            request.default_region.as_deref(),
            &mut all,
        );
        all.extend(errors);
        return Err(ApiError::Validation(all));
    };
    let answer = ledger
        .check(
            asker,
            &request.phone,
            request.default_region.as_deref(),
            &category,
            as_of,
        )
        .await
        .map_err(|e| match e {
            CheckError::InvalidPhone(_) => {
                let mut errors = Vec::new();
                parse_phone(
                    "phone",
                    &request.phone,
                    request.default_region.as_deref(),
                    &mut errors,
                );
                ApiError::Validation(errors)
            }
            CheckError::Unavailable(e) => ApiError::Unavailable(e.to_string()),
        })?;
    Ok(HttpResponse::Ok()
        .insert_header(actix_web::http::header::ContentType::json())
        .body(answer.to_json()))
}
