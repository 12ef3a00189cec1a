use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::Scope;
use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::responses::ApiKeyErrors;
use crate::ledger::Ledger;

/// The head of a chain.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChainHead {
    pub seq: i64,
    /// Hex SHA-256.
    pub hash: String,
}

/// The result of recomputing the chain.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyResponse {
    /// The chain verified from the first event to the last, matched every signed
    /// checkpoint, and every checkpoint's signature verified.
    pub valid: bool,
    /// Events that verified.
    pub checked: u64,
    /// The last event that verified.
    pub head: Option<ChainHead>,
    /// The first sequence number not proven (absent when valid).
    pub first_invalid_seq: Option<i64>,
    /// Signed checkpoints the chain was compared with.
    pub checkpoints_checked: u64,
    /// Checkpoints whose signature does not verify.
    pub invalid_checkpoints: Vec<i64>,
}

/// Recomputes the business's whole chain from the stored rows (streaming, constant
/// memory) and compares it with the signed checkpoints.
#[utoipa::path(
    tag = "audit",
    security(("api_key" = ["audit:read"])),
    responses(
        ApiKeyErrors,
        (status = 200, body = VerifyResponse),
    )
)]
#[get("/v1/audit/verify")]
#[tracing::instrument(skip_all)]
pub async fn verify_audit_chain(
    principal: Principal,
    ledger: web::Data<Ledger>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::AuditRead)?;
    let report = ledger.verify_chain(principal.business_id).await?;
    Ok(HttpResponse::Ok().json(VerifyResponse {
        valid: report.valid,
        checked: report.checked,
        head: report.head.map(|(seq, hash)| ChainHead { seq, hash }),
        first_invalid_seq: report.first_invalid_seq,
        checkpoints_checked: report.checkpoints_checked,
        invalid_checkpoints: report.invalid_checkpoints,
    }))
}
