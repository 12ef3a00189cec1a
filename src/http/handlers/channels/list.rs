use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::Scope;
use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::handlers::caller;
use crate::http::responses::ApiKeyErrors;
use crate::ledger::Ledger;
use crate::ledger::channels::ChannelResponse;

/// The business's channel connections in force, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelListResponse {
    pub channels: Vec<ChannelResponse>,
}

/// Lists the connections: ids, kinds, names and fingerprints, never a secret.
#[utoipa::path(
    tag = "channels",
    security(("api_key" = ["keys:manage"])),
    responses(
        ApiKeyErrors,
        (status = 200, body = ChannelListResponse),
    )
)]
#[get("/v1/channels")]
#[tracing::instrument(skip_all)]
pub async fn list_channels(
    principal: Principal,
    ledger: web::Data<Ledger>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::KeysManage)?;
    let caller = caller(&principal, &ledger)?;
    let channels = ledger.list_channels(&caller).await?;
    Ok(HttpResponse::Ok().json(ChannelListResponse { channels }))
}
