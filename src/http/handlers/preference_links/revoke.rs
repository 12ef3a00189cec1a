use actix_web::{HttpResponse, delete, web};
use uuid::Uuid;

use crate::domain::Scope;
use crate::http::auth::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::handlers::caller;
use crate::http::responses::{ApiKeyErrors, PathErrors};
use crate::ledger::Ledger;

/// Revokes a preference link, effective at once: its page answers "this link has
/// expired" from the next request on, on every node. Audited
/// (`preference_link.revoked`); revoking a revoked link changes nothing. A link
/// whose subject was erased no longer exists (404).
#[utoipa::path(
    tag = "consents",
    security(("api_key" = ["consents:write"])),
    params(("id" = Uuid, Path, description = "the link id")),
    responses(
        ApiKeyErrors, PathErrors,
        (status = 204, description = "revoked"),
        (status = 404, description = "no such link in this business", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/preference-links/{id}")]
#[tracing::instrument(skip_all)]
pub async fn revoke_preference_link(
    principal: Principal,
    ledger: web::Data<Ledger>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::ConsentsWrite)?;
    let caller = caller(&principal, &ledger)?;
    ledger
        .revoke_preference_link(&caller, path.into_inner())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
