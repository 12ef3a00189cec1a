use actix_web::{HttpResponse, delete, web};
use uuid::Uuid;

use crate::domain::Scope;
use crate::http::auth::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::handlers::caller;
use crate::http::responses::{ApiKeyErrors, PathErrors};
use crate::ledger::Ledger;

/// Deletes a connection, effective at once: its webhooks answer 404 from the
/// next request on. Audited (`channel.revoked`); deleting it again changes
/// nothing.
#[utoipa::path(
    tag = "channels",
    security(("api_key" = ["keys:manage"])),
    params(("id" = Uuid, Path, description = "the connection id")),
    responses(
        ApiKeyErrors, PathErrors,
        (status = 204, description = "deleted"),
        (status = 404, description = "no such connection in this business", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/channels/{id}")]
#[tracing::instrument(skip_all)]
pub async fn revoke_channel(
    principal: Principal,
    ledger: web::Data<Ledger>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::KeysManage)?;
    let caller = caller(&principal, &ledger)?;
    ledger.revoke_channel(&caller, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
