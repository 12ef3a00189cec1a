use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::KeyResponse;
use crate::domain::Scope;
use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::responses::ApiKeyErrors;
use crate::store::Store;

/// The business's keys, oldest first, revoked ones included.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyListResponse {
    pub keys: Vec<KeyResponse>,
}

/// Lists the caller's business's keys (never their secrets).
#[utoipa::path(
    tag = "keys",
    security(("api_key" = ["keys:manage"])),
    responses(
        ApiKeyErrors,
        (status = 200, body = KeyListResponse),
    )
)]
#[get("/v1/keys")]
#[tracing::instrument(skip_all)]
pub async fn list_keys(
    principal: Principal,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::KeysManage)?;
    let keys = store.list_keys(principal.business_id).await?;
    Ok(HttpResponse::Ok().json(KeyListResponse {
        keys: keys.into_iter().map(KeyResponse::from).collect(),
    }))
}
