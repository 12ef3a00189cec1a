use actix_web::{HttpResponse, delete, web};
use uuid::Uuid;

use super::KeyResponse;
use crate::domain::{Scope, time};
use crate::http::auth::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::responses::{ApiKeyErrors, PathErrors};
use crate::ledger::Ledger;

/// Revokes a key of the caller's business, effective at once: its next request
/// gets 401 on every node. Revoking a revoked key answers the key unchanged.
#[utoipa::path(
    tag = "keys",
    security(("api_key" = ["keys:manage"])),
    params(("id" = Uuid, Path, description = "the key id")),
    responses(
        ApiKeyErrors, PathErrors,
        (status = 200, body = KeyResponse),
        (status = 404, description = "no such key in this business", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/keys/{id}")]
#[tracing::instrument(skip_all)]
pub async fn revoke_key(
    principal: Principal,
    ledger: web::Data<Ledger>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::KeysManage)?;
    let key = ledger
        .writer()
        .revoke_key(
            principal.business_id,
            path.into_inner(),
            time::now(),
            principal.actor(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(KeyResponse::from(key)))
}
