use actix_web::{HttpRequest, HttpResponse, post, web};

use super::RecordBlockRequest;
use crate::http::auth::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{IdempotencyKey, Json};
use crate::http::responses::{ApiKeyErrors, JsonBodyErrors};
use crate::ledger::Ledger;
use crate::ledger::record::BlockResponse;

/// Records that the person unblocked the business: what consent or a window
/// allows may be sent again. Accepts `Idempotency-Key`.
#[utoipa::path(
    tag = "consents",
    security(("api_key" = ["consents:write"])),
    request_body = RecordBlockRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "retry-safe key")),
    responses(
        ApiKeyErrors, JsonBodyErrors,
        (status = 201, body = BlockResponse),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/unblocks")]
#[tracing::instrument(skip_all)]
pub async fn record_unblock(
    principal: Principal,
    req: HttpRequest,
    ledger: web::Data<Ledger>,
    key: IdempotencyKey,
    body: Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    super::record(principal, req, ledger, key, body, false).await
}
